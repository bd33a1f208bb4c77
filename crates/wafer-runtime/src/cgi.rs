//! The CGI ABI (WAGI's): a WASI command whose `_start` (or a chosen entrypoint) reads the
//! request from its environment, arguments and stdin, and writes the response to stdout.
//! Also `wafer run`: a command with the host's own stdio.

use std::path::PathBuf;

use bytes::Bytes;
use wasmtime::{Extern, ExternType, InstancePre, Module, ModuleExport};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use crate::error::{CompileError, Fault};
use crate::guest::{function_names, signature, store, CallOptions, GuestCtx};
use crate::output::{CappedPipe, Overflow};
use crate::sandbox::within;
use wafer_abi::Limits;

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
    pub(crate) fn of(module: &Module) -> Self {
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

impl CgiOutput {
    /// A call that could not start.
    pub(crate) fn failed(fault: Fault) -> Self {
        CgiOutput {
            exit: Err(fault),
            stdout: Bytes::new(),
            log: Bytes::new(),
            log_truncated: false,
        }
    }
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
    /// The host's network: sockets (TCP, UDP, name lookups) and outgoing HTTP to anywhere,
    /// for a component. Denied when false.
    pub network: bool,
}

impl CommandOptions {
    /// WASI for a command: the host's stdio, these arguments, environment and directories.
    pub(crate) fn wasi(&self) -> anyhow::Result<WasiCtxBuilder> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdio().args(&self.args).envs(&self.env);
        for (host, guest) in &self.dirs {
            wasi.preopened_dir(host, guest, FsPerms::ReadWrite)
                .map_err(|e| anyhow::anyhow!("cannot open directory {}: {e:#}", host.display()))?;
        }
        Ok(wasi)
    }
}

/// The CGI handler of a module: `_start`, or the export a manifest names as its entrypoint.
#[derive(Clone)]
pub(crate) struct Entry(Option<ModuleExport>);

impl Entry {
    /// `_start`, if the module exports it.
    pub(crate) fn start(module: &Module) -> Self {
        Entry(module.get_export_index("_start"))
    }

    /// `export`, which must be a function of no parameters and no results (WAGI's
    /// `entrypoint`).
    pub(crate) fn named(module: &Module, export: &str) -> Result<Self, CompileError> {
        let unsupported = |why: String| Err(CompileError::Unsupported(why));
        match module.get_export(export) {
            Some(ExternType::Func(ty)) if ty.params().len() == 0 && ty.results().len() == 0 => {
                Ok(Entry(module.get_export_index(export)))
            }
            Some(ExternType::Func(ty)) => unsupported(format!(
                "the entrypoint `{export}` must take and return nothing; it is {}",
                signature(export, &ty)
            )),
            _ => unsupported(format!(
                "the entrypoint `{export}` is not an exported function (the module exports: {})",
                function_names(module)
            )),
        }
    }
}

/// Runs `pre` once as a CGI script, in a fresh instance, within the options' limits, with
/// their host calls and directories; it sees only the `inputs` it can read.
pub(crate) async fn run(
    pre: &InstancePre<GuestCtx>,
    entry: &Entry,
    inputs: Inputs,
    request: CgiRequest,
    options: &CallOptions,
) -> CgiOutput {
    let limits = &options.limits;
    let stdout = CappedPipe::new(limits.stdout_bytes(), Overflow::Trap);
    let log = CappedPipe::new(limits.stderr_bytes(), Overflow::Truncate);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdin(MemoryInputPipe::new(request.stdin))
        .stdout(stdout.clone())
        .stderr(log.clone());
    if inputs.args {
        wasi.args(&request.args);
    }
    if inputs.env {
        wasi.envs(&request.env);
    }
    if let Err(fault) = options.preopen(&mut wasi) {
        return CgiOutput::failed(fault);
    }
    let mut ctx = GuestCtx::new(wasi.build_p1(), limits, log.clone());
    ctx.host = options.host.clone();
    let exit = match run_entry(pre, entry, ctx).await {
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

/// Runs `pre` once as a command with the host's stdio, no time limit, and the directories in
/// `options`; returns its exit code. Log imports go to stderr.
pub(crate) async fn run_command(
    pre: &InstancePre<GuestCtx>,
    entry: &Entry,
    options: &CommandOptions,
) -> Result<i32, anyhow::Error> {
    let log = CappedPipe::new(usize::MAX >> 1, Overflow::Truncate);
    let mut ctx = GuestCtx::new(options.wasi()?.build_p1(), &Limits::default(), log.clone());
    ctx.memory.limit = usize::MAX;
    ctx.deadline = None;
    let result = run_entry(pre, entry, ctx).await;
    let logged = log.take();
    if !logged.is_empty() {
        eprint!("{}", String::from_utf8_lossy(&logged));
    }
    result.map_err(|fault| anyhow::anyhow!("{fault}"))
}

/// Instantiates and runs the entry in a fresh store; returns the exit code or the fault.
async fn run_entry(
    pre: &InstancePre<GuestCtx>,
    entry: &Entry,
    ctx: GuestCtx,
) -> Result<i32, Fault> {
    let deadline = ctx.deadline;
    let mut store = store(pre.module().engine(), ctx);
    let result = within(deadline, async {
        let instance = crate::trace::instantiated!(pre.instantiate_async(&mut store))?;
        let Some(start) = &entry.0 else {
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
