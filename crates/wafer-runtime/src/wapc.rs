//! The waPC ABI: a module exporting `__guest_call`, called by operation name with a byte
//! payload.
//!
//! A call: the host calls the guest's `__guest_call(op_len, payload_len)`; the guest asks for
//! the operation name and payload with `__guest_request(op_ptr, payload_ptr)`, runs, and
//! answers with `__guest_response(ptr, len)` (returning 1) or `__guest_error(ptr, len)`
//! (returning 0). While it runs it may call the host with `__host_call` (the host-call
//! channel every ABI shares, in `guest`).

use wasmtime::{Caller, InstancePre, Linker};

use crate::error::CallError;
use crate::guest::{read, write, CallOptions, GuestCtx, Instance, Wording};
use crate::sandbox::within;
use wafer_abi::{Abi, Limits};

/// The exports an instance of a waPC module runs before its first call, those it has: a
/// reactor's `_initialize`, a module built as a command's `_start`, and `wapc_init`.
pub(crate) const INITS: &[&str] = &["_initialize", "_start", "wapc_init"];

/// Adds the guest's side of the exchange to the linker: `__guest_request` and the answer,
/// `__guest_response` or `__guest_error`.
pub(crate) fn add_to_linker(linker: &mut Linker<GuestCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(
        "wapc",
        "__guest_request",
        |mut caller: Caller<'_, GuestCtx>, op_ptr: i32, ptr: i32| -> wasmtime::Result<()> {
            const IMPORT: &str = "wapc.__guest_request";
            let exchange = std::mem::take(&mut caller.data_mut().exchange);
            let written = write(&mut caller, IMPORT, op_ptr, &exchange.operation)
                .and_then(|()| write(&mut caller, IMPORT, ptr, &exchange.payload));
            caller.data_mut().exchange = exchange;
            written
        },
    )?;
    for (name, is_error) in [("__guest_response", false), ("__guest_error", true)] {
        linker.func_wrap(
            "wapc",
            name,
            move |mut caller: Caller<'_, GuestCtx>, ptr: i32, len: i32| -> wasmtime::Result<()> {
                caller.data().check_response_size(len)?;
                let import = if is_error {
                    "wapc.__guest_error"
                } else {
                    "wapc.__guest_response"
                };
                let bytes = read(&mut caller, import, ptr, len)?;
                let exchange = &mut caller.data_mut().exchange;
                *if is_error {
                    &mut exchange.error
                } else {
                    &mut exchange.response
                } = Some(bytes);
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// The operation Wafer calls to learn how a waPC guest words "no such operation": no guest
/// has a handler for it.
const PROBE_OPERATION: &str = "wafer.no-such-operation.7f3a9c";

impl Instance {
    /// Calls a waPC operation: the guest's answer, or its error
    /// ([`CallError::UnknownOperation`] when the guest has no such operation).
    pub async fn call_wapc(
        &mut self,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        match self.guest_call(operation, payload).await {
            Err(CallError::Guest(message))
                if is_unknown_operation(
                    &self.pre,
                    &self.wording,
                    operation,
                    &message,
                    self.store.data().limits,
                )
                .await =>
            {
                Err(CallError::UnknownOperation(operation.to_owned()))
            }
            result => result,
        }
    }

    /// One `__guest_call`: the guest's answer, or its error as it words it.
    async fn guest_call(&mut self, operation: &str, payload: &[u8]) -> Result<Vec<u8>, CallError> {
        if self.abi() != Abi::Wapc {
            return Err(CallError::Unsupported(format!(
                "not a waPC module (it exports no `__guest_call`; its ABI is {})",
                self.abi()
            )));
        }
        let guest_call = self
            .func("__guest_call")
            .ok_or_else(|| CallError::Unsupported("`__guest_call` is not a function".into()))?
            .typed::<(i32, i32), i32>(&self.store)
            .map_err(|_| CallError::Signature {
                signature: "__guest_call".into(),
                problem: "must be (i32, i32) -> i32".into(),
            })?;
        let too_large = |what: &str, len: usize| {
            i32::try_from(len).map_err(|_| {
                CallError::Unsupported(format!("the {what} is too large ({len} bytes)"))
            })
        };
        let op_len = too_large("operation name", operation.len())?;
        let len = too_large("payload", payload.len())?;
        let deadline = self.begin()?;
        let exchange = &mut self.store.data_mut().exchange;
        exchange.operation.clear();
        exchange.operation.extend_from_slice(operation.as_bytes());
        exchange.payload.clear();
        exchange.payload.extend_from_slice(payload);
        exchange.response = None;
        exchange.error = None;
        let result = within(
            deadline,
            guest_call.call_async(&mut self.store, (op_len, len)),
        )
        .await;
        let ok = self.finish(result)?;
        let exchange = &mut self.store.data_mut().exchange;
        let (response, error) = (exchange.response.take(), exchange.error.take());
        match (ok, response, error) {
            (1, Some(response), _) => Ok(response),
            (1, None, _) => Ok(Vec::new()),
            (_, _, Some(error)) => Err(CallError::Guest(
                String::from_utf8_lossy(&error).into_owned(),
            )),
            (code, _, None) => Err(CallError::Guest(format!(
                "the guest failed (`__guest_call` returned {code}) without an error message"
            ))),
        }
    }
}

/// Whether `message`, the error a waPC guest returned for `operation`, is the guest's
/// way of saying it has no such operation.
///
/// Every waPC SDK words this differently (`No handler registered for function ...`,
/// `Could not find function "..."`, ...), so Wafer asks the guest itself: once per
/// program it calls an operation that cannot exist, in a fresh instance without host
/// calls, and keeps the error with the operation's name cut out. An error that reads the
/// same with `operation` in that place means "unknown operation". A guest that answers
/// the probe, or fails it some other way, never has unknown operations.
async fn is_unknown_operation(
    pre: &InstancePre<GuestCtx>,
    wording: &Wording,
    operation: &str,
    message: &str,
    limits: Limits,
) -> bool {
    if !message.contains(operation) {
        return false;
    }
    let learned = wording
        .get_or_init(|| async {
            let options = CallOptions::new(limits);
            let mut probe = Instance::new(pre, Abi::Wapc, wording, INITS, &options)
                .await
                .ok()?;
            match probe.guest_call(PROBE_OPERATION, b"").await {
                Err(CallError::Guest(said)) => {
                    let (before, after) = said.split_once(PROBE_OPERATION)?;
                    Some((before.to_owned(), after.to_owned()))
                }
                _ => None,
            }
        })
        .await;
    learned.as_ref().is_some_and(|(before, after)| {
        message
            .strip_prefix(before.as_str())
            .and_then(|rest| rest.strip_suffix(after.as_str()))
            == Some(operation)
    })
}
