//! The compiled-artifact cache: machine code per module digest and engine fingerprint, kept on
//! local disk so that a restart loads functions instead of recompiling them.

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

    pub(crate) fn put(&self, digest: &Digest, artifact: &[u8]) -> Result<(), RegistryError> {
        write_atomically(&self.tmp, &self.path(digest), artifact)
    }

    /// Loads the cached program for `digest`, or `None` when there is none or it is unusable
    /// (the caller then recompiles from the verified module).
    pub(crate) fn load(&self, runtime: &Runtime, digest: &Digest) -> Option<Program> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: only this cache writes here, and only artifacts `Runtime::compile` produced
        // under this engine fingerprint (the directory name), each written atomically.
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
