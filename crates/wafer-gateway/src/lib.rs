//! Wafer's HTTP gateway: serves functions CGI-style on their routes, and the admin API under
//! `/_wafer/`.
//!
//! Per request: resolve the path in the [`Registry`] (lock-free), read the body within the
//! function's limit, wait for a free instance (or `503` with `Retry-After`), run the function
//! in a fresh instance, and turn its stdout into the response (see `docs/cgi.md`). Guest
//! faults become `500`/`502`/`504` responses and log lines; they never reach the server.
//!
//! [`serve`] takes a bound listener and a shutdown future, so tests run the real server on
//! `127.0.0.1:0`:
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use std::sync::Arc;
//! use wafer_gateway::{serve, App};
//! use wafer_registry::Registry;
//! use wafer_runtime::{Runtime, RuntimeConfig};
//!
//! let runtime = Arc::new(Runtime::new(&RuntimeConfig::default())?);
//! let registry = Arc::new(Registry::open(".wafer".as_ref(), runtime)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let app = App::new(registry, "secret-token".into(), listener.local_addr()?);
//! serve(listener, app, tokio::signal::ctrl_c()).await?;
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod admin;
mod cgi;
mod error;
mod invoke;
mod logs;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use invoke::{Invocation, ServerHost};
use tokio::net::TcpListener;
use tower::ServiceExt;
use wafer_registry::{Admission, Function, Registry, Resolved};
use wafer_runtime::{Abi, CallOptions};

pub use admin::MAX_UPLOAD;
pub use error::Error;
pub use logs::{LogBook, LogLine, LINES_KEPT};

/// How long shutdown waits for requests in flight before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The gateway's shared state.
pub struct App {
    registry: Arc<Registry>,
    token: String,
    logs: Arc<LogBook>,
    local: SocketAddr,
    requests: AtomicU64,
}

impl App {
    /// State for a gateway serving `registry`, with `token` guarding the admin API, listening
    /// on `local`.
    pub fn new(registry: Arc<Registry>, token: String, local: SocketAddr) -> Arc<Self> {
        Arc::new(Self {
            registry,
            token,
            logs: Arc::default(),
            local,
            requests: AtomicU64::new(0),
        })
    }

    /// The function logs.
    pub fn logs(&self) -> &LogBook {
        &self.logs
    }

    async fn handle(
        &self,
        admin: axum::Router,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response {
        if request.uri().path().starts_with("/_wafer/") {
            return match admin.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
        }
        match self.call(request, peer).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    /// Runs the function a request is routed to.
    async fn call(&self, request: Request<Incoming>, peer: SocketAddr) -> Result<Response, Error> {
        let path = request.uri().path();
        let resolved = self
            .registry
            .resolve(path)
            .ok_or_else(|| Error::NoRoute(path.to_owned()))?;
        let function = &resolved.function;
        let program = function.program().map_err(|reason| Error::Unavailable {
            name: function.name.to_string(),
            reason: reason.to_owned(),
        })?;
        let (parts, body) = request.into_parts();
        let (body, _admission) = self.admit(function, body).await?;
        let request_id = self.request_id();
        let result = match program.abi() {
            Abi::Cgi => {
                self.call_cgi(program, &parts, body, peer, &resolved, &request_id)
                    .await
            }
            Abi::Wapc | Abi::Exports => {
                let rest = &parts.uri.path()[resolved.script_name_len..];
                self.invoke(function, program, &parts, rest, body, &request_id)
                    .await
            }
        };
        Ok(self.finish(function.name.as_str(), result, request_id))
    }

    /// Calls an operation of a waPC or exports function for the admin API.
    pub(crate) async fn invoke_by_name(
        &self,
        function: &Function,
        operation: &str,
        parts: &http::request::Parts,
        body: axum::body::Body,
    ) -> Result<Response, Error> {
        let name = function.name.as_str();
        let program = function.program().map_err(|reason| Error::Unavailable {
            name: name.to_owned(),
            reason: reason.to_owned(),
        })?;
        if program.abi() == Abi::Cgi {
            return Err(Error::BadRequest(format!(
                "function `{name}` is a CGI program: call it over HTTP at its route"
            )));
        }
        let (body, _admission) = self.admit(function, body).await?;
        let request_id = self.request_id();
        let rest = format!("/{operation}");
        let result = self
            .invoke(function, program, parts, &rest, body, &request_id)
            .await;
        Ok(self.finish(name, result, request_id))
    }

    /// Reads the body within the function's limit, then waits for a free instance slot.
    async fn admit<B>(&self, function: &Function, body: B) -> Result<(Bytes, Admission), Error>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let body = read_body(body, function.config.limits.request_body.as_u64()).await?;
        let admission = function
            .admit()
            .await
            .ok_or_else(|| Error::Busy(function.name.to_string()))?;
        Ok((body, admission))
    }

    fn request_id(&self) -> String {
        format!("{:x}", self.requests.fetch_add(1, Ordering::Relaxed))
    }

    /// Logs a failure and tags the response with the request id.
    fn finish(&self, name: &str, result: Result<Response, Error>, request_id: String) -> Response {
        let mut response = result.unwrap_or_else(|error| {
            self.logs
                .append(name, &request_id, error.to_string().as_bytes());
            tracing::warn!(request_id, "{error}");
            error.into_response()
        });
        if let Ok(id) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-wafer-request-id", id);
        }
        response
    }

    /// Runs a waPC operation or a plain export (`rest` is `/OPERATION`).
    async fn invoke(
        &self,
        function: &Function,
        program: &wafer_runtime::Program,
        parts: &http::request::Parts,
        rest: &str,
        body: Bytes,
        request_id: &str,
    ) -> Result<Response, Error> {
        let name = function.name.as_str();
        let options = CallOptions {
            limits: function.config.limits,
            host: Some(Arc::new(ServerHost {
                logs: self.logs.clone(),
                function: name.to_owned(),
                request_id: request_id.to_owned(),
            })),
        };
        let call = Invocation {
            function: name,
            method: &parts.method,
            rest,
            query: parts.uri.query(),
            content_type: parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            body,
        };
        let (result, log) = invoke::invoke(program, &options, call).await;
        self.logs.append(name, request_id, &log);
        result
    }
}

impl App {
    /// Runs a CGI function and turns its stdout into the response.
    async fn call_cgi(
        &self,
        program: &wafer_runtime::Program,
        parts: &http::request::Parts,
        body: Bytes,
        peer: SocketAddr,
        resolved: &Resolved,
        request_id: &str,
    ) -> Result<Response, Error> {
        let function = &resolved.function;
        let name = function.name.as_str();
        let limits = &function.config.limits;
        let head = parts.method == Method::HEAD;
        let cgi_request = cgi::request(parts, body, peer, self.local, resolved, program.inputs());
        let output = program.run_cgi(cgi_request, limits).await;
        self.logs.append(name, request_id, &output.log);
        if output.log_truncated {
            self.logs.append(
                name,
                request_id,
                format!("[log truncated at {}]", limits.stderr).as_bytes(),
            );
        }
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

/// Serves HTTP on `listener` until `shutdown` completes, then lets requests in flight finish
/// (up to ten seconds).
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = impl Sized>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let admin = admin::router(app.clone());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let (app, admin) = (app.clone(), admin.clone());
        let service = service_fn(move |request| {
            let (app, admin) = (app.clone(), admin.clone());
            async move { Ok::<_, Infallible>(app.handle(admin, request, peer).await) }
        });
        let connection = http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(Duration::from_secs(30))
            .serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown grace period; closing them");
    }
    Ok(())
}
