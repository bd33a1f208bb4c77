//! Wafer's registry: which functions exist, every version of each and which one is active,
//! and the modules they run. Records and bytes only: it knows nothing of the engine.
//!
//! - Modules are content-addressed ([`Digest`], SHA-256 of the binary module), stored once,
//!   verified against their digest whenever they are read.
//! - A function is a [`FunctionName`] with a history of [`Version`]s in one
//!   [`FunctionRecord`]; a deploy appends a version, rollback moves the active pointer back.
//! - Every write is atomic (temp file, fsync, rename, fsync the directory), so `kill -9` at
//!   any moment leaves the old or the new record.
//! - Records are written compare-and-set on their [`Revision`] ([`Registry::update`]), so
//!   two writers, even on two machines, cannot lose each other's versions; and the store
//!   can be watched ([`Registry::watch`]): the records as they stand, then every change.
//!
//! Storage sits behind the [`Store`] trait; [`LocalStore`] (a directory) is the default.
//! Compiling modules, routing requests and admission belong to the gateway, which turns the
//! records into the functions it serves.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wafer_abi::Abi;
//! use wafer_registry::{Digest, FunctionConfig, FunctionRecord, Registry, Update};
//!
//! let registry = Registry::open(".wafer".as_ref())?;
//! let wasm = std::fs::read("hello.wasm")?;
//! let digest = Digest::of(&wasm);
//! registry.put_module(&digest, wasm).await?;
//! let name = "hello".parse()?;
//! let (version, _revision) = registry
//!     .update(&name, |current| {
//!         let mut record = current.cloned().unwrap_or_else(|| FunctionRecord::new(&name));
//!         let version = record.push(digest.clone(), Abi::Cgi, FunctionConfig::default(), Vec::new());
//!         let number = version.version;
//!         Ok(Update::Write(record, number))
//!     })
//!     .await?;
//! println!("hello is at version {version}");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod declared;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grants;
mod names;
mod record;
mod schedule;
mod store;
mod traffic;

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

pub use config::{FunctionConfig, OperationTypes, Schema, SpinComponent};
pub use declared::{parse_module_routes, ModuleRoute, ROUTES_EXPORT};
pub use error::RegistryError;
pub use grants::{
    check_topic, DirGrant, Grants, HostPattern, HttpRule, OutboundRule, PortRule, Scheme, Secret,
    TopicPattern,
};
pub use names::{Digest, FunctionName, Route};
pub use record::{Deployment, FunctionRecord, Version, MAX_RECORD_BYTES, MAX_VERSIONS};
pub use schedule::{Clock, Schedule, MAX_SCHEDULES, MAX_SCHEDULE_BODY};
pub use store::{
    admin_token, private_dir, set_admin_token, Event, LocalStore, Revision, Store, Watch,
};
pub use traffic::{Share, Sticky, Traffic, MAX_SPLIT};

/// The registry: durable function records and modules, behind a [`Store`].
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
}

/// The outcome of a deploy or a rollback.
#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    /// The function.
    pub name: FunctionName,
    /// The version now active.
    pub version: u32,
    /// Its module.
    pub digest: Digest,
    /// `true` when the module and config were those of the active version already, so no
    /// version was added.
    pub unchanged: bool,
    /// The traffic split now standing, if any (a canary deploy's: `version` is the canary,
    /// the active version keeps the rest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
}

/// What a change made with [`Registry::update`] decided, given the record as it stood.
pub enum Update<T> {
    /// Write this record (it replaces the one read), and answer `T`.
    Write(FunctionRecord, T),
    /// Write nothing, and answer `T`.
    Keep(T),
}

/// How many times [`Registry::update`] reads again after losing a race to another writer.
const RETRIES: usize = 16;

impl Registry {
    /// A registry over `store`.
    pub fn new(store: impl Store) -> Self {
        Self {
            store: Arc::new(store),
        }
    }

    /// The registry in the directory `dir` (created if needed): a [`LocalStore`].
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        Ok(Self::new(LocalStore::open(dir)?))
    }

    /// Every record as it stands, then every change (see [`Watch`]).
    pub async fn watch(&self) -> Result<Watch, RegistryError> {
        self.store.watch().await
    }

    /// A function's record, secrets included, and its revision.
    pub async fn record(
        &self,
        name: &FunctionName,
    ) -> Result<Option<(Arc<FunctionRecord>, Revision)>, RegistryError> {
        self.store.record(name).await
    }

    /// Changes `name`'s record: `change` is given the record as it stands (`None` if there is
    /// none) and decides. If another writer changed the record between the read and the
    /// write, `change` runs again on the new record. Returns its answer, and the revision
    /// written if it wrote.
    pub async fn update<T>(
        &self,
        name: &FunctionName,
        mut change: impl FnMut(Option<&FunctionRecord>) -> Result<Update<T>, RegistryError>,
    ) -> Result<(T, Option<Revision>), RegistryError> {
        for _ in 0..RETRIES {
            let current = self.store.record(name).await?;
            let (record, expected) = match &current {
                Some((record, revision)) => (Some(record.as_ref()), Some(*revision)),
                None => (None, None),
            };
            match change(record)? {
                Update::Keep(answer) => return Ok((answer, None)),
                Update::Write(record, answer) => {
                    if record.name != *name {
                        return Err(RegistryError::InvalidConfig(format!(
                            "a change to `{name}` cannot write the record of `{}`",
                            record.name
                        )));
                    }
                    let dropped: Vec<Digest> = match &current {
                        Some((old, _)) => {
                            let kept: HashSet<&Digest> = record.digests().collect();
                            let mut dropped: Vec<Digest> = old
                                .digests()
                                .filter(|d| !kept.contains(d))
                                .cloned()
                                .collect();
                            dropped.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
                            dropped.dedup();
                            dropped
                        }
                        None => Vec::new(),
                    };
                    match self.store.put_record(record, expected).await {
                        Ok(revision) => {
                            self.collect(dropped).await;
                            return Ok((answer, Some(revision)));
                        }
                        Err(RegistryError::Conflict(_)) => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(RegistryError::Conflict(name.to_string()))
    }

    /// Deletes a function's record and history; returns the revision of the deletion. The
    /// modules no other function's kept versions run are deleted too.
    pub async fn remove(&self, name: &FunctionName) -> Result<Revision, RegistryError> {
        for _ in 0..RETRIES {
            let Some((record, revision)) = self.store.record(name).await? else {
                return Err(RegistryError::NotFound(name.to_string()));
            };
            match self.store.remove_record(name, revision).await {
                Err(RegistryError::Conflict(_)) => continue,
                Ok(removed) => {
                    let mut dropped: Vec<Digest> = record.digests().cloned().collect();
                    dropped.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
                    dropped.dedup();
                    self.collect(dropped).await;
                    return Ok(removed);
                }
                Err(e) => return Err(e),
            }
        }
        Err(RegistryError::Conflict(name.to_string()))
    }

    /// Deletes the modules of `dropped` that no kept version of any function runs, so
    /// that bounded histories keep the module store bounded too. Failures are logged, not
    /// returned: the change that dropped them is made, and a module left behind costs
    /// only its room.
    ///
    /// A deploy of the same bytes racing this (its module stored, its record not yet
    /// written) may find its module gone; deploying it again stores it again.
    async fn collect(&self, dropped: Vec<Digest>) {
        if dropped.is_empty() {
            return;
        }
        let records = match self.store.records().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!("cannot list the records to delete unused modules: {e}");
                return;
            }
        };
        let used: HashSet<&Digest> = records.iter().flat_map(|r| r.digests()).collect();
        for digest in dropped.iter().filter(|d| !used.contains(d)) {
            match self.store.remove_module(digest).await {
                Ok(()) => tracing::debug!("deleted module {digest}: no kept version runs it"),
                Err(e) => tracing::warn!("cannot delete the unused module {digest}: {e}"),
            }
        }
    }

    /// Stores a module under its digest (once: the same bytes again are a no-op).
    pub async fn put_module(&self, digest: &Digest, wasm: Vec<u8>) -> Result<(), RegistryError> {
        self.store.put_module(digest, wasm).await
    }

    /// A stored module's bytes, verified against `digest`.
    pub async fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        self.store.module(digest).await
    }
}
