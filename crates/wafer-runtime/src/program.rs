//! A compiled, linked module and the ways to call it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{
    Caller, Engine, Extern, InstancePre, Linker, Module, ModuleExport, PoolConcurrencyLimitError,
    ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::call::CallOptions;
use crate::error::Fault;
use crate::http::HttpComponent;
use crate::output::{CappedPipe, Overflow};
use crate::service::Service;
use crate::wapc::{HostCalls, WapcState};
use wafer_abi::Abi;
use wafer_abi::Limits;

/// The ABI a module's exports call for: `__guest_call` makes it waPC, otherwise `_start`
/// makes it a CGI command, otherwise it is called by its exports.
pub(crate) fn detect(module: &Module) -> Abi {
    if module.get_export_index("__guest_call").is_some() {
        Abi::Wapc
    } else if module.get_export_index("_start").is_some() {
        Abi::Cgi
    } else {
        Abi::Exports
    }
}

/// The parts of a CGI request a program can observe, judged from its imports: a module that
/// imports neither `environ_get` nor `environ_sizes_get` cannot read its environment, so
/// the gateway need not build one for it (a third of the cost of a small call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Inputs {
    /// The module imports WASI's `environ_get` or `environ_sizes_get`.
    pub env: bool,
    /// The module imports WASI's `args_get` or `args_sizes_get`.
    pub args: bool,
    /// The module imports waPC's `__host_call`: it may ask the host for capabilities.
    pub host_calls: bool,
}

impl Inputs {
    fn of(module: &Module) -> Self {
        let imports = |modules: &[&str], names: &[&str]| {
            module
                .imports()
                .any(|i| modules.contains(&i.module()) && names.contains(&i.name()))
        };
        let wasi = ["wasi_snapshot_preview1", "wasi_unstable"];
        Self {
            env: imports(&wasi, &["environ_get", "environ_sizes_get"]),
            args: imports(&wasi, &["args_get", "args_sizes_get"]),
            host_calls: imports(&["wapc"], &["__host_call"]),
        }
    }
}

/// One CGI call: what the gateway derived from the HTTP request.
#[derive(Debug, Clone, Default)]
pub struct CgiRequest {
    /// argv, starting with the script name.
    pub args: Vec<String>,
    /// Environment variables, in order; a later entry wins over an earlier one with the same name.
    pub env: Vec<(String, String)>,
    /// The request body.
    pub stdin: Bytes,
}

/// What a CGI call produced.
#[derive(Debug, Clone)]
pub struct CgiOutput {
    /// The exit code (`0` when `_start` returned), or the fault that ended the call.
    pub exit: Result<i32, Fault>,
    /// Everything written to stdout before the call ended.
    pub stdout: Bytes,
    /// stderr and log-import lines, in the order written.
    pub log: Bytes,
    /// Whether log output went past the stderr limit and was cut.
    pub log_truncated: bool,
}

/// A `wafer run`-style call: real stdio, chosen directories.
#[derive(Debug, Clone, Default)]
pub struct CommandOptions {
    /// argv, starting with the program name.
    pub args: Vec<String>,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Host directories and the guest paths they appear at, read-write.
    pub dirs: Vec<(PathBuf, String)>,
}

/// A module compiled and linked against the host, ready to instantiate many times.
///
/// Cheap to clone; every call gets a fresh instance in a fresh store.
#[derive(Clone)]
pub struct Program {
    abi: Abi,
    inputs: Inputs,
    code: Code,
    /// How a waPC guest words "unknown operation" (the text before and after the name), once
    /// asked; see `Program::is_unknown_operation`.
    pub(crate) unknown: Arc<tokio::sync::OnceCell<Option<(String, String)>>>,
}

/// What a program runs: a core module, or a command component run as a service.
#[derive(Clone)]
enum Code {
    Module {
        pre: InstancePre<GuestCtx>,
        start: Option<ModuleExport>,
    },
    Service(Service),
    Http(HttpComponent),
}

/// Why a service component was called like a module.
pub(crate) const NOT_A_MODULE: &str =
    "this program is a WASI 0.2 component, not a core module: it is not called this way";

/// The state of one instance, as host functions see it (through `wasmtime::Caller`); its
/// contents are private to the runtime.
pub struct GuestCtx {
    wasi: WasiP1Ctx,
    pub(crate) memory: MemoryLimiter,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timed_out: bool,
    pub(crate) log: CappedPipe,
    pub(crate) wapc: WapcState,
    pub(crate) host: Option<Arc<dyn HostCalls>>,
    /// Largest answer (waPC response or error, returned bytes) the guest may give.
    pub(crate) response_limit: usize,
    /// The limit as configured, for messages.
    pub(crate) limits: Limits,
}

impl GuestCtx {
    pub(crate) fn new(wasi: WasiP1Ctx, limits: &Limits, log: CappedPipe) -> Self {
        Self {
            wasi,
            memory: MemoryLimiter::new(limits.memory_bytes()),
            deadline: Some(Instant::now() + limits.timeout),
            timed_out: false,
            log,
            wapc: WapcState::default(),
            host: None,
            response_limit: limits.stdout_bytes(),
            limits: *limits,
        }
    }

    /// Refuses an answer larger than the response limit; the call then ends with
    /// [`Fault::OutputTooLarge`].
    pub(crate) fn check_response_size(&self, len: i32) -> wasmtime::Result<()> {
        if len as u32 as usize > self.response_limit {
            return Err(wasmtime::Error::new(OutputLimit));
        }
        Ok(())
    }

    /// What a failed call amounts to, given what this state saw during it.
    pub(crate) fn fault(&self, error: &wasmtime::Error) -> Fault {
        if self.timed_out || error.is::<DeadlinePassed>() {
            Fault::Timeout(self.limits.timeout)
        } else if self.memory.exceeded {
            Fault::OutOfMemory(self.limits.memory)
        } else if error.is::<OutputLimit>() {
            Fault::OutputTooLarge(self.limits.stdout)
        } else if error.is::<PoolConcurrencyLimitError>() {
            Fault::Busy
        } else {
            Fault::Trap(describe_trap(error))
        }
    }
}

/// The error a host function returns for an answer over the response limit.
#[derive(Debug, thiserror::Error)]
#[error("the guest's answer is larger than its output limit")]
pub(crate) struct OutputLimit;

/// A call's deadline passed while the guest waited in a host call (a WASI sleep, a read, an
/// outbound request): the epoch deadline only fires while wasm code runs, so the call's
/// future is dropped at the deadline instead, which cancels whatever it was waiting on.
#[derive(Debug, thiserror::Error)]
#[error("the call ran past its time limit")]
pub(crate) struct DeadlinePassed;

/// Runs `call` until `deadline`; past it, the call is dropped and fails with
/// [`DeadlinePassed`]. Every call into a guest with a time limit goes through this.
pub(crate) async fn within<T>(
    deadline: Option<Instant>,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    match deadline {
        None => call.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlinePassed))),
    }
}

/// Builds the store for a call: limiter, and the deadline checked at every epoch tick.
pub(crate) fn store(engine: &Engine, ctx: GuestCtx) -> Store<GuestCtx> {
    let mut store = Store::new(engine, ctx);
    store.limiter(|cx| &mut cx.memory);
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|mut cx| {
        let cx = cx.data_mut();
        match cx.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                cx.timed_out = true;
                Ok(UpdateDeadline::Interrupt)
            }
            // Let other requests run on this thread, then carry on.
            _ => Ok(UpdateDeadline::Yield(1)),
        }
    });
    store
}

/// Grants linear memory up to the function's limit and remembers a refusal, so that the trap
/// that usually follows is reported as what it is.
pub(crate) struct MemoryLimiter {
    limit: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            exceeded: false,
        }
    }
}

/// Table growth limit: far above what compilers emit, low enough that a table cannot be
/// used to exhaust host memory.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The host functions every guest may import: WASI preview1 and preview 0, and the logging
/// imports of the original demo (`env.log_i32`, `env.log_string`).
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<GuestCtx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx: &mut GuestCtx| &mut cx.wasi)?;
    // `wasi_unstable` (preview 0), which older toolchains (TinyGo, older Rust and
    // AssemblyScript) still emit.
    wasmtime_wasi::p0::add_to_linker_async(&mut linker, |cx: &mut GuestCtx| &mut cx.wasi)?;
    crate::wapc::add_to_linker(&mut linker)?;
    linker.func_wrap(
        "env",
        "log_i32",
        |caller: Caller<'_, GuestCtx>, value: i32| {
            caller.data().log.append(format!("{value}\n").as_bytes());
        },
    )?;
    linker.func_wrap(
        "env",
        "log_string",
        |mut caller: Caller<'_, GuestCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
                wasmtime::bail!("env.log_string: the module exports no memory");
            };
            // Guest pointers are unsigned 32-bit offsets.
            let (start, len) = (ptr as u32 as usize, len as u32 as usize);
            let Some(bytes) = memory.data(&caller).get(start..start.saturating_add(len)) else {
                wasmtime::bail!("env.log_string: {len} bytes at {start} are out of bounds");
            };
            let mut line = String::from_utf8_lossy(bytes).into_owned();
            line.push('\n');
            caller.data().log.append(line.as_bytes());
            Ok(())
        },
    )?;
    Ok(linker)
}

impl Program {
    pub(crate) fn new(pre: InstancePre<GuestCtx>) -> Self {
        let abi = detect(pre.module());
        let start = pre.module().get_export_index("_start");
        let inputs = Inputs::of(pre.module());
        Self {
            abi,
            inputs,
            code: Code::Module { pre, start },
            unknown: Arc::default(),
        }
    }

    pub(crate) fn service(service: Service) -> Self {
        Self {
            abi: Abi::Service,
            inputs: Inputs::default(),
            code: Code::Service(service),
            unknown: Arc::default(),
        }
    }

    pub(crate) fn http(component: HttpComponent) -> Self {
        Self {
            abi: Abi::Http,
            inputs: Inputs::default(),
            code: Code::Http(component),
            unknown: Arc::default(),
        }
    }

    /// The core module's pre-instantiated form; an error for a component.
    pub(crate) fn pre(&self) -> Result<&InstancePre<GuestCtx>, &'static str> {
        match &self.code {
            Code::Module { pre, .. } => Ok(pre),
            Code::Service(_) | Code::Http(_) => Err(NOT_A_MODULE),
        }
    }

    /// The service, if this program is one.
    pub fn as_service(&self) -> Option<&Service> {
        match &self.code {
            Code::Service(service) => Some(service),
            _ => None,
        }
    }

    /// The HTTP component, if this program is one.
    pub fn as_http(&self) -> Option<&HttpComponent> {
        match &self.code {
            Code::Http(component) => Some(component),
            _ => None,
        }
    }

    /// How this program is called.
    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// This program called through another ABI than the detected one, if the module has what
    /// that ABI needs: `_start` for CGI, `__guest_call` for waPC (any module has exports).
    pub fn with_abi(mut self, abi: Abi) -> Result<Self, crate::CompileError> {
        let unsupported = |why: String| Err(crate::CompileError::Unsupported(why));
        let pre = match (&self.code, abi) {
            (Code::Service(_), Abi::Service) | (Code::Http(_), Abi::Http) => return Ok(self),
            (Code::Service(_) | Code::Http(_), _) => {
                return unsupported(format!(
                    "this WASI 0.2 component is called as `{}`, not as `{abi}`",
                    self.abi
                ))
            }
            (Code::Module { .. }, Abi::Service | Abi::Http) => {
                return unsupported(format!(
                    "only a WASI 0.2 component can be called as `{abi}`; this is a core module"
                ))
            }
            (Code::Module { pre, .. }, _) => pre,
        };
        let needs = match abi {
            Abi::Cgi => Some("_start"),
            Abi::Wapc => Some("__guest_call"),
            Abi::Exports | Abi::Service | Abi::Http => None,
        };
        if let Some(export) = needs {
            if pre.module().get_export_index(export).is_none() {
                return Err(crate::CompileError::Unsupported(format!(
                    "the module cannot be called as `{abi}`: it exports no `{export}`"
                )));
            }
        }
        self.abi = abi;
        Ok(self)
    }

    /// This program run as a CGI command whose handler is `export` instead of `_start` (WAGI's
    /// `entrypoint`). `export` must be a function of no parameters and no results. A module
    /// without `_start` becomes a CGI program this way, unless `abi_chosen` (another ABI was
    /// asked for explicitly).
    pub fn with_entrypoint(
        mut self,
        export: &str,
        abi_chosen: bool,
    ) -> Result<Self, crate::CompileError> {
        let unsupported = |why: String| Err(crate::CompileError::Unsupported(why));
        let Code::Module { pre, start } = &mut self.code else {
            return unsupported(format!(
                "`entrypoint = \"{export}\"` is for core modules run as CGI; this is a WASI 0.2 component"
            ));
        };
        if abi_chosen && self.abi != Abi::Cgi {
            return unsupported(format!(
                "`entrypoint = \"{export}\"` is for CGI programs; this one is called as `{}`",
                self.abi
            ));
        }
        let module = pre.module();
        match module.get_export(export) {
            Some(wasmtime::ExternType::Func(ty))
                if ty.params().len() == 0 && ty.results().len() == 0 => {}
            Some(wasmtime::ExternType::Func(ty)) => {
                return unsupported(format!(
                    "the entrypoint `{export}` must take and return nothing; it is {}",
                    crate::call::signature(export, &ty)
                ))
            }
            _ => {
                let names: Vec<&str> = module
                    .exports()
                    .filter(|e| matches!(e.ty(), wasmtime::ExternType::Func(_)))
                    .map(|e| e.name())
                    .collect();
                return unsupported(format!(
                    "the entrypoint `{export}` is not an exported function (the module exports: {})",
                    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
                ));
            }
        }
        *start = module.get_export_index(export);
        self.abi = Abi::Cgi;
        Ok(self)
    }

    /// Whether the program is a core module exporting a function named `name`.
    pub fn exports_function(&self, name: &str) -> bool {
        match &self.code {
            Code::Module { pre, .. } => matches!(
                pre.module().get_export(name),
                Some(wasmtime::ExternType::Func(_))
            ),
            Code::Service(_) | Code::Http(_) => false,
        }
    }

    /// What of a CGI request this program can read; [`Program::run_cgi`] passes it nothing
    /// else.
    pub fn inputs(&self) -> Inputs {
        self.inputs
    }

    /// Runs the program once as a CGI script, in a fresh instance, within the options' limits,
    /// with their host calls and directories.
    pub async fn run_cgi(&self, request: CgiRequest, options: &CallOptions) -> CgiOutput {
        let limits = &options.limits;
        let stdout = CappedPipe::new(limits.stdout_bytes(), Overflow::Trap);
        let log = CappedPipe::new(limits.stderr_bytes(), Overflow::Truncate);
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdin(MemoryInputPipe::new(request.stdin))
            .stdout(stdout.clone())
            .stderr(log.clone());
        if self.inputs.args {
            wasi.args(&request.args);
        }
        if self.inputs.env {
            wasi.envs(&request.env);
        }
        if let Err(fault) = options.preopen(&mut wasi) {
            return CgiOutput {
                exit: Err(fault),
                stdout: Bytes::new(),
                log: Bytes::new(),
                log_truncated: false,
            };
        }
        let mut ctx = GuestCtx::new(wasi.build_p1(), limits, log.clone());
        ctx.host = options.host.clone();
        let exit = match self.run_start(ctx).await {
            Err(Fault::Trap(_)) if stdout.overflowed() => Err(Fault::OutputTooLarge(limits.stdout)),
            result => result,
        };
        let (log, log_truncated) = log.drain();
        CgiOutput {
            exit,
            stdout: stdout.take(),
            log,
            log_truncated,
        }
    }

    /// Runs the program once as a command with the host's stdio, no time limit, and the
    /// directories in `options`; returns its exit code. Log imports go to stderr.
    pub async fn run_command(&self, options: &CommandOptions) -> Result<i32, anyhow::Error> {
        let log = CappedPipe::new(usize::MAX >> 1, Overflow::Truncate);
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdio().args(&options.args).envs(&options.env);
        for (host, guest) in &options.dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| anyhow::anyhow!("cannot open directory {}: {e:#}", host.display()))?;
        }
        let mut ctx = GuestCtx::new(wasi.build_p1(), &Limits::default(), log.clone());
        ctx.memory.limit = usize::MAX;
        ctx.deadline = None;
        let result = self.run_start(ctx).await;
        let logged = log.take();
        if !logged.is_empty() {
            eprint!("{}", String::from_utf8_lossy(&logged));
        }
        result.map_err(|fault| anyhow::anyhow!("{fault}"))
    }

    /// Instantiates and runs `_start` in a fresh store; returns the exit code or the fault.
    async fn run_start(&self, ctx: GuestCtx) -> Result<i32, Fault> {
        let Code::Module { pre, start } = &self.code else {
            return Err(Fault::Trap(NOT_A_MODULE.into()));
        };
        let deadline = ctx.deadline;
        let mut store = store(pre.module().engine(), ctx);
        let result = within(deadline, async {
            let instance = pre.instantiate_async(&mut store).await?;
            let Some(start) = start else {
                wasmtime::bail!("the module exports no `_start`; it is not a WASI command");
            };
            let start = instance
                .get_module_export(&mut store, start)
                .and_then(Extern::into_func)
                .ok_or_else(|| wasmtime::format_err!("`_start` is not a function"))?
                .typed::<(), ()>(&store)?;
            start.call_async(&mut store, ()).await
        })
        .await;
        match result {
            Ok(()) => Ok(0),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None => Err(store.data().fault(&e)),
            },
        }
    }
}

/// A one-line description of why a call failed: the trap, then the guest frames if known.
pub(crate) fn describe_trap(error: &wasmtime::Error) -> String {
    // A host function's error reaches here wrapped in the guest's backtrace, whose text
    // (`error while executing at wasm backtrace: ...`) names no cause: say the causes.
    let mut text = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => {
            let causes: Vec<String> = error
                .chain()
                .map(|cause| match cause.to_string().as_str() {
                    "missing required memory export" => {
                        "the module does not export its memory (`memory`), which WASI calls need"
                            .to_owned()
                    }
                    other => other.to_owned(),
                })
                .filter(|cause| !cause.starts_with("error while executing at wasm backtrace"))
                .collect();
            if causes.is_empty() {
                error.to_string()
            } else {
                causes.join(": ")
            }
        }
    };
    if let Some(trace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<&str> = trace
            .frames()
            .iter()
            .filter_map(|f| f.func_name())
            .take(4)
            .collect();
        if !frames.is_empty() {
            text.push_str(" (in ");
            text.push_str(&frames.join(" <- "));
            text.push(')');
        }
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{Runtime, RuntimeConfig};

    fn inputs(imports: &str) -> Inputs {
        let runtime = Runtime::new(&RuntimeConfig {
            pooling: false,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let wat =
            format!(r#"(module {imports} (memory (export "memory") 1) (func (export "_start")))"#);
        runtime.compile(wat.as_bytes()).unwrap().program.inputs()
    }

    fn import(name: &str) -> String {
        format!(r#"(import "wasi_snapshot_preview1" "{name}" (func (param i32 i32) (result i32)))"#)
    }

    #[test]
    fn inputs_follow_the_wasi_imports() {
        let none = Inputs {
            env: false,
            args: false,
            host_calls: false,
        };
        assert_eq!(inputs(""), none);
        assert_eq!(inputs(&import("environ_get")), Inputs { env: true, ..none });
        assert_eq!(
            inputs(&import("environ_sizes_get")),
            Inputs { env: true, ..none }
        );
        assert_eq!(
            inputs(&import("args_sizes_get")),
            Inputs { args: true, ..none }
        );
        let both = format!("{}{}", import("args_get"), import("environ_get"));
        assert_eq!(
            inputs(&both),
            Inputs {
                env: true,
                args: true,
                ..none
            }
        );
        let host_call = r#"(import "wapc" "__host_call" (func (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))"#;
        assert_eq!(
            inputs(host_call),
            Inputs {
                host_calls: true,
                ..none
            }
        );
    }
}
