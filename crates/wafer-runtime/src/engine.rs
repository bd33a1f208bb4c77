//! The shared engine: configuration, compiling and loading programs (its epoch ticker is in
//! `ticker`).

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::Path;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
};

use crate::command::Command;
use crate::component::HttpCtx;
use crate::error::{CompileError, RuntimeError};
use crate::guest::{self, GuestCtx};
use crate::http::HttpComponent;
use crate::interfaces;
use crate::program::Program;
use crate::service::{Service, ServiceCtx};
use crate::ticker::EpochTicker;
use crate::typed::{self, ComponentFunctions};
use crate::wapc;
use wasmtime::component::{self, Component};
use wasmtime::Precompiled;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

/// Bytes at the start of each memory slot reset in place (instead of being returned to the
/// OS with `madvise`) when an instance is freed, so the next instance in the slot finds them
/// resident and takes no page faults.
///
/// With Linux's `PAGEMAP_SCAN` (6.7+) only the pages an instance actually wrote are reset, so
/// a generous window is cheap: it lets a Go guest (which writes a few MiB while its runtime
/// starts) reuse its pages, at about 1 ms per call instead of 2. Without it every byte in the
/// window is cleared on every call, so the window is one wasm page (`wafer-bench` measures
/// both).
const KEEP_RESIDENT_SCANNED: usize = 8 << 20;
const KEEP_RESIDENT_CLEARED: usize = 64 << 10;

/// Engine-wide settings, fixed when the [`Runtime`] starts.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Pre-allocate instance slots (the pooling allocator with copy-on-write memory images),
    /// as a server should. Off for one-shot runs such as `wafer run`. Default on.
    pub pooling: bool,
    /// Instances alive at once across all functions (pool slots). Default 1000.
    pub max_instances: u32,
    /// Largest linear memory any function may be granted; per-function limits sit below it.
    /// Default 4 GiB, all a 32-bit memory can address; it is address space, not RAM.
    pub max_memory: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            pooling: true,
            max_instances: 1000,
            max_memory: 4 << 30,
        }
    }
}

/// The wasmtime engine and everything shared by all functions.
///
/// Create one per process; compiling and running are `&self` and thread-safe.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestCtx>,
    component_linker: component::Linker<ServiceCtx>,
    http_linker: component::Linker<HttpCtx>,
    fingerprint: String,
    /// Instance slots of the pooling allocator, if it pools.
    slots: Option<u32>,
    _ticker: EpochTicker,
}

/// A freshly compiled module.
pub struct Compiled {
    /// The compiled artifact, to cache and [`Runtime::load`] later without recompiling.
    pub artifact: Vec<u8>,
    /// The ready-to-run program.
    pub program: Program,
}

impl Runtime {
    /// Starts an engine with `config`.
    pub fn new(config: &RuntimeConfig) -> Result<Self, RuntimeError> {
        let mut wasm = Config::new();
        wasm.epoch_interruption(true);
        if config.pooling {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_core_instances(config.max_instances)
                .total_memories(config.max_instances)
                .total_tables(config.max_instances)
                .total_stacks(config.max_instances)
                .max_memory_size(usize::try_from(config.max_memory).unwrap_or(usize::MAX))
                .table_keep_resident(KEEP_RESIDENT_CLEARED);
            if PoolingAllocationConfig::is_pagemap_scan_available() {
                pool.pagemap_scan(Enabled::Yes)
                    .linear_memory_keep_resident(KEEP_RESIDENT_SCANNED);
            } else {
                pool.linear_memory_keep_resident(KEEP_RESIDENT_CLEARED);
            }
            wasm.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(RuntimeError::engine)?;
        let mut linker = guest::linker(&engine).map_err(RuntimeError::engine)?;
        wapc::add_to_linker(&mut linker).map_err(RuntimeError::engine)?;
        let mut component_linker = component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(RuntimeError::engine)?;
        let mut http_linker = component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut http_linker).map_err(RuntimeError::engine)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut http_linker)
            .map_err(RuntimeError::engine)?;
        // WASI 0.3 beside 0.2: a component built for wasm32-wasip2 imports the standard
        // library's 0.2 interfaces and its own 0.3 ones.
        wasmtime_wasi::p3::add_to_linker(&mut http_linker).map_err(RuntimeError::engine)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut http_linker).map_err(RuntimeError::engine)?;
        interfaces::add_to_linker(&mut http_linker).map_err(RuntimeError::engine)?;
        crate::spin::add_to_linker(&mut http_linker).map_err(RuntimeError::engine)?;

        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let fingerprint = format!("wasmtime-48-{:016x}", hasher.finish());

        let _ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker,
            component_linker,
            http_linker,
            fingerprint,
            slots: config.pooling.then_some(config.max_instances),
            _ticker,
        })
    }

    /// Core instance slots of the pooling allocator in use now (a component's core
    /// instances take one each) and in all, if the engine pools instances.
    pub fn slots_in_use(&self) -> Option<(u64, u64)> {
        let metrics = self.engine.pooling_allocator_metrics()?;
        Some((metrics.core_instances(), u64::from(self.slots?)))
    }

    /// Adds a host function that guests may import as `module`.`name`, before compiling the
    /// programs that import it.
    ///
    /// ```
    /// # fn demo() -> anyhow::Result<()> {
    /// use wafer_runtime::{Runtime, RuntimeConfig};
    /// let mut runtime = Runtime::new(&RuntimeConfig::default())?;
    /// runtime.func_wrap("host", "double", |x: i32| x * 2)?;
    /// # Ok(()) }
    /// ```
    pub fn func_wrap<Params, Results>(
        &mut self,
        module: &str,
        name: &str,
        func: impl wasmtime::IntoFunc<GuestCtx, Params, Results>,
    ) -> Result<&mut Self, RuntimeError> {
        self.linker
            .func_wrap(module, name, func)
            .map_err(RuntimeError::engine)?;
        Ok(self)
    }

    /// Adds a host function that components may import as `name` of the interface
    /// `interface` (`pkg:iface/iface`, with its version if the component's WIT has one), or
    /// of the world itself for an empty `interface`, before compiling the components that
    /// import it. The closure gets the arguments as a JSON array and returns the result as
    /// JSON, converted by the function's WIT types as in
    /// [`ComponentFunctions::call`](crate::ComponentFunctions::call); an `Err` traps the
    /// guest with that message.
    ///
    /// ```
    /// # fn demo() -> anyhow::Result<()> {
    /// use wafer_runtime::{Runtime, RuntimeConfig};
    /// let mut runtime = Runtime::new(&RuntimeConfig::default())?;
    /// runtime.component_func("example:host/math", "double", |args| {
    ///     let x = args[0].as_u64().ok_or("not a number")?;
    ///     Ok(serde_json::json!(x * 2))
    /// })?;
    /// # Ok(()) }
    /// ```
    pub fn component_func(
        &mut self,
        interface: &str,
        name: &str,
        func: impl Fn(serde_json::Value) -> Result<serde_json::Value, String> + Send + Sync + 'static,
    ) -> Result<&mut Self, RuntimeError> {
        let root = self.http_linker.root();
        let mut instance = match interface {
            "" => root,
            interface => root
                .into_instance(interface)
                .map_err(RuntimeError::engine)?,
        };
        let label = format!("{interface}#{name}");
        instance
            .func_new(name, move |_store, ty, params, results| {
                typed::host_call(&label, &func, &ty, params, results)
            })
            .map_err(RuntimeError::engine)?;
        Ok(self)
    }

    /// Identifies the engine's code generation settings: a compiled artifact is only valid for
    /// the fingerprint it was compiled under, so caches key artifacts by it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Turns upload bytes (binary wasm or WAT text) into the binary module to store and digest,
    /// refusing kinds of module this runtime cannot run.
    pub fn parse<'a>(&self, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, CompileError> {
        let wasm = wat::parse_bytes(bytes).map_err(|e| match std::str::from_utf8(bytes) {
            Ok(_) => CompileError::Wat(e.to_string()),
            Err(_) => CompileError::Invalid(
                "neither a wasm binary (it does not start with `\\0asm`) nor WAT text".into(),
            ),
        })?;
        Ok(wasm)
    }

    /// Validates and compiles a module (binary wasm or WAT text) ahead of time.
    ///
    /// This is the slow step (whole seconds for a large Go module); do it once, at deploy.
    pub fn compile(&self, bytes: &[u8]) -> Result<Compiled, CompileError> {
        let mut wasm = self.parse(bytes)?;
        if let Some(component) = componentize(&wasm)? {
            wasm = Cow::Owned(component);
        }
        if is_component(&wasm) {
            let component = Component::new(&self.engine, &wasm)
                .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
            let artifact = component
                .serialize()
                .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
            let program = self.prepare_component(&component)?;
            return Ok(Compiled { artifact, program });
        }
        let module = Module::new(&self.engine, &wasm)
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let artifact = module
            .serialize()
            .map_err(|e| CompileError::Invalid(format!("{e:#}")))?;
        let program = self.prepare(module)?;
        Ok(Compiled { artifact, program })
    }

    /// Loads an artifact that [`Runtime::compile`] produced under this [`fingerprint`](Self::fingerprint).
    ///
    /// The file is memory-mapped, not recompiled: loading takes microseconds to milliseconds.
    ///
    /// # Safety
    ///
    /// `path` must hold bytes that [`Compiled::artifact`] produced, unmodified: wasmtime checks
    /// the header and engine settings but runs the machine code as it finds it.
    pub unsafe fn load(&self, path: &Path) -> Result<Program, CompileError> {
        let kind = Engine::detect_precompiled_file(path)
            .map_err(|e| CompileError::Artifact(format!("{e:#}")))?;
        if kind == Some(Precompiled::Component) {
            // SAFETY: the caller vouches for the artifact's origin.
            let component = unsafe { Component::deserialize_file(&self.engine, path) }
                .map_err(|e| CompileError::Artifact(format!("{e:#}")))?;
            return self.prepare_component(&component);
        }
        // SAFETY: the caller vouches for the artifact's origin.
        let module = unsafe { Module::deserialize_file(&self.engine, path) }
            .map_err(|e| CompileError::Artifact(format!("{e:#}")))?;
        self.prepare(module)
    }

    /// An HTTP component (`wasi:http/incoming-handler` or `wasi:http/handler`) is called
    /// per request; a command component (`wasi:cli/run`) is run by `wafer run`, and becomes
    /// a service if it is a WASI 0.2 one; a component exporting other functions is called by
    /// them; other components are refused.
    fn prepare_component(&self, component: &Component) -> Result<Program, CompileError> {
        let pre = match self.http_linker.instantiate_pre(component) {
            Ok(pre) => pre,
            Err(e) => match crate::spin::stub_unknown(&self.http_linker, component) {
                Some(linker) => linker.instantiate_pre(component),
                None => Err(e),
            }
            .map_err(|e| CompileError::Link(format!("{e:#}")))?,
        };
        if let Ok(service) = ServicePre::new(pre.clone()) {
            return Ok(Program::http(HttpComponent::p3(service)));
        }
        if let Ok(proxy) = ProxyPre::new(pre.clone()) {
            return Ok(Program::http(HttpComponent::p2(proxy)));
        }
        if let Some(command) = Command::new(&pre) {
            // A service's sockets are checked by its own context, which has no `wasi:http`.
            let service = self
                .component_linker
                .instantiate_pre(component)
                .ok()
                .and_then(|pre| CommandPre::new(pre).ok())
                .map(|pre| Service { pre });
            return Ok(Program::command(command, service));
        }
        let functions = ComponentFunctions::new(pre);
        if functions.is_empty() {
            return Err(CompileError::Unsupported(
                "this component exports neither `wasi:http/incoming-handler` (a WASI 0.2 HTTP \
                 component) nor `wasi:http/handler` (WASI 0.3), nor `wasi:cli/run` (a command), \
                 nor any function to call"
                    .into(),
            ));
        }
        Ok(Program::component(functions))
    }

    fn prepare(&self, module: Module) -> Result<Program, CompileError> {
        // Map the memory image now rather than in the first request.
        module
            .initialize_copy_on_write_image()
            .map_err(|e| CompileError::MemoryImage(format!("{e:#}")))?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| CompileError::Link(format!("{e:#}")))?;
        Ok(Program::new(pre))
    }
}

/// A core module that carries its component type (`component-type*` custom sections, as
/// `wit-bindgen` leaves them in a module built for `wasm32-unknown-unknown` or
/// `wasm32-wasip1`) made into the component it describes, as `spin build` and `wasm-tools
/// component new` do; with WASI 0.1 imports, through the WASI 0.1 adapter (the reactor, from
/// `wasi-preview1-component-adapter-provider`). `None` for any other module.
fn componentize(wasm: &[u8]) -> Result<Option<Vec<u8>>, CompileError> {
    if is_component(wasm) {
        return Ok(None);
    }
    let (mut typed, mut wasi) = (false, false);
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        match payload {
            Ok(wasmparser::Payload::CustomSection(section)) => {
                typed |= section.name().starts_with("component-type");
            }
            Ok(wasmparser::Payload::ImportSection(imports)) => {
                for import in imports.into_imports().flatten() {
                    wasi |= import.module == "wasi_snapshot_preview1";
                }
            }
            Ok(_) => {}
            // Invalid: compiling it says why.
            Err(_) => return Ok(None),
        }
    }
    if !typed {
        return Ok(None);
    }
    let failed = |e: anyhow::Error| {
        CompileError::Invalid(format!("cannot make a component of the module: {e:#}"))
    };
    let mut encoder = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(wasm)
        .map_err(failed)?;
    if wasi {
        use wasi_preview1_component_adapter_provider as adapter;
        encoder = encoder
            .adapter(
                adapter::WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
                adapter::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
            )
            .map_err(failed)?;
    }
    encoder.encode().map(Some).map_err(failed)
}

/// A component starts with the wasm magic and version, then layer 1 (core modules: layer 0).
fn is_component(wasm: &[u8]) -> bool {
    wasm.get(4..8) == Some(&[0x0d, 0x00, 0x01, 0x00])
}
