//! The host-call channel: how a guest, core module or component, asks the host for a
//! capability. Core modules call `wapc.__host_call` (see `guest`); components call WIT
//! interfaces that become the same calls (see `interfaces`).

use std::future::Future;
use std::pin::Pin;

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

/// Answers the host calls of a guest (waPC `__host_call`), whatever its ABI.
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
