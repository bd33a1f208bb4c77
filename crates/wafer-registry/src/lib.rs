//! Wafer's registry: which functions exist, which version of each is active, and the
//! compiled modules they run.
//!
//! - Modules are content-addressed ([`Digest`], SHA-256 of the binary module), stored once,
//!   verified against their digest whenever they are read.
//! - A function is a [`FunctionName`] with a history of [`Version`]s in one
//!   [`FunctionRecord`]; deploy appends a version, rollback moves the active pointer back.
//! - Deploy is validate -> compile ahead of time -> store the module and the compiled artifact
//!   -> write the record -> switch. A failed deploy changes nothing; every write is atomic
//!   (temp file, fsync, rename, fsync the directory), so `kill -9` at any moment leaves the
//!   old or the new version.
//! - Compiled artifacts are cached per engine fingerprint, so [`Registry::open`] after a
//!   restart maps them back in instead of recompiling.
//! - [`Registry::resolve`] maps a request path to the live [`Function`] without locks: the
//!   live set is swapped atomically on each change, and a request keeps the version it
//!   started with.
//!
//! Storage sits behind the [`Store`] trait; [`LocalStore`] (a directory) is the default.
//!
//! ```no_run
//! # fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use wafer_registry::{FunctionConfig, Registry};
//! use wafer_runtime::{Runtime, RuntimeConfig};
//!
//! let runtime = Arc::new(Runtime::new(&RuntimeConfig::default())?);
//! let registry = Registry::open(".wafer".as_ref(), runtime)?;
//! let wasm = std::fs::read("hello.wasm")?;
//! let deployed = registry.deploy("hello".parse()?, &wasm, FunctionConfig::default())?;
//! println!("hello is at version {}", deployed.version);
//! let resolved = registry.resolve("/hello/world").expect("served on /hello/...");
//! assert_eq!(resolved.function.name.as_str(), "hello");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod config;
mod declared;
mod error;
mod function;
#[doc(hidden)]
pub mod fuzzing;
mod grants;
mod names;
mod record;
mod routes;
mod store;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use serde::Serialize;
use wafer_abi::Abi;
use wafer_runtime::{ArtifactCache, Program, Runtime};

use crate::routes::RouteTable;

pub use config::{FunctionConfig, OperationTypes, Schema};
pub use declared::{ModuleRoute, ROUTES_EXPORT};
pub use error::RegistryError;
pub use function::{Admission, Function, QUEUE_WAIT};
pub use grants::{
    check_topic, DirGrant, Grants, HostPattern, HttpRule, PortRule, Scheme, Secret, TopicPattern,
};
pub use names::{Digest, FunctionName, Route};
pub use record::{FunctionRecord, Version};
pub use routes::Resolved;
pub use store::{admin_token, LocalStore, Store};

/// The registry: durable records and modules, and the live set of functions served.
pub struct Registry {
    store: Box<dyn Store>,
    artifacts: ArtifactCache,
    runtime: Arc<Runtime>,
    live: ArcSwap<Live>,
    /// Serialises changes; holds the records as last written.
    records: Mutex<HashMap<FunctionName, FunctionRecord>>,
}

/// The functions being served and their routes; replaced whole on every change.
#[derive(Default)]
struct Live {
    functions: HashMap<FunctionName, Arc<Function>>,
    routes: RouteTable,
}

/// The outcome of a deploy.
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

/// A function as listed: its active version and whether it can run.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionStatus {
    /// The function's name.
    pub name: FunctionName,
    /// The active version.
    pub version: u32,
    /// How many versions exist.
    pub versions: usize,
    /// The active module.
    pub digest: Digest,
    /// How the active module is called.
    pub abi: Abi,
    /// The active configuration.
    pub config: FunctionConfig,
    /// Every route it answers on: the configured ones, then those its module declared.
    pub routes: Vec<Route>,
    /// `None` when ready; otherwise why it cannot run.
    pub error: Option<String>,
}

impl Registry {
    /// Opens the registry in `dir` (creating it), loading every function's active version:
    /// each module is verified against its digest and its cached artifact mapped in, compiling
    /// only when no usable artifact exists. A function whose module fails verification is
    /// kept, reported by [`Registry::list`], and refused when called.
    pub fn open(dir: &Path, runtime: Arc<Runtime>) -> Result<Self, RegistryError> {
        let store = LocalStore::open(dir)?;
        let artifacts_dir = dir.join("artifacts");
        let artifacts =
            ArtifactCache::open(&artifacts_dir, &runtime).map_err(RegistryError::io(format!(
                "cannot open the artifact cache {}",
                artifacts_dir.display()
            )))?;
        let registry = Self {
            store: Box::new(store),
            artifacts,
            runtime,
            live: ArcSwap::from_pointee(Live::default()),
            records: Mutex::new(HashMap::new()),
        };
        let mut records = registry.lock();
        let mut functions = HashMap::new();
        for record in registry.store.records()? {
            let Some(version) = record.active_version() else {
                tracing::error!(name = %record.name, active = record.active, "record names no existing active version; skipping");
                continue;
            };
            let function = registry.activate(&record.name, version, None);
            if let Err(e) = function.program() {
                tracing::error!(name = %record.name, error = e, "function cannot run");
            }
            functions.insert(record.name.clone(), Arc::new(function));
            records.insert(record.name.clone(), record);
        }
        let routes = RouteTable::build(functions.values())?;
        registry.live.store(Arc::new(Live { functions, routes }));
        drop(records);
        Ok(registry)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FunctionName, FunctionRecord>> {
        // The map is only replaced after a successful write, so it is consistent even if a
        // panic poisoned the lock.
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The runtime functions are compiled for.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Finds the function serving `path` (raw request path). Lock-free.
    pub fn resolve(&self, path: &str) -> Option<Resolved> {
        self.live.load().routes.resolve(path)
    }

    /// The active version of a function, ready to call.
    pub fn function(&self, name: &FunctionName) -> Option<Arc<Function>> {
        self.live.load().functions.get(name).cloned()
    }

    /// Deploys `module` (binary wasm or WAT) as a new version of `name` and makes it active.
    ///
    /// If the module and config equal the active version's, nothing is written and the active
    /// version is returned with `unchanged: true`. A CGI module exporting `_routes` (WAGI's
    /// module-declared routes) has it run here, once, and its routes kept in the record.
    ///
    /// Compiling and running `_routes` block the calling thread: from async code, call this
    /// on a blocking thread (`tokio::task::spawn_blocking`).
    pub fn deploy(
        &self,
        name: FunctionName,
        module: &[u8],
        mut config: FunctionConfig,
    ) -> Result<Deployed, RegistryError> {
        config.validate()?;
        config.routes = config.effective_routes(&name);
        let wasm = self.runtime.parse(module)?;
        let digest = Digest::of(&wasm);
        let unchanged = |records: &HashMap<FunctionName, FunctionRecord>| {
            let active = records.get(&name)?.active_version()?;
            (active.digest == digest && active.config == config).then(|| Deployed {
                name: name.clone(),
                version: active.version,
                digest: digest.clone(),
                unchanged: true,
            })
        };
        if let Some(same) = unchanged(&self.lock()) {
            return Ok(same);
        }

        // The slow part, outside the lock: compile (or reuse a cached artifact), store the module.
        let program = self
            .artifacts
            .program(&self.runtime, digest.hex(), || Ok(wasm.to_vec()))?;
        let program = with_abi(program, &config)?;
        check_fit(&program, &config)?;
        let module_routes = declared::run(&program, config.limits)?;
        let handlers = declared::handlers(&program, &config.routes, &module_routes)?;
        self.store.put_module(&digest, &wasm)?;

        let mut records = self.lock();
        if let Some(same) = unchanged(&records) {
            return Ok(same);
        }
        let mut record = records
            .get(&name)
            .cloned()
            .unwrap_or_else(|| FunctionRecord {
                name: name.clone(),
                active: 0,
                versions: Vec::new(),
            });
        let version = Version {
            version: record.next_version(),
            digest: digest.clone(),
            abi: program.abi(),
            config,
            module_routes,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        record.active = version.version;
        record.versions.push(version.clone());
        let live = self.live.load();
        let function = Function::new(
            name.clone(),
            version.version,
            digest.clone(),
            version.config.clone(),
            Ok((program, handlers)),
            live.functions.get(&name).map(Arc::as_ref),
        );
        self.commit(&mut records, record, Some(function))?;
        Ok(Deployed {
            name,
            version: version.version,
            digest,
            unchanged: false,
        })
    }

    /// Makes the version before the active one active again.
    ///
    /// Loading the version (which may compile) happens outside the lock, so other changes
    /// and readers are not held up; if the record changed meanwhile, it starts over.
    pub fn rollback(&self, name: &FunctionName) -> Result<Deployed, RegistryError> {
        loop {
            let (mut record, previous) = {
                let records = self.lock();
                let record = records
                    .get(name)
                    .cloned()
                    .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
                let previous = record
                    .versions
                    .iter()
                    .filter(|v| v.version < record.active)
                    .max_by_key(|v| v.version)
                    .cloned()
                    .ok_or_else(|| RegistryError::NoEarlierVersion(name.to_string()))?;
                (record, previous)
            };
            let current = self.function(name);
            let function = self.activate(name, &previous, current.as_deref());
            if let Err(e) = function.program() {
                return Err(RegistryError::InvalidConfig(format!(
                    "version {} of `{name}` cannot run: {e}",
                    previous.version
                )));
            }
            let mut records = self.lock();
            if records.get(name) != Some(&record) {
                continue;
            }
            record.active = previous.version;
            self.commit(&mut records, record, Some(function))?;
            return Ok(Deployed {
                name: name.clone(),
                version: previous.version,
                digest: previous.digest,
                unchanged: false,
            });
        }
    }

    /// Deletes a function and its history. Its modules stay stored (other functions or
    /// versions may share them).
    pub fn remove(&self, name: &FunctionName) -> Result<(), RegistryError> {
        let mut records = self.lock();
        if !records.contains_key(name) {
            return Err(RegistryError::NotFound(name.to_string()));
        }
        let live = self.live.load();
        let mut functions = live.functions.clone();
        functions.remove(name);
        let routes = RouteTable::build(functions.values())?;
        self.store.remove_record(name)?;
        records.remove(name);
        self.live.store(Arc::new(Live { functions, routes }));
        Ok(())
    }

    /// Writes `record` and serves `function` in place of the function's current version.
    /// Nothing changes unless the routes are free and the write succeeds.
    fn commit(
        &self,
        records: &mut HashMap<FunctionName, FunctionRecord>,
        record: FunctionRecord,
        function: Option<Function>,
    ) -> Result<(), RegistryError> {
        let live = self.live.load();
        let mut functions = live.functions.clone();
        let name = record.name.clone();
        functions.remove(&name);
        // The others first, so a clash names the function that already holds the route.
        let function = function.map(Arc::new);
        let routes = RouteTable::build(functions.values().chain(function.iter()))?;
        self.store.put_record(&record)?;
        if let Some(function) = function {
            functions.insert(name.clone(), function);
        }
        records.insert(name, record);
        self.live.store(Arc::new(Live { functions, routes }));
        Ok(())
    }

    /// Loads `version` of `name` into a [`Function`]: verify the module, then map the cached
    /// artifact or compile. Failures are kept in the function, not raised, so one bad module
    /// does not stop the server from starting.
    fn activate(
        &self,
        name: &FunctionName,
        version: &Version,
        previous: Option<&Function>,
    ) -> Function {
        let config = &version.config;
        let program = self
            .load_program(&version.digest)
            .and_then(|p| with_abi(p, config))
            .and_then(|p| {
                let handlers = declared::handlers(&p, &config.routes, &version.module_routes)?;
                Ok((p, handlers))
            })
            .map_err(|e| e.to_string());
        Function::new(
            name.clone(),
            version.version,
            version.digest.clone(),
            version.config.clone(),
            program,
            previous,
        )
    }

    fn load_program(&self, digest: &Digest) -> Result<Program, RegistryError> {
        let wasm = self.store.module(digest)?;
        Ok(self
            .artifacts
            .program(&self.runtime, digest.hex(), || Ok(wasm))?)
    }

    /// Every function with its active version, by name.
    pub fn list(&self) -> Vec<FunctionStatus> {
        let records = self.lock();
        let live = self.live.load();
        let mut list: Vec<FunctionStatus> = records
            .values()
            .filter_map(|record| {
                let active = record.active_version()?;
                let error = live
                    .functions
                    .get(&record.name)
                    .and_then(|f| f.program().err().map(str::to_owned));
                Some(FunctionStatus {
                    name: record.name.clone(),
                    version: active.version,
                    versions: record.versions.len(),
                    digest: active.digest.clone(),
                    abi: active.abi,
                    config: active.config.masked(),
                    routes: active.routes(),
                    error,
                })
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// The live functions that run as services (a `listen` grant), in name order.
    pub fn services(&self) -> Vec<Arc<Function>> {
        let live = self.live.load();
        let mut services: Vec<Arc<Function>> = live
            .functions
            .values()
            .filter(|f| f.config.grants.listen.is_some())
            .cloned()
            .collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        services
    }

    /// The live functions subscribed to `topic`, in name order.
    pub fn subscribers(&self, topic: &str) -> Vec<Arc<Function>> {
        let live = self.live.load();
        let mut subscribers: Vec<Arc<Function>> = live
            .functions
            .values()
            .filter(|f| f.config.grants.subscribe.iter().any(|p| p.matches(topic)))
            .cloned()
            .collect();
        subscribers.sort_by(|a, b| a.name.cmp(&b.name));
        subscribers
    }

    /// A function's record: every version and the active one, secret values masked.
    pub fn get(&self, name: &FunctionName) -> Result<FunctionRecord, RegistryError> {
        self.lock()
            .get(name)
            .map(FunctionRecord::masked)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// A stored module's bytes, verified against `digest`.
    pub fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        self.store.module(digest)
    }
}

/// Refuses a configuration that does not fit the program: a service without an address to
/// listen on, an address for something that is not a service, instance reuse for anything
/// but an HTTP component.
fn check_fit(program: &Program, config: &FunctionConfig) -> Result<(), RegistryError> {
    let abi = program.abi();
    match (abi == Abi::Service, config.grants.listen) {
        (true, None) => {
            return Err(RegistryError::InvalidConfig(
                "a WASI 0.2 command component runs as a service: grant it an address with \
                 `listen = \"127.0.0.1:PORT\"`"
                    .into(),
            ))
        }
        (false, Some(addr)) => {
            return Err(RegistryError::InvalidConfig(format!(
                "`listen = \"{addr}\"` is for services (WASI 0.2 command components using \
                 wasi:sockets); this is a `{abi}` module"
            )))
        }
        _ => {}
    }
    let reuse = config.limits.instance_reuse;
    if reuse > 1 && abi != Abi::Http {
        return Err(RegistryError::InvalidConfig(format!(
            "instance_reuse = {reuse} is for HTTP components (wasi:http/incoming-handler); \
             a `{abi}` module gets a fresh instance for every call"
        )));
    }
    Ok(())
}

/// The program as its configuration says to call it: the detected ABI unless overridden,
/// and the CGI entrypoint if one is named.
fn with_abi(program: Program, config: &FunctionConfig) -> Result<Program, RegistryError> {
    let program = match config.abi {
        Some(abi) => program.with_abi(abi)?,
        None => program,
    };
    match &config.entrypoint {
        Some(export) => Ok(program.with_entrypoint(export, config.abi.is_some())?),
        None => Ok(program),
    }
}
