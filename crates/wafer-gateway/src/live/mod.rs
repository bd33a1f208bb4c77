//! The live function table: where records meet compiled programs. It follows the registry's
//! watch stream (the records as they stand, then every change) and turns each record's
//! active version into a [`Function`]: the module loaded from the per-node artifact cache or
//! compiled, an admission gate, an instance pool, the handlers of module-declared routes.
//!
//! A deploy, rollback or `rm` only writes the record (compare-and-set); the table changes
//! when the change comes back through the watch, on this node as on every other, and the
//! writer waits for that before it answers. Readers never lock: the table is a persistent
//! map swapped in one step, and a request keeps the version it started with.

mod declared;
mod function;
mod routes;
mod split;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::{HeaderMap, HeaderValue};
use serde::Serialize;
use tokio_stream::StreamExt;
use wafer_registry::{
    Deployed, Deployment, Digest, Event, FunctionConfig, FunctionName, FunctionRecord, Registry,
    RegistryError, Revision, Route, Share, Sticky, Traffic, Update, Version, Watch,
};
use wafer_runtime::{Abi, ArtifactCache, Program, Runtime};

use crate::error::Error;

pub use function::{Admission, Function, QUEUE_WAIT};
pub use routes::Resolved;
pub(crate) use routes::RouteTable;
pub use split::Split;

/// How long a writer waits for its change to come back through the watch and be served.
const CATCH_UP: Duration = Duration::from_secs(30);
/// How long to wait before watching again after the store's watch ended.
const REWATCH: Duration = Duration::from_secs(1);

/// The functions being served and the registry they come from.
pub struct Functions {
    registry: Registry,
    runtime: Arc<Runtime>,
    artifacts: Arc<ArtifactCache>,
    live: ArcSwap<Live>,
    /// The highest store revision the table has applied.
    applied: tokio::sync::watch::Sender<Revision>,
    /// How long this node's deploys took to compile each module (by digest), for the
    /// version's metrics once the table serves it.
    compile_times: Mutex<HashMap<String, Duration>>,
}

/// A program and the programs of its declared routes, or why it cannot run.
type Loaded = Result<(Program, Vec<(Route, Program)>), String>;

/// What is served: every function's record and live version, and the routes. Persistent
/// maps, so a change copies nothing but what it changes.
#[derive(Default, Clone)]
struct Live {
    records: imbl::HashMap<FunctionName, Arc<FunctionRecord>>,
    functions: imbl::HashMap<FunctionName, Arc<Function>>,
    routes: RouteTable,
    /// gRPC services (`pkg.Service`) the functions' schemas declare, and who serves each.
    grpc: imbl::HashMap<String, FunctionName>,
    /// Active versions that failed to load while an earlier version of the function runs
    /// here: why, by name. The earlier version serves until the active one loads (a module
    /// the store could not give for a moment, in a rollout), so a node never swaps a running
    /// function for an error.
    pending: imbl::HashMap<FunctionName, String>,
    /// The traffic splits: the versions sharing a function's requests, by name.
    splits: imbl::HashMap<FunctionName, Arc<Split>>,
}

/// The gRPC services `config`'s schema declares (checked at deploy; none if it has none).
fn grpc_services(config: &FunctionConfig) -> Vec<String> {
    config
        .schema
        .as_ref()
        .and_then(|schema| crate::schema::services(schema).ok())
        .map(|services| services.into_iter().map(|(name, _)| name).collect())
        .unwrap_or_default()
}

impl Live {
    /// The first of `services` another function than `name` serves.
    fn grpc_clash(
        &self,
        name: &FunctionName,
        services: &[String],
    ) -> Option<(String, FunctionName)> {
        services.iter().find_map(|service| {
            self.grpc
                .get(service)
                .filter(|holder| *holder != name)
                .map(|holder| (service.clone(), holder.clone()))
        })
    }

    /// Serves `services` by `name`, in place of what it served before.
    fn serve_grpc(&mut self, name: &FunctionName, services: Vec<String>) {
        self.grpc.retain(|_, holder| holder != name);
        for service in services {
            self.grpc.insert(service, name.clone());
        }
    }
}

/// The refusal of a gRPC service another function serves.
fn grpc_taken(service: &str, holder: &FunctionName) -> RegistryError {
    RegistryError::ServiceTaken {
        service: service.to_owned(),
        owner: holder.to_string(),
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
    /// The traffic split, if one stands: each version's share.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// The active version's schedules, each with its next tick.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::ScheduleStatus>,
}

impl Functions {
    /// Serves the functions of `registry` for `runtime`, with compiled artifacts cached in
    /// `data/artifacts`. Returns once every record that exists is loaded (each module
    /// verified against its digest, its cached artifact mapped in or the module compiled),
    /// then follows the registry's changes until dropped. A function whose module cannot be
    /// loaded is kept, listed with its error, and refused when called.
    pub async fn start(
        registry: Registry,
        runtime: Arc<Runtime>,
        data: &Path,
    ) -> Result<Arc<Self>, RegistryError> {
        let dir = data.join("artifacts");
        let artifacts = ArtifactCache::open(&dir, &runtime).map_err(RegistryError::io(format!(
            "cannot open the artifact cache {}",
            dir.display()
        )))?;
        let mut watch = registry.watch().await?;
        let functions = Arc::new(Self {
            registry,
            runtime,
            artifacts: Arc::new(artifacts),
            live: ArcSwap::from_pointee(Live::default()),
            applied: tokio::sync::watch::Sender::new(0),
            compile_times: Mutex::default(),
        });
        functions.catch_up(&mut watch).await?;
        let (table, mut watch) = (Arc::downgrade(&functions), Some(watch));
        // Started again after a panic, it watches anew and catches up.
        wafer_host::tasks::supervise("registry watch", move || {
            follow(table.clone(), watch.take())
        });
        Ok(functions)
    }

    /// Applies `watch` up to its [`Event::Ready`]: the records as they stand. Functions the
    /// table serves that are not among them were removed meanwhile, and go.
    async fn catch_up(&self, watch: &mut Watch) -> Result<(), RegistryError> {
        let mut seen = Vec::new();
        while let Some(event) = watch.next().await {
            match event? {
                Event::Ready => {
                    let gone: Vec<FunctionName> = self
                        .live
                        .load()
                        .records
                        .keys()
                        .filter(|name| !seen.contains(*name))
                        .cloned()
                        .collect();
                    for name in gone {
                        self.apply_removed(&name, 0);
                    }
                    return Ok(());
                }
                event => {
                    if let Event::Put { record, .. } = &event {
                        seen.push(record.name.clone());
                    }
                    self.apply(event).await;
                }
            }
        }
        Err(RegistryError::io("the registry's watch ended")(
            std::io::ErrorKind::UnexpectedEof.into(),
        ))
    }

    /// Brings the table up to date with one change of the store.
    async fn apply(&self, event: Event) {
        match event {
            Event::Put { record, revision } => self.apply_put(record, revision).await,
            Event::Removed { name, revision } => self.apply_removed(&name, revision),
            Event::Ready => {}
        }
    }

    async fn apply_put(&self, record: Arc<FunctionRecord>, revision: Revision) {
        self.apply_active(record.clone(), revision).await;
        self.apply_split(&record, revision).await;
    }

    /// Serves the record's traffic split, or none: each member other than the active
    /// version loaded (or kept, if served already), sharing the active version's admission
    /// gate. A member that cannot load leaves its share to the active version.
    async fn apply_split(&self, record: &FunctionRecord, revision: Revision) {
        let name = &record.name;
        let (base, current) = {
            let live = self.live.load();
            (
                live.functions.get(name).cloned(),
                live.splits.get(name).cloned(),
            )
        };
        let (Some(traffic), Some(base)) = (&record.traffic, base) else {
            if current.is_some() {
                self.swap(revision, |live| {
                    live.splits.remove(name);
                });
            }
            return;
        };
        let mut members = Vec::with_capacity(traffic.split.len());
        let mut end = 0;
        for share in &traffic.split {
            end += share.percent;
            let Some(deployment) = record.deployment_of(share.version) else {
                continue;
            };
            let kept = current.as_ref().and_then(|split| {
                split
                    .member(share.version)
                    .filter(|f| *f.deployment == deployment && f.program().is_ok())
                    .cloned()
            });
            let function = match kept {
                _ if share.version == base.version => base.clone(),
                Some(kept) => kept,
                None => {
                    let version = record.versions.iter().find(|v| v.version == share.version);
                    let loaded = match version {
                        Some(version) => self.load(version).await,
                        None => Err("no such version".into()),
                    };
                    match loaded {
                        Ok(loaded) => Arc::new(Function::new(deployment, Ok(loaded), Some(&base))),
                        Err(e) => {
                            tracing::error!(%name, version = share.version, error = %e, "a version of the traffic split cannot load; the active version takes its share");
                            base.clone()
                        }
                    }
                }
            };
            members.push((end, function));
        }
        // A split naming no version kept (a record written elsewhere) serves the active one.
        let split =
            (!members.is_empty()).then(|| Arc::new(Split::new(members, traffic.sticky.clone())));
        self.swap(revision, |live| match split {
            Some(split) => {
                live.splits.insert(name.clone(), split);
            }
            None => {
                live.splits.remove(name);
            }
        });
    }

    /// Serves the record's active version.
    async fn apply_active(&self, record: Arc<FunctionRecord>, revision: Revision) {
        let name = record.name.clone();
        let Some(deployment) = record.deployment() else {
            tracing::error!(%name, active = record.active, "record names no existing active version; not served");
            return;
        };
        let current = self.function(&name);
        if current
            .as_deref()
            .is_some_and(|f| *f.deployment == deployment && f.program().is_ok())
        {
            // The active version is served already (the record changed otherwise).
            self.swap(revision, |live| {
                live.records.insert(name.clone(), record.clone());
                live.pending.remove(&name);
            });
            return;
        }
        let started = Instant::now();
        let loaded = match record.active_version() {
            Some(version) => self.load(version).await,
            None => Err("the record names no existing active version".into()),
        };
        // A module this node just compiled for a deploy is loaded from the cache here: its
        // compile time is the deploy's.
        let compiled = record.active_version().and_then(|v| {
            self.compile_times
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(v.digest.hex())
        });
        let compile_time = compiled.unwrap_or_else(|| started.elapsed());
        if let Err(e) = &loaded {
            let running = current.as_deref().filter(|f| f.program().is_ok());
            if let Some(running) = running {
                tracing::error!(%name, version = deployment.version, running = running.version, error = %e, "new version cannot load yet; the running one serves meanwhile");
                self.swap(revision, |live| {
                    live.pending.insert(name.clone(), e.clone());
                    live.records.insert(name.clone(), record.clone());
                });
                return;
            }
            tracing::error!(%name, version = deployment.version, error = %e, "function cannot run");
        }
        self.swap(revision, |live| {
            live.pending.remove(&name);
            let previous = live.functions.get(&name).cloned();
            let function = Arc::new(Function::new(
                deployment.clone(),
                loaded.clone(),
                previous.as_deref(),
            ));
            let services = grpc_services(&deployment.config);
            let inserted = match live.grpc_clash(&name, &services) {
                Some((service, holder)) => Err(grpc_taken(&service, &holder)),
                None => live.routes.insert(&function, previous.as_deref()),
            };
            let function = match inserted {
                Ok(()) => {
                    live.serve_grpc(&name, services);
                    function
                }
                Err(clash) => {
                    // Another node deployed a clashing route first: the first in the store's
                    // order keeps it, on every node alike.
                    tracing::error!(%name, version = deployment.version, "not served: {clash}");
                    if let Some(previous) = &previous {
                        live.routes.remove(previous);
                    }
                    Arc::new(Function::new(
                        deployment.clone(),
                        Err(format!("not served: {clash}")),
                        previous.as_deref(),
                    ))
                }
            };
            function.metrics().compiled(compile_time);
            live.functions.insert(name.clone(), function);
            live.records.insert(name.clone(), record.clone());
        });
    }

    fn apply_removed(&self, name: &FunctionName, revision: Revision) {
        self.swap(revision, |live| {
            if let Some(function) = live.functions.remove(name) {
                live.routes.remove(&function);
            }
            live.serve_grpc(name, Vec::new());
            live.records.remove(name);
            live.pending.remove(name);
            live.splits.remove(name);
        });
    }

    /// Changes the table by `change` and notes `revision` as applied.
    fn swap(&self, revision: Revision, change: impl FnOnce(&mut Live)) {
        let mut live = Live::clone(&self.live.load());
        change(&mut live);
        self.live.store(Arc::new(live));
        self.applied
            .send_modify(|applied| *applied = (*applied).max(revision));
    }

    /// Waits until the table has applied `revision` (the writer's own change).
    async fn served(&self, revision: Revision) -> Result<(), Error> {
        let mut applied = self.applied.subscribe();
        let caught_up = tokio::time::timeout(CATCH_UP, applied.wait_for(|r| *r >= revision))
            .await
            .is_ok_and(|r| r.is_ok());
        match caught_up {
            true => Ok(()),
            false => Err(Error::Registry(RegistryError::io(
                "the change was written but is not served yet",
            )(
                std::io::ErrorKind::TimedOut.into()
            ))),
        }
    }

    /// The function serving the gRPC service `service` (`pkg.Service`), if one does.
    pub fn grpc_service(&self, service: &str) -> Option<Arc<Function>> {
        let live = self.live.load();
        let name = live.grpc.get(service)?;
        live.functions.get(name).cloned()
    }

    /// The functions serving gRPC services of their own, by name.
    pub fn grpc_functions(&self) -> Vec<Arc<Function>> {
        let live = self.live.load();
        let names: std::collections::BTreeSet<&FunctionName> = live.grpc.values().collect();
        names
            .into_iter()
            .filter_map(|name| live.functions.get(name).cloned())
            .collect()
    }

    /// The runtime functions are compiled for.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// Finds the function serving `path` (raw request path), its active version. Lock-free.
    pub fn resolve(&self, path: &str) -> Option<Resolved> {
        self.live.load().routes.resolve(path)
    }

    /// Finds the function and version serving a request for `path` with `headers`: the
    /// active version, or the one the function's traffic split picks, with the
    /// `Set-Cookie` to answer when the split sticks by a cookie the client lacks.
    pub fn route(
        &self,
        path: &str,
        headers: &HeaderMap,
    ) -> Option<(Resolved, Option<HeaderValue>)> {
        let live = self.live.load();
        let mut resolved = live.routes.resolve(path)?;
        let mut cookie = None;
        if !live.splits.is_empty() {
            if let Some(split) = live.splits.get(&resolved.function.name) {
                (resolved.function, cookie) = split.choose(headers);
            }
        }
        Some((resolved, cookie))
    }

    /// The version of `function` a call with `headers` goes to (a queued call), or one
    /// picked by share (`None`: a pub/sub delivery): `function` itself unless a traffic
    /// split stands.
    pub(crate) fn version_for(
        &self,
        function: Arc<Function>,
        headers: Option<&HeaderMap>,
    ) -> Arc<Function> {
        let live = self.live.load();
        match live.splits.get(&function.name) {
            Some(split) => match headers {
                Some(headers) => split.choose(headers).0,
                None => split.random(),
            },
            None => function,
        }
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

    /// The active version of every function, in no particular order.
    pub fn active(&self) -> Vec<Arc<Function>> {
        self.live.load().functions.values().cloned().collect()
    }

    /// Every live function, in no particular order: the active versions, and the other
    /// versions of traffic splits.
    pub fn all(&self) -> Vec<Arc<Function>> {
        let live = self.live.load();
        let mut all: Vec<Arc<Function>> = live.functions.values().cloned().collect();
        for split in live.splits.values() {
            let others = split.members().filter(|f| {
                !live
                    .functions
                    .get(&f.name)
                    .is_some_and(|active| Arc::ptr_eq(active, f))
            });
            for member in others {
                if !all.iter().any(|f| Arc::ptr_eq(f, member)) {
                    all.push(member.clone());
                }
            }
        }
        all
    }

    /// Marks every change the table applies (the store revision it reached).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<Revision> {
        self.applied.subscribe()
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
    /// one, check its routes are free, store the module, write the record, and return once it
    /// is served. A failed deploy changes nothing.
    ///
    /// If the module and config equal the active version's, nothing is written and the active
    /// version is returned with `unchanged: true`.
    pub async fn deploy(
        &self,
        name: FunctionName,
        module: Vec<u8>,
        config: FunctionConfig,
    ) -> Result<Deployed, Error> {
        self.deploy_with(name, module, config, None).await
    }

    /// [`Functions::deploy`], as a canary if `canary` says so: the new version takes its
    /// share of the requests and the active version keeps the rest (ending any split that
    /// stood), until `promote` or `rollback`.
    ///
    /// While tracing is on, the deploy is a span (`wafer.deploy`, `deploy NAME`) with the
    /// compile (or the artifact's mapping) a span within it (`wafer.compile`).
    pub async fn deploy_with(
        &self,
        name: FunctionName,
        module: Vec<u8>,
        config: FunctionConfig,
        canary: Option<Canary>,
    ) -> Result<Deployed, Error> {
        if !wafer_host::trace::enabled() {
            return self.compile_and_record(name, module, config, canary).await;
        }
        use tracing::Instrument as _;
        let span = tracing::info_span!(
            target: wafer_host::trace::TARGET,
            "wafer.deploy",
            otel.name = format!("deploy {name}"),
            otel.status_code = tracing::field::Empty,
            otel.status_description = tracing::field::Empty,
            wafer.function = name.as_str(),
            wafer.version = tracing::field::Empty,
            wafer.digest = tracing::field::Empty,
            wafer.unchanged = tracing::field::Empty,
        );
        let deployed = (self.compile_and_record(name, module, config, canary))
            .instrument(span.clone())
            .await;
        match &deployed {
            Ok(deployed) => {
                span.record("wafer.version", i64::from(deployed.version));
                span.record("wafer.digest", deployed.digest.to_string());
                span.record("wafer.unchanged", deployed.unchanged);
            }
            Err(e) => {
                span.record("otel.status_code", "error");
                span.record("otel.status_description", e.to_string());
            }
        }
        deployed
    }

    async fn compile_and_record(
        &self,
        name: FunctionName,
        module: Vec<u8>,
        mut config: FunctionConfig,
        canary: Option<Canary>,
    ) -> Result<Deployed, Error> {
        config.validate()?;
        config.routes = config.effective_routes(&name);
        let (runtime, artifacts) = (self.runtime.clone(), self.artifacts.clone());
        let started = Instant::now();
        let compile_span = match wafer_host::trace::enabled() {
            true => tracing::info_span!(
                target: wafer_host::trace::TARGET,
                "wafer.compile",
                otel.name = "compile",
                wafer.module_bytes = module.len() as i64,
            ),
            false => tracing::Span::none(),
        };
        let compiled = blocking(move || -> Result<_, Error> {
            let _compiling = compile_span.enter();
            let wasm = runtime.parse(&module)?.into_owned();
            let digest = Digest::of(&wasm);
            let program = artifacts.program(&runtime, digest.hex(), || Ok(wasm.clone()))?;
            Ok((wasm, digest, program))
        });
        let (wasm, digest, program) = compiled.await?;
        let compile_time = started.elapsed();
        if let Some(same) = self.unchanged(&name, &digest, &config) {
            return Ok(same);
        }
        let program = with_abi(program, &config)?;
        check_fit(&program, &config)?;
        let module_routes = declared::run(&program, config.limits).await?;
        let handlers = declared::handlers(&program, &config.routes, &module_routes)?;
        // The routes are checked here for a clear refusal; the table checks them again when
        // the record comes back, in case another node took one meanwhile.
        let current = self.function(&name);
        let candidate = Deployment {
            module_routes: module_routes.clone(),
            ..Deployment::of(name.clone(), config.clone())
        };
        let candidate = Arc::new(Function::new(
            candidate,
            Ok((program.clone(), handlers)),
            None,
        ));
        let live = self.live.load();
        live.routes.clone().insert(&candidate, current.as_deref())?;
        if let Some((service, holder)) = live.grpc_clash(&name, &grpc_services(&config)) {
            return Err(grpc_taken(&service, &holder).into());
        }
        self.registry.put_module(&digest, wasm).await?;
        self.compile_times
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest.hex().to_owned(), compile_time);

        let abi = program.abi();
        let ((version, unchanged, traffic), revision) = self
            .registry
            .update(&name, |current| {
                if let Some(same) = current.and_then(|r| r.unchanged(&digest, &config)) {
                    return Ok(Update::Keep((
                        same.version,
                        true,
                        current.and_then(|r| r.traffic.clone()),
                    )));
                }
                let mut record = current
                    .cloned()
                    .unwrap_or_else(|| FunctionRecord::new(&name));
                let stable = record.active;
                let version =
                    record.push(digest.clone(), abi, config.clone(), module_routes.clone());
                let number = version.version;
                if let Some(canary) = &canary {
                    record.set_traffic(canary.split(&name, number, stable)?)?;
                }
                let traffic = record.traffic.clone();
                Ok(Update::Write(record, (number, false, traffic)))
            })
            .await?;
        if let Some(revision) = revision {
            self.served(revision).await?;
            self.check_served(&name, version)?;
        }
        Ok(Deployed {
            name,
            version,
            digest,
            unchanged,
            traffic,
        })
    }

    /// Shares `name`'s requests as `traffic` says, once every member is known to load
    /// here. The oldest member becomes the active version.
    pub async fn set_traffic(
        &self,
        name: &FunctionName,
        traffic: Traffic,
    ) -> Result<Deployed, Error> {
        let (record, _) = self
            .registry
            .record(name)
            .await?
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        for share in &traffic.split {
            let version = record.versions.iter().find(|v| v.version == share.version);
            if let Some(version) = version {
                if let Err(e) = self.load(version).await {
                    return Err(RegistryError::InvalidConfig(format!(
                        "version {} of `{name}` cannot run: {e}",
                        version.version
                    ))
                    .into());
                }
            }
        }
        self.change(name, |record| record.set_traffic(traffic.clone()))
            .await
    }

    /// Ends `name`'s traffic split: its newest version takes every request.
    pub async fn promote(&self, name: &FunctionName) -> Result<Deployed, Error> {
        self.change(name, |record| record.promote().map(drop)).await
    }

    /// Writes `name`'s record as `change` makes it, and answers the active version once
    /// served.
    async fn change(
        &self,
        name: &FunctionName,
        change: impl Fn(&mut FunctionRecord) -> Result<(), RegistryError>,
    ) -> Result<Deployed, Error> {
        let (record, revision) = self
            .registry
            .update(name, |current| {
                let mut record = current
                    .ok_or_else(|| RegistryError::NotFound(name.to_string()))?
                    .clone();
                change(&mut record)?;
                Ok(Update::Write(record.clone(), record))
            })
            .await?;
        if let Some(revision) = revision {
            self.served(revision).await?;
        }
        let active = record
            .active_version()
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        Ok(Deployed {
            name: name.clone(),
            version: active.version,
            digest: active.digest.clone(),
            unchanged: false,
            traffic: record.traffic.clone(),
        })
    }

    /// Refuses, after the fact, a version that was written but could not be served here (a
    /// route another node took at the same moment).
    fn check_served(&self, name: &FunctionName, version: u32) -> Result<(), Error> {
        let live = self.live.load();
        let pending = live.records.get(name).map(|r| r.active) == Some(version);
        if let Some(e) = live.pending.get(name).filter(|_| pending) {
            return Err(Error::Unavailable {
                name: name.to_string(),
                reason: format!("version {version} was recorded but {e}"),
            });
        }
        // A canary: the split serves it, or its share went to the active version.
        if let Some(split) = live.splits.get(name) {
            if live.records.get(name).is_some_and(|r| r.active != version) {
                return match split.member(version) {
                    Some(_) => Ok(()),
                    None => Err(Error::Unavailable {
                        name: name.to_string(),
                        reason: format!(
                            "version {version} was recorded but cannot load here; the active \
                             version takes its share (see the server log)"
                        ),
                    }),
                };
            }
        }
        match live.functions.get(name) {
            Some(f) if f.version == version => match f.program() {
                Ok(_) => Ok(()),
                Err(e) => Err(Error::Unavailable {
                    name: name.to_string(),
                    reason: format!("version {version} was recorded but {e}"),
                }),
            },
            // A later change got there first; that one is served.
            _ => Ok(()),
        }
    }

    /// The active version, as a deploy's outcome, if it already runs `digest` with `config`.
    fn unchanged(
        &self,
        name: &FunctionName,
        digest: &Digest,
        config: &FunctionConfig,
    ) -> Option<Deployed> {
        let live = self.live.load();
        if live.pending.contains_key(name) {
            return None;
        }
        let active = live.records.get(name)?.unchanged(digest, config)?.clone();
        Some(Deployed {
            name: name.clone(),
            version: active.version,
            digest: active.digest,
            unchanged: true,
            traffic: live.records.get(name)?.traffic.clone(),
        })
    }

    /// The live function `name`, waiting up to `limit` for the table to load it if the
    /// registry has it already (a record this node has not finished compiling, in a
    /// rollout); `None` if it does not exist or did not load in time.
    pub(crate) async fn loaded(
        &self,
        name: &FunctionName,
        limit: Duration,
    ) -> Option<Arc<Function>> {
        if let Some(function) = self.function(name) {
            return Some(function);
        }
        match self.registry.record(name).await {
            Ok(Some(_)) => {}
            _ => return None,
        }
        let mut changes = self.applied.subscribe();
        let waited = tokio::time::timeout(limit, async {
            loop {
                if let Some(function) = self.function(name) {
                    return Some(function);
                }
                changes.changed().await.ok()?;
            }
        });
        waited.await.ok().flatten()
    }

    /// Makes the version before the active one active again, once it is known to load; or,
    /// while a traffic split stands, ends it: the active version (its oldest member) takes
    /// every request again.
    pub async fn rollback(&self, name: &FunctionName) -> Result<Deployed, Error> {
        let split = self
            .live
            .load()
            .records
            .get(name)
            .is_some_and(|r| r.traffic.is_some());
        if split {
            return self
                .change(name, |record| {
                    record.traffic = None;
                    Ok(())
                })
                .await;
        }
        loop {
            let (record, _) = self
                .registry
                .record(name)
                .await?
                .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
            let previous = record.previous()?.clone();
            if let Err(e) = self.load(&previous).await {
                return Err(RegistryError::InvalidConfig(format!(
                    "version {} of `{name}` cannot run: {e}",
                    previous.version
                ))
                .into());
            }
            let written = self
                .registry
                .update(name, |current| {
                    let current =
                        current.ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
                    if current.previous()?.version != previous.version {
                        // Changed since it was loaded: start over.
                        return Ok(Update::Keep(false));
                    }
                    let mut record = current.clone();
                    record.active = previous.version;
                    Ok(Update::Write(record, true))
                })
                .await?;
            let (true, Some(revision)) = written else {
                continue;
            };
            self.served(revision).await?;
            return Ok(Deployed {
                name: name.clone(),
                version: previous.version,
                digest: previous.digest,
                unchanged: false,
                traffic: None,
            });
        }
    }

    /// Deletes a function and its history. Its modules stay stored (other functions or
    /// versions may share them).
    pub async fn remove(&self, name: &FunctionName) -> Result<(), Error> {
        let revision = self.registry.remove(name).await?;
        self.served(revision).await
    }

    /// The program of `version` and those of its declared routes: the module verified, then
    /// its cached artifact mapped in or the module compiled (on the blocking pool).
    async fn load(&self, version: &Version) -> Loaded {
        let wasm = self
            .registry
            .module(&version.digest)
            .await
            .map_err(|e| e.to_string())?;
        let (runtime, artifacts) = (self.runtime.clone(), self.artifacts.clone());
        let version = version.clone();
        let loaded = blocking(move || -> Result<_, Error> {
            let config = &version.config;
            let program = artifacts.program(&runtime, version.digest.hex(), || Ok(wasm))?;
            let program = with_abi(program, config)?;
            let handlers = declared::handlers(&program, &config.routes, &version.module_routes)?;
            Ok((program, handlers))
        });
        loaded.await.map_err(|e| e.to_string())
    }

    /// Every function with its active version, by name.
    pub fn list(&self) -> Vec<FunctionStatus> {
        let live = self.live.load();
        let mut list: Vec<FunctionStatus> = live
            .records
            .values()
            .filter_map(|record| {
                let active = record.active_version()?;
                let served = live.functions.get(&record.name);
                let error = match live.pending.get(&record.name) {
                    Some(e) => Some(format!(
                        "cannot load yet ({e}); version {} serves meanwhile",
                        served.map_or(0, |f| f.version)
                    )),
                    None => served.and_then(|f| f.program().err().map(str::to_owned)),
                };
                Some(FunctionStatus {
                    name: record.name.clone(),
                    version: active.version,
                    versions: record.versions.len(),
                    digest: active.digest.clone(),
                    abi: active.abi,
                    config: active.config.masked(),
                    routes: active.routes(),
                    error,
                    traffic: record.traffic.clone(),
                    schedules: crate::schedules::status(&active.config.schedules),
                })
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// A function's record fit to show: every version and the active one, secret values
    /// masked.
    pub fn get(&self, name: &FunctionName) -> Result<FunctionRecord, RegistryError> {
        self.live
            .load()
            .records
            .get(name)
            .map(|record| record.masked())
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))
    }

    /// A stored module's bytes, verified against `digest`.
    pub async fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        self.registry.module(digest).await
    }
}

/// A deploy as a canary: the share of the requests the new version takes, and what keeps a
/// client on one version.
#[derive(Debug, Clone)]
pub struct Canary {
    /// The new version's share, 1 to 99 percent.
    pub percent: u8,
    /// Stickiness by a header or cookie, if any.
    pub sticky: Option<Sticky>,
}

impl Canary {
    /// The split of a canary `version` beside the `stable` one.
    fn split(
        &self,
        name: &FunctionName,
        version: u32,
        stable: u32,
    ) -> Result<Traffic, RegistryError> {
        if self.percent == 0 || self.percent > 99 {
            return Err(RegistryError::InvalidConfig(format!(
                "a canary takes 1 to 99% of the requests, not {}%",
                self.percent
            )));
        }
        if stable == 0 {
            return Err(RegistryError::InvalidConfig(format!(
                "`{name}` has no version yet for a canary to share requests with: deploy it \
                 without a canary first"
            )));
        }
        let shares = vec![
            Share {
                version,
                percent: self.percent,
            },
            Share {
                version: stable,
                percent: 100u8.saturating_sub(self.percent),
            },
        ];
        Traffic::new(shares, self.sticky.clone())
    }
}

/// First wait before loading again an active version that failed to load (its module could
/// not be read from the store for a moment, say); doubled after each failure up to
/// [`RELOAD_MAX`], so that a node recovers within seconds of its store without a redeploy,
/// and a module that can never load costs one read every 15 s.
const RELOAD_FIRST: Duration = Duration::from_secs(1);
const RELOAD_MAX: Duration = Duration::from_secs(15);

impl Functions {
    /// Whether any active version failed to load.
    fn any_failed(&self) -> bool {
        let live = self.live.load();
        !live.pending.is_empty() || live.functions.values().any(|f| f.program().is_err())
    }

    /// Loads again the active versions that failed to load; says whether any still fails.
    /// Runs in the task that follows the watch, so no newer record can be overtaken.
    async fn reload_failed(&self) -> bool {
        let failed: Vec<Arc<FunctionRecord>> = {
            let live = self.live.load();
            live.functions
                .iter()
                .filter(|(name, f)| f.program().is_err() || live.pending.contains_key(*name))
                .filter_map(|(name, _)| live.records.get(name).cloned())
                .collect()
        };
        for record in failed {
            let revision = *self.applied.borrow();
            self.apply_put(record, revision).await;
        }
        self.any_failed()
    }
}

/// Follows the registry's watch until the table is dropped; when the watch ends (the store
/// went away), watches again and catches up. Active versions that failed to load are
/// loaded again meanwhile ([`RELOAD_FIRST`]).
async fn follow(functions: Weak<Functions>, watch: Option<Watch>) {
    // While an active version failed to load: when to try again.
    let mut reload: Option<Duration> = None;
    let mut watching = watch;
    loop {
        while let Some(watch) = watching.as_mut() {
            let event = tokio::select! {
                event = watch.next() => event,
                () = tokio::time::sleep(reload.unwrap_or_default()), if reload.is_some() => {
                    let Some(table) = functions.upgrade() else {
                        return;
                    };
                    let wait = reload.unwrap_or(RELOAD_FIRST);
                    reload = table.reload_failed().await.then(|| (wait * 2).min(RELOAD_MAX));
                    continue;
                }
            };
            let Some(event) = event else { break };
            let Some(functions) = functions.upgrade() else {
                return;
            };
            match event {
                Ok(event) => functions.apply(event).await,
                Err(e) => {
                    tracing::error!("the registry's watch failed: {e}; serving what is loaded");
                    break;
                }
            }
            if reload.is_none() && functions.any_failed() {
                reload = Some(RELOAD_FIRST);
            }
        }
        loop {
            tokio::time::sleep(REWATCH).await;
            let Some(table) = functions.upgrade() else {
                return;
            };
            match table.registry.watch().await {
                Ok(mut next) => match table.catch_up(&mut next).await {
                    Ok(()) => {
                        tracing::info!("watching the registry again");
                        watching = Some(next);
                        break;
                    }
                    Err(e) => tracing::warn!("catching up with the registry failed: {e}"),
                },
                Err(e) => tracing::warn!("cannot watch the registry: {e}"),
            }
        }
    }
}

/// Runs `f` on the blocking pool (compiling takes whole seconds for a large module).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::BadRequest(format!("a compile task failed: {e}")))?
}

/// Refuses a configuration that does not fit the program: a service without an address to
/// listen on, an address for something that is not a service, instance reuse for anything
/// but an HTTP component.
fn check_fit(program: &Program, config: &FunctionConfig) -> Result<(), RegistryError> {
    let abi = program.abi();
    if abi == Abi::Service && program.as_service().is_none() {
        return Err(RegistryError::InvalidConfig(
            "this command component cannot run as a service: a service gets WASI 0.2's \
             interfaces and sockets only, and this one is a WASI 0.3 command or imports more \
             (`wafer run` runs it; an HTTP component exports `wasi:http/incoming-handler` or \
             `wasi:http/handler`)"
                .into(),
        ));
    }
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
    // A Spin component is refused nothing at deploy: as in Spin, a store or database it
    // was not granted answers `access-denied` when opened.
    if let Some(functions) = program
        .component_functions()
        .filter(|_| config.spin.is_none())
    {
        check_component_grants(&functions, &config.grants)?;
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

/// Refuses a component that imports a capability interface it was not granted, naming the
/// grant that would allow it, or that subscribes without a handler for the messages.
/// `wasi:config` and `wasi:logging` need no grant: a function reads its own config values
/// (none unless given) and writes its own log, as a core module does.
fn check_component_grants(
    component: &wafer_runtime::ComponentFunctions,
    grants: &wafer_registry::Grants,
) -> Result<(), RegistryError> {
    for import in component.imports() {
        let package = import.split('/').next().unwrap_or_default();
        let missing = match package {
            "wasi:keyvalue" if !grants.kv && grants.kv_stores.is_empty() => Some("the key-value grant: `kv = true` in the manifest, or `wafer deploy --kv`"),
            "wafer:pubsub" if import.starts_with("wafer:pubsub/publisher") && grants.publish.is_empty() => Some(
                "topics to publish to: `publish = [\"PATTERN\"]` in the manifest, or `wafer deploy --publish PATTERN`",
            ),
            _ => None,
        };
        if let Some(grant) = missing {
            return Err(RegistryError::InvalidConfig(format!(
                "the component imports `{import}`, which needs {grant}"
            )));
        }
    }
    if !grants.subscribe.is_empty() && !component.exports_interface(wafer_runtime::SUBSCRIBER) {
        return Err(RegistryError::InvalidConfig(format!(
            "a component granted `subscribe` receives each message through its export \
             `{}` (on-message), which this component does not export",
            wafer_runtime::SUBSCRIBER
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
