//! OpenTelemetry traces: a real `wafer serve` exporting over OTLP to a real OTLP gRPC
//! trace receiver started here (the collector's `TraceService`, built from the
//! `opentelemetry-proto` definitions), which decodes what Wafer sends.
use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{built, guest, Nats, Server};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;

/// One span as received, with the service that sent it.
#[derive(Clone, Debug)]
struct Span {
    service: String,
    /// `service.instance.id`: which node sent it.
    instance: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: HashMap<String, String>,
}

impl Span {
    fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// The spans of every export received.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.collect(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

impl Collector {
    fn collect(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.resource_spans {
            let resource_attr = |key: &str| {
                (resource.resource.iter())
                    .flat_map(|r| &r.attributes)
                    .find(|a| a.key == key)
                    .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                    .unwrap_or_default()
            };
            let (service, instance) = (
                resource_attr("service.name"),
                resource_attr("service.instance.id"),
            );
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push(Span {
                    service: service.clone(),
                    instance: instance.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent: hex(&span.parent_span_id),
                    attributes: span
                        .attributes
                        .into_iter()
                        .map(|a| (a.key, text(a.value.as_ref().and_then(|v| v.value.as_ref()))))
                        .collect(),
                });
            }
        }
    }
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An OTLP gRPC trace receiver on 127.0.0.1, in a runtime of its own.
struct Receiver {
    endpoint: String,
    collector: Collector,
    /// The gRPC receiver's runtime.
    _runtime: Option<tokio::runtime::Runtime>,
}

impl Receiver {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let service = TraceServiceServer::new(collector.clone());
        runtime.spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Self {
            endpoint,
            collector,
            _runtime: Some(runtime),
        }
    }

    /// An OTLP HTTP/protobuf receiver: `POST /v1/traces` with an `ExportTraceServiceRequest`
    /// body (the paths it was sent to are kept too).
    fn start_http() -> (Self, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let collector = Collector::default();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (receiver, seen) = (collector.clone(), paths.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut request_line, mut length) = (String::new(), 0);
                reader.read_line(&mut request_line).unwrap();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                std::io::Read::read_exact(&mut reader, &mut body).unwrap();
                let path = request_line
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(path);
                let request = <ExportTraceServiceRequest as prost::Message>::decode(&body[..]);
                receiver.collect(request.unwrap());
                let reply = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\n\
                             Content-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        let receiver = Self {
            endpoint,
            collector,
            _runtime: None,
        };
        (receiver, paths)
    }

    /// The spans of the trace of the first span named `name`, once it and `also` are there.
    fn trace_of(&self, name: &str, also: &str) -> Vec<Span> {
        let started = Instant::now();
        let trace_id = loop {
            let found = (self.collector.spans.lock().unwrap().iter())
                .find(|s| s.name == name)
                .map(|s| s.trace_id.clone());
            if let Some(trace_id) = found {
                break trace_id;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no `{name}` span"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        self.trace(&trace_id, |spans| !named(spans, also).is_empty())
    }

    /// The spans of `trace_id` once `done` says they are all there (waiting up to 30 s).
    fn trace(&self, trace_id: &str, done: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let started = Instant::now();
        loop {
            let spans: Vec<Span> = (self.collector.spans.lock().unwrap().iter())
                .filter(|s| s.trace_id == trace_id)
                .cloned()
                .collect();
            if done(&spans) {
                return spans;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "trace {trace_id} incomplete: {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A server exporting its traces to `receiver`, batches sent every 100 ms.
fn traced_server(receiver: &Receiver, args: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let mut server = Server::start_with_env(&data, args, &env);
    server.keep(dir);
    server
}

/// A trace id and a parent span id for a `traceparent`, fresh for each use.
fn caller() -> (String, String) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(1);
    let count = COUNT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    (
        format!("{nanos:016x}{:08x}{count:08x}", std::process::id()),
        format!("{:016x}", (count << 8) | 1),
    )
}

fn traceparent(trace_id: &str, parent: &str) -> String {
    format!("00-{trace_id}-{parent}-01")
}

fn named<'a>(spans: &'a [Span], name: &str) -> Vec<&'a Span> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one `{name}` span expected: {spans:#?}");
    found[0]
}

/// The span of a host call of `capability` (named `CAPABILITY OPERATION`).
fn host_call<'a>(spans: &'a [Span], capability: &str) -> Option<&'a Span> {
    spans.iter().find(|s| {
        s.attr("wafer.capability") == capability
            && s.name == format!("{capability} {}", s.attr("wafer.operation"))
    })
}

#[test]
fn a_request_continues_the_callers_trace_through_its_call_and_host_calls() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    server.deploy_cli("visits", &built("visits-rust.wasm"), &["--kv"]);
    let (trace_id, parent) = caller();
    let response = server
        .client
        .get(format!("{}/visits", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-wafer-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(response.text().unwrap(), "hello, visit 1\n");

    let spans = receiver.trace(&trace_id, |spans| {
        ["GET /visits/...", "call visits"]
            .iter()
            .all(|name| !named(spans, name).is_empty())
            && host_call(spans, "kv").is_some()
            && host_call(spans, "config").is_some()
    });
    let server_span = one(&spans, "GET /visits/...");
    assert_eq!(server_span.service, "wafer");
    assert_eq!(server_span.kind, SpanKind::Server as i32);
    assert_eq!(server_span.parent, parent, "continues the caller's span");
    assert_eq!(server_span.attr("http.request.method"), "GET");
    assert_eq!(server_span.attr("url.path"), "/visits");
    assert_eq!(server_span.attr("http.route"), "/visits/...");
    assert_eq!(server_span.attr("http.response.status_code"), "200");

    let call = one(&spans, "call visits");
    assert_eq!(call.parent, server_span.span_id);
    assert_eq!(call.attr("wafer.function"), "visits");
    assert_eq!(call.attr("wafer.version"), "1");
    assert_eq!(call.attr("wafer.abi"), "cgi");
    assert_eq!(call.attr("wafer.request_id"), request_id);
    // A fresh instance for the call.
    let instantiate = one(&spans, "instantiate");
    assert_eq!(instantiate.parent, call.span_id);

    for capability in ["kv", "config"] {
        let host = host_call(&spans, capability).unwrap();
        assert_eq!(host.parent, call.span_id, "{capability}: {host:#?}");
        assert_eq!(host.attr("wafer.function"), "visits");
    }
    let kv_ops: Vec<&str> = (spans.iter())
        .filter(|s| s.attr("wafer.capability") == "kv")
        .map(|s| s.attr("wafer.operation"))
        .collect();
    assert!(kv_ops.contains(&"get"), "{kv_ops:?}");

    // The deploy is a trace of its own, the compile within it.
    let deploy_spans = receiver.trace_of("deploy visits", "compile");
    let deploy = one(&deploy_spans, "deploy visits");
    assert!(deploy.parent.is_empty());
    assert_eq!(deploy.attr("wafer.version"), "1");
    assert!(
        deploy.attr("wafer.digest").starts_with("sha256:"),
        "{deploy:#?}"
    );
    assert_eq!(deploy.attr("wafer.unchanged"), "false");
    let compile = one(&deploy_spans, "compile");
    assert_eq!(compile.parent, deploy.span_id);

    // The function's log line carries the trace, and the span of the call that wrote it.
    let logs: serde_json::Value = server
        .admin(reqwest::Method::GET, "functions/visits/logs")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let line = (logs.as_array().unwrap().iter())
        .find(|l| l["text"].as_str().unwrap_or_default().contains("visit 1"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(line["trace_id"], trace_id.as_str(), "{line}");
    let writer = line["span_id"].as_str().unwrap();
    assert!(
        spans.iter().any(|s| s.span_id == writer),
        "{line}: no such span"
    );
}

#[test]
fn the_guest_sees_its_calls_context_and_a_request_without_one_starts_a_trace() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    server.deploy("rustenv", &built("rustenv.wasm"), &[]);
    let (trace_id, parent) = caller();
    let text = server
        .client
        .get(format!("{}/rustenv", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .header("tracestate", "vendor=opaque")
        .send()
        .unwrap()
        .text()
        .unwrap();
    let seen = env_value(&text, "HTTP_TRACEPARENT");
    let spans = receiver.trace(&trace_id, |spans| !named(spans, "call rustenv").is_empty());
    let call = one(&spans, "call rustenv");
    // The guest's context is its own call's: same trace, the call's span as parent.
    assert_eq!(seen, format!("00-{trace_id}-{}-01", call.span_id), "{text}");
    // The caller's trace state is handed on.
    assert_eq!(env_value(&text, "HTTP_TRACESTATE"), "vendor=opaque");

    // No traceparent: the server starts a trace of its own, which the guest sees.
    let text = server.get("/rustenv").text().unwrap();
    let seen = env_value(&text, "HTTP_TRACEPARENT");
    let fields: Vec<&str> = seen.split('-').collect();
    assert_eq!(fields.len(), 4, "{seen}");
    let spans = receiver.trace(fields[1], |spans| !named(spans, "call rustenv").is_empty());
    let server_span = one(&spans, "GET /rustenv/...");
    assert!(
        server_span.parent.is_empty(),
        "a root span: {server_span:#?}"
    );
    assert_eq!(one(&spans, "call rustenv").span_id, fields[2]);
}

/// The value of `NAME=value` in rustenv's output.
fn env_value(text: &str, name: &str) -> String {
    let prefix = format!("{name}=");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .to_owned()
}

#[test]
fn without_an_endpoint_the_callers_context_reaches_the_guest_untouched() {
    let server = Server::start();
    server.deploy("rustenv", &built("rustenv.wasm"), &[]);
    let sent = traceparent(&"ab".repeat(16), &"cd".repeat(8));
    let text = server
        .client
        .get(format!("{}/rustenv", server.url))
        .header("traceparent", &sent)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(env_value(&text, "HTTP_TRACEPARENT"), sent);
}

#[test]
fn an_async_run_is_in_the_trace_of_the_request_that_queued_it() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    server.deploy_cli("visits", &built("visits-rust.wasm"), &["--kv"]);
    let (trace_id, parent, id) = traced_enqueue(&server, "visits");
    let record = server.finished(&id);
    assert_eq!(record["state"], "done", "{record}");

    let spans = receiver.trace(&trace_id, |spans| {
        !named(spans, "run visits").is_empty()
            && !named(spans, "call visits").is_empty()
            && host_call(spans, "kv").is_some()
    });
    let server_span = one(&spans, "POST");
    assert_eq!(server_span.parent, parent);
    assert_eq!(server_span.attr("http.response.status_code"), "202");
    let enqueue = one(&spans, "enqueue visits");
    assert_eq!(enqueue.kind, SpanKind::Producer as i32);
    assert_eq!(enqueue.parent, server_span.span_id);
    assert_eq!(enqueue.attr("wafer.invocation_id"), id);
    assert_eq!(enqueue.attr("wafer.function"), "visits");
    let run = one(&spans, "run visits");
    assert_eq!(run.kind, SpanKind::Consumer as i32);
    assert_eq!(run.parent, enqueue.span_id);
    assert_eq!(run.attr("wafer.invocation_id"), id);
    assert_eq!(run.attr("wafer.attempt"), "1");
    assert_eq!(run.attr("http.response.status_code"), "200");
    let call = one(&spans, "call visits");
    assert_eq!(call.parent, run.span_id);
    assert_eq!(host_call(&spans, "kv").unwrap().parent, call.span_id);
}

#[test]
fn a_delivery_continues_the_trace_of_its_publish() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    let visits = built("visits-rust.wasm");
    server.deploy_cli("publisher", &visits, &["--publish", "demo.>"]);
    server.deploy_cli("sub", &visits, &["--kv", "--subscribe", "demo.a"]);
    let (trace_id, parent) = caller();
    let text = server
        .client
        .post(format!("{}/publisher?publish=demo.a", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .body("event")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.ends_with("published\n"), "{text}");

    let spans = receiver.trace(&trace_id, |spans| {
        !named(spans, "deliver demo.a").is_empty()
            && spans
                .iter()
                .any(|s| s.attr("wafer.capability") == "kv" && s.attr("wafer.function") == "sub")
    });
    let call = one(&spans, "call publisher");
    assert_eq!(call.attr("wafer.function"), "publisher");
    let publish = one(&spans, "publish demo.a");
    assert_eq!(publish.kind, SpanKind::Producer as i32);
    assert_eq!(publish.parent, call.span_id);
    assert_eq!(publish.attr("messaging.destination.name"), "demo.a");
    let deliver = one(&spans, "deliver demo.a");
    assert_eq!(deliver.kind, SpanKind::Consumer as i32);
    assert_eq!(deliver.parent, publish.span_id);
    assert_eq!(deliver.attr("wafer.function"), "sub");
    assert_eq!(deliver.attr("messaging.destination.name"), "demo.a");
    let kv = (spans.iter())
        .find(|s| s.attr("wafer.capability") == "kv" && s.attr("wafer.function") == "sub")
        .unwrap();
    assert_eq!(kv.parent, deliver.span_id);
}

/// A plain HTTP server on 127.0.0.1 that answers `200 pong` and keeps each request's head.
fn recording_endpoint() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line.to_ascii_lowercase());
            }
            kept.lock().unwrap().push(head);
            let reply = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npong";
            let _ = stream.write_all(reply.as_bytes());
        }
    });
    (port, heads)
}

/// GETs `path` with a fresh caller's `traceparent`: the trace id, and the answer's text.
fn traced_get(server: &Server, path: &str) -> (String, String) {
    let (trace_id, parent) = caller();
    let response = server
        .client
        .get(format!("{}{path}", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    (trace_id, response.text().unwrap())
}

/// Queues a call of `function` (`/_wafer/async/`) with a fresh caller's `traceparent`:
/// the trace id, the caller's span id, and the invocation's id.
fn traced_enqueue(server: &Server, function: &str) -> (String, String, String) {
    let (trace_id, parent) = caller();
    let response = server
        .client
        .post(format!("{}/_wafer/async/{function}", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let id = response.json::<serde_json::Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    (trace_id, parent, id)
}

/// Checks the outgoing request made by the call `call` in trace `trace_id`: a client span
/// `GET` within the call, to `127.0.0.1:port`, whose context the request carried.
fn assert_client_span(
    receiver: &Receiver,
    trace_id: &str,
    call: &str,
    port: u16,
    heads: &Mutex<Vec<String>>,
) {
    let client_span = |spans: &[Span]| {
        (spans.iter())
            .find(|s| s.kind == SpanKind::Client as i32)
            .cloned()
    };
    let spans = receiver.trace(trace_id, |spans| client_span(spans).is_some());
    let call = one(&spans, call);
    let client = &client_span(&spans).unwrap();
    assert_eq!(client.name, "GET");
    assert_eq!(client.parent, call.span_id);
    assert_eq!(client.attr("http.request.method"), "GET");
    assert_eq!(client.attr("server.address"), "127.0.0.1");
    assert_eq!(client.attr("server.port"), port.to_string());
    assert_eq!(client.attr("http.response.status_code"), "200");
    // The request went out with the client span's context.
    let heads = heads.lock().unwrap();
    let sent = format!("traceparent: 00-{trace_id}-{}-01", client.span_id);
    assert!(
        heads.iter().any(|h| h.contains(&sent)),
        "{sent} in {heads:#?}"
    );
}

#[test]
fn outbound_http_is_a_client_span_and_carries_its_context() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    let (port, heads) = recording_endpoint();
    let allowed = format!("http://127.0.0.1:{port}");
    server.deploy_cli("fetcher", &built("visits-rust.wasm"), &["--http", &allowed]);
    let (trace_id, text) = traced_get(&server, &format!("/fetcher?fetch={allowed}/x"));
    assert!(text.contains("fetch: 200 pong"), "{text}");
    assert_client_span(&receiver, &trace_id, "call fetcher", port, &heads);
}

#[test]
fn a_component_sees_its_calls_context_and_its_outgoing_requests_are_client_spans() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    let (port, heads) = recording_endpoint();
    let allowed = format!("http://127.0.0.1:{port}");
    server.deploy_cli("echo", &built("http-echo-rust.wasm"), &["--http", &allowed]);

    // The request's headers, as the component sees them: the call's context in place of
    // the caller's.
    let (trace_id, seen) = traced_get(&server, "/echo/headers");
    let spans = receiver.trace(&trace_id, |spans| {
        !named(spans, "call echo").is_empty() && !named(spans, "instantiate").is_empty()
    });
    let call = one(&spans, "call echo");
    assert_eq!(call.attr("wafer.abi"), "http", "{call:#?}");
    assert_eq!(one(&spans, "instantiate").parent, call.span_id);
    let expected = format!("traceparent: 00-{trace_id}-{}-01", call.span_id);
    assert!(seen.lines().any(|l| l == expected), "{expected} in {seen}");

    // An outgoing request through wasi:http.
    let (trace_id, text) = traced_get(&server, &format!("/echo/fetch?url={allowed}/x"));
    assert_eq!(text, "fetched 200: pong");
    assert_client_span(&receiver, &trace_id, "call echo", port, &heads);
}

#[test]
fn a_shared_instance_is_made_within_the_first_call_it_serves() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    let flags = [
        "--instance-reuse",
        "10",
        "--max-concurrent-per-instance",
        "4",
    ];
    server.deploy_cli("p3", &built("http-p3-rust.wasm"), &flags);
    let call_with_trace = || traced_get(&server, "/p3/hello").0;
    // The instance is made in a task of its own, within the span of the call it is for.
    let first = call_with_trace();
    let spans = receiver.trace(&first, |spans| {
        !named(spans, "call p3").is_empty() && !named(spans, "instantiate").is_empty()
    });
    assert_eq!(
        one(&spans, "instantiate").parent,
        one(&spans, "call p3").span_id
    );
    // The next call is served by that instance: its trace has no instantiation.
    let second = call_with_trace();
    let third = call_with_trace();
    let spans = receiver.trace(&third, |spans| !named(spans, "call p3").is_empty());
    assert!(named(&spans, "instantiate").is_empty(), "{spans:#?}");
    let spans = receiver.trace(&second, |spans| !named(spans, "call p3").is_empty());
    assert!(named(&spans, "instantiate").is_empty(), "{spans:#?}");
}

#[test]
fn json_log_lines_written_within_a_trace_carry_its_ids() {
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("WAFER_LOG_FORMAT", "json"),
    ];
    let server = Server::start_logged_with_env(dir.path(), &["serve"], &env);
    // A guest that traps: its failure is logged as a warning within the request.
    server.deploy("trap", &guest("trap.wat"), &[]);
    let (trace_id, parent) = caller();
    let response = server
        .client
        .get(format!("{}/trap", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .send()
        .unwrap();
    assert_eq!(response.status(), 500);
    let spans = receiver.trace(&trace_id, |spans| !named(spans, "call trap").is_empty());
    let call = one(&spans, "call trap");
    let server_span = one(&spans, "GET /trap/...");
    assert_eq!(server_span.attr("http.response.status_code"), "500");
    let started = Instant::now();
    let line = loop {
        let stderr = server.stderr();
        let found = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["trace_id"] == trace_id.as_str());
        if let Some(line) = found {
            break line;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{stderr}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["span_id"], call.span_id.as_str(), "{line}");
}

/// A node of the cluster at `nats` exporting to `receiver` as `service.instance.id`
/// `instance`.
fn traced_node(receiver: &Receiver, nats: &Nats, instance: &str) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let resource = format!("service.instance.id={instance}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_RESOURCE_ATTRIBUTES", resource.as_str()),
    ];
    let url = nats.url();
    let mut server = Server::start_with_env(dir.path(), &["serve", "--cluster", &url], &env);
    server.keep(dir);
    server
}

#[test]
fn in_a_cluster_async_runs_and_deliveries_over_nats_stay_in_their_trace() {
    let receiver = Receiver::start();
    let nats = Nats::start();
    let nodes = [
        traced_node(&receiver, &nats, "node-a"),
        traced_node(&receiver, &nats, "node-b"),
    ];
    let visits = built("visits-rust.wasm");
    nodes[0].deploy_cli("visits", &visits, &["--kv", "--publish", "demo.>"]);
    nodes[0].deploy_cli("sub", &visits, &["--kv", "--subscribe", "demo.a"]);
    for node in &nodes {
        let started = Instant::now();
        while node.get("/sub").status() != 200 {
            assert!(started.elapsed() < Duration::from_secs(30), "{}", node.url);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    // Queued through JetStream on one node, run by whichever node takes it (which one is
    // JetStream's choice): the run continues the trace kept with the queued call.
    for (from, instance) in [(&nodes[0], "node-a"), (&nodes[1], "node-b")] {
        let (trace_id, parent, id) = traced_enqueue(from, "visits");
        assert_eq!(from.finished(&id)["state"], "done");
        // A span is sent once it ends: a run's after its call's.
        let spans = receiver.trace(&trace_id, |spans| {
            !named(spans, "enqueue visits").is_empty()
                && !named(spans, "call visits").is_empty()
                && host_call(spans, "kv").is_some()
                && named(spans, "call visits")
                    .iter()
                    .all(|call| spans.iter().any(|s| s.span_id == call.parent))
        });
        let enqueue = one(&spans, "enqueue visits");
        assert_eq!(enqueue.instance, instance);
        assert_eq!(one(&spans, "POST").parent, parent);
        // Each attempt is a run (a loaded machine may see JetStream deliver a call again);
        // every one continues the enqueue, and every call is within a run.
        let runs = named(&spans, "run visits");
        for run in &runs {
            assert_eq!(run.parent, enqueue.span_id, "{spans:#?}");
            assert_eq!(run.attr("wafer.invocation_id"), id);
            assert!(["node-a", "node-b"].contains(&run.instance.as_str()));
        }
        let calls = named(&spans, "call visits");
        for call in &calls {
            let run = (runs.iter()).find(|r| r.span_id == call.parent);
            let run = run.unwrap_or_else(|| panic!("{call:#?} is in no run: {spans:#?}"));
            assert_eq!(call.instance, run.instance);
        }
        let kv = host_call(&spans, "kv").unwrap();
        assert!(calls.iter().any(|c| c.span_id == kv.parent), "{spans:#?}");
    }

    // A message published on one node, delivered through NATS on either.
    let (trace_id, parent) = caller();
    let text = nodes[0]
        .client
        .post(format!("{}/visits?publish=demo.a", nodes[0].url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .body("event")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.ends_with("published\n"), "{text}");
    let spans = receiver.trace(&trace_id, |spans| {
        let kv = (spans.iter())
            .find(|s| s.attr("wafer.capability") == "kv" && s.attr("wafer.function") == "sub");
        // A span is sent once it ends: a delivery's after its host calls'.
        kv.is_some_and(|kv| spans.iter().any(|s| s.span_id == kv.parent))
            && !named(spans, "publish demo.a").is_empty()
    });
    let publish = one(&spans, "publish demo.a");
    assert_eq!(publish.instance, "node-a");
    // Each delivery (NATS delivers again what is not acknowledged in time) continues the
    // publish.
    let delivers = named(&spans, "deliver demo.a");
    for deliver in &delivers {
        assert_eq!(deliver.parent, publish.span_id);
        assert_eq!(deliver.attr("wafer.function"), "sub");
    }
    let kv = (spans.iter())
        .find(|s| s.attr("wafer.capability") == "kv" && s.attr("wafer.function") == "sub")
        .unwrap();
    assert!(
        delivers.iter().any(|d| d.span_id == kv.parent),
        "{spans:#?}"
    );
}

#[test]
fn spans_go_over_http_protobuf_when_asked() {
    let (receiver, paths) = Receiver::start_http();
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "edge"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let server = Server::start_with_env(dir.path(), &["serve"], &env);
    server.deploy("rustenv", &built("rustenv.wasm"), &[]);
    let (trace_id, parent) = caller();
    let text = server
        .client
        .get(format!("{}/rustenv", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let spans = receiver.trace(&trace_id, |spans| !named(spans, "call rustenv").is_empty());
    let call = one(&spans, "call rustenv");
    assert_eq!(call.service, "edge");
    assert_eq!(one(&spans, "GET /rustenv/...").parent, parent);
    assert_eq!(
        env_value(&text, "HTTP_TRACEPARENT"),
        format!("00-{trace_id}-{}-01", call.span_id)
    );
    assert!(paths.lock().unwrap().iter().all(|p| p == "/v1/traces"));
}

#[test]
fn a_call_that_waits_for_a_slot_has_an_admission_span() {
    let receiver = Receiver::start();
    let server = traced_server(&receiver, &["serve"]);
    // One slot, held for the whole 3 s timeout: of two calls at once, one waits (and, after
    // the second the admission queue holds it, is refused).
    server.deploy(
        "nap",
        &guest("sleep.wat"),
        &[("abi", "cgi"), ("max_concurrency", "1"), ("timeout", "3s")],
    );
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (client, url) = (server.client.clone(), format!("{}/nap", server.url));
            let (trace_id, parent) = caller();
            std::thread::spawn(move || {
                let response = client
                    .get(url)
                    .header("traceparent", traceparent(&trace_id, &parent))
                    .send()
                    .unwrap();
                (trace_id, response.status().as_u16())
            })
        })
        .collect();
    let calls: Vec<(String, u16)> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    let waited: Vec<Span> = calls
        .iter()
        .map(|(trace_id, _)| receiver.trace(trace_id, |spans| !named(spans, "call nap").is_empty()))
        .filter_map(|spans| {
            named(&spans, "admission wait")
                .first()
                .map(|s| (*s).clone())
        })
        .collect();
    assert_eq!(waited.len(), 1, "{calls:?} {waited:#?}");
    let refused = calls.iter().any(|&(_, status)| status == 503);
    assert_eq!(waited[0].attr("wafer.admitted"), (!refused).to_string());
    assert_eq!(waited[0].attr("wafer.function"), "nap");
}

#[test]
fn a_result_posted_to_its_callback_carries_the_trace_of_the_call() {
    let receiver = Receiver::start();
    let (port, heads) = recording_endpoint();
    let callback_host = format!("127.0.0.1:{port}");
    let server = traced_server(&receiver, &["serve", "--callback-host", &callback_host]);
    server.deploy("rustenv", &built("rustenv.wasm"), &[]);
    let (trace_id, parent) = caller();
    let response = server
        .client
        .post(format!("{}/_wafer/async/rustenv", server.url))
        .header("traceparent", traceparent(&trace_id, &parent))
        .header("x-callback-url", format!("http://{callback_host}/done"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 202);
    let started = Instant::now();
    let head = loop {
        if let Some(head) = heads.lock().unwrap().first().cloned() {
            break head;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no callback");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(head.starts_with("post /done "), "{head}");
    let spans = receiver.trace(&trace_id, |spans| {
        !named(spans, "enqueue rustenv").is_empty()
    });
    let enqueue = one(&spans, "enqueue rustenv");
    let sent = format!("traceparent: 00-{trace_id}-{}-01", enqueue.span_id);
    assert!(head.contains(&sent), "{sent} in {head}");
}
