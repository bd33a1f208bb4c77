//! The bounds every call runs within, whatever its ABI: linear memory up to the limit, a
//! deadline, and a one-line description of how a call failed.

use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime_wasi::WasiCtxBuilder;

use crate::error::Fault;
use crate::ticker::Running;

/// Grants linear memory up to the function's limit and remembers a refusal, so that the trap
/// that usually follows is reported as what it is.
pub(crate) struct MemoryLimiter {
    pub(crate) limit: usize,
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
/// [`DeadlinePassed`]. Every call into a core module goes through this; it keeps the epoch
/// ticking while the call runs.
pub(crate) async fn within<T>(
    deadline: Option<Instant>,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let _running = Running::start();
    match deadline {
        None => call.await,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call)
            .await
            .unwrap_or_else(|_| Err(wasmtime::Error::new(DeadlinePassed))),
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

/// A host directory a guest may use, at a path of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host.
    pub host: std::path::PathBuf,
    /// Where the guest finds it.
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// Pre-opens `dirs` in a WASI context (core modules and components alike).
pub(crate) fn preopen(wasi: &mut WasiCtxBuilder, dirs: &[Preopen]) -> Result<(), Fault> {
    for dir in dirs {
        let perms = if dir.read_only {
            wasmtime_wasi::FsPerms::ReadOnly
        } else {
            wasmtime_wasi::FsPerms::ReadWrite
        };
        wasi.preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| {
                Fault::Trap(format!(
                    "cannot open the granted directory {}: {e}",
                    dir.host.display()
                ))
            })?;
    }
    Ok(())
}
