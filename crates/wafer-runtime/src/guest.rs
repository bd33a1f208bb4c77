//! The core every core-module ABI shares: the state of one instance ([`GuestCtx`]), the store
//! that bounds it, the imports every module may link (WASI, the log imports, and the host-call
//! channel `wapc.__host_call`), and [`Instance`], a module instance kept for several calls.
//!
//! The ABIs build on this and not on each other: `cgi` runs `_start`, `wapc` calls
//! `__guest_call`, `exports` calls plain exports.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use wasmtime::{
    Caller, Engine, Extern, ExternType, Func, FuncType, InstancePre, Linker, Module,
    PoolConcurrencyLimitError, Store, UpdateDeadline, ValType,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::error::{CallError, Fault};
use crate::host_call::{HostCall, HostCalls};
use crate::output::{CappedPipe, Overflow};
use crate::sandbox::{
    describe_trap, preopen, within, DeadlinePassed, MemoryLimiter, OutputLimit, Preopen,
};
use wafer_abi::{Abi, Limits};

/// How to run calls: the limits, who answers the guest's host calls, and the directories
/// the guest may open.
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Memory and time (per call) and the size of answers and logs.
    pub limits: Limits,
    /// Answers waPC `__host_call`s; without it every host call fails with a message.
    pub host: Option<Arc<dyn HostCalls>>,
    /// Host directories pre-opened for the guest; none by default.
    pub dirs: Vec<Preopen>,
}

impl CallOptions {
    /// Options with these limits, no host calls and no directories.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// Adds the pre-opened directories to a WASI context.
    pub(crate) fn preopen(&self, wasi: &mut WasiCtxBuilder) -> Result<(), Fault> {
        preopen(wasi, &self.dirs)
    }

    /// Answers the guest's host calls with `host`.
    pub fn host(mut self, host: impl HostCalls + 'static) -> Self {
        self.host = Some(Arc::new(host));
        self
    }
}

/// The state of one instance, as host functions see it (through `wasmtime::Caller`); its
/// contents are private to the runtime.
pub struct GuestCtx {
    wasi: WasiP1Ctx,
    pub(crate) memory: MemoryLimiter,
    pub(crate) deadline: Option<Instant>,
    pub(crate) timed_out: bool,
    pub(crate) log: CappedPipe,
    /// The waPC exchange of the `__guest_call` in progress.
    pub(crate) exchange: Exchange,
    /// Who answers the guest's host calls, and the answer to its last one.
    pub(crate) host: Option<Arc<dyn HostCalls>>,
    host_response: Vec<u8>,
    host_error: Vec<u8>,
    /// Largest answer (waPC response or error, returned bytes) the guest may give.
    pub(crate) response_limit: usize,
    /// The limit as configured, for messages.
    pub(crate) limits: Limits,
}

/// The operation, payload and answer of one waPC `__guest_call`.
#[derive(Default)]
pub(crate) struct Exchange {
    /// The operation and payload of the call in progress, for `__guest_request`.
    pub(crate) operation: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    /// What the guest answered.
    pub(crate) response: Option<Vec<u8>>,
    pub(crate) error: Option<Vec<u8>>,
}

impl GuestCtx {
    pub(crate) fn new(wasi: WasiP1Ctx, limits: &Limits, log: CappedPipe) -> Self {
        Self {
            wasi,
            memory: MemoryLimiter::new(limits.memory_bytes()),
            deadline: Some(limits.deadline(Instant::now())),
            timed_out: false,
            log,
            exchange: Exchange::default(),
            host: None,
            host_response: Vec::new(),
            host_error: Vec::new(),
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

/// The imports every core module may link: WASI preview 1 and preview 0, the logging imports
/// of the original demo (`env.log_i32`, `env.log_string`), and the host-call channel of the
/// `wapc` module (`__host_call`, its answer, `__console_log`), which guests of every ABI use
/// to reach the host's capabilities.
pub(crate) fn linker(engine: &Engine) -> wasmtime::Result<Linker<GuestCtx>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |cx: &mut GuestCtx| &mut cx.wasi)?;
    // `wasi_unstable` (preview 0), which older toolchains (TinyGo, older Rust and
    // AssemblyScript) still emit.
    wasmtime_wasi::p0::add_to_linker_async(&mut linker, |cx: &mut GuestCtx| &mut cx.wasi)?;
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
            let mut line = read(&mut caller, "env.log_string", ptr, len)?;
            line.push(b'\n');
            caller
                .data()
                .log
                .append(String::from_utf8_lossy(&line).as_bytes());
            Ok(())
        },
    )?;
    add_host_calls(&mut linker)?;
    Ok(linker)
}

/// The guest's exported memory; `import` names the import that needs it, for the error.
fn memory(caller: &mut Caller<'_, GuestCtx>, import: &str) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => wasmtime::bail!("{import}: the module exports no memory"),
    }
}

/// Copies `len` guest bytes at `ptr`. Guest pointers and lengths are unsigned 32-bit.
pub(crate) fn read(
    caller: &mut Caller<'_, GuestCtx>,
    import: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<Vec<u8>> {
    let memory = memory(caller, import)?;
    let (start, len) = (ptr as u32 as usize, len as u32 as usize);
    match memory.data(&caller).get(start..start.saturating_add(len)) {
        Some(bytes) => Ok(bytes.to_vec()),
        None => wasmtime::bail!("{import}: {len} bytes at {start} are out of bounds"),
    }
}

fn read_str(
    caller: &mut Caller<'_, GuestCtx>,
    import: &str,
    what: &str,
    ptr: i32,
    len: i32,
) -> wasmtime::Result<String> {
    String::from_utf8(read(caller, import, ptr, len)?)
        .map_err(|_| wasmtime::format_err!("{import}: the {what} is not UTF-8"))
}

/// Copies `bytes` into guest memory at `ptr`.
pub(crate) fn write(
    caller: &mut Caller<'_, GuestCtx>,
    import: &str,
    ptr: i32,
    bytes: &[u8],
) -> wasmtime::Result<()> {
    let memory = memory(caller, import)?;
    let start = ptr as u32 as usize;
    match memory
        .data_mut(&mut *caller)
        .get_mut(start..start.saturating_add(bytes.len()))
    {
        Some(dest) => {
            dest.copy_from_slice(bytes);
            Ok(())
        }
        None => wasmtime::bail!(
            "{import}: {} bytes at {start} are out of bounds",
            bytes.len()
        ),
    }
}

fn length(bytes: &[u8]) -> i32 {
    // Bounded by the response limit, far below 2 GiB.
    i32::try_from(bytes.len()).unwrap_or(i32::MAX)
}

/// `wapc.__host_call(binding, namespace, operation, payload)`, the answer to it
/// (`__host_response(_len)` or `__host_error(_len)`), and `__console_log`.
fn add_host_calls(linker: &mut Linker<GuestCtx>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        "wapc",
        "__host_call",
        |mut caller: Caller<'_, GuestCtx>,
         (bd_ptr, bd_len, ns_ptr, ns_len, op_ptr, op_len, ptr, len): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                const IMPORT: &str = "wapc.__host_call";
                let binding = read_str(&mut caller, IMPORT, "binding", bd_ptr, bd_len)?;
                let namespace = read_str(&mut caller, IMPORT, "namespace", ns_ptr, ns_len)?;
                let operation = read_str(&mut caller, IMPORT, "operation", op_ptr, op_len)?;
                let payload = read(&mut caller, IMPORT, ptr, len)?;
                let call = HostCall {
                    binding: &binding,
                    namespace: &namespace,
                    operation: &operation,
                    payload: &payload,
                };
                let answer = match caller.data().host.clone() {
                    Some(host) => host.call(call).await,
                    None => Err(format!(
                        "denied: no host calls are available to this guest (called {binding}/{namespace}/{operation})"
                    )),
                };
                let cx = caller.data_mut();
                Ok(match answer {
                    Ok(response) => {
                        cx.host_response = response;
                        cx.host_error.clear();
                        1
                    }
                    Err(message) => {
                        cx.host_response.clear();
                        cx.host_error = message.into_bytes();
                        0
                    }
                })
            })
        },
    )?;
    // The answer to the guest's last host call: the response, or the error message.
    for (import, len_import, is_error) in [
        ("wapc.__host_response", "__host_response_len", false),
        ("wapc.__host_error", "__host_error_len", true),
    ] {
        fn answer(cx: &mut GuestCtx, is_error: bool) -> &mut Vec<u8> {
            if is_error {
                &mut cx.host_error
            } else {
                &mut cx.host_response
            }
        }
        let name = import.trim_start_matches("wapc.");
        linker.func_wrap(
            "wapc",
            name,
            move |mut caller: Caller<'_, GuestCtx>, ptr: i32| -> wasmtime::Result<()> {
                let bytes = std::mem::take(answer(caller.data_mut(), is_error));
                let written = write(&mut caller, import, ptr, &bytes);
                *answer(caller.data_mut(), is_error) = bytes;
                written
            },
        )?;
        linker.func_wrap(
            "wapc",
            len_import,
            move |mut caller: Caller<'_, GuestCtx>| -> i32 {
                length(answer(caller.data_mut(), is_error))
            },
        )?;
    }
    linker.func_wrap(
        "wapc",
        "__console_log",
        |mut caller: Caller<'_, GuestCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let mut line = read(&mut caller, "wapc.__console_log", ptr, len)?;
            line.push(b'\n');
            caller.data().log.append(&line);
            Ok(())
        },
    )?;
    Ok(())
}

/// How a waPC guest words "unknown operation" (the text before and after the name), learned
/// once per program and shared by its instances; see the `wapc` module.
pub(crate) type Wording = Arc<tokio::sync::OnceCell<Option<(String, String)>>>;

/// An instance of a program with its own memory, kept across calls.
///
/// [`Program::instantiate`](crate::Program::instantiate) makes one; a fresh instance per call
/// is what [`Program::call`](crate::Program::call) and
/// [`Program::call_wapc`](crate::Program::call_wapc) do. After a call that traps or times out
/// the instance refuses further calls ([`CallError::Poisoned`]).
pub struct Instance {
    pub(crate) store: Store<GuestCtx>,
    pub(crate) instance: wasmtime::Instance,
    pub(crate) pre: InstancePre<GuestCtx>,
    abi: Abi,
    pub(crate) wording: Wording,
    timeout: std::time::Duration,
    poisoned: Option<Fault>,
}

impl Instance {
    /// Creates an instance of `pre`, called as `abi`, and runs the exports in `inits` that it
    /// has, in order. A command's `_start` is its whole program: only an ABI that asks for it
    /// runs it here.
    pub(crate) async fn new(
        pre: &InstancePre<GuestCtx>,
        abi: Abi,
        wording: &Wording,
        inits: &[&str],
        options: &CallOptions,
    ) -> Result<Self, CallError> {
        let limits = &options.limits;
        let log = CappedPipe::new(limits.stderr_bytes(), Overflow::Truncate);
        // Guests built for WASI may print; both streams go to the log. No environment, no
        // arguments, and only the granted directories.
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(log.clone()).stderr(log.clone());
        options.preopen(&mut wasi).map_err(CallError::Fault)?;
        let mut ctx = GuestCtx::new(wasi.build_p1(), limits, log);
        ctx.host = options.host.clone();
        let mut store = store(pre.module().engine(), ctx);
        let deadline = store.data().deadline;
        let instance = match crate::trace::instantiated!(within(
            deadline,
            pre.instantiate_async(&mut store)
        )) {
            Ok(instance) => instance,
            Err(e) => return Err(CallError::Fault(store.data().fault(&e))),
        };
        let mut instance = Instance {
            store,
            instance,
            pre: pre.clone(),
            abi,
            wording: wording.clone(),
            timeout: limits.timeout,
            poisoned: None,
        };
        for &init in inits {
            if let Some(func) = instance.func(init) {
                let deadline = instance.begin()?;
                let result =
                    within(deadline, func.call_async(&mut instance.store, &[], &mut [])).await;
                match result {
                    Err(e) if e.downcast_ref::<I32Exit>().is_some_and(|exit| exit.0 == 0) => {}
                    result => instance.finish(result)?,
                }
            }
        }
        Ok(instance)
    }

    /// The ABI of the program this is an instance of.
    pub fn abi(&self) -> Abi {
        self.abi
    }

    /// Takes the log lines written so far: stderr, stdout (outside CGI) and log imports.
    pub fn take_log(&mut self) -> Bytes {
        self.store.data().log.take()
    }

    /// Whether log output went past the stderr limit and was cut.
    pub fn log_truncated(&self) -> bool {
        self.store.data().log.overflowed()
    }

    pub(crate) fn func(&mut self, name: &str) -> Option<Func> {
        self.instance
            .get_export(&mut self.store, name)
            .and_then(Extern::into_func)
    }

    /// Starts the clock for one call; returns its deadline, for [`within`].
    pub(crate) fn begin(&mut self) -> Result<Option<Instant>, CallError> {
        if let Some(fault) = &self.poisoned {
            return Err(CallError::Poisoned(fault.clone()));
        }
        let cx = self.store.data_mut();
        let deadline = Some(wafer_abi::deadline_after(Instant::now(), self.timeout));
        cx.deadline = deadline;
        cx.timed_out = false;
        self.store.set_epoch_deadline(1);
        Ok(deadline)
    }

    /// The deadline of the call under way.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.store.data().deadline
    }

    /// Ends one call: a failure poisons the instance.
    pub(crate) fn finish<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, CallError> {
        result.map_err(|e| {
            let fault = self.store.data().fault(&e);
            self.poisoned = Some(fault.clone());
            CallError::Fault(fault)
        })
    }
}

/// The functions a module exports, for messages: `a, b, c`, or `none`.
pub(crate) fn function_names(module: &Module) -> String {
    let names: Vec<&str> = module
        .exports()
        .filter(|e| matches!(e.ty(), ExternType::Func(_)))
        .map(|e| e.name())
        .collect();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(", ")
    }
}

pub(crate) fn type_name(ty: &ValType) -> &'static str {
    match ty {
        ValType::I32 => "i32",
        ValType::I64 => "i64",
        ValType::F32 => "f32",
        ValType::F64 => "f64",
        ValType::V128 => "v128",
        ValType::Ref(_) => "ref",
    }
}

/// `name(i32, i32) -> i32`
pub(crate) fn signature(name: &str, ty: &FuncType) -> String {
    let params: Vec<&str> = ty.params().map(|t| type_name(&t)).collect();
    let results: Vec<&str> = ty.results().map(|t| type_name(&t)).collect();
    let mut text = format!("{name}({})", params.join(", "));
    match results.len() {
        0 => {}
        1 => text.push_str(&format!(" -> {}", results[0])),
        _ => text.push_str(&format!(" -> ({})", results.join(", "))),
    }
    text
}
