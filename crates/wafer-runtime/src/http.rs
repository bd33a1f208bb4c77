//! HTTP components: WASI 0.2 components exporting `wasi:http/incoming-handler` (the
//! `wasi:http/proxy` world) and WASI 0.3 components exporting `wasi:http/handler` (the
//! `wasi:http/service` world, component-model async), the components `wasmtime serve` and
//! Spin run.
//!
//! A WASI 0.3 handler runs inside the store's event loop (`run_concurrent`), which also moves
//! the bytes of the body it returns: the loop runs on until the response body has been read
//! to its end (or dropped) and every task the guest started has exited.
//!
//! Each request gets a fresh instance in a fresh store, unless the function opted into
//! instance reuse ([`InstancePool`]). The request body streams into the guest and the
//! response body streams out as the guest writes it; the guest keeps running after it has
//! set the response, until it finishes writing the body. Time and memory limits apply to the
//! whole of it. Outgoing requests (`wasi:http/outgoing-handler`) go to an [`Outbound`]
//! sender, which checks and sends them; without one every outgoing request is denied.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};
use wasmtime_wasi_http::WasiHttpView;

use crate::component::{fault, new_store, HttpCtx, HttpOptions};
use crate::concurrent::{Job, Sharing, Workers};
use crate::error::{CallError, Fault};
use crate::interfaces::SUBSCRIBER;
use crate::ticker::Running;
use crate::typed::ComponentFunctions;
use wafer_abi::Limits;

/// A compiled HTTP component, ready to handle requests.
#[derive(Clone)]
pub struct HttpComponent {
    handler: Handler,
    /// The same component as the functions it exports (its imports, its other exports).
    functions: ComponentFunctions,
}

/// The export requests go through.
#[derive(Clone)]
enum Handler {
    /// WASI 0.2: `wasi:http/incoming-handler`, called with a response outparam.
    P2(ProxyPre<HttpCtx>),
    /// WASI 0.3: `wasi:http/handler`, an async function returning the response.
    P3(ServicePre<HttpCtx>),
}

/// An instance of either kind, kept for reuse.
enum Instance {
    P2(Proxy),
    P3(Service),
}

impl HttpComponent {
    /// A WASI 0.2 HTTP component.
    pub(crate) fn p2(pre: ProxyPre<HttpCtx>) -> Self {
        let functions = ComponentFunctions::new(pre.instance_pre().clone());
        Self {
            handler: Handler::P2(pre),
            functions,
        }
    }

    /// A WASI 0.3 HTTP component.
    pub(crate) fn p3(pre: ServicePre<HttpCtx>) -> Self {
        let functions = ComponentFunctions::new(pre.instance_pre().clone());
        Self {
            handler: Handler::P3(pre),
            functions,
        }
    }

    /// The WASI version of its handler: `"0.2"` or `"0.3"`.
    pub fn wasi_version(&self) -> &'static str {
        match self.handler {
            Handler::P2(_) => "0.2",
            Handler::P3(_) => "0.3",
        }
    }

    /// The interfaces the component imports, as `package/interface@version`.
    pub fn imports(&self) -> Vec<String> {
        self.functions.imports()
    }

    /// Whether the component imports any capability interface (`wasi:keyvalue`, `wasi:config`,
    /// `wasi:logging`, `wafer:pubsub`), and so needs [`HttpOptions::host`].
    pub fn uses_capabilities(&self) -> bool {
        self.functions.uses_capabilities()
    }

    /// The functions the component exports besides its HTTP handler, callable with JSON.
    pub fn functions(&self) -> &ComponentFunctions {
        &self.functions
    }

    /// Whether the component exports the interface `name` (`package/interface@version`).
    pub fn exports_interface(&self, name: &str) -> bool {
        self.functions.exports_interface(name)
    }
}

/// Instances of one function version kept between requests: the opt-in instance-reuse mode.
///
/// An instance whose handler returned is put back and serves the next request, up to
/// `instance_reuse` requests in all; one that trapped, timed out or ran out of memory is
/// dropped. Instantiation is skipped, but whatever the guest leaves in its memory, globals or
/// environment is seen by the requests that follow: reuse trades isolation between requests
/// for speed. At most as many instances exist as the function's concurrency limit allows;
/// idle ones are dropped after `instance_idle`.
///
/// A WASI 0.3 component's instance also serves up to `max_concurrent_per_instance` requests
/// at once (see `concurrent`); a WASI 0.2 one serves one at a time.
pub struct InstancePool {
    max_uses: u32,
    idle_timeout: Duration,
    idle: Mutex<Idle>,
    /// Instances serving WASI 0.3 requests concurrently, when more than one at once is allowed.
    workers: Option<Arc<Workers>>,
}

#[derive(Default)]
struct Idle {
    instances: Vec<Kept>,
    /// Whether a task is sweeping out instances idle past the idle timeout.
    sweeping: bool,
}

/// An instance waiting for its next request.
struct Kept {
    store: Store<HttpCtx>,
    instance: Instance,
    uses: u32,
    since: Instant,
}

impl InstancePool {
    /// A pool for a function with these limits: its instances serve up to `instance_reuse`
    /// requests each (WASI 0.3 ones up to `max_concurrent_per_instance` at once), and are
    /// dropped after `instance_idle` idle.
    pub fn new(limits: &Limits) -> Arc<Self> {
        let sharing = Sharing {
            uses: limits.instance_reuse,
            at_once: limits.max_concurrent_per_instance,
            idle: limits.instance_idle,
        };
        Arc::new(Self {
            max_uses: limits.instance_reuse,
            idle_timeout: limits.instance_idle,
            idle: Mutex::default(),
            workers: (sharing.at_once > 1).then(|| Arc::new(Workers::new(sharing))),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        // Nothing here panics while holding the lock; if it did, the list is still valid.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The most recently used idle instance: its memory is the likeliest to be warm.
    fn take(&self) -> Option<Kept> {
        self.lock().instances.pop()
    }

    /// Keeps an instance that has served `uses` requests, if it may serve more.
    fn put(self: &Arc<Self>, store: Store<HttpCtx>, instance: Instance, uses: u32) {
        if uses >= self.max_uses {
            return;
        }
        let kept = Kept {
            store,
            instance,
            uses,
            since: Instant::now(),
        };
        let mut idle = self.lock();
        idle.instances.push(kept);
        if !std::mem::replace(&mut idle.sweeping, true) {
            tokio::spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        }
    }
}

/// Drops instances idle past the pool's idle timeout until none are left, or the pool is gone.
async fn sweep(pool: Weak<InstancePool>, idle_timeout: Duration) {
    loop {
        tokio::time::sleep(idle_timeout / 4).await;
        let Some(pool) = pool.upgrade() else { return };
        let (stale, done) = {
            let mut idle = pool.lock();
            // Oldest first: instances are pushed as they are put back.
            let fresh = idle
                .instances
                .iter()
                .position(|kept| kept.since.elapsed() < idle_timeout)
                .unwrap_or(idle.instances.len());
            let stale: Vec<Kept> = idle.instances.drain(..fresh).collect();
            idle.sweeping = !idle.instances.is_empty();
            (stale, !idle.sweeping)
        };
        // Stores are dropped outside the lock: freeing an instance is not free.
        drop(stale);
        if done {
            return;
        }
    }
}

/// What became of a request: the response (its body streams on while the guest runs), and
/// the guest's run, which ends after the body is written.
pub struct Handled {
    /// The response the guest set, or why there is none (a trap, a timeout, no response).
    pub response: Result<http::Response<HyperOutgoingBody>, Fault>,
    /// The guest's run: how it ended, and what it logged.
    pub done: Done,
}

/// The guest's run after the response was handed back.
pub enum Done {
    /// It had already ended (the usual case for a short handler).
    Ended(Finished),
    /// It goes on in this task, writing the body.
    Running(tokio::task::JoinHandle<Finished>),
    /// It goes on in a shared instance, which says how it ended here; or the reason that
    /// instance failed, if it did first.
    Shared(
        tokio::sync::oneshot::Receiver<Finished>,
        Arc<std::sync::OnceLock<Fault>>,
    ),
}

impl Done {
    /// Waits for the run to end; `None` if its task panicked.
    pub async fn wait(self) -> Option<Finished> {
        match self {
            Done::Ended(finished) => Some(finished),
            Done::Running(task) => task.await.ok(),
            Done::Shared(finished, failure) => Some(finished.await.unwrap_or_else(|_| {
                Finished::failed(failure.get().cloned().unwrap_or_else(|| {
                    Fault::Trap("the instance serving this request stopped".into())
                }))
            })),
        }
    }
}

impl Finished {
    /// A run that ended with `fault` before it logged anything.
    fn failed(fault: Fault) -> Self {
        Self {
            result: Err(fault),
            log: Bytes::new(),
            log_truncated: false,
        }
    }
}

impl Handled {
    /// A request that failed with `fault` before its instance ran.
    fn failed(fault: Fault) -> Self {
        Self {
            response: Err(fault.clone()),
            done: Done::Ended(Finished::failed(fault)),
        }
    }
}

/// The response the guest answered with, or the fault: the error code it returned instead,
/// or none at all (`None`: it ended without setting one).
fn response_of(answer: Option<Answer>) -> Result<http::Response<HyperOutgoingBody>, Fault> {
    match answer {
        Some(Ok(response)) => Ok(response),
        Some(Err(code)) => Err(Fault::Trap(format!(
            "the component answered with an error instead of a response: {code}"
        ))),
        // The outparam was dropped unset: the run ended (trapped, timed out, or returned
        // without a response).
        None => Err(Fault::Trap(
            "the component returned without setting a response".into(),
        )),
    }
}

/// How a delivery to a subscribing component went.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// `Ok` if `on-message` returned `ok`; the guest's error, or the fault.
    pub result: Result<(), CallError>,
    /// stdout and stderr.
    pub log: Bytes,
    /// Whether the log went past its limit and was cut.
    pub log_truncated: bool,
}

/// How a request's instance ended.
#[derive(Debug, Clone)]
pub struct Finished {
    /// `Ok` if the handler returned; otherwise the fault.
    pub result: Result<(), Fault>,
    /// stdout and stderr.
    pub log: Bytes,
    /// Whether the log went past its limit and was cut.
    pub log_truncated: bool,
}

impl HttpComponent {
    /// Handles `request`, in a fresh instance or, with a `pool`, in an idle one from it.
    /// Returns once the guest has set the response (or failed before doing so); the guest
    /// runs on in its own task while the body streams.
    pub async fn handle<B>(
        &self,
        request: http::Request<B>,
        options: &HttpOptions,
        pool: Option<&Arc<InstancePool>>,
    ) -> Handled
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        if let (Handler::P3(pre), Some(workers)) =
            (&self.handler, pool.and_then(|p| p.workers.as_ref()))
        {
            return handle_shared(workers, pre, request, options).await;
        }
        let limits = options.limits;
        let (mut store, kept, uses) = match pool.and_then(|pool| pool.take()) {
            Some(kept) => (kept.store, Some(kept.instance), kept.uses),
            None => match self.store(options) {
                Ok(store) => (store, None, 0),
                Err(fault) => return Handled::failed(fault),
            },
        };
        store.data_mut().deadline = limits.deadline(Instant::now());
        // A kept instance serves this request's host calls, not its first request's.
        store.data_mut().host.clone_from(&options.host);
        store.set_epoch_deadline(1);

        let (sender, mut receiver) = tokio::sync::oneshot::channel::<Answer>();
        // Whether the guest answered decides whether its instance may be reused.
        let answered = Arc::new(AtomicBool::new(false));
        let call = match &self.handler {
            Handler::P2(pre) => p2_call(
                pre.clone(),
                &mut store,
                kept,
                request,
                options.https,
                sender,
                answered.clone(),
            ),
            Handler::P3(pre) => p3_call(
                pre.clone(),
                kept,
                request,
                options.https,
                sender,
                answered.clone(),
            ),
        };
        let pool = pool.cloned();
        let mut run: Pin<Box<dyn Future<Output = Finished> + Send>> = Box::pin(async move {
            let running = Running::start();
            // The epoch deadline stops a guest that computes; this stops one that waits.
            let outcome = match tokio::time::timeout(limits.timeout, call(&mut store)).await {
                Ok(Ok(instance)) => Ok(instance),
                Ok(Err(e)) => Err(fault(store.data(), &e, &limits)),
                Err(_) => Err(Fault::Timeout(limits.timeout)),
            };
            drop(running);
            let (log, log_truncated) = store.data().hooks.log.drain();
            let result = match (outcome, pool) {
                (Ok(instance), Some(pool)) => {
                    // Fit to serve again: the handler returned, answered, and left nothing
                    // behind (a body it never finished would keep the client waiting).
                    let answered = answered.load(Ordering::Relaxed);
                    let left_open = !store.data().table.is_empty();
                    if answered && !left_open {
                        pool.put(store, instance, uses + 1);
                    } else {
                        tracing::debug!(answered, left_open, "instance not reused");
                    }
                    Ok(())
                }
                (outcome, _) => outcome.map(drop),
            };
            Finished {
                result,
                log,
                log_truncated,
            }
        });
        // The guest runs here until it sets the response or ends. One still writing its body
        // then goes on in a task of its own; a short handler has ended by then and needs none.
        let first = std::future::poll_fn(|cx| {
            if let Poll::Ready(answer) = Pin::new(&mut receiver).poll(cx) {
                return Poll::Ready(Ok(answer));
            }
            run.as_mut().poll(cx).map(Err)
        })
        .await;
        let (answer, done) = match first {
            Ok(answer) => {
                // One more turn for the guest: a short body written just after the response
                // then goes out with its head.
                let done = match std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await
                {
                    Poll::Ready(finished) => Done::Ended(finished),
                    Poll::Pending => Done::Running(tokio::spawn(run)),
                };
                (answer.ok(), done)
            }
            // Over: the response was set during the run, or never will be (the outparam went
            // with the guest's resources).
            Err(finished) => (receiver.try_recv().ok(), Done::Ended(finished)),
        };
        let response = response_of(answer);
        Handled { response, done }
    }

    /// Calls the component's `wafer:pubsub/subscriber` `on-message` export with one message,
    /// in a fresh instance, within the options' limits.
    pub async fn deliver(&self, options: &HttpOptions, topic: &str, message: &[u8]) -> Delivered {
        let limits = options.limits;
        let mut store = match self.store(options) {
            Ok(store) => store,
            Err(fault) => {
                return Delivered {
                    result: Err(CallError::Fault(fault)),
                    log: Bytes::new(),
                    log_truncated: false,
                }
            }
        };
        store.set_epoch_deadline(1);
        let pre = self.functions.instance_pre().clone();
        let run = async {
            let instance = crate::trace::instantiated!(pre.instantiate_async(&mut store))?;
            let missing = || wasmtime::format_err!("the component does not export `{SUBSCRIBER}`");
            let interface = instance
                .get_export_index(&mut store, None, SUBSCRIBER)
                .ok_or_else(missing)?;
            let index = instance
                .get_export_index(&mut store, Some(&interface), "on-message")
                .ok_or_else(missing)?;
            let on_message = instance
                .get_typed_func::<(&str, &[u8]), (Result<(), String>,)>(&mut store, &index)?;
            let (answer,) = on_message.call_async(&mut store, (topic, message)).await?;
            Ok::<_, wasmtime::Error>(answer)
        };
        let running = Running::start();
        let result = match tokio::time::timeout(limits.timeout, run).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(said))) => Err(CallError::Guest(said)),
            Ok(Err(e)) => Err(CallError::Fault(fault(store.data(), &e, &limits))),
            Err(_) => Err(CallError::Fault(Fault::Timeout(limits.timeout))),
        };
        drop(running);
        let (log, log_truncated) = store.data().hooks.log.drain();
        Delivered {
            result,
            log,
            log_truncated,
        }
    }

    /// A store for a new instance; see [`new_store`].
    fn store(&self, options: &HttpOptions) -> Result<Store<HttpCtx>, Fault> {
        new_store(self.functions.engine(), options)
    }
}

/// Handles `request` on a WASI 0.3 instance shared with other requests (see `concurrent`).
async fn handle_shared<B>(
    workers: &Arc<Workers>,
    pre: &ServicePre<HttpCtx>,
    request: http::Request<B>,
    options: &HttpOptions,
) -> Handled
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let (answer, answered) = tokio::sync::oneshot::channel();
    let (finished, done) = tokio::sync::oneshot::channel();
    let job = Job {
        request: request.map(|body| body.map_err(Into::into).boxed_unsync()),
        https: options.https,
        deadline: options.limits.deadline(Instant::now()),
        answer,
        finished,
    };
    let done = match workers.dispatch(pre, options, job) {
        Ok(failure) => Done::Shared(done, failure),
        Err(fault) => return Handled::failed(fault),
    };
    match answered.await {
        Ok(answer) => Handled {
            response: response_of(Some(answer)),
            done,
        },
        // No answer: the request ended first; its end says why.
        Err(_) => {
            // A shared run always says how it ended (`wait` is never `None` for it).
            let Some(finished) = done.wait().await else {
                return Handled::failed(Fault::Trap("the instance stopped".into()));
            };
            let response = match &finished.result {
                Err(fault) => Err(fault.clone()),
                Ok(()) => response_of(None),
            };
            Handled {
                response,
                done: Done::Ended(finished),
            }
        }
    }
}

/// The guest's answer: the response, or the error code it returned instead.
pub(crate) type Answer = Result<http::Response<HyperOutgoingBody>, String>;

/// One request's run in `store`, to be awaited within the time limit: the handler called
/// (in `kept`, or a new instance) until it is done; the instance, fit to keep.
type Call = Box<
    dyn for<'a> FnOnce(
            &'a mut Store<HttpCtx>,
        )
            -> Pin<Box<dyn Future<Output = wasmtime::Result<Instance>> + Send + 'a>>
        + Send,
>;

/// A WASI 0.2 request: `incoming-handler.handle(request, response-outparam)`; the answer is
/// what the guest sets on the outparam.
fn p2_call<B>(
    pre: ProxyPre<HttpCtx>,
    store: &mut Store<HttpCtx>,
    kept: Option<Instance>,
    request: http::Request<B>,
    https: bool,
    sender: tokio::sync::oneshot::Sender<Answer>,
    answered: Arc<AtomicBool>,
) -> Call
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let prepared = (|| -> wasmtime::Result<_> {
        let mut http = store.data_mut().http();
        let scheme = match https {
            true => Scheme::Https,
            false => Scheme::Http,
        };
        let request = http.new_incoming_request(scheme, request)?;
        let out = http.new_response_outparam_from_callback(move |response| {
            answered.store(true, Ordering::Relaxed);
            let _ = sender.send(response.map_err(|code| format!("{code:?}")));
        })?;
        Ok((request, out))
    })();
    Box::new(move |store| {
        Box::pin(async move {
            let (request, out) = prepared?;
            let proxy = match kept {
                Some(Instance::P2(proxy)) => proxy,
                _ => crate::trace::instantiated!(pre.instantiate_async(&mut *store))?,
            };
            proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut *store, request, out)
                .await?;
            Ok(Instance::P2(proxy))
        })
    })
}

/// A WASI 0.3 request: `handler.handle(request)` returns the response, whose body the
/// store's event loop goes on moving until it is read to its end or dropped; the call is
/// done then, once every task the guest started has exited too.
fn p3_call<B>(
    pre: ServicePre<HttpCtx>,
    kept: Option<Instance>,
    request: http::Request<B>,
    https: bool,
    sender: tokio::sync::oneshot::Sender<Answer>,
    answered: Arc<AtomicBool>,
) -> Call
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    Box::new(move |store| {
        Box::pin(async move {
            let service = match kept {
                Some(Instance::P3(service)) => service,
                _ => crate::trace::instantiated!(pre.instantiate_async(&mut *store))?,
            };
            store
                .run_concurrent(async |guest| {
                    p3_serve(guest, &service, request, https, sender, &answered).await?;
                    std::future::poll_fn(|cx| guest.poll_no_interesting_tasks(cx)).await;
                    wasmtime::Result::<()>::Ok(())
                })
                .await??;
            Ok(Instance::P3(service))
        })
    })
}

/// Serves one request on a WASI 0.3 instance, within its store's event loop: hands the
/// guest the request, sends back its answer, and returns once the response body has been
/// read to its end or dropped (the guest's own tasks may still run).
pub(crate) async fn p3_serve<B>(
    guest: &wasmtime::component::Accessor<HttpCtx>,
    service: &Service,
    request: http::Request<B>,
    https: bool,
    sender: tokio::sync::oneshot::Sender<Answer>,
    answered: &AtomicBool,
) -> wasmtime::Result<()>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    use wasmtime_wasi_http::p3::Request;
    let (parts, body) = request.into_parts();
    // A server's request names its host in the `Host` header, which the guest never sees
    // (a forbidden header): it gets the authority and scheme as the request's own.
    let authority = parts.uri.authority().cloned().or_else(|| {
        let host = parts.headers.get(http::header::HOST)?;
        http::uri::Authority::try_from(host.as_bytes()).ok()
    });
    let scheme = match https {
        true => http::uri::Scheme::HTTPS,
        false => http::uri::Scheme::HTTP,
    };
    let path = parts.uri.path_and_query().cloned();
    let headers = guest.with(|mut store| {
        wasmtime_wasi_http::FieldMap::new_immutable(store.data_mut().http().hooks, parts.headers)
    });
    let (request, request_io) = Request::new(
        parts.method,
        Some(scheme),
        authority,
        path,
        headers,
        None,
        body,
    );
    let (done, body_done) = tokio::sync::oneshot::channel();
    let answer = match service.handle(guest, request).await? {
        Ok(response) => {
            let response = guest.with(|s| response.into_http(s, request_io))?;
            answered.store(true, Ordering::Relaxed);
            Ok(response.map(|body| Watched::new(body, done).boxed_unsync()))
        }
        Err(code) => {
            drop(done);
            Err(format!("{code:?}"))
        }
    };
    // One turn of the store's event loop before the answer leaves: the guest writes a short
    // body then, and it goes out with the head in one write, not one write each (a deferred
    // yield: an immediate wake-up re-polls this future before the guest's tasks).
    tokio::task::yield_now().await;
    let _ = sender.send(answer);
    // Read to its end, or dropped (the client went): either way, done.
    let _ = body_done.await;
    Ok(())
}

/// A response body that says when it is over: read to its end or failed (the sender
/// fires), or dropped (the sender goes with it).
struct Watched {
    body: HyperOutgoingBody,
    done: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Watched {
    fn new(body: HyperOutgoingBody, done: tokio::sync::oneshot::Sender<()>) -> Self {
        Self {
            body,
            done: Some(done),
        }
    }
}

impl Body for Watched {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            if let Some(done) = this.done.take() {
                let _ = done.send(());
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
