//! The function plane's trace spans (`docs/operations.md#tracing`), named and attributed by
//! the OpenTelemetry semantic conventions: the server request (`http.server`), the
//! function call within it (`wafer.call`), an asynchronous call queued (`wafer.enqueue`)
//! and run (`wafer.async_run`), a message delivered (`wafer.deliver`). The host calls'
//! spans are `wafer-host`'s.
//!
//! Each is made only while tracing is on ([`wafer_host::trace::enabled`]); off, every
//! function here returns [`Span::none`] at the cost of one atomic load.

use http::{Request, StatusCode};
use tracing::field::Empty;
use tracing::Span;
use wafer_host::trace::{self, TARGET};

use crate::live::Function;

/// The span of a request on the function plane, continuing the trace its `traceparent`
/// carries.
pub(crate) fn server<B>(request: &Request<B>) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let method = request.method().as_str();
    let span = tracing::info_span!(
        target: TARGET,
        "http.server",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        url.path = request.uri().path(),
        url.query = request.uri().query(),
        url.scheme = Empty,
        http.route = Empty,
        http.response.status_code = Empty,
        network.protocol.version = ?request.version(),
        user_agent.original = request
            .headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    trace::continue_from_headers(&span, request.headers());
    span
}

/// Notes the route a request matched on its server span (the current one): `http.route`,
/// and the span's name `METHOD ROUTE`.
pub(crate) fn routed(method: &http::Method, route: &str) {
    if !trace::enabled() {
        return;
    }
    let span = Span::current();
    span.record("http.route", route);
    trace::rename(&span, format!("{method} {route}"));
}

/// Notes a request's answer on its server span.
pub(crate) fn answered(span: &Span, status: StatusCode) {
    if span.is_none() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// The span of one call of `function` (a request on its route, an asynchronous run, an
/// admin or gRPC invoke).
pub(crate) fn call(function: &Function) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let abi = function.program().map(|p| p.abi().to_string()).ok();
    tracing::info_span!(
        target: TARGET,
        "wafer.call",
        otel.name = format!("call {}", function.name),
        otel.status_code = Empty,
        wafer.function = function.name.as_str(),
        wafer.version = i64::from(function.version),
        wafer.abi = abi,
        wafer.request_id = Empty,
    )
}

/// Notes how a call went on its span.
pub(crate) fn called(span: &Span, status: StatusCode) {
    if span.is_none() {
        return;
    }
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
}

/// Notes the request id on the current span (a call's or a delivery's).
pub(crate) fn request_id(id: &str) {
    if trace::enabled() {
        Span::current().record("wafer.request_id", id);
    }
}

/// The span of queueing an asynchronous call (its function and id noted with
/// [`queued`]).
pub(crate) fn enqueue() -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "wafer.enqueue",
        otel.name = "enqueue",
        otel.kind = "producer",
        wafer.function = Empty,
        wafer.invocation_id = Empty,
    )
}

/// Notes the invocation queued on the current (enqueue) span.
pub(crate) fn queued(function: &str, id: &str) {
    if !trace::enabled() {
        return;
    }
    let span = Span::current();
    trace::rename(&span, format!("enqueue {function}"));
    span.record("wafer.function", function);
    span.record("wafer.invocation_id", id);
}

/// The span of running a queued call, continuing the trace of its enqueue (the context
/// kept with its headers).
pub(crate) fn async_run(invocation: &wafer_queue::Invocation, attempt: u32) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "wafer.async_run",
        otel.name = format!("run {}", invocation.function),
        otel.kind = "consumer",
        otel.status_code = Empty,
        wafer.function = invocation.function.as_str(),
        wafer.invocation_id = invocation.id.as_str(),
        wafer.attempt = i64::from(attempt),
        http.response.status_code = Empty,
    );
    trace::continue_from(&span, &invocation.headers);
    span
}

/// The span of delivering a message to a subscriber, continuing the trace of its publish.
pub(crate) fn deliver(function: &str, message: &wafer_host::Message) -> Span {
    if !trace::enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "wafer.deliver",
        otel.name = format!("deliver {}", message.topic),
        otel.kind = "consumer",
        otel.status_code = Empty,
        otel.status_description = Empty,
        messaging.system = "wafer",
        messaging.operation.type = "process",
        messaging.destination.name = message.topic.as_str(),
        wafer.function = function,
        wafer.hops = i64::from(message.hops),
        wafer.request_id = Empty,
    );
    trace::continue_from(&span, &message.trace);
    span
}
