//! Where modules and function records live: the [`Store`] trait and its local-directory backend.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::error::RegistryError;
use crate::names::{Digest, FunctionName};
use crate::record::FunctionRecord;

/// A record's revision in its store. Every write of any record gets a higher one, so a
/// writer can ask that a record be unchanged since it read it, and a watcher can tell how far
/// it has caught up.
pub type Revision = u64;

/// What a [`Store::watch`] stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A record as written (or as it stood when the watch began).
    Put {
        /// The record.
        record: Arc<FunctionRecord>,
        /// Its revision.
        revision: Revision,
    },
    /// A record was deleted.
    Removed {
        /// The function whose record it was.
        name: FunctionName,
        /// The revision of the deletion.
        revision: Revision,
    },
    /// Every record that existed when the watch began has been yielded; changes follow.
    Ready,
}

/// A stream of record changes: the records as they stand, [`Event::Ready`], then every
/// change after, in the order written. It ends (or yields an error) only when the store is
/// gone or unreachable; the watcher then starts a new one.
pub type Watch = Pin<Box<dyn Stream<Item = Result<Event, RegistryError>> + Send>>;

/// Durable storage for module blobs and function records, watchable. Nothing outside the
/// registry knows where bytes live.
///
/// Every write is all-or-nothing: a process killed at any moment leaves the previous or the
/// new contents, never a torn file.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores a module under its digest. Storing the same bytes twice is a no-op.
    async fn put_module(&self, digest: &Digest, wasm: Vec<u8>) -> Result<(), RegistryError>;
    /// Reads a module back, verified against its digest.
    async fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError>;
    /// A function's record and its revision, if it exists.
    async fn record(
        &self,
        name: &FunctionName,
    ) -> Result<Option<(Arc<FunctionRecord>, Revision)>, RegistryError>;
    /// Writes `record` if the stored one is still at revision `expected` (`None`: if there
    /// is none), and returns the new revision; [`RegistryError::Conflict`] otherwise.
    async fn put_record(
        &self,
        record: FunctionRecord,
        expected: Option<Revision>,
    ) -> Result<Revision, RegistryError>;
    /// Deletes a function's record if it is still at revision `expected`; returns the
    /// revision of the deletion.
    async fn remove_record(
        &self,
        name: &FunctionName,
        expected: Revision,
    ) -> Result<Revision, RegistryError>;
    /// Every record as it stands, then every change (see [`Watch`]).
    async fn watch(&self) -> Result<Watch, RegistryError>;
    /// Every record as it stands (to find the modules no version runs any more).
    async fn records(&self) -> Result<Vec<Arc<FunctionRecord>>, RegistryError>;
    /// Deletes a module; deleting one that is not stored is a no-op.
    async fn remove_module(&self, digest: &Digest) -> Result<(), RegistryError>;
}

/// The default backend: a directory.
///
/// ```text
/// DIR/modules/sha256/<hex>.wasm   module blobs, immutable
/// DIR/functions/<name>.json       one record per function: every version, the active one
/// DIR/tmp/                        files being written, renamed into place when complete
/// ```
///
/// One process owns the directory, so revisions and watchers live in memory: revisions
/// count up from 1 at each start, and a watch is fed by the writes of this process.
///
/// The directory and everything in it are its owner's only: directories 0700 (an existing
/// data directory is made so), files 0600.
///
/// File IO and fsync run on the blocking pool. Writers take turns on a lock held there,
/// across their IO; the records in memory sit behind another lock, held only for moments and
/// never across IO, so [`Store::record`] and [`Store::watch`] on an async worker thread never
/// wait for a disk.
#[derive(Clone)]
pub struct LocalStore {
    inner: Arc<Local>,
}

struct Local {
    modules: PathBuf,
    functions: PathBuf,
    tmp: PathBuf,
    /// Taken by each write, on the blocking pool, for the whole of its IO: one write at a
    /// time, so a revision checked before the IO still holds after it.
    writer: Mutex<()>,
    /// Taken only for moments, never across IO: async threads read it.
    state: Mutex<LocalState>,
}

/// The records as written, their revisions, and who watches them.
#[derive(Default)]
struct LocalState {
    records: HashMap<FunctionName, (Arc<FunctionRecord>, Revision)>,
    last: Revision,
    watchers: Vec<mpsc::UnboundedSender<Event>>,
}

impl LocalState {
    /// Tells every live watcher; forgets those that are gone.
    fn notify(&mut self, event: &Event) {
        self.watchers.retain(|w| w.send(event.clone()).is_ok());
    }

    fn check(&self, name: &FunctionName, expected: Option<Revision>) -> Result<(), RegistryError> {
        let current = self.records.get(name).map(|(_, r)| *r);
        if current == expected {
            Ok(())
        } else {
            Err(RegistryError::Conflict(name.to_string()))
        }
    }
}

impl LocalStore {
    /// Opens (creating if needed) the store in `dir`, clears half-written files a crash
    /// may have left behind, and reads every record.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let local = Local {
            modules: dir.join("modules").join("sha256"),
            functions: dir.join("functions"),
            tmp: dir.join("tmp"),
            writer: Mutex::default(),
            state: Mutex::default(),
        };
        let sha256 = &local.modules;
        for d in [
            dir,
            &dir.join("modules"),
            sha256,
            &local.functions,
            &local.tmp,
        ] {
            private_dir(d)?;
        }
        clear_dir(&local.tmp)?;
        let records = local.read_records()?;
        {
            let mut state = local.lock();
            for record in records {
                state.last += 1;
                let revision = state.last;
                state
                    .records
                    .insert(record.name.clone(), (Arc::new(record), revision));
            }
        }
        Ok(Self {
            inner: Arc::new(local),
        })
    }

    /// Runs `f` on the blocking pool: the store's work is file IO and fsync.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Local) -> Result<T, RegistryError> + Send + 'static,
    ) -> Result<T, RegistryError> {
        let local = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&local))
            .await
            .map_err(|e| RegistryError::io("the store's task failed")(io::Error::other(e)))?
    }
}

impl Local {
    fn lock(&self) -> MutexGuard<'_, LocalState> {
        // The state is only changed after a successful write, so it is consistent even if
        // a panic poisoned the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One write at a time. Only ever taken on the blocking pool.
    fn write_turn(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn module_path(&self, digest: &Digest) -> PathBuf {
        self.modules.join(format!("{}.wasm", digest.hex()))
    }

    fn record_path(&self, name: &FunctionName) -> PathBuf {
        self.functions.join(format!("{name}.json"))
    }

    fn read_module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
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

    fn read_records(&self) -> Result<Vec<FunctionRecord>, RegistryError> {
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

#[async_trait]
impl Store for LocalStore {
    async fn put_module(&self, digest: &Digest, wasm: Vec<u8>) -> Result<(), RegistryError> {
        let digest = digest.clone();
        self.blocking(move |local| {
            let path = local.module_path(&digest);
            if path.exists() && Digest::of(&fs::read(&path).unwrap_or_default()) == digest {
                return Ok(());
            }
            write_atomically(&local.tmp, &path, &wasm)
        })
        .await
    }

    async fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let digest = digest.clone();
        self.blocking(move |local| local.read_module(&digest)).await
    }

    async fn record(
        &self,
        name: &FunctionName,
    ) -> Result<Option<(Arc<FunctionRecord>, Revision)>, RegistryError> {
        Ok(self.inner.lock().records.get(name).cloned())
    }

    async fn put_record(
        &self,
        record: FunctionRecord,
        expected: Option<Revision>,
    ) -> Result<Revision, RegistryError> {
        self.blocking(move |local| {
            let json = serde_json::to_vec_pretty(&record)
                .map_err(|e| RegistryError::io("cannot encode record")(e.into()))?;
            let _turn = local.write_turn();
            local.lock().check(&record.name, expected)?;
            write_atomically(&local.tmp, &local.record_path(&record.name), &json)?;
            // No other write ran meanwhile (the turn), so the check still holds.
            let mut state = local.lock();
            state.last += 1;
            let revision = state.last;
            let record = Arc::new(record);
            state
                .records
                .insert(record.name.clone(), (record.clone(), revision));
            state.notify(&Event::Put { record, revision });
            Ok(revision)
        })
        .await
    }

    async fn remove_record(
        &self,
        name: &FunctionName,
        expected: Revision,
    ) -> Result<Revision, RegistryError> {
        let name = name.clone();
        self.blocking(move |local| {
            let _turn = local.write_turn();
            {
                let state = local.lock();
                if !state.records.contains_key(&name) {
                    return Err(RegistryError::NotFound(name.to_string()));
                }
                state.check(&name, Some(expected))?;
            }
            let path = local.record_path(&name);
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(&local.functions)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(RegistryError::io(format!(
                        "cannot remove {}",
                        path.display()
                    ))(e))
                }
            }
            let mut state = local.lock();
            state.last += 1;
            let revision = state.last;
            state.records.remove(&name);
            state.notify(&Event::Removed { name, revision });
            Ok(revision)
        })
        .await
    }

    async fn records(&self) -> Result<Vec<Arc<FunctionRecord>>, RegistryError> {
        let state = self.inner.lock();
        Ok(state.records.values().map(|(r, _)| r.clone()).collect())
    }

    async fn remove_module(&self, digest: &Digest) -> Result<(), RegistryError> {
        let digest = digest.clone();
        self.blocking(move |local| {
            let path = local.module_path(&digest);
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(&local.modules),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(RegistryError::io(format!(
                    "cannot remove {}",
                    path.display()
                ))(e)),
            }
        })
        .await
    }

    async fn watch(&self) -> Result<Watch, RegistryError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut state = self.inner.lock();
        // The snapshot and the subscription under one lock: no change falls between them.
        let mut current: Vec<_> = state.records.values().cloned().collect();
        current.sort_by_key(|(_, revision)| *revision);
        for (record, revision) in current {
            let _ = tx.send(Event::Put { record, revision });
        }
        let _ = tx.send(Event::Ready);
        state.watchers.push(tx);
        Ok(Box::pin(UnboundedReceiverStream::new(rx).map(Ok)))
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the complete new
/// one: write a temporary file beside it, fsync it, rename it over `path`, fsync the directory.
pub(crate) fn write_atomically(
    tmp_dir: &Path,
    path: &Path,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    #[cfg(test)]
    gate::wait(tmp_dir);
    let failed = || RegistryError::io(format!("cannot write {}", path.display()));
    let mut file = private_temp_file(tmp_dir).map_err(failed())?;
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
/// `dir` is created, or made, its owner's only (see [`private_dir`]).
pub fn admin_token(dir: &Path) -> Result<String, RegistryError> {
    private_dir(dir)?;
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
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| {
        RegistryError::io("cannot generate the admin token")(io::Error::other(e.to_string()))
    })?;
    let token = hex::encode(secret);
    set_admin_token(dir, &token)?;
    Ok(token)
}

/// Writes `token` as `dir/admin-token` (mode 0600), as a cluster node does with the
/// cluster's token, so that `wafer` client commands on the machine find it.
pub fn set_admin_token(dir: &Path, token: &str) -> Result<(), RegistryError> {
    let path = dir.join("admin-token");
    private_dir(dir)?;
    let failed = || RegistryError::io(format!("cannot write {}", path.display()));
    let tmp = dir.join("admin-token.tmp");
    let mut file = open_private(&tmp).map_err(failed())?;
    file.write_all(token.as_bytes()).map_err(failed())?;
    file.sync_all().map_err(failed())?;
    fs::rename(&tmp, &path).map_err(failed())?;
    sync_dir(dir)
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

/// Creates `dir` and its missing parents readable by their owner only (mode 0700), and makes
/// an existing `dir` so, saying so when it was not: the data directory holds the admin
/// token, the modules and the functions' key-value data. A shared directory (sticky, like
/// `/tmp`) is left as it is, with a warning: its files are private still.
pub fn private_dir(dir: &Path) -> Result<(), RegistryError> {
    let failed = || RegistryError::io(format!("cannot create {}", dir.display()));
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(failed())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir).map_err(failed())?.permissions().mode();
        if mode & 0o077 == 0 {
            return Ok(());
        }
        if mode & 0o1000 != 0 {
            tracing::warn!(
                "{} is a shared directory (mode {:o}); its contents are private, but give \
                 Wafer a directory of its own",
                dir.display(),
                mode & 0o7777
            );
            return Ok(());
        }
        match fs::set_permissions(dir, fs::Permissions::from_mode(0o700)) {
            Ok(()) => tracing::warn!(
                "{} was open to others (mode {:o}); it is now 0700",
                dir.display(),
                mode & 0o777
            ),
            // Not ours to change: its files are private still.
            Err(e) => tracing::warn!(
                "{} is open to others (mode {:o}) and cannot be made private: {e}",
                dir.display(),
                mode & 0o777
            ),
        }
    }
    Ok(())
}

/// A temporary file in `dir` readable by its owner only (mode 0600), to be renamed into
/// place.
fn private_temp_file(dir: &Path) -> io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o600));
    }
    builder.tempfile_in(dir)
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// A test's pause point inside a write's IO: a write whose temporary directory a test
/// closed the gate of says it has started, then waits until the test opens it.
#[cfg(test)]
pub(crate) mod gate {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::Mutex;

    type Gates = HashMap<PathBuf, (Sender<()>, Receiver<()>)>;

    static GATES: Mutex<Option<Gates>> = Mutex::new(None);

    /// Closes the gate of writes into `tmp_dir`: returns where they say they started, and
    /// where to let them go on (one message per write).
    pub(crate) fn close(tmp_dir: &Path) -> (Receiver<()>, Sender<()>) {
        let (started, on_start) = channel();
        let (release, on_release) = channel();
        let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
        gates
            .get_or_insert_with(HashMap::new)
            .insert(tmp_dir.to_owned(), (started, on_release));
        (on_start, release)
    }

    pub(super) fn wait(tmp_dir: &Path) {
        let mut gates = GATES.lock().unwrap_or_else(|e| e.into_inner());
        let Some((started, release)) = gates.as_mut().and_then(|g| g.remove(tmp_dir)) else {
            return;
        };
        drop(gates);
        let _ = started.send(());
        let _ = release.recv();
    }
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

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[tokio::test]
    async fn the_data_directory_and_its_files_are_the_owners_only() {
        let parent = tempfile::tempdir().unwrap();
        // A data directory a default umask made (0755), and one Wafer creates.
        let existing = parent.path().join("existing");
        fs::create_dir(&existing).unwrap();
        fs::set_permissions(&existing, fs::Permissions::from_mode(0o755)).unwrap();
        let fresh = parent.path().join("fresh/data");
        for dir in [&existing, &fresh] {
            admin_token(dir).unwrap();
            let store = LocalStore::open(dir).unwrap();
            let wasm = b"\0asm\x01\0\0\0".to_vec();
            let digest = Digest::of(&wasm);
            store.put_module(&digest, wasm).await.unwrap();
            store.put_record(record("f"), None).await.unwrap();
            let mut seen = 0;
            let mut dirs = vec![dir.clone()];
            while let Some(d) = dirs.pop() {
                assert_eq!(mode(&d), 0o700, "{}", d.display());
                for entry in fs::read_dir(&d).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else {
                        assert_eq!(mode(&path), 0o600, "{}", path.display());
                        seen += 1;
                    }
                }
            }
            // The token, the module and the record.
            assert_eq!(seen, 3, "{}", dir.display());
        }
        // Parents Wafer creates are private too.
        assert_eq!(mode(&parent.path().join("fresh")), 0o700);
    }

    #[test]
    fn a_shared_directory_is_left_shared() {
        let parent = tempfile::tempdir().unwrap();
        let shared = parent.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        private_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o1777);
    }

    /// Runs `check` on a runtime of its own, on another thread; returns whether it finished
    /// while the test waited (a minute: it needs no disk, so only a lock can hold it).
    fn finishes<F>(check: impl FnOnce() -> F + Send + 'static) -> bool
    where
        F: std::future::Future<Output = ()>,
    {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(check());
            let _ = done.send(());
        });
        finished
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_ok()
    }

    /// Reported: `record` and `watch` waited on a std mutex that a write held across its
    /// fsync, blocking the async worker thread they ran on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_and_watches_do_not_wait_for_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let a = store.put_record(record("a"), None).await.unwrap();
        let (started, release) = gate::close(&dir.path().join("tmp"));
        let writer = store.clone();
        let write = tokio::spawn(async move { writer.put_record(record("b"), None).await });
        tokio::task::spawn_blocking(move || started.recv().unwrap())
            .await
            .unwrap();
        // The write of `b` is in its IO now, and stays there until released.
        let reader = store.clone();
        let read = finishes(move || async move {
            let (got, revision) = reader.record(&"a".parse().unwrap()).await.unwrap().unwrap();
            assert_eq!((got.name.as_str(), revision), ("a", a));
            assert!(reader
                .record(&"b".parse().unwrap())
                .await
                .unwrap()
                .is_none());
        });
        let watcher = store.clone();
        let watched = finishes(move || async move {
            let mut watch = watcher.watch().await.unwrap();
            assert!(matches!(next(&mut watch).await, Event::Put { .. }));
            assert_eq!(next(&mut watch).await, Event::Ready);
        });
        release.send(()).unwrap();
        assert!(read, "reading a record waited for a write's IO");
        assert!(watched, "starting a watch waited for a write's IO");
        let b = write.await.unwrap().unwrap();
        assert!(b > a);
        assert!(store.record(&"b".parse().unwrap()).await.unwrap().is_some());
    }

    fn record(name: &str) -> FunctionRecord {
        FunctionRecord::new(&name.parse().unwrap())
    }

    /// The next event of `watch`, which must come at once.
    async fn next(watch: &mut Watch) -> Event {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), watch.next());
        event.await.unwrap().unwrap().unwrap()
    }

    #[tokio::test]
    async fn records_are_written_compare_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let first = store.put_record(record("f"), None).await.unwrap();
        let taken = store.put_record(record("f"), None).await.unwrap_err();
        assert!(matches!(taken, RegistryError::Conflict(_)), "{taken}");
        let second = store.put_record(record("f"), Some(first)).await.unwrap();
        assert!(second > first);
        let stale = store
            .put_record(record("f"), Some(first))
            .await
            .unwrap_err();
        assert!(matches!(stale, RegistryError::Conflict(_)), "{stale}");
        let stale = store.remove_record(&"f".parse().unwrap(), first).await;
        assert!(matches!(stale, Err(RegistryError::Conflict(_))));
        store
            .remove_record(&"f".parse().unwrap(), second)
            .await
            .unwrap();
        assert!(store.record(&"f".parse().unwrap()).await.unwrap().is_none());
        // Revisions keep counting up across a restart.
        store.put_record(record("g"), None).await.unwrap();
        let reopened = LocalStore::open(dir.path()).unwrap();
        let (_, revision) = reopened
            .record(&"g".parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(reopened
            .put_record(record("g"), Some(revision))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn a_watch_yields_the_records_then_every_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let a = store.put_record(record("a"), None).await.unwrap();
        let mut watch = store.watch().await.unwrap();
        let Event::Put {
            record: got,
            revision,
        } = next(&mut watch).await
        else {
            panic!("expected the record that exists");
        };
        assert_eq!((got.name.as_str(), revision), ("a", a));
        assert_eq!(next(&mut watch).await, Event::Ready);
        let b = store.put_record(record("b"), None).await.unwrap();
        let Event::Put {
            record: got,
            revision,
        } = next(&mut watch).await
        else {
            panic!("expected the new record");
        };
        assert_eq!((got.name.as_str(), revision), ("b", b));
        let gone = store.remove_record(&"a".parse().unwrap(), a).await.unwrap();
        assert_eq!(
            next(&mut watch).await,
            Event::Removed {
                name: "a".parse().unwrap(),
                revision: gone
            }
        );
    }
}
