//! The compiled-artifact cache: machine code per module and engine fingerprint, on this
//! node's disk, so that a restart maps functions back in instead of recompiling them. It is a
//! cache, never shared between nodes: another machine's engine may differ.
//!
//! wasmtime maps an artifact and runs its machine code as it finds it, so each artifact's own
//! SHA-256 is written beside it (`<module hex>.cwasm.sha256`, after the artifact) and checked
//! before it is mapped: a torn, corrupted or replaced artifact is recompiled from the module
//! instead of run.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::engine::Runtime;
use crate::error::CompileError;
use crate::program::Program;

/// Creates `dir` (and missing parents) with mode 0700, and makes an existing one so.
fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if fs::metadata(dir)?.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

/// `DIR/<engine fingerprint>/<module sha256 hex>.cwasm`, and its digest beside it.
#[derive(Debug)]
pub struct ArtifactCache {
    dir: PathBuf,
}

impl ArtifactCache {
    /// Opens (creating) the cache for `runtime`'s engine under `dir`, clearing files a crash
    /// left half-written.
    pub fn open(dir: &Path, runtime: &Runtime) -> io::Result<Self> {
        let engine = dir.join(runtime.fingerprint());
        // Machine code that will be mapped and run: its directories are the owner's only
        // (0700, existing ones made so) and its files too (0600).
        private_dir(dir)?;
        private_dir(&engine)?;
        let dir = engine;
        for entry in fs::read_dir(&dir)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(Self { dir })
    }

    /// The program for `wasm`, the module whose SHA-256 is `hex`: its cached artifact mapped
    /// in, or else compiled now and cached. `wasm` is read only when compiling.
    pub fn program(
        &self,
        runtime: &Runtime,
        hex: &str,
        wasm: impl FnOnce() -> Result<Vec<u8>, CompileError>,
    ) -> Result<Program, CompileError> {
        if let Some(program) = self.load(runtime, hex) {
            return Ok(program);
        }
        let compiled = runtime.compile(&wasm()?)?;
        if let Err(e) = self.put(hex, &compiled.artifact) {
            tracing::warn!(module = hex, error = %e, "cannot cache the compiled artifact; the next start compiles again");
        }
        Ok(compiled.program)
    }

    fn path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.cwasm"))
    }

    /// Where the artifact's own digest is kept.
    fn digest_path(&self, hex: &str) -> PathBuf {
        self.dir.join(format!("{hex}.cwasm.sha256"))
    }

    /// Stores an artifact, then its digest: an artifact without its digest (a crash between
    /// the two writes) is never loaded.
    fn put(&self, hex: &str, artifact: &[u8]) -> io::Result<()> {
        self.write(&self.path(hex), artifact)?;
        self.write(&self.digest_path(hex), sha256(artifact).as_bytes())
    }

    /// Writes `path` whole or not at all: a temporary file, synced, renamed into place.
    fn write(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut builder = tempfile::Builder::new();
        builder.suffix(".tmp");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(fs::Permissions::from_mode(0o600));
        }
        let mut file = builder.tempfile_in(&self.dir)?;
        file.write_all(bytes)?;
        file.as_file().sync_all()?;
        file.persist(path).map_err(|e| e.error)?;
        File::open(&self.dir)?.sync_all()
    }

    /// Whether the artifact at `path` is the one whose digest was recorded.
    fn verify(&self, hex: &str, path: &Path) -> Result<(), String> {
        let recorded = fs::read_to_string(self.digest_path(hex))
            .map_err(|e| format!("its recorded digest cannot be read: {e}"))?;
        let bytes = fs::read(path).map_err(|e| format!("it cannot be read: {e}"))?;
        let actual = sha256(&bytes);
        if recorded.trim() == actual {
            Ok(())
        } else {
            Err(format!(
                "its content ({actual}) is not what was written ({})",
                recorded.trim()
            ))
        }
    }

    /// Loads the cached program for the module `hex`, or `None` when there is none or it is
    /// unusable (the caller then compiles from the module).
    pub fn load(&self, runtime: &Runtime, hex: &str) -> Option<Program> {
        let path = self.path(hex);
        if !path.exists() {
            return None;
        }
        if let Err(why) = self.verify(hex, &path) {
            tracing::warn!(
                module = hex,
                "compiled artifact failed verification, recompiling from the module: {why}"
            );
            let _ = fs::remove_file(&path);
            return None;
        }
        // SAFETY: only this cache writes here, and only artifacts `Runtime::compile` produced
        // under this engine fingerprint (the directory name), each written atomically; the
        // bytes were just checked against the digest recorded when it was written.
        match unsafe { runtime.load(&path) } {
            Ok(program) => Some(program),
            Err(e) => {
                tracing::warn!(module = hex, error = %e, "discarding unusable compiled artifact");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
