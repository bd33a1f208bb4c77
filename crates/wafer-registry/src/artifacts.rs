//! The compiled-artifact cache: machine code per module digest and engine fingerprint, kept on
//! local disk so that a restart loads functions instead of recompiling them.
//!
//! wasmtime maps an artifact and runs its machine code as it finds it, so each artifact's own
//! SHA-256 is written beside it (`<digest hex>.cwasm.sha256`, after the artifact) and checked
//! before it is mapped: a torn, corrupted or replaced artifact is recompiled from the verified
//! module instead of run.

use std::fs;
use std::path::PathBuf;

use wafer_runtime::{Program, Runtime};

use crate::error::RegistryError;
use crate::names::Digest;
use crate::store::write_atomically;

/// `DIR/artifacts/<engine fingerprint>/<digest hex>.cwasm`
#[derive(Debug)]
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    tmp: PathBuf,
}

impl ArtifactCache {
    pub(crate) fn open(data: &std::path::Path, runtime: &Runtime) -> Result<Self, RegistryError> {
        let dir = data.join("artifacts").join(runtime.fingerprint());
        fs::create_dir_all(&dir).map_err(RegistryError::io(format!(
            "cannot create {}",
            dir.display()
        )))?;
        Ok(Self {
            dir,
            tmp: data.join("tmp"),
        })
    }

    fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm", digest.hex()))
    }

    /// Where the artifact's own digest is kept.
    fn digest_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(format!("{}.cwasm.sha256", digest.hex()))
    }

    /// Stores an artifact, then its digest: an artifact without its digest (a crash between
    /// the two writes) is never loaded.
    pub(crate) fn put(&self, digest: &Digest, artifact: &[u8]) -> Result<(), RegistryError> {
        write_atomically(&self.tmp, &self.path(digest), artifact)?;
        let own = Digest::of(artifact);
        write_atomically(
            &self.tmp,
            &self.digest_path(digest),
            own.as_str().as_bytes(),
        )
    }

    /// Whether the artifact at `path` is the one whose digest was recorded.
    fn verify(&self, digest: &Digest, path: &std::path::Path) -> Result<(), String> {
        let recorded = fs::read_to_string(self.digest_path(digest))
            .map_err(|e| format!("its recorded digest cannot be read: {e}"))?;
        let bytes = fs::read(path).map_err(|e| format!("it cannot be read: {e}"))?;
        let actual = Digest::of(&bytes);
        if recorded.trim() == actual.as_str() {
            Ok(())
        } else {
            Err(format!(
                "its content ({actual}) is not what was written ({})",
                recorded.trim()
            ))
        }
    }

    /// Loads the cached program for `digest`, or `None` when there is none or it is unusable
    /// (the caller then recompiles from the verified module).
    pub(crate) fn load(&self, runtime: &Runtime, digest: &Digest) -> Option<Program> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        if let Err(why) = self.verify(digest, &path) {
            tracing::warn!(%digest, "compiled artifact failed verification, recompiling from the module: {why}");
            let _ = fs::remove_file(&path);
            return None;
        }
        // SAFETY: only this cache writes here, and only artifacts `Runtime::compile` produced
        // under this engine fingerprint (the directory name), each written atomically; the
        // bytes were just checked against the digest recorded when it was written.
        match unsafe { runtime.load(&path) } {
            Ok(program) => Some(program),
            Err(e) => {
                tracing::warn!(%digest, error = %e, "discarding unusable compiled artifact");
                let _ = fs::remove_file(&path);
                None
            }
        }
    }
}
