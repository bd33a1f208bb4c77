//! Trace context: the W3C `traceparent`/`tracestate` a request, a queued call or a message
//! carries, continued in Wafer's spans and handed on to what they call.
//!
//! Wafer's spans are `tracing` spans with the target [`TARGET`], made only while tracing is
//! on ([`enabled`]: the server turned it on at start, with an OTLP exporter configured).
//! Off, nothing here does any work: each function answers at once, and no span is made.
//! The propagator is the one set globally (`opentelemetry::global`), W3C trace context.

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

pub use wafer_runtime::trace::{enable, enabled, TARGET};

/// The propagation fields (`traceparent`, `tracestate`) of a context, as header pairs:
/// what a queued call's record or a message carries.
pub type Carrier = Vec<(String, String)>;

/// Makes `span` continue the trace whose context `headers` carry, if they carry one.
pub fn continue_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !enabled() || span.is_none() {
        return;
    }
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderMapCarrier(headers)));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Makes `span` continue the trace whose context the pairs carry (header names in lower
/// case), if they carry one.
pub fn continue_from(span: &tracing::Span, pairs: &[(String, String)]) {
    if !enabled() || span.is_none() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&PairsCarrier(pairs)));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's context into `headers` (`traceparent`, `tracestate`),
/// replacing what they had; leaves them as they are when there is no current trace.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    if !enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return;
    }
    headers.remove("tracestate");
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderMapInjector(headers))
    });
}

/// The current span's context as header pairs; empty when there is no current trace.
pub fn carrier() -> Carrier {
    let mut pairs = Carrier::new();
    if !enabled() {
        return pairs;
    }
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&cx, &mut PairsInjector(&mut pairs))
        });
    }
    pairs
}

/// Replaces the propagation fields among `pairs` (header pairs) with the current span's
/// context, when there is one.
pub fn replace_in(pairs: &mut Vec<(String, String)>) {
    let current = carrier();
    if current.is_empty() {
        return;
    }
    pairs.retain(|(name, _)| !is_field(name));
    pairs.extend(current);
}

/// Renames `span` (its OpenTelemetry name; `otel.name` recorded after the span started
/// would be ignored), as when the route a request matched is known.
pub fn rename(span: &tracing::Span, name: String) {
    if !enabled() || span.is_none() {
        return;
    }
    span.context().span().update_name(name);
}

/// Whether a header name (lower case) is one of the propagation fields.
pub fn is_field(name: &str) -> bool {
    name.eq_ignore_ascii_case("traceparent") || name.eq_ignore_ascii_case("tracestate")
}

/// The trace id and span id (lower-case hex) of the span entered on this thread, if it
/// belongs to a trace: what log lines carry.
pub fn ids() -> Option<(String, String)> {
    if !enabled() {
        return None;
    }
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let span = span.span_context();
    span.is_valid()
        .then(|| (span.trace_id().to_string(), span.span_id().to_string()))
}

struct HeaderMapCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderMapCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderMapInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderMapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct PairsInjector<'a>(&'a mut Carrier);

impl Injector for PairsInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

struct PairsCarrier<'a>(&'a [(String, String)]);

impl Extractor for PairsCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let (_, value) = self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))?;
        Some(value)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_does_nothing() {
        // Tracing is never enabled in this test binary.
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static("00-x"));
        inject_headers(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(carrier().is_empty());
        assert!(ids().is_none());
        let mut pairs = vec![("traceparent".to_owned(), "00-x".to_owned())];
        replace_in(&mut pairs);
        assert_eq!(pairs.len(), 1);
    }

    #[test]
    fn fields() {
        assert!(is_field("traceparent"));
        assert!(is_field("TraceState"));
        assert!(!is_field("x-trace"));
    }
}
