//! A compiled, linked module and the ways to call it.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wasmtime::{
    Caller, Engine, Extern, InstancePre, Linker, Module, ModuleExport, PoolConcurrencyLimitError,
    ResourceLimiter, Store, UpdateDeadline,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::error::{CompileError, Fault};
use crate::limits::Limits;
use crate::output::{CappedPipe, Overflow};

/// How the host talks to a module, detected from its imports and exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Abi {
    /// A WASI preview1 command (`_start`) run CGI-style: request in env and stdin, response
    /// on stdout.
    Cgi,
}

impl Abi {
    pub(crate) fn detect(module: &Module) -> Result<Self, CompileError> {
        if module.get_export_index("__guest_call").is_some() {
            return Err(CompileError::Unsupported(
                "this is a waPC module (exports `__guest_call`); this server runs WASI command modules (CGI) so far"
                    .into(),
            ));
        }
        if module.get_export_index("_start").is_none() {
            return Err(CompileError::Unsupported(
                "the module exports no `_start` function; build it as a WASI command \
                 (for example `--target wasm32-wasip1` with a `main`)"
                    .into(),
            ));
        }
        Ok(Abi::Cgi)
    }
}

/// The parts of a CGI request a program can observe, judged from its imports: a module that
/// imports neither `environ_get` nor `environ_sizes_get` cannot read its environment, so
/// the gateway need not build one for it (a third of the cost of a small call).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inputs {
    /// The module imports WASI's `environ_get` or `environ_sizes_get`.
    pub env: bool,
    /// The module imports WASI's `args_get` or `args_sizes_get`.
    pub args: bool,
}

impl Inputs {
    fn of(module: &Module) -> Self {
        let imports = |names: [&str; 2]| {
            module
                .imports()
                .any(|i| i.module() == "wasi_snapshot_preview1" && names.contains(&i.name()))
        };
        Self {
            env: imports(["environ_get", "environ_sizes_get"]),
            args: imports(["args_get", "args_sizes_get"]),
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
    pre: InstancePre<GuestCtx>,
    start: ModuleExport,
}

/// Per-call state of a guest.
pub(crate) struct GuestCtx {
    wasi: WasiP1Ctx,
    memory: MemoryLimiter,
    deadline: Option<Instant>,
    timed_out: bool,
    log: CappedPipe,
}

/// Grants linear memory up to the function's limit and remembers a refusal, so that the trap
/// that usually follows is reported as what it is.
struct MemoryLimiter {
    limit: usize,
    exceeded: bool,
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

/// The host functions every guest may import: WASI preview1, and the logging imports of the
/// original demo (`env.log_i32`, `env.log_string`).
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<GuestCtx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx: &mut GuestCtx| &mut cx.wasi)?;
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
    pub(crate) fn new(abi: Abi, pre: InstancePre<GuestCtx>) -> Result<Self, CompileError> {
        let start = pre
            .module()
            .get_export_index("_start")
            .ok_or_else(|| CompileError::Unsupported("the module exports no `_start`".into()))?;
        let inputs = Inputs::of(pre.module());
        Ok(Self {
            abi,
            inputs,
            pre,
            start,
        })
    }

    /// How this program is called.
    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// What of a CGI request this program can read; [`Program::run_cgi`] passes it nothing
    /// else.
    pub fn inputs(&self) -> Inputs {
        self.inputs
    }

    /// Runs the program once as a CGI script, in a fresh instance, within `limits`.
    pub async fn run_cgi(&self, request: CgiRequest, limits: &Limits) -> CgiOutput {
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
        let wasi = wasi.build_p1();
        let ctx = GuestCtx {
            wasi,
            memory: MemoryLimiter {
                limit: limits.memory_bytes(),
                exceeded: false,
            },
            deadline: Some(Instant::now() + limits.timeout),
            timed_out: false,
            log: log.clone(),
        };
        let (result, ctx) = self.call(ctx).await;
        let exit = match result {
            Ok(code) => Ok(code),
            Err(_) if ctx.timed_out => Err(Fault::Timeout(limits.timeout)),
            Err(_) if ctx.memory.exceeded => Err(Fault::OutOfMemory(limits.memory)),
            Err(_) if stdout.overflowed() => Err(Fault::OutputTooLarge(limits.stdout)),
            Err(fault) => Err(fault),
        };
        CgiOutput {
            exit,
            stdout: stdout.take(),
            log_truncated: log.overflowed(),
            log: log.take(),
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
        let ctx = GuestCtx {
            wasi: wasi.build_p1(),
            memory: MemoryLimiter {
                limit: usize::MAX,
                exceeded: false,
            },
            deadline: None,
            timed_out: false,
            log: log.clone(),
        };
        let (result, _) = self.call(ctx).await;
        let logged = log.take();
        if !logged.is_empty() {
            eprint!("{}", String::from_utf8_lossy(&logged));
        }
        result.map_err(|fault| anyhow::anyhow!("{fault}"))
    }

    /// Instantiates and runs `_start` in a fresh store. Returns the exit code or the fault,
    /// and the store's state for the caller to classify the fault with.
    async fn call(&self, ctx: GuestCtx) -> (Result<i32, Fault>, GuestCtx) {
        let mut store = Store::new(self.pre.module().engine(), ctx);
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
        let result = async {
            let instance = self.pre.instantiate_async(&mut store).await?;
            let start = instance
                .get_module_export(&mut store, &self.start)
                .and_then(Extern::into_func)
                .ok_or_else(|| wasmtime::format_err!("`_start` is not a function"))?
                .typed::<(), ()>(&store)?;
            start.call_async(&mut store, ()).await
        }
        .await;
        let outcome = match result {
            Ok(()) => Ok(0),
            Err(e) => match e.downcast_ref::<I32Exit>() {
                Some(exit) => Ok(exit.0),
                None if e.is::<PoolConcurrencyLimitError>() => Err(Fault::Busy),
                None => Err(Fault::Trap(describe_trap(&e))),
            },
        };
        (outcome, store.into_data())
    }
}

/// A one-line description of why a call failed: the trap, then the guest frames if known.
fn describe_trap(error: &wasmtime::Error) -> String {
    let mut text = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
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
                args: true
            }
        );
    }
}
