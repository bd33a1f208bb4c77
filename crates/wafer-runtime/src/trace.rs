//! Whether trace spans are made, and the runtime's own: creating an instance
//! (`wafer.instantiate`), within the span of the call that needed it.
//!
//! Spans are `tracing` spans with the target [`TARGET`], made only while tracing is on
//! ([`enabled`]): an embedder (the Wafer server, with an OTLP exporter configured) turns it
//! on with [`enable`] and gives `tracing` a layer that exports them. Off, nothing here does
//! any work beyond one atomic load.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::Empty;
use tracing::{Instrument as _, Span};

/// The `tracing` target of Wafer's trace spans.
pub const TARGET: &str = "wafer::otel";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns tracing on for this process.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether spans are made and context handed on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span of creating an instance, within the current span; none while tracing is off.
pub(crate) fn instantiate_span() -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "wafer.instantiate",
        otel.name = "instantiate",
        otel.status_code = Empty,
        otel.status_description = Empty,
    )
}

/// Runs `instantiate` (an instance being created) within `span`, noting on it a failure.
pub(crate) async fn instantiating<T, E: std::fmt::Display>(
    span: Span,
    instantiate: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    if span.is_none() {
        return instantiate.await;
    }
    let result = instantiate.instrument(span.clone()).await;
    if let Err(e) = &result {
        span.record("otel.status_code", "error");
        span.record("otel.status_description", e.to_string());
    }
    result
}

/// Awaits `$instantiate` (an instance being made), while tracing is on within a new
/// `wafer.instantiate` span under the current one. A macro, not a function: tracing off,
/// the future is awaited where it is made (a wrapping future would cost a copy of it), and
/// tracing on, the wrapped one is on the heap (so the caller's future is no bigger).
macro_rules! instantiated {
    ($instantiate:expr) => {
        match $crate::trace::enabled() {
            false => $instantiate.await,
            true => {
                let span = $crate::trace::instantiate_span();
                Box::pin($crate::trace::instantiating(span, $instantiate)).await
            }
        }
    };
}
pub(crate) use instantiated;
