//! Where modules and function records live: the [`Store`] trait and its local-directory backend.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::RegistryError;
use crate::names::{Digest, FunctionName};
use crate::record::FunctionRecord;

/// Durable storage for module blobs and function records. Nothing outside the registry
/// knows where bytes live.
///
/// Every write is all-or-nothing: a process killed at any moment leaves the previous or the
/// new contents, never a torn file.
pub trait Store: Send + Sync + 'static {
    /// Stores a module under its digest. Storing the same bytes twice is a no-op.
    fn put_module(&self, digest: &Digest, wasm: &[u8]) -> Result<(), RegistryError>;
    /// Reads a module back, verified against its digest.
    fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError>;
    /// Replaces a function's record.
    fn put_record(&self, record: &FunctionRecord) -> Result<(), RegistryError>;
    /// Deletes a function's record.
    fn remove_record(&self, name: &FunctionName) -> Result<(), RegistryError>;
    /// Reads every function record.
    fn records(&self) -> Result<Vec<FunctionRecord>, RegistryError>;
}

/// The default backend: a directory.
///
/// ```text
/// DIR/modules/sha256/<hex>.wasm   module blobs, immutable
/// DIR/functions/<name>.json       one record per function: every version, the active one
/// DIR/tmp/                        files being written, renamed into place when complete
/// ```
#[derive(Debug)]
pub struct LocalStore {
    modules: PathBuf,
    functions: PathBuf,
    tmp: PathBuf,
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir`, and clears half-written files a crash
    /// may have left behind.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let store = Self {
            modules: dir.join("modules").join("sha256"),
            functions: dir.join("functions"),
            tmp: dir.join("tmp"),
        };
        for d in [&store.modules, &store.functions, &store.tmp] {
            fs::create_dir_all(d)
                .map_err(RegistryError::io(format!("cannot create {}", d.display())))?;
        }
        clear_dir(&store.tmp)?;
        Ok(store)
    }

    fn module_path(&self, digest: &Digest) -> PathBuf {
        self.modules.join(format!("{}.wasm", digest.hex()))
    }

    fn record_path(&self, name: &FunctionName) -> PathBuf {
        self.functions.join(format!("{name}.json"))
    }
}

impl Store for LocalStore {
    fn put_module(&self, digest: &Digest, wasm: &[u8]) -> Result<(), RegistryError> {
        let path = self.module_path(digest);
        if path.exists() && Digest::of(&fs::read(&path).unwrap_or_default()) == *digest {
            return Ok(());
        }
        write_atomically(&self.tmp, &path, wasm)
    }

    fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let path = self.module_path(digest);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(RegistryError::ModuleNotFound(digest.to_string()))
            }
            Err(e) => return Err(RegistryError::io(format!("cannot read {}", path.display()))(e)),
        };
        let actual = Digest::of(&bytes);
        if actual != *digest {
            return Err(RegistryError::Corrupt {
                digest: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    fn put_record(&self, record: &FunctionRecord) -> Result<(), RegistryError> {
        let json = serde_json::to_vec_pretty(record)
            .map_err(|e| RegistryError::io("cannot encode record")(e.into()))?;
        write_atomically(&self.tmp, &self.record_path(&record.name), &json)
    }

    fn remove_record(&self, name: &FunctionName) -> Result<(), RegistryError> {
        let path = self.record_path(name);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.functions),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(RegistryError::NotFound(name.to_string()))
            }
            Err(e) => Err(RegistryError::io(format!(
                "cannot remove {}",
                path.display()
            ))(e)),
        }
    }

    fn records(&self) -> Result<Vec<FunctionRecord>, RegistryError> {
        let entries = fs::read_dir(&self.functions).map_err(RegistryError::io(format!(
            "cannot list {}",
            self.functions.display()
        )))?;
        let mut records = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(RegistryError::io("cannot list functions"))?
                .path();
            if path.extension().is_none_or(|ext| ext != "json") {
                continue;
            }
            let bytes = fs::read(&path)
                .map_err(RegistryError::io(format!("cannot read {}", path.display())))?;
            match serde_json::from_slice(&bytes) {
                Ok(record) => records.push(record),
                // One unreadable record (edited by hand, written by a newer version) must not
                // keep every other function from starting. It is set aside, never deleted, so
                // a later deploy of the name cannot overwrite the history it holds.
                Err(e) => {
                    let mut aside = path.with_extension("json.unreadable");
                    for n in 1.. {
                        if !aside.exists() {
                            break;
                        }
                        aside = path.with_extension(format!("json.unreadable.{n}"));
                    }
                    fs::rename(&path, &aside).map_err(RegistryError::io(format!(
                        "cannot set aside the unreadable record {}",
                        path.display()
                    )))?;
                    tracing::error!(
                        record = %path.display(),
                        moved_to = %aside.display(),
                        "function record cannot be read ({e}); the function is not served"
                    );
                }
            }
        }
        Ok(records)
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the complete new
/// one: write a temporary file beside it, fsync it, rename it over `path`, fsync the directory.
pub(crate) fn write_atomically(
    tmp_dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let failed = || RegistryError::io(format!("cannot write {}", path.display()));
    let mut file = tempfile::NamedTempFile::new_in(tmp_dir).map_err(failed())?;
    file.write_all(bytes).map_err(failed())?;
    file.as_file().sync_all().map_err(failed())?;
    file.persist(path).map_err(|e| failed()(e.error))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), RegistryError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RegistryError::io(format!("cannot sync {}", dir.display())))
}

fn clear_dir(dir: &Path) -> Result<(), RegistryError> {
    let entries =
        fs::read_dir(dir).map_err(RegistryError::io(format!("cannot list {}", dir.display())))?;
    for entry in entries.flatten() {
        let _ = fs::remove_file(entry.path());
    }
    Ok(())
}

/// Reads the admin token from `dir/admin-token`, creating a random one (mode 0600) on first use.
pub fn admin_token(dir: &Path) -> Result<String, RegistryError> {
    let path = dir.join("admin-token");
    match fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => {
            tighten(&path)?;
            return Ok(token.trim().to_owned());
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(RegistryError::io(format!("cannot read {}", path.display()))(e)),
    }
    fs::create_dir_all(dir).map_err(RegistryError::io(format!(
        "cannot create {}",
        dir.display()
    )))?;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        RegistryError::io("cannot generate the admin token")(io::Error::other(e.to_string()))
    })?;
    let token = hex::encode(secret);
    let failed = || RegistryError::io(format!("cannot write {}", path.display()));
    let tmp = dir.join("admin-token.tmp");
    let mut file = open_private(&tmp).map_err(failed())?;
    file.write_all(token.as_bytes()).map_err(failed())?;
    file.sync_all().map_err(failed())?;
    fs::rename(&tmp, &path).map_err(failed())?;
    sync_dir(dir)?;
    Ok(token)
}

/// Makes an existing token file readable by its owner only (mode 0600), saying so when it
/// was not: anyone who can read the token can deploy code.
fn tighten(path: &Path) -> Result<(), RegistryError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let failed = || RegistryError::io(format!("cannot secure {}", path.display()));
        let mode = fs::metadata(path).map_err(failed())?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(
                "{} was readable by others (mode {:o}); it is now 0600",
                path.display(),
                mode & 0o777
            );
            fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(failed())?;
        }
    }
    Ok(())
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

#[cfg(all(test, unix))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_token_readable_by_others_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let token = admin_token(dir.path()).unwrap();
        let path = dir.path().join("admin-token");
        let mode = || fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(), 0o600);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(admin_token(dir.path()).unwrap(), token);
        assert_eq!(mode(), 0o600);
    }
}
