//! Wafer's function plane: serves functions on their routes (HTTP/1.1 and HTTP/2), their
//! own gRPC services, asynchronous calls (`/_wafer/async/...`) and the health probes; and
//! the live function table the admin plane (`wafer-admin`, on its own listener) drives.
//!
//! Per request: resolve the path in the live [`Functions`] table (lock-free), read the body within the
//! function's limit, wait for a free instance (or `503` with `Retry-After`), run the function
//! in a fresh instance, and answer: a CGI program's stdout becomes the response
//! (`docs/cgi.md`); a waPC operation or a plain export is called with the body
//! (`docs/calls.md`), JSON transcoded to protobuf when the function has a schema. Guest
//! faults become `500`/`502`/`504` responses and log lines; they never reach the server.
//! Nothing of the admin plane is served here: a request carrying the admin token has it
//! removed before a function sees it, and every other `/_wafer/` path is `404`.
//!
//! [`serve`] takes a bound listener, the TLS certificate if any, and a shutdown future, so
//! tests run the real server on `127.0.0.1:0`:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use wafer_gateway::{serve, AdminToken, App, Functions, ServeConfig};
//! use wafer_registry::Registry;
//! use wafer_runtime::{Runtime, RuntimeConfig};
//!
//! let data = std::path::Path::new(".wafer");
//! let runtime = Arc::new(Runtime::new(&RuntimeConfig::default())?);
//! let registry = Registry::open(data)?;
//! let functions = Functions::start(registry, runtime, data).await?;
//! let caps = wafer_host::Capabilities::open(data)?;
//! let queue = Arc::new(wafer_queue::LocalQueue::open(data)?);
//! let invocations = wafer_gateway::Invocations::new(queue, Vec::new());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let local = listener.local_addr()?;
//! let token = Arc::new(AdminToken::new("secret-token".to_owned()));
//! let app = App::new(functions, caps, invocations, token, local, ServeConfig::default());
//! // `Some(Tls::load(cert, key)?)` instead of `None` serves HTTPS.
//! serve(listener, app, None, tokio::signal::ctrl_c()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod cgi;
mod component;
mod deliver;
mod deploy;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod invocations;
mod invoke;
mod json;
mod live;
mod logs;
mod metrics;
mod schedules;
mod schema;
mod server;
mod services;
mod spans;
mod spin;
mod tls;
mod token;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use invoke::ServerHost;
use live::{Admission, Function};
use tokio::net::TcpListener;
use tokio_util::either::Either;
use tower::ServiceExt;
use tracing::Instrument as _;
use wafer_host::{Capabilities, Deliver};
use wafer_runtime::{Abi, CallOptions};

pub use deploy::{config, deploy_config, schema_of};
pub use error::Error;
pub use grpc::{reflection as grpc_reflection, status as grpc_status};
pub use invocations::{Invocations, INVOCATION_ID};
pub use invoke::{Answer, Call};
pub use live::{Canary, FunctionStatus, Functions, Resolved, Split, QUEUE_WAIT};
pub use schedules::{ScheduleStatus, SCHEDULE_HEADER};
pub use server::ServeConfig;
pub use tls::{Tls, TlsError};
pub use token::AdminToken;

pub use logs::{LogBook, LogLine, BYTES_KEPT, LINES_KEPT, LINE_MAX};

/// The schema of a protobuf-described function from `.proto` source and
/// `OPERATION=INPUT:OUTPUT` specs (as `wafer up` reads them from a manifest), checked.
pub fn schema(
    proto: Option<String>,
    operations: &[String],
) -> Result<Option<wafer_registry::Schema>, Error> {
    let operations = operations
        .iter()
        .map(|spec| schema::operation(spec))
        .collect::<Result<Vec<_>, _>>()?;
    schema_of(proto, None, operations)
}

/// How long `rm` waits for a removed function's running calls to finish before deleting its
/// data (so that the answer does not wait for a call with a long `timeout`).
const REMOVE_GRACE: Duration = Duration::from_secs(10);

/// How long shutdown waits for requests in flight before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The gateway's shared state.
pub struct App {
    functions: Arc<Functions>,
    caps: Arc<Capabilities>,
    invocations: Invocations,
    token: Arc<AdminToken>,
    logs: Arc<LogBook>,
    schemas: schema::Schemas,
    local: SocketAddr,
    config: ServeConfig,
    requests: AtomicU64,
    /// Client connections open now, on both planes.
    connections: Arc<AtomicU64>,
    health: std::sync::OnceLock<HealthCheck>,
    /// Whether the function plane serves HTTPS (set when it starts).
    https: std::sync::atomic::AtomicBool,
    /// gRPC server reflection of the functions' own services, with the
    /// function versions it was built from (held, so that a new version is a new pointer),
    /// rebuilt when they change.
    reflection: arc_swap::ArcSwap<(Vec<Arc<Function>>, axum::Router)>,
}

/// What is wrong with a part the node depends on (its cluster connection, say), if anything.
pub type HealthCheck = Box<dyn Fn() -> Option<String> + Send + Sync>;

impl App {
    /// State for a gateway serving `functions` with the host capabilities `caps` and the
    /// asynchronous `invocations`, listening on `local` within the limits of `config`.
    /// `token` is the admin token: the function plane never accepts it, and removes it from
    /// any request that carries it before a function could see it. The app delivers the messages `caps` publishes to
    /// subscribed functions, and runs the queued invocations.
    pub fn new(
        functions: Arc<Functions>,
        caps: Arc<Capabilities>,
        invocations: Invocations,
        token: Arc<AdminToken>,
        local: SocketAddr,
        config: ServeConfig,
    ) -> Arc<Self> {
        let app = Arc::new(Self {
            functions,
            caps: caps.clone(),
            invocations,
            token,
            logs: Arc::default(),
            schemas: schema::Schemas::default(),
            local,
            config,
            requests: AtomicU64::new(first_request_id()),
            connections: Arc::default(),
            health: std::sync::OnceLock::new(),
            https: std::sync::atomic::AtomicBool::new(false),
            reflection: arc_swap::ArcSwap::from_pointee((Vec::new(), grpc::reflection(&[]))),
        });
        let deliver: Arc<dyn Deliver> = app.clone();
        caps.set_deliver(Arc::downgrade(&deliver));
        let weak = Arc::downgrade(&app);
        use wafer_host::tasks::supervise;
        supervise("table follower", {
            let app = weak.clone();
            move || follow_table(app.clone())
        });
        supervise("async dispatcher", {
            let app = weak.clone();
            move || invocations::dispatch(app.clone())
        });
        supervise("scheduler", {
            let app = weak.clone();
            move || schedules::run(app.clone())
        });
        supervise("callback poster", move || {
            invocations::post_callbacks(weak.clone())
        });
        app
    }

    /// Adds a check that `GET /_wafer/health` reports (it answers `ok: PROBLEM` then). Only
    /// the first check set counts.
    pub fn set_health_check(&self, check: HealthCheck) {
        let _ = self.health.set(check);
    }

    /// What the health check found wrong, if anything.
    pub fn problem(&self) -> Option<String> {
        self.health.get().and_then(|check| check())
    }

    /// A scrape of `/metrics` (served on the admin listener).
    pub async fn metrics(&self) -> Response {
        let server = metrics::ServerFigures {
            connections: self.connections.load(Ordering::Relaxed),
            queue_depth: self.invocations.depth().await,
            pool: self.functions.runtime().slots_in_use(),
        };
        let text = metrics::encode(self.functions.all(), server);
        let mut response = plain(StatusCode::OK, text);
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(metrics::CONTENT_TYPE),
        );
        response
    }

    /// Every live function's counters (those of `/metrics`) and the async queue's depth, as
    /// JSON: what the dashboard charts.
    pub async fn stats(&self) -> serde_json::Value {
        let mut functions = self.functions.all();
        functions.sort_by(|a, b| a.name.cmp(&b.name).then(b.version.cmp(&a.version)));
        let functions: Vec<serde_json::Value> = functions
            .iter()
            .map(|f| {
                let mut stats = f.metrics().snapshot();
                stats["name"] = f.name.as_str().into();
                stats["version"] = f.version.into();
                stats
            })
            .collect();
        let queue_depth = self.invocations.depth().await;
        serde_json::json!({ "functions": functions, "queue_depth": queue_depth })
    }

    /// How long this node took to compile `name`'s active version (or to map it from the
    /// artifact cache).
    pub fn compile_time(&self, name: &wafer_registry::FunctionName) -> Option<Duration> {
        Some(self.functions.function(name)?.metrics().compile_time())
    }

    /// The function logs.
    pub fn logs(&self) -> &LogBook {
        &self.logs
    }

    /// Removes a function with everything it had: its record first, so that no new call
    /// starts (here at once, on other nodes as they follow the registry) and no queued
    /// asynchronous call finds it; then, once the calls already running here have finished
    /// (waiting at most [`REMOVE_GRACE`]), its key-value namespace and message queue, so
    /// that nothing writes them again; then its log.
    pub async fn remove(&self, name: &wafer_registry::FunctionName) -> Result<(), Error> {
        let function = self
            .functions
            .function(name)
            .ok_or_else(|| wafer_registry::RegistryError::NotFound(name.to_string()))?;
        self.functions.remove(name).await?;
        let grace = function.config.limits.timeout.min(REMOVE_GRACE);
        if !function.retire(grace).await {
            tracing::warn!(%name, "removed while calls were still running after {grace:?}");
        }
        drop(function);
        self.caps.forget(name).await.map_err(|e| {
            tracing::error!(%name, "removing the function's key-value namespace failed: {e}");
            Error::Unavailable {
                name: name.to_string(),
                reason: format!(
                    "it was removed, but its key-value store could not be deleted: {e}; \
                     deploy and remove it again to retry"
                ),
            }
        })?;
        self.logs.forget(name.as_str());
        Ok(())
    }

    /// Whether requests come over HTTPS: the scheme functions are told (`X_FULL_URL`, a
    /// component's request scheme).
    pub(crate) fn https(&self) -> bool {
        self.https.load(Ordering::Relaxed)
    }

    /// The live function table.
    pub fn functions(&self) -> &Arc<Functions> {
        &self.functions
    }

    /// The host capabilities (pub/sub counters, say).
    pub fn caps(&self) -> &Arc<Capabilities> {
        &self.caps
    }

    /// The asynchronous invocations.
    pub fn invocations(&self) -> &Invocations {
        &self.invocations
    }

    /// The admin token, as the function plane knows it (to remove it from requests).
    pub fn token(&self) -> &Arc<AdminToken> {
        &self.token
    }

    /// The server-wide connection limits.
    pub fn config(&self) -> ServeConfig {
        self.config
    }

    /// Client connections open now, on both planes (the admin listener counts its own in
    /// the same figure).
    pub fn open_connections(&self) -> Arc<AtomicU64> {
        self.connections.clone()
    }

    /// Answers one request within its trace span (tracing on): [`App::handle`], continuing
    /// the trace the request carries. The probes have no span.
    async fn handle_traced(&self, request: Request<Incoming>, peer: SocketAddr) -> Response {
        if matches!(request.uri().path(), "/healthz" | "/readyz") {
            return self.handle(request, peer).await;
        }
        let span = spans::server(&request);
        let response = self.handle(request, peer).instrument(span.clone()).await;
        spans::answered(&span, response.status());
        response
    }

    /// Answers one request on the function plane: the probes, `/_wafer/async/...`, the
    /// functions' gRPC services, and the functions' routes. Nothing of the admin plane:
    /// every other `/_wafer/` path is `404`.
    async fn handle(&self, mut request: Request<Incoming>, peer: SocketAddr) -> Response {
        match request.uri().path() {
            "/healthz" => return plain(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                return match self.problem() {
                    None => plain(StatusCode::OK, "ready\n".into()),
                    Some(problem) => plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: {problem}\n"),
                    ),
                }
            }
            _ => {}
        }
        self.sanitize(request.headers_mut());
        let path = request.uri().path();
        if path.starts_with(invocations::PREFIX) {
            return self
                .enqueue(request)
                .await
                .unwrap_or_else(IntoResponse::into_response);
        }
        if path.starts_with("/_wafer/") || path == "/metrics" {
            return Error::NoRoute(path.to_owned()).into_response();
        }
        if is_grpc(&request) {
            if path.starts_with("/grpc.reflection.") {
                // Brought up to date here too, not only when the table changes: a client
                // that saw a deploy answer must find the new service.
                self.refresh_reflection();
                let reflection = self.reflection.load().1.clone();
                return match reflection.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
            }
            return match self.grpc_method(path) {
                Some(Ok((function, operation))) => {
                    grpc::call_method(self, function, operation, request).await
                }
                Some(Err(status)) => status.into_http(),
                None => tonic::Status::unimplemented(format!(
                    "no function serves the gRPC service of `{path}`"
                ))
                .into_http(),
            };
        }
        match self.call(request, peer).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    /// Removes from a client's request what a function must not see or could be fooled by:
    /// the admin token (in `Authorization`, should a client send it, mistakenly or through
    /// a function that forwards its own caller's headers) and every `X-Wafer-*` header,
    /// which only the server sets (`X-Wafer-Invocation-Id` on an asynchronous run,
    /// `X-Wafer-Topic` on a delivery), so a client cannot pose as either.
    pub fn sanitize(&self, headers: &mut http::HeaderMap) {
        let carries_token = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .any(|value| self.token.is_in(value));
        if carries_token {
            headers.remove(header::AUTHORIZATION);
        }
        // Checked before anything is collected: the usual request has none.
        if headers
            .keys()
            .any(|name| name.as_str().starts_with(RESERVED_HEADERS))
        {
            let reserved: Vec<header::HeaderName> = headers
                .keys()
                .filter(|name| name.as_str().starts_with(RESERVED_HEADERS))
                .cloned()
                .collect();
            for name in reserved {
                headers.remove(name);
            }
        }
    }

    /// The function and operation of a gRPC method of a function's own service
    /// (`/pkg.Service/Method`); `None` for a service no function declares; an error for a
    /// method the service lacks.
    fn grpc_method(&self, path: &str) -> Option<Result<(Arc<Function>, String), tonic::Status>> {
        let (service, method) = path.strip_prefix('/')?.split_once('/')?;
        let function = self.functions.grpc_service(service)?;
        Some(match self.schemas.method(&function.deployment, path) {
            Some(operation) => Ok((function, operation)),
            None => Err(tonic::Status::unimplemented(format!(
                "the service `{service}` of function `{}` has no method `{method}`",
                function.name
            ))),
        })
    }

    /// Runs `operation` of `function` for a call of its gRPC method, admitted already, with
    /// the request message as the payload; answers the guest's bytes.
    pub(crate) async fn call_method(
        &self,
        function: &Arc<Function>,
        operation: &str,
        payload: Bytes,
        _admission: &Admission,
    ) -> Result<Bytes, Error> {
        let program = runnable(function)?;
        let request_id = self.request_id();
        let call = Call {
            method: &Method::POST,
            rest: &format!("/{operation}"),
            query: None,
            content_type: Some("application/grpc"),
            body: payload,
        };
        let call = async {
            let result = self.invoke(function, program, call, &request_id, 0).await;
            if let Err(error) = &result {
                self.log_failure(function, &request_id, error);
            }
            result
        };
        let answered = counted(function, call, |_| StatusCode::OK).await;
        answered.map(|answer| answer.body)
    }

    /// Rebuilds gRPC reflection if the functions serving services of their own changed.
    fn refresh_reflection(&self) {
        let served = self.functions.grpc_functions();
        let current = self.reflection.load();
        let same = current.0.len() == served.len()
            && current
                .0
                .iter()
                .zip(&served)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if same {
            return;
        }
        let descriptors: Vec<Vec<u8>> = served
            .iter()
            .filter_map(|f| {
                schema::descriptors_for_reflection(f.config.schema.as_ref()?, f.name.as_str())
            })
            .collect();
        let sets: Vec<&[u8]> = descriptors.iter().map(Vec::as_slice).collect();
        self.reflection
            .store(Arc::new((served, grpc::reflection(&sets))));
    }

    /// Runs the function a request is routed to.
    async fn call(&self, request: Request<Incoming>, peer: SocketAddr) -> Result<Response, Error> {
        let path = request.uri().path();
        let (resolved, cookie) = self
            .functions
            .route(path, request.headers())
            .ok_or_else(|| Error::NoRoute(path.to_owned()))?;
        spans::routed(request.method(), resolved.route().as_str());
        let mut response = self.call_resolved(resolved, request, peer).await?;
        if let Some(cookie) = cookie {
            response.headers_mut().append(header::SET_COOKIE, cookie);
        }
        Ok(response)
    }

    /// Runs `resolved`'s function with `request`; a failure is logged and answered. The call
    /// is counted in the function's metrics.
    async fn call_resolved<B>(
        &self,
        resolved: Resolved,
        request: Request<B>,
        peer: SocketAddr,
    ) -> Result<Response, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let function = resolved.function.clone();
        let call = self.run_resolved(resolved, request, peer);
        counted(&function, call, Response::status).await
    }

    async fn run_resolved<B>(
        &self,
        resolved: Resolved,
        mut request: Request<B>,
        peer: SocketAddr,
    ) -> Result<Response, Error>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        // The function sees the call's own trace context (CGI `HTTP_TRACEPARENT`, a
        // component's request header), so that what it calls continues the trace.
        wafer_host::trace::inject_headers(request.headers_mut());
        let function = &resolved.function;
        let program = resolved
            .program()
            .map_err(|reason| unavailable(function, reason))?;
        if let Some(component) = program.as_http() {
            let mut request = request;
            if function.config.spin.is_some() {
                let (mut parts, body) = request.into_parts();
                spin::set_headers(
                    &mut parts.headers,
                    &parts.uri,
                    &resolved,
                    peer,
                    self.https(),
                );
                request = Request::from_parts(parts, body);
            }
            let admission = self.admission(function).await?;
            let request_id = self.request_id();
            let result = self
                .call_http(function, component, request, admission, &request_id)
                .await;
            return Ok(self.finish(function, result, request_id));
        }
        let (parts, body) = request.into_parts();
        let (body, _admission) = self.admit(function, body).await?;
        let request_id = self.request_id();
        let result = match program.abi() {
            // Called above, with streaming bodies; a program whose ABI says HTTP always has
            // its component.
            Abi::Http => Err(Error::Unavailable {
                name: function.name.to_string(),
                reason: "the HTTP component is missing".into(),
            }),
            Abi::Service => Err(Error::Service {
                name: function.name.to_string(),
                listen: function.config.grants.listen,
            }),
            Abi::Cgi => {
                let inputs = program.inputs();
                let https = self.https();
                let request =
                    cgi::request(&parts, body, peer, self.local, https, &resolved, inputs)?;
                let head = parts.method == Method::HEAD;
                self.call_cgi(function, program, request, head, &request_id, 0)
                    .await
            }
            Abi::Wapc | Abi::Exports => {
                let call = Call {
                    method: &parts.method,
                    rest: &parts.uri.path()[resolved.script_name_len..],
                    query: parts.uri.query(),
                    content_type: parts
                        .headers
                        .get(header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok()),
                    body,
                };
                self.invoke(function, program, call, &request_id, 0)
                    .await
                    .map(Answer::into_response)
            }
        };
        Ok(self.finish(function, result, request_id))
    }

    /// How to run one call of `function`: its limits, its granted directories, and a host for
    /// its host calls if the module can make any. `hops` counts the deliveries that led to
    /// this call (0 for a request), for the pub/sub hop limit.
    fn call_options(
        &self,
        function: &Arc<Function>,
        program: &wafer_runtime::Program,
        request_id: &str,
        hops: u32,
    ) -> CallOptions {
        CallOptions {
            limits: function.config.limits,
            host: program
                .inputs()
                .host_calls
                .then(|| self.host_calls(function, request_id, hops)),
            dirs: preopens(function),
        }
    }

    /// What answers the host calls of one call of `function`.
    pub(crate) fn host_calls(
        &self,
        function: &Arc<Function>,
        request_id: &str,
        hops: u32,
    ) -> Arc<dyn wafer_runtime::HostCalls> {
        let limits = &function.config.limits;
        Arc::new(ServerHost {
            span: match wafer_host::trace::enabled() {
                true => tracing::Span::current(),
                false => tracing::Span::none(),
            },
            logs: self.logs.clone(),
            caps: self.caps.clone(),
            function: function.clone(),
            request_id: request_id.to_owned(),
            hops,
            deadline: limits.deadline(std::time::Instant::now()),
            session: wafer_host::Session::default(),
            log_left: Mutex::new(Some(limits.stderr.as_u64())),
        })
    }

    /// Calls an operation of a waPC or exports function by the function's name (the admin
    /// API's and gRPC's Invoke). Returns the answer and the request id.
    pub async fn invoke_named(
        &self,
        name: &str,
        call: Call<'_>,
    ) -> (Result<Answer, Error>, Option<String>) {
        let mut request_id = None;
        let result = async {
            let function = self
                .functions
                .function(&name.parse()?)
                .ok_or_else(|| wafer_registry::RegistryError::NotFound(name.to_owned()))?;
            let program = runnable(&function)?;
            if program.abi() == Abi::Cgi {
                return Err(Error::BadRequest(format!(
                    "function `{name}` is a CGI program: call it over HTTP at its route"
                )));
            }
            let limit = function.config.limits.request_body;
            if call.body.len() as u64 > limit.as_u64() {
                return Err(Error::BodyTooLarge(limit));
            }
            let id = request_id.insert(self.request_id());
            let call = async {
                let _admission = self.admission(&function).await?;
                let result = self.invoke(&function, program, call, id, 0).await;
                if let Err(error) = &result {
                    self.log_failure(&function, id, error);
                }
                result
            };
            counted(&function, call, |_| StatusCode::OK).await
        }
        .await;
        (result, request_id)
    }

    /// Waits for a free instance slot, then reads the body within the function's size limit
    /// and the server's body timeout. Admission comes first so that the bodies held in
    /// memory are bounded by the calls that can run (`max_concurrency` x `request_body` per
    /// function), not by the connections that send them.
    async fn admit<B>(&self, function: &Function, body: B) -> Result<(Bytes, Admission), Error>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let limit = function.config.limits.request_body.as_u64();
        if hyper::body::Body::size_hint(&body).lower() > limit {
            return Err(Error::BodyTooLarge(wafer_runtime::ByteSize::b(limit)));
        }
        let admission = self.admission(function).await?;
        let timeout = self.config.body_timeout;
        let body = tokio::time::timeout(timeout, read_body(body, limit))
            .await
            .map_err(|_| Error::BodyTimeout(timeout))??;
        Ok((body, admission))
    }

    /// Waits for a free instance slot of `function`.
    pub(crate) async fn admission(&self, function: &Function) -> Result<Admission, Error> {
        match function.admit().await {
            Some(admission) => Ok(admission),
            None if function.removed() => {
                Err(wafer_registry::RegistryError::NotFound(function.name.to_string()).into())
            }
            None => Err(Error::Busy(function.name.to_string())),
        }
    }

    fn request_id(&self) -> String {
        let id = format!("{:x}", self.requests.fetch_add(1, Ordering::Relaxed));
        spans::request_id(&id);
        id
    }

    /// Logs a failed call of `function`, and counts it by what went wrong.
    fn log_failure(&self, function: &Function, request_id: &str, error: &Error) {
        function.metrics().failed(error);
        self.logs
            .note(function.name.as_str(), request_id, &error.to_string());
        tracing::warn!(request_id, "{error}");
    }

    /// Logs a failure and tags the response with the request id.
    fn finish(
        &self,
        function: &Function,
        result: Result<Response, Error>,
        request_id: String,
    ) -> Response {
        let response = result.unwrap_or_else(|error| {
            self.log_failure(function, &request_id, &error);
            error.into_response()
        });
        match function.config.request_id_header() {
            true => with_request_id(response, &request_id),
            false => response,
        }
    }

    /// Runs a waPC operation, a plain export, or a function a component exports.
    async fn invoke(
        &self,
        function: &Arc<Function>,
        program: &wafer_runtime::Program,
        call: Call<'_>,
        request_id: &str,
        hops: u32,
    ) -> Result<Answer, Error> {
        let name = function.name.as_str();
        if let Some(functions) = program.component_functions() {
            return self
                .call_component(function, &functions, call, request_id, hops)
                .await;
        }
        let options = self.call_options(function, program, request_id, hops);
        let types = |operation: &str| self.schemas.types(&function.deployment, operation);
        let (result, log) = invoke::invoke(program, &options, name, call, types).await;
        self.logs
            .append_call(function, request_id, &log.text, log.truncated);
        result
    }
}

impl App {
    /// Calls a function a component exports, with the call's body as JSON arguments; the
    /// answer is the result as JSON.
    async fn call_component(
        &self,
        function: &Arc<Function>,
        functions: &wafer_runtime::ComponentFunctions,
        call: Call<'_>,
        request_id: &str,
        hops: u32,
    ) -> Result<Answer, Error> {
        let name = function.name.as_str();
        let export = invoke::component_function(name, &call)?;
        let args = invoke::component_args(&call.body)?;
        let options = self.component_options(function, request_id, hops);
        let called = functions.call(&options, &export, &args).await;
        self.logs
            .append_call(function, request_id, &called.log, called.log_truncated);
        let value = called.result.map_err(|e| invoke::call_error(name, e))?;
        Ok(Answer::json(format!("{value}\n")))
    }

    /// Runs a CGI function with `cgi_request` and turns its stdout into the response (without
    /// a body for a `HEAD` request); `hops` as for [`App::call_options`].
    async fn call_cgi(
        &self,
        function: &Arc<Function>,
        program: &wafer_runtime::Program,
        cgi_request: wafer_runtime::CgiRequest,
        head: bool,
        request_id: &str,
        hops: u32,
    ) -> Result<Response, Error> {
        let name = function.name.as_str();
        let options = self.call_options(function, program, request_id, hops);
        let output = program.run_cgi(cgi_request, &options).await;
        self.logs
            .append_call(function, request_id, &output.log, output.log_truncated);
        match output.exit {
            Err(fault) => Err(Error::Guest {
                name: name.to_owned(),
                fault,
            }),
            Ok(code) => match cgi::parse_output(output.stdout) {
                Err(reason) => Err(Error::BadOutput {
                    name: name.to_owned(),
                    reason,
                }),
                Ok(out) if code != 0 && !out.has_headers => Err(Error::Exit {
                    name: name.to_owned(),
                    code,
                }),
                Ok(out) => Ok(respond(out, head)),
            },
        }
    }
}

/// Runs one call of `function` (a request on its route, an admin or gRPC Invoke, a call of
/// its gRPC service), counting it in the function's metrics: in flight while it runs, then
/// answered with its status (`status` of an answer; an error's own) and duration.
async fn counted<T>(
    function: &Function,
    call: impl Future<Output = Result<T, Error>>,
    status: impl FnOnce(&T) -> StatusCode,
) -> Result<T, Error> {
    // Tracing on, the call runs within its span, in a future of its own on the heap: what
    // tracing adds must not make every call's future bigger (each is copied as it is
    // handed on, and the copies show in the profile of a small call).
    if wafer_host::trace::enabled() {
        return Box::pin(counted_traced(function, call, status)).await;
    }
    let metrics = function.metrics();
    let started = Instant::now();
    let in_flight = metrics.in_flight();
    let result = call.await;
    drop(in_flight);
    answered(function, started, &result, status);
    result
}

/// [`counted`] within the call's span.
async fn counted_traced<T>(
    function: &Function,
    call: impl Future<Output = Result<T, Error>>,
    status: impl FnOnce(&T) -> StatusCode,
) -> Result<T, Error> {
    let span = spans::call(function);
    let started = Instant::now();
    let in_flight = function.metrics().in_flight();
    let result = call.instrument(span.clone()).await;
    drop(in_flight);
    let code = answered(function, started, &result, status);
    spans::called(&span, code);
    result
}

/// Counts a call answered: its status (`status` of an answer, an error's own), which it
/// returns, and its duration since `started`.
fn answered<T>(
    function: &Function,
    started: Instant,
    result: &Result<T, Error>,
    status: impl FnOnce(&T) -> StatusCode,
) -> StatusCode {
    let code = match result {
        Ok(answer) => status(answer),
        Err(error) => error.status(),
    };
    function.metrics().answered(code, started.elapsed());
    code
}

/// The program of a function's active version, or why it cannot run.
fn runnable(function: &Function) -> Result<&wafer_runtime::Program, Error> {
    function
        .program()
        .map_err(|reason| unavailable(function, reason))
}

fn unavailable(function: &Function, reason: &str) -> Error {
    Error::Unavailable {
        name: function.name.to_string(),
        reason: reason.to_owned(),
    }
}

/// Tags a response with the id its log lines carry.
pub fn with_request_id(mut response: Response, request_id: &str) -> Response {
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.headers_mut().insert("x-wafer-request-id", id);
    }
    response
}

/// Request ids count up from the start time in milliseconds, shifted left 16 bits, so ids
/// stay unique across restarts (unless a server handles more than 65,536 requests per
/// millisecond of its lifetime) and still cost one atomic add each.
fn first_request_id() -> u64 {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    millis << 16
}

/// The prefix of the request headers only the server sets (names are lower case).
const RESERVED_HEADERS: &str = "x-wafer-";

/// gRPC requests are told apart by their content type (`application/grpc`, `+proto`, ...).
pub fn is_grpc<B>(request: &Request<B>) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Reads the whole body, refusing one larger than `limit` bytes.
async fn read_body<B>(body: B, limit: u64) -> Result<Bytes, Error>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit_size = wafer_runtime::ByteSize::b(limit);
    if hyper::body::Body::size_hint(&body).lower() > limit {
        return Err(Error::BodyTooLarge(limit_size));
    }
    match Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX))
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Error::BodyTooLarge(limit_size))
        }
        Err(e) => Err(Error::BadBody(e.to_string())),
    }
}

fn respond(out: cgi::Output, head: bool) -> Response {
    let length = out.body.len();
    let body = if head {
        Body::empty()
    } else {
        Body::from(out.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = out.status;
    let headers = response.headers_mut();
    for (name, value) in out.headers {
        headers.append(name, value);
    }
    if head
        && !matches!(
            out.status,
            StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
        )
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    response
}

/// Serves the function plane (HTTP, HTTPS with `tls`) on `listener` until `shutdown`
/// completes, within the connection limits of the app's [`ServeConfig`], then lets requests
/// in flight finish (up to ten seconds). The admin plane is served elsewhere
/// (`wafer-admin`, on its own listener); every other `/_wafer/` path is answered `404`
/// here.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    tls: Option<Arc<Tls>>,
    shutdown: impl Future<Output = impl Sized>,
) -> std::io::Result<()> {
    // Services run while the server does.
    let _services = services::Supervisor::start(app.clone());
    app.https.store(tls.is_some(), Ordering::Relaxed);
    let config = app.config;
    let open = app.connections.clone();
    let handle = move |request, peer| {
        let app = app.clone();
        // Tracing off, a request is one future less deep (a deeper one costs a copy of
        // the whole state of the request's call, measurably).
        async move {
            match wafer_host::trace::enabled() {
                false => app.handle(request, peer).await,
                // Boxed, so that the request's future is no bigger for tracing.
                true => Box::pin(app.handle_traced(request, peer)).await,
            }
        }
    };
    serve_with(listener, config, tls, open, shutdown, handle).await
}

/// Serves HTTP/1.1 and HTTP/2 (over TLS with `tls`) on `listener` until `shutdown`
/// completes, answering each request with `handle`: the connection handling both planes
/// share. Connections are held within `config`'s limits (a slot each, header, idle and
/// close timeouts) and counted in `open` while they are; on shutdown, requests in flight
/// get up to ten seconds to finish.
pub async fn serve_with<H, F>(
    listener: TcpListener,
    config: ServeConfig,
    tls: Option<Arc<Tls>>,
    open: Arc<AtomicU64>,
    shutdown: impl Future<Output = impl Sized>,
    handle: H,
) -> std::io::Result<()>
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let builder = Arc::new(config.builder());
    let slots = server::Slots::new(config.max_connections);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut backoff = server::Backoff::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = async {
            let slot = slots.take().await;
            (slot, listener.accept().await)
        };
        let (slot, (stream, peer)) = tokio::select! {
            (slot, accepted) = accepted => match accepted {
                Ok(accepted) => {
                    backoff.succeeded();
                    (slot, accepted)
                }
                Err(e) => {
                    drop(slot);
                    backoff.failed(&e).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (handle, builder, open) = (handle.clone(), builder.clone(), open.clone());
        let (stopped, tls) = (stopped.clone(), tls.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let _open = server::Open::count(open);
            let activity = Arc::new(server::Activity::default());
            let requests = activity.clone();
            let service = service_fn(move |request| {
                let running = requests.request();
                let response = handle(request, peer);
                async move { Ok::<_, Infallible>(server::until_sent(response.await, running)) }
            });
            let stream = match tls {
                None => Either::Left(stream),
                Some(tls) => {
                    // The handshake gets as long as a request head would.
                    let accepted = tokio::time::timeout(config.header_timeout, tls.accept(stream));
                    let Ok(Some(stream)) = accepted.await else {
                        return;
                    };
                    Either::Right(stream)
                }
            };
            let io = server::Tracked::new(stream, activity.clone());
            let connection = builder.serve_connection(io, service);
            let connection = std::pin::pin!(connection);
            server::watch(connection, &activity, &config, stopped, |c| {
                c.graceful_shutdown()
            })
            .await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    // Every connection holds a slot until it closes: all slots back means all closed.
    if tokio::time::timeout(SHUTDOWN_GRACE, slots.all_closed())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period; closing them");
    }
    Ok(())
}

/// Tells the capabilities which functions are served, now and after every change of the
/// table (a deploy or `rm` on this node or, in a cluster, on another), until the app goes.
async fn follow_table(app: Weak<App>) {
    let Some(mut changes) = app.upgrade().map(|app| app.functions.changes()) else {
        return;
    };
    loop {
        {
            let Some(app) = app.upgrade() else { return };
            let functions = app.functions.all();
            app.caps
                .serve(functions.iter().map(|f| f.deployment.as_ref()));
            app.refresh_reflection();
        }
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// The directories granted to `function`, as the runtime pre-opens them.
pub(crate) fn preopens(function: &Function) -> Vec<wafer_runtime::Preopen> {
    function
        .config
        .grants
        .dirs
        .iter()
        .map(|d| wafer_runtime::Preopen {
            host: d.host.clone(),
            guest: d.guest.clone(),
            read_only: d.read_only,
        })
        .collect()
}

/// A plain-text response.
fn plain(status: StatusCode, text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
