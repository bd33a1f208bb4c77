//! The core every WASI 0.2 component shares, whatever calls it (its HTTP handler, a
//! subscription, a typed call of an export): the state of one instance ([`HttpCtx`]: WASI,
//! `wasi:http`, the capability interfaces, its log and limits), the options of a call
//! ([`HttpOptions`]), and outgoing requests, which go to an [`Outbound`] sender that checks and
//! sends them; without one every outgoing request is denied.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use wasmtime::component::ResourceTable;
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::error::Fault;
use crate::host_call::HostCalls;
use crate::interfaces::{Capabilities, HasCapabilities};
use crate::output::{CappedPipe, Overflow};
use crate::sandbox::{describe_trap, preopen, MemoryLimiter, Preopen};
use wafer_abi::Limits;

/// A request or response body crossing the [`Outbound`] seam.
pub type OutboundBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

/// Any error a body or a sender reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an outgoing request got no response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The policy refused it; the guest sees `HTTP-request-denied`.
    #[error("denied: {0}")]
    Denied(String),
    /// It was allowed but did not complete (connection, TLS, protocol).
    #[error("failed: {0}")]
    Failed(String),
}

/// Sends a guest's outgoing requests, or refuses them.
///
/// The sender both checks and connects, so that the address it checked is the address it
/// connects to: checking a name and then letting another client resolve it again would let
/// a name that changes its answer in between (DNS rebinding) reach what the check refused.
pub trait Outbound: Send + Sync {
    /// Sends one request (an absolute URI, the guest's headers and body) and returns the
    /// response, its body still streaming. Redirects are the guest's to follow.
    fn send(
        self: Arc<Self>,
        request: http::Request<OutboundBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<OutboundBody>, OutboundError>> + Send>>;
}

/// How to handle one request: the guest's environment, its limits, its outbound policy.
#[derive(Clone, Default)]
pub struct HttpOptions {
    /// Environment variables (`wasi:cli/environment`).
    pub env: Vec<(String, String)>,
    /// Memory, time (for the whole exchange, body included) and log size.
    pub limits: Limits,
    /// Who may be called with `wasi:http/outgoing-handler`; `None` denies everything.
    pub outbound: Option<Arc<dyn Outbound>>,
    /// Answers the capability interfaces (`wasi:keyvalue`, `wasi:config`, `wasi:logging`,
    /// `wafer:pubsub`) as host calls; without it every such call is denied.
    pub host: Option<Arc<dyn HostCalls>>,
    /// Host directories pre-opened for the guest (`wasi:filesystem` preopens); none by
    /// default.
    pub dirs: Vec<Preopen>,
    /// Whether the request came over HTTPS: the scheme its `incoming-request` reports.
    pub https: bool,
    /// Which addresses the guest may open TCP connections to with `wasi:sockets` (and then
    /// it may look names up too); `None` denies every socket.
    pub sockets: Option<SocketCheck>,
}

/// Whether a TCP connection to an address is allowed.
pub type SocketCheck = Arc<dyn Fn(std::net::SocketAddr) -> bool + Send + Sync>;

/// The state of one request's instance.
pub struct HttpCtx {
    pub(crate) wasi: WasiCtx,
    pub(crate) http: WasiHttpCtx,
    pub(crate) table: ResourceTable,
    pub(crate) host: Option<Arc<dyn HostCalls>>,
    pub(crate) hooks: Hooks,
    pub(crate) memory: MemoryLimiter,
    pub(crate) deadline: Instant,
    pub(crate) timed_out: bool,
}

impl HttpCtx {
    /// The instance's stdout and stderr.
    pub(crate) fn log(&self) -> &CappedPipe {
        &self.hooks.log
    }
}

impl HasCapabilities for HttpCtx {
    fn capabilities(&mut self) -> Capabilities<'_> {
        Capabilities {
            table: &mut self.table,
            host: self.host.as_ref(),
        }
    }
}

impl WasiView for HttpCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HttpCtx {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Outgoing requests: handed to the function's [`Outbound`] sender, which checks and sends
/// them. A refusal or failure is logged with its reason; the guest sees
/// `HTTP-request-denied` or an internal error.
pub(crate) struct Hooks {
    pub(crate) outbound: Option<Arc<dyn Outbound>>,
    /// Send every request as it is, with wasmtime's own client (`wafer run --network`).
    pub(crate) unrestricted: bool,
    pub(crate) log: CappedPipe,
}

type SendResult = wasmtime_wasi_http::Result<(
    http::Response<wasmtime_wasi_http::WasiBody>,
    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
)>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<dyn Future<Output = SendResult> + Send> {
        drop(fut);
        if self.unrestricted {
            return Box::new(async move {
                let (response, io) =
                    wasmtime_wasi_http::default_send_request(request, options).await?;
                Ok((
                    response.map(BodyExt::boxed_unsync),
                    Box::new(io) as Box<dyn Future<Output = _> + Send>,
                ))
            });
        }
        let (outbound, log) = (self.outbound.clone(), self.log.clone());
        // The guest's connect and first-byte timeouts bound the wait for the response head;
        // the call's own timeout bounds everything.
        let head_timeout = options.and_then(|o| match (o.connect_timeout, o.first_byte_timeout) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        });
        Box::new(async move {
            let uri = request.uri().clone();
            let refuse = |why: &OutboundError| {
                log.append(format!("outgoing request to {uri} {why}\n").as_bytes());
            };
            let Some(outbound) = outbound else {
                refuse(&OutboundError::Denied(
                    "this function may not make HTTP requests".into(),
                ));
                return Err(wasmtime_wasi_http::Error::HttpRequestDenied);
            };
            let request =
                request.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync());
            let send = outbound.send(request);
            let result = match head_timeout {
                Some(limit) => match tokio::time::timeout(limit, send).await {
                    Ok(result) => result,
                    Err(_) => return Err(wasmtime_wasi_http::Error::ConnectionReadTimeout),
                },
                None => send.await,
            };
            match result {
                Ok(response) => Ok((
                    response.map(|body| {
                        body.map_err(|e| {
                            wasmtime_wasi_http::Error::InternalError(Some(e.to_string()))
                        })
                        .boxed_unsync()
                    }),
                    Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
                )),
                Err(why) => {
                    refuse(&why);
                    Err(match why {
                        OutboundError::Denied(_) => wasmtime_wasi_http::Error::HttpRequestDenied,
                        OutboundError::Failed(message) => {
                            wasmtime_wasi_http::Error::InternalError(Some(message))
                        }
                    })
                }
            }
        })
    }
}

/// A store for a new component instance: the function's environment, log, outbound policy,
/// host calls, directories and memory limit. The deadline is set per request.
pub(crate) fn new_store(
    engine: &wasmtime::Engine,
    options: &HttpOptions,
) -> Result<Store<HttpCtx>, Fault> {
    let limits = options.limits;
    let log = CappedPipe::new(limits.stderr_bytes(), Overflow::Truncate);
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(log.clone())
        .stderr(log.clone())
        .envs(&options.env);
    preopen(&mut wasi, &options.dirs)?;
    if let Some(check) = options.sockets.clone() {
        wasi.allow_tcp(true)
            .allow_udp(false)
            .allow_ip_name_lookup(true)
            .socket_addr_check(move |addr, use_| {
                let allowed = match use_ {
                    SocketAddrUse::TcpConnect => check(addr),
                    // The implicit bind before a connect (any address, a port the system
                    // picks); no listening.
                    SocketAddrUse::TcpBind => addr.ip().is_unspecified() && addr.port() == 0,
                    _ => false,
                };
                Box::pin(async move { allowed })
            });
    }
    let ctx = HttpCtx {
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
        host: options.host.clone(),
        hooks: Hooks {
            outbound: options.outbound.clone(),
            unrestricted: false,
            log,
        },
        memory: MemoryLimiter::new(limits.memory_bytes()),
        deadline: limits.deadline(Instant::now()),
        timed_out: false,
    };
    let mut store = Store::new(engine, ctx);
    store.limiter(|cx| &mut cx.memory);
    store.epoch_deadline_callback(|mut cx| {
        let cx = cx.data_mut();
        if Instant::now() >= cx.deadline {
            cx.timed_out = true;
            return Ok(UpdateDeadline::Interrupt);
        }
        Ok(UpdateDeadline::Yield(1))
    });
    Ok(store)
}

/// What a failed run amounts to, given what the store saw.
pub(crate) fn fault(ctx: &HttpCtx, error: &wasmtime::Error, limits: &Limits) -> Fault {
    if ctx.timed_out {
        Fault::Timeout(limits.timeout)
    } else if ctx.memory.exceeded {
        Fault::OutOfMemory(limits.memory)
    } else {
        Fault::Trap(describe_trap(error))
    }
}
