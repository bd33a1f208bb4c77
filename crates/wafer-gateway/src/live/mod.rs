//! The live function table: where records meet compiled programs. It turns the registry's
//! records into [`Function`]s (module loaded from the per-node artifact cache or compiled,
//! admission gate, instance pool, the handlers of module-declared routes), keeps the route
//! table, and makes every change (deploy, rollback, remove) through the registry first, so
//! what it serves is what the records say.
//!
//! Readers never lock: the table is swapped whole on each change, and a request keeps the
//! version it started with.

mod declared;
mod function;
mod routes;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;
use wafer_registry::{
    Change, Deployed, Deployment, Digest, FunctionConfig, FunctionName, FunctionRecord, Registry,
    RegistryError, Route, Version,
};
use wafer_runtime::{Abi, ArtifactCache, Program, Runtime};

use crate::error::Error;

pub use function::{Admission, Function, QUEUE_WAIT};
pub use routes::Resolved;
pub(crate) use routes::RouteTable;

/// The functions being served and the registry they come from.
pub struct Functions {
    registry: Arc<Registry>,
    runtime: Arc<Runtime>,
    artifacts: ArtifactCache,
    live: ArcSwap<Live>,
}

/// The functions being served and their routes; replaced whole on every change.
#[derive(Default)]
struct Live {
    functions: HashMap<FunctionName, Arc<Function>>,
    routes: RouteTable,
}

impl Live {
    /// This table with `function` in place of its current version (or without `name`, for
    /// `None`); refused if its routes clash with another function's.
    fn with(&self, name: &FunctionName, function: Option<Function>) -> Result<Self, RegistryError> {
        let mut functions = self.functions.clone();
        functions.remove(name);
        // The others first, so a clash names the function that already holds the route.
        let function = function.map(Arc::new);
        let routes = RouteTable::build(functions.values().chain(function.iter()))?;
        if let Some(function) = function {
            functions.insert(name.clone(), function);
        }
        Ok(Self { functions, routes })
    }
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

impl Functions {
    /// Loads every function of `registry` for `runtime`, with compiled artifacts cached in
    /// `data/artifacts`: each module is verified against its digest and its cached artifact
    /// mapped in, compiling only when no usable artifact exists. A function whose module
    /// cannot be loaded is kept, listed with its error, and refused when called.
    pub fn open(
        registry: Arc<Registry>,
        runtime: Arc<Runtime>,
        data: &Path,
    ) -> Result<Self, RegistryError> {
        let dir = data.join("artifacts");
        let artifacts = ArtifactCache::open(&dir, &runtime).map_err(RegistryError::io(format!(
            "cannot open the artifact cache {}",
            dir.display()
        )))?;
        let functions = Self {
            registry,
            runtime,
            artifacts,
            live: ArcSwap::from_pointee(Live::default()),
        };
        let mut live = HashMap::new();
        for record in functions.registry.records() {
            let Some(version) = record.active_version() else {
                tracing::error!(name = %record.name, active = record.active, "record names no existing active version; skipping");
                continue;
            };
            let function = functions.activate(&record.name, version, None);
            if let Err(e) = function.program() {
                tracing::error!(name = %record.name, error = e, "function cannot run");
            }
            live.insert(record.name.clone(), Arc::new(function));
        }
        let routes = RouteTable::build(live.values())?;
        functions.live.store(Arc::new(Live {
            functions: live,
            routes,
        }));
        Ok(functions)
    }

    /// The registry the functions come from.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
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

    /// The live functions matching `keep`, in name order.
    fn filtered(&self, keep: impl Fn(&Function) -> bool) -> Vec<Arc<Function>> {
        let live = self.live.load();
        let mut functions: Vec<Arc<Function>> = live
            .functions
            .values()
            .filter(|f| keep(f))
            .cloned()
            .collect();
        functions.sort_by(|a, b| a.name.cmp(&b.name));
        functions
    }

    /// The live functions that run as services (a `listen` grant), in name order.
    pub fn services(&self) -> Vec<Arc<Function>> {
        self.filtered(|f| f.config.grants.listen.is_some())
    }

    /// The live functions subscribed to `topic`, in name order.
    pub fn subscribers(&self, topic: &str) -> Vec<Arc<Function>> {
        self.filtered(|f| f.config.grants.subscribe.iter().any(|p| p.matches(topic)))
    }

    /// Deploys `module` (binary wasm or WAT) as a new version of `name` and makes it active:
    /// validate, compile (or map the cached artifact), run the module's `_routes` if it has
    /// one, store the module, write the record, serve it. A failed deploy changes nothing.
    ///
    /// If the module and config equal the active version's, nothing is written and the active
    /// version is returned with `unchanged: true`.
    ///
    /// Compiling and running `_routes` block the calling thread: from async code, call this
    /// on a blocking thread (`tokio::task::spawn_blocking`).
    pub fn deploy(
        &self,
        name: FunctionName,
        module: &[u8],
        mut config: FunctionConfig,
    ) -> Result<Deployed, Error> {
        config.validate()?;
        config.routes = config.effective_routes(&name);
        let wasm = self.runtime.parse(module)?;
        let digest = Digest::of(&wasm);
        if let Some(same) = unchanged(&self.registry.change(&name), &digest, &config) {
            return Ok(same);
        }

        // The slow part, outside the lock: compile (or reuse a cached artifact), list the
        // module's routes, store the module.
        let program = self
            .artifacts
            .program(&self.runtime, digest.hex(), || Ok(wasm.to_vec()))?;
        let program = with_abi(program, &config)?;
        check_fit(&program, &config)?;
        let module_routes = declared::run(&program, config.limits)?;
        let handlers = declared::handlers(&program, &config.routes, &module_routes)?;
        self.registry.put_module(&digest, &wasm)?;

        let mut change = self.registry.change(&name);
        if let Some(same) = unchanged(&change, &digest, &config) {
            return Ok(same);
        }
        let mut record = change
            .record()
            .cloned()
            .unwrap_or_else(|| change.new_record());
        let version = record
            .push(digest.clone(), program.abi(), config, module_routes)
            .version;
        self.commit(&mut change, record, Ok((program, handlers)))?;
        Ok(Deployed {
            name,
            version,
            digest,
            unchanged: false,
        })
    }

    /// Makes the version before the active one active again.
    ///
    /// Loading the version (which may compile) happens outside the registry's lock, so other
    /// changes are not held up; if the record changed meanwhile, it starts over.
    pub fn rollback(&self, name: &FunctionName) -> Result<Deployed, Error> {
        loop {
            let record = self
                .registry
                .record(name)
                .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
            let previous = record.previous()?.clone();
            let loaded = self.load(&previous).map_err(|e| {
                RegistryError::InvalidConfig(format!(
                    "version {} of `{name}` cannot run: {e}",
                    previous.version
                ))
            })?;
            let mut change = self.registry.change(name);
            if change.record() != Some(&record) {
                continue;
            }
            let mut record = record;
            record.active = previous.version;
            self.commit(&mut change, record, Ok(loaded))?;
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
    pub fn remove(&self, name: &FunctionName) -> Result<(), Error> {
        let mut change = self.registry.change(name);
        let next = self.live.load().with(name, None)?;
        change.remove()?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    /// Writes `record` and serves its active version, run by `loaded`, in place of the
    /// function's current one. Nothing changes unless the routes are free and the write
    /// succeeds.
    fn commit(
        &self,
        change: &mut Change<'_>,
        record: FunctionRecord,
        loaded: Result<(Program, Vec<(Route, Program)>), String>,
    ) -> Result<(), Error> {
        let deployment = record.deployment().ok_or_else(|| {
            RegistryError::InvalidConfig("the record has no active version".into())
        })?;
        let live = self.live.load();
        let name = record.name.clone();
        let function = Function::new(
            deployment,
            loaded,
            live.functions.get(&name).map(Arc::as_ref),
        );
        let next = live.with(&name, Some(function))?;
        change.write(record)?;
        self.live.store(Arc::new(next));
        Ok(())
    }

    /// Loads `version` of `name` into a [`Function`]. Failures are kept in the function, not
    /// raised, so one bad module does not stop the server from starting.
    fn activate(
        &self,
        name: &FunctionName,
        version: &Version,
        previous: Option<&Function>,
    ) -> Function {
        let deployment = Deployment {
            name: name.clone(),
            version: version.version,
            digest: version.digest.clone(),
            abi: version.abi,
            config: version.config.clone(),
            module_routes: version.module_routes.clone(),
        };
        Function::new(deployment, self.load(version), previous)
    }

    /// The program of `version` and those of its declared routes: the module verified, then
    /// its cached artifact mapped in or the module compiled.
    fn load(&self, version: &Version) -> Result<(Program, Vec<(Route, Program)>), String> {
        let loaded = || -> Result<_, Error> {
            let config = &version.config;
            let wasm = self.registry.module(&version.digest)?;
            let program = self
                .artifacts
                .program(&self.runtime, version.digest.hex(), || Ok(wasm))?;
            let program = with_abi(program, config)?;
            let handlers = declared::handlers(&program, &config.routes, &version.module_routes)?;
            Ok((program, handlers))
        };
        loaded().map_err(|e| e.to_string())
    }

    /// Every function with its active version, by name.
    pub fn list(&self) -> Vec<FunctionStatus> {
        let live = self.live.load();
        self.registry
            .records()
            .iter()
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
            .collect()
    }
}

/// The active version, as a deploy's outcome, if it already runs `digest` with `config`.
fn unchanged(change: &Change<'_>, digest: &Digest, config: &FunctionConfig) -> Option<Deployed> {
    let record = change.record()?;
    let active = record.unchanged(digest, config)?;
    Some(Deployed {
        name: record.name.clone(),
        version: active.version,
        digest: active.digest.clone(),
        unchanged: true,
    })
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
fn with_abi(program: Program, config: &FunctionConfig) -> Result<Program, Error> {
    let program = match config.abi {
        Some(abi) => program.with_abi(abi)?,
        None => program,
    };
    match &config.entrypoint {
        Some(export) => Ok(program.with_entrypoint(export, config.abi.is_some())?),
        None => Ok(program),
    }
}
