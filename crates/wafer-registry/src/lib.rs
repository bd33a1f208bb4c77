//! Wafer's registry: which functions exist, every version of each and which one is active,
//! and the modules they run. Records and bytes only: it knows nothing of the engine.
//!
//! - Modules are content-addressed ([`Digest`], SHA-256 of the binary module), stored once,
//!   verified against their digest whenever they are read.
//! - A function is a [`FunctionName`] with a history of [`Version`]s in one
//!   [`FunctionRecord`]; a deploy appends a version, rollback moves the active pointer back.
//! - Every write is atomic (temp file, fsync, rename, fsync the directory), so `kill -9` at
//!   any moment leaves the old or the new record.
//! - Changes to one function are made through a [`Change`], which holds the registry's lock
//!   from reading the record to writing it, so two changes cannot lose each other's versions.
//!
//! Storage sits behind the [`Store`] trait; [`LocalStore`] (a directory) is the default.
//! Compiling modules, routing requests and admission belong to the gateway, which turns the
//! records into the functions it serves.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wafer_registry::{Digest, FunctionConfig, Registry};
//! use wafer_abi::Abi;
//!
//! let registry = Registry::open(".wafer".as_ref())?;
//! let wasm = std::fs::read("hello.wasm")?;
//! let digest = Digest::of(&wasm);
//! registry.put_module(&digest, &wasm)?;
//! let name = "hello".parse()?;
//! let mut change = registry.change(&name);
//! let mut record = change.record().cloned().unwrap_or_else(|| change.new_record());
//! let config = FunctionConfig::default();
//! let version = record.push(digest, Abi::Cgi, config, Vec::new()).version;
//! change.write(record)?;
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
mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

pub use config::{FunctionConfig, OperationTypes, Schema};
pub use declared::{parse_module_routes, ModuleRoute, ROUTES_EXPORT};
pub use error::RegistryError;
pub use grants::{
    check_topic, DirGrant, Grants, HostPattern, HttpRule, PortRule, Scheme, Secret, TopicPattern,
};
pub use names::{Digest, FunctionName, Route};
pub use record::{Deployment, FunctionRecord, Version};
pub use store::{admin_token, LocalStore, Store};

/// The registry: durable function records and modules.
pub struct Registry {
    store: Box<dyn Store>,
    /// The records as last written; its lock serialises changes.
    records: Mutex<HashMap<FunctionName, FunctionRecord>>,
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
}

/// A change to one function's record in progress: holds the registry's lock until dropped,
/// so what [`Change::record`] shows is what [`Change::write`] replaces.
pub struct Change<'a> {
    name: FunctionName,
    records: MutexGuard<'a, HashMap<FunctionName, FunctionRecord>>,
    store: &'a dyn Store,
}

impl Change<'_> {
    /// The function's record as it stands, if it exists.
    pub fn record(&self) -> Option<&FunctionRecord> {
        self.records.get(&self.name)
    }

    /// An empty record for the function, for its first version.
    pub fn new_record(&self) -> FunctionRecord {
        FunctionRecord {
            name: self.name.clone(),
            active: 0,
            versions: Vec::new(),
        }
    }

    /// Writes `record` as the function's record (durably, then in memory).
    pub fn write(&mut self, record: FunctionRecord) -> Result<(), RegistryError> {
        if record.name != self.name {
            return Err(RegistryError::InvalidConfig(format!(
                "a change to `{}` cannot write the record of `{}`",
                self.name, record.name
            )));
        }
        self.store.put_record(&record)?;
        self.records.insert(self.name.clone(), record);
        Ok(())
    }

    /// Deletes the function's record and history.
    pub fn remove(&mut self) -> Result<(), RegistryError> {
        if !self.records.contains_key(&self.name) {
            return Err(RegistryError::NotFound(self.name.to_string()));
        }
        self.store.remove_record(&self.name)?;
        self.records.remove(&self.name);
        Ok(())
    }
}

impl Registry {
    /// Opens the registry in `dir` (creating it) and reads every function record.
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let store = LocalStore::open(dir)?;
        let records = store
            .records()?
            .into_iter()
            .map(|record| (record.name.clone(), record))
            .collect();
        Ok(Self {
            store: Box::new(store),
            records: Mutex::new(records),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FunctionName, FunctionRecord>> {
        // The map is only changed after a successful write, so it is consistent even if a
        // panic poisoned the lock.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a change to `name`'s record; other changes wait until it is dropped.
    pub fn change(&self, name: &FunctionName) -> Change<'_> {
        Change {
            name: name.clone(),
            records: self.lock(),
            store: self.store.as_ref(),
        }
    }

    /// Every function record, in name order, secrets included (for the gateway to load).
    pub fn records(&self) -> Vec<FunctionRecord> {
        let mut records: Vec<FunctionRecord> = self.lock().values().cloned().collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        records
    }

    /// A function's record, secrets included (for the gateway to load).
    pub fn record(&self, name: &FunctionName) -> Option<FunctionRecord> {
        self.lock().get(name).cloned()
    }

    /// A function's record fit to show: every version and the active one, secret values
    /// masked.
    pub fn get(&self, name: &FunctionName) -> Result<FunctionRecord, RegistryError> {
        self.lock()
            .get(name)
            .map(FunctionRecord::masked)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// Stores a module under its digest (once: the same bytes again are a no-op).
    pub fn put_module(&self, digest: &Digest, wasm: &[u8]) -> Result<(), RegistryError> {
        self.store.put_module(digest, wasm)
    }

    /// A stored module's bytes, verified against `digest`.
    pub fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        self.store.module(digest)
    }
}
