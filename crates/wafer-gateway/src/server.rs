//! Accepting and keeping connections: the server-wide limits that hold against clients who
//! connect and say nothing, trickle their headers, sit on idle keep-alive connections, or
//! open more connections than the server has descriptors for.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// Server-wide limits on connections, set once when the server starts (`wafer serve` flags).
///
/// Each default is what a public-facing server needs; `docs/limits.md` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeConfig {
    /// Connections open at once. Past it, new connections wait in the kernel's accept queue
    /// until one closes. Default 10,000 (each costs a file descriptor and a few KiB).
    pub max_connections: usize,
    /// Time from accepting a connection to its first complete request head, whatever the
    /// protocol (HTTP/1.1, HTTP/2 prior knowledge), and for each later HTTP/1.1 request
    /// head. A peer that sends nothing, or trickles its headers, is closed. Default 10 s.
    pub header_timeout: Duration,
    /// Time a connection may sit with no request running before it is closed (HTTP/1.1
    /// keep-alive and HTTP/2 alike; an HTTP/2 peer is sent GOAWAY). HTTP/2 peers are also
    /// pinged at a third of it and dropped if they do not answer. Default 60 s.
    pub idle_timeout: Duration,
    /// Time a function call's request body may take to arrive, once the call is admitted.
    /// A body that trickles is refused with `408` and frees its slot. Default 60 s.
    pub body_timeout: Duration,
    /// Largest request head (request line and headers), in bytes. Past it HTTP/1.1 gets
    /// `431 Request Header Fields Too Large`; HTTP/2 limits the header list to the same size.
    /// Default 64 KiB.
    pub max_header_bytes: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            max_header_bytes: 64 << 10,
        }
    }
}

/// The smallest head limit hyper accepts for HTTP/1.1 (its read buffer cannot be smaller).
const MIN_HEADER_BYTES: usize = 8 << 10;

impl ServeConfig {
    /// The HTTP/1.1 + HTTP/2 connection builder these limits call for.
    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // One flattened write per response: head and a small body are copied into one
            // buffer instead of handed to `writev` as separate slices. On the reuse hello
            // this measured ~2 us less system time per request (13.1 against 15.1 us, six
            // alternating runs), the same user time.
            .writev(false)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_buf_size(self.max_header_bytes.max(MIN_HEADER_BYTES));
        let ping = (self.idle_timeout / 3).max(Duration::from_secs(1));
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(ping)
            .keep_alive_timeout(ping)
            .max_header_list_size(u32::try_from(self.max_header_bytes).unwrap_or(u32::MAX));
        builder
    }
}

/// Slots for open connections; a connection holds one from accept to close.
pub(crate) struct Slots {
    semaphore: Arc<Semaphore>,
    max: usize,
    /// Whether the server is (or last was) full, so the warning is given once per episode.
    full: std::sync::atomic::AtomicBool,
}

impl Slots {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.clamp(1, u32::MAX as usize);
        Self {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            full: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Waits until every connection has closed and given its slot back.
    pub(crate) async fn all_closed(&self) {
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = self.semaphore.acquire_many(all).await;
    }

    /// Waits for a free slot (saying so once per episode when the server is full).
    pub(crate) async fn take(&self) -> tokio::sync::OwnedSemaphorePermit {
        if let Ok(permit) = self.semaphore.clone().try_acquire_owned() {
            self.full.store(false, Ordering::Relaxed);
            return permit;
        }
        if !self.full.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                max_connections = self.max,
                "connection limit reached; new connections wait until one closes"
            );
        }
        // The semaphore is never closed.
        match self.semaphore.clone().acquire_owned().await {
            Ok(permit) => permit,
            Err(_) => unreachable!("the connection semaphore is never closed"),
        }
    }
}

/// Waits after a failed accept: out of descriptors and the like clear up when connections
/// close, so back off (10 ms doubling to 1 s) instead of spinning.
pub(crate) struct Backoff(Duration);

impl Backoff {
    pub(crate) fn new() -> Self {
        Self(Duration::ZERO)
    }

    pub(crate) async fn failed(&mut self, error: &io::Error) {
        self.0 = (self.0 * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
        tracing::warn!(%error, retry_in = ?self.0, "accept failed");
        tokio::time::sleep(self.0).await;
    }

    pub(crate) fn succeeded(&mut self) {
        self.0 = Duration::ZERO;
    }
}

/// What a connection's watcher needs to know of it: requests running and started, and
/// when anything last happened, in milliseconds since the connection opened.
#[derive(Default)]
pub(crate) struct Activity {
    running: AtomicUsize,
    started: AtomicU64,
    /// When a request last ended.
    last_request: AtomicU64,
    /// Bytes moved either way (a count, not a time: the watcher notes when it changes, so
    /// reads and writes cost no clock reading).
    bytes: AtomicU64,
    opened: OnceInstant,
}

/// The instant a connection opened (set at creation).
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Activity {
    fn now(&self) -> u64 {
        self.opened.0.elapsed().as_millis() as u64
    }

    fn at(&self, millis: u64) -> Instant {
        self.opened.0 + Duration::from_millis(millis)
    }

    /// Marks a request as running until the guard drops (its handler returned or was
    /// dropped, as by a stream reset).
    pub(crate) fn request(self: &Arc<Self>) -> RequestGuard {
        // `last_request` is stamped when the request ends: while one runs, the connection is
        // not idle whatever the time.
        self.started.fetch_add(1, Ordering::Relaxed);
        self.running.fetch_add(1, Ordering::Relaxed);
        RequestGuard(self.clone())
    }
}

/// A request in progress on a connection.
pub(crate) struct RequestGuard(Arc<Activity>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let activity = &self.0;
        activity
            .last_request
            .store(activity.now(), Ordering::Relaxed);
        activity.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Keeps a request counted as running until its response is sent: at once for a body whose
/// length is known (the usual case, no extra allocation), else until a streamed body ends
/// or is dropped, so that a long stream (a followed log, a slow component) is not taken for
/// an idle connection.
pub(crate) fn until_sent(
    response: axum::response::Response,
    running: RequestGuard,
) -> axum::response::Response {
    use hyper::body::Body as _;
    if response.body().size_hint().exact().is_some() || response.body().is_end_stream() {
        return response;
    }
    response.map(|body| {
        axum::body::Body::new(Guarded {
            body,
            _running: running,
        })
    })
}

/// A streamed response body holding its request's [`RequestGuard`].
struct Guarded {
    body: axum::body::Body,
    _running: RequestGuard,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

/// Counts a client connection as open until dropped.
pub(crate) struct Open(Arc<AtomicU64>);

impl Open {
    pub(crate) fn count(open: Arc<AtomicU64>) -> Self {
        open.fetch_add(1, Ordering::Relaxed);
        Self(open)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A socket that notes when bytes move, for the idle watcher.
pub(crate) struct Tracked<S> {
    stream: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(stream: S, activity: Arc<Activity>) -> TokioIo<Self> {
        TokioIo::new(Self { stream, activity })
    }

    fn moved(&self, bytes: usize) {
        if bytes > 0 {
            self.activity
                .bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        self.moved(buf.filled().len() - before);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            self.moved(n);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// Drives `connection` until it ends, closing it by the limits in `config`: one that sends
/// no complete request head within `header_timeout` of opening is dropped; one with no
/// request running for `idle_timeout` is asked to close (`shutdown`: hyper's
/// `graceful_shutdown`, GOAWAY for HTTP/2), and dropped if it is still open, with nothing
/// running and no bytes moving, `header_timeout` later. When the server stops (`stop`
/// changes), the connection is asked to close the same way.
pub(crate) async fn watch<C>(
    mut connection: Pin<&mut C>,
    activity: &Activity,
    config: &ServeConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
    shutdown: impl Fn(Pin<&mut C>),
) where
    C: Future<Output = Result<(), Box<dyn std::error::Error + Send + Sync>>>,
{
    let header = config.header_timeout.as_millis() as u64;
    let idle = config.idle_timeout.as_millis() as u64;
    let mut closing = false;
    // While closing: the byte count last seen, and when it was seen to change.
    let (mut seen_bytes, mut moved_at) = (0, 0);
    loop {
        let now = activity.now();
        let running = activity.running.load(Ordering::Relaxed) > 0;
        let last_request = activity.last_request.load(Ordering::Relaxed);
        let wake = if activity.started.load(Ordering::Relaxed) == 0 {
            if now >= header {
                tracing::debug!("closing a connection that sent no request head in time");
                return;
            }
            header
        } else if closing {
            let bytes = activity.bytes.load(Ordering::Relaxed);
            if bytes != seen_bytes {
                (seen_bytes, moved_at) = (bytes, now);
            }
            let quiet_since = moved_at.max(last_request);
            if !running && now >= quiet_since + header {
                tracing::debug!("closing an idle connection that did not close when asked");
                return;
            }
            if running {
                now + idle
            } else {
                quiet_since + header
            }
        } else if running {
            now + idle
        } else if now >= last_request + idle {
            closing = true;
            (seen_bytes, moved_at) = (activity.bytes.load(Ordering::Relaxed), now);
            shutdown(connection.as_mut());
            continue;
        } else {
            last_request + idle
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(activity.at(wake)) => {}
            changed = stop.changed(), if !closing => {
                // The server is stopping (or gone): finish what runs, take nothing new.
                let _ = changed;
                closing = true;
                (seen_bytes, moved_at) = (activity.bytes.load(Ordering::Relaxed), activity.now());
                shutdown(connection.as_mut());
            }
        }
    }
}
