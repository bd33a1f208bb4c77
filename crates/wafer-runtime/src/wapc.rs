//! The host side of the waPC protocol (module `wapc`), and the host calls a guest makes
//! through it.
//!
//! A call: the host calls the guest's `__guest_call(op_len, payload_len)`; the guest asks for
//! the operation name and payload with `__guest_request(op_ptr, payload_ptr)`, runs, and
//! answers with `__guest_response(ptr, len)` (returning 1) or `__guest_error(ptr, len)`
//! (returning 0). While it runs it may call the host with `__host_call(binding, namespace,
//! operation, payload)` and read the answer with `__host_response(_len)` or
//! `__host_error(_len)`, and log with `__console_log`.

use std::future::Future;
use std::pin::Pin;

use wasmtime::{Caller, Extern, Linker};

use crate::program::GuestCtx;

/// One call from a guest to its host, as `__host_call` made it.
#[derive(Debug, Clone, Copy)]
pub struct HostCall<'a> {
    /// Which host API (`wafer` for the server's own capabilities).
    pub binding: &'a str,
    /// The capability or interface within the binding (for example `log`).
    pub namespace: &'a str,
    /// The operation within the namespace.
    pub operation: &'a str,
    /// The guest's payload.
    pub payload: &'a [u8],
}

/// What a host call returns: the response bytes, or an error message for the guest.
pub type HostCallFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;

/// Answers the host calls of a guest (waPC `__host_call`).
///
/// Any `Fn(HostCall) -> Result<Vec<u8>, String>` closure is one; implement the trait directly
/// to answer asynchronously.
pub trait HostCalls: Send + Sync {
    /// Answers one call.
    fn call<'a>(&'a self, call: HostCall<'a>) -> HostCallFuture<'a>;
}

impl<F> HostCalls for F
where
    F: Fn(HostCall<'_>) -> Result<Vec<u8>, String> + Send + Sync,
{
    fn call<'a>(&'a self, call: HostCall<'a>) -> HostCallFuture<'a> {
        let answer = self(call);
        Box::pin(std::future::ready(answer))
    }
}

/// The waPC exchange of one guest call.
#[derive(Default)]
pub(crate) struct WapcState {
    /// The operation and payload of the call in progress, for `__guest_request`.
    pub(crate) operation: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    /// What the guest answered.
    pub(crate) response: Option<Vec<u8>>,
    pub(crate) error: Option<Vec<u8>>,
    /// The answer to the guest's last host call.
    host_response: Vec<u8>,
    host_error: Vec<u8>,
}

impl WapcState {
    /// Starts a call: the operation and payload the guest will ask for, no answer yet.
    pub(crate) fn start(&mut self, operation: &str, payload: &[u8]) {
        self.operation.clear();
        self.operation.extend_from_slice(operation.as_bytes());
        self.payload.clear();
        self.payload.extend_from_slice(payload);
        self.response = None;
        self.error = None;
    }
}

fn memory(caller: &mut Caller<'_, GuestCtx>, import: &str) -> wasmtime::Result<wasmtime::Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => wasmtime::bail!("wapc.{import}: the module exports no memory"),
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
        None => wasmtime::bail!("wapc.{import}: {len} bytes at {start} are out of bounds"),
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
        .map_err(|_| wasmtime::format_err!("wapc.{import}: the {what} is not UTF-8"))
}

/// Copies `bytes` into guest memory at `ptr`.
fn write(
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
            "wapc.{import}: {} bytes at {start} are out of bounds",
            bytes.len()
        ),
    }
}

fn length(bytes: &[u8]) -> i32 {
    // Bounded by the response limit, far below 2 GiB.
    i32::try_from(bytes.len()).unwrap_or(i32::MAX)
}

/// Adds the `wapc` module to the linker.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wapc",
        "__guest_request",
        |mut caller: Caller<'_, GuestCtx>, op_ptr: i32, ptr: i32| -> wasmtime::Result<()> {
            let state = std::mem::take(&mut caller.data_mut().wapc);
            let written = write(&mut caller, "__guest_request", op_ptr, &state.operation)
                .and_then(|()| write(&mut caller, "__guest_request", ptr, &state.payload));
            caller.data_mut().wapc = state;
            written
        },
    )?;
    // The guest's answer: its response, or its error message.
    for (import, is_error) in [("__guest_response", false), ("__guest_error", true)] {
        linker.func_wrap(
            "wapc",
            import,
            move |mut caller: Caller<'_, GuestCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
                caller.data().check_response_size(len)?;
                let bytes = read(&mut caller, import, ptr, len)?;
                let wapc = &mut caller.data_mut().wapc;
                *if is_error {
                    &mut wapc.error
                } else {
                    &mut wapc.response
                } = Some(bytes);
                Ok(())
            },
        )?;
    }
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
                const IMPORT: &str = "__host_call";
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
                let state = &mut caller.data_mut().wapc;
                Ok(match answer {
                    Ok(response) => {
                        state.host_response = response;
                        state.host_error.clear();
                        1
                    }
                    Err(message) => {
                        state.host_response.clear();
                        state.host_error = message.into_bytes();
                        0
                    }
                })
            })
        },
    )?;
    // The answer to the guest's last host call: the response, or the error message.
    for (import, len_import, is_error) in [
        ("__host_response", "__host_response_len", false),
        ("__host_error", "__host_error_len", true),
    ] {
        fn answer(wapc: &mut WapcState, is_error: bool) -> &mut Vec<u8> {
            if is_error {
                &mut wapc.host_error
            } else {
                &mut wapc.host_response
            }
        }
        linker.func_wrap(
            "wapc",
            import,
            move |mut caller: Caller<'_, GuestCtx>, ptr: i32| -> wasmtime::Result<()> {
                let bytes = std::mem::take(answer(&mut caller.data_mut().wapc, is_error));
                let written = write(&mut caller, import, ptr, &bytes);
                *answer(&mut caller.data_mut().wapc, is_error) = bytes;
                written
            },
        )?;
        linker.func_wrap(
            "wapc",
            len_import,
            move |mut caller: Caller<'_, GuestCtx>| -> i32 {
                length(answer(&mut caller.data_mut().wapc, is_error))
            },
        )?;
    }
    linker.func_wrap(
        "wapc",
        "__console_log",
        |mut caller: Caller<'_, GuestCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
            let mut line = read(&mut caller, "__console_log", ptr, len)?;
            line.push(b'\n');
            caller.data().log.append(&line);
            Ok(())
        },
    )?;
    Ok(())
}
