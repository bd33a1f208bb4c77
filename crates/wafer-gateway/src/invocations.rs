//! Asynchronous invocations (docs/async.md): `POST /_wafer/async/NAME/REST` stores the call
//! in the [`Queue`] and answers `202 {"id": ...}` at once; a dispatcher runs it later as the
//! request `REST` on the function's route, and `GET /_wafer/invocations/ID` tells how it
//! went. With an `X-Callback-Url` header (to a host the server allows), the result is also
//! posted there.
//!
//! A function's asynchronous calls take the same admission gate as its synchronous ones,
//! and at most half of its `max_concurrency` slots (at least one), so a burst of them
//! cannot starve its synchronous callers. A node holds at most twice that many of a
//! function's queued calls at once and passes over the rest ([`Queue::next_except`]), so a
//! backlog for one slow function never holds up the others' calls.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;
use wafer_queue::{
    Callback, Invocation, Job, Outcome, Queue, QueueError, Record, State as Stage, CALLBACK_TRIES,
};
use wafer_registry::{FunctionName, RegistryError};

use crate::error::Error;
use crate::live::{Function, Resolved};
use crate::App;

/// Where asynchronous calls are posted.
pub(crate) const PREFIX: &str = "/_wafer/async/";

/// The header naming where to post the result.
const CALLBACK: &str = "x-callback-url";

/// The header that tells the guest which invocation it runs (the same on a repeat).
pub const INVOCATION_ID: &str = "x-wafer-invocation-id";

/// Invocations taken out of the queue and not finished, on this node: running, or waiting
/// for a slot of their function. Past it, the dispatcher waits before taking more.
const HELD: usize = 256;

/// Of a function that is not loaded here, the invocations a node holds at once.
const HELD_UNKNOWN: usize = 2;

/// Asynchronous request bodies read at once, server-wide (each up to its function's
/// `request_body`): what bounds the memory enqueues take, as admission does for calls.
const READING: usize = 16;

/// How long a call that finds its function busy (every slot taken by synchronous calls for
/// the admission queue's whole wait) goes on trying, waiting [`BUSY_WAIT`] more after each
/// try (up to 10 s between tries), before it fails with the function's `503`.
const BUSY_FOR: Duration = Duration::from_secs(600);
const BUSY_WAIT: Duration = Duration::from_secs(1);
const BUSY_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long a call waits for its function to load on this node when the registry has it but
/// the table does not yet (a version still compiling here, during a rollout).
const LOADING: Duration = Duration::from_secs(60);

/// How long one post of a result to its callback URL may take.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(10);
/// Callbacks posted at once, server-wide.
const POSTING: usize = 16;

/// Request headers not kept with an invocation: hop-by-hop ones, the length (the body is
/// stored whole), and the callback (the gateway's, not the function's).
const DROPPED: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    CALLBACK,
];

/// The asynchronous side of the gateway: the queue, and the hosts results may be posted to.
pub struct Invocations {
    queue: Arc<dyn Queue>,
    callback_hosts: Vec<String>,
    reading: Semaphore,
    slots: Mutex<HashMap<FunctionName, (usize, Arc<Semaphore>)>>,
    /// Invocations held on this node (running, or waiting for a slot), by function.
    held: Arc<Mutex<HashMap<FunctionName, usize>>>,
    client: reqwest::Client,
}

/// One invocation held for its function; the place frees (and the queue is told, so it
/// takes that function's calls again) when this drops.
struct Holding {
    held: Arc<Mutex<HashMap<FunctionName, usize>>>,
    name: FunctionName,
    queue: Arc<dyn Queue>,
}

impl Drop for Holding {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = held.get_mut(&self.name) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.name);
            }
        }
        drop(held);
        self.queue.resume();
    }
}

/// The slots a function's asynchronous calls share: half its `max_concurrency`, at least
/// one.
fn async_slots(function: &Function) -> usize {
    (function.config.limits.max_concurrency as usize / 2).max(1)
}

impl Invocations {
    /// Invocations accepted and not yet finished, if the queue can say.
    pub async fn depth(&self) -> Option<u64> {
        self.queue.depth().await.ok()
    }

    /// Invocations kept in `queue`, with results posted only to `callback_hosts` (host
    /// names or `host:port`, compared case-insensitively).
    pub fn new(queue: Arc<dyn Queue>, callback_hosts: Vec<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            queue,
            callback_hosts: callback_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            reading: Semaphore::new(READING),
            slots: Mutex::default(),
            held: Arc::default(),
            client,
        }
    }

    /// The slots `function`'s asynchronous calls share: half its `max_concurrency`, at
    /// least one (a new gate when the limit changed).
    fn slots(&self, function: &Function) -> Arc<Semaphore> {
        let size = async_slots(function);
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let entry = slots
            .entry(function.name.clone())
            .or_insert_with(|| (size, Arc::new(Semaphore::new(size))));
        if entry.0 != size {
            *entry = (size, Arc::new(Semaphore::new(size)));
        }
        entry.1.clone()
    }

    /// Queues `invocation` unless its id is known already (a schedule's tick another node
    /// queued); `false` then.
    pub(crate) async fn enqueue_once(
        &self,
        invocation: Invocation,
        body: Bytes,
    ) -> Result<bool, QueueError> {
        self.queue.enqueue_once(invocation, body).await
    }

    /// Checks a callback URL against the allowed hosts.
    fn check_callback(&self, url: &str) -> Result<(), Error> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| Error::BadRequest(format!("X-Callback-Url `{url}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::BadRequest(format!(
                "X-Callback-Url `{url}`: only http and https callbacks are sent"
            )));
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let with_port = parsed
            .port_or_known_default()
            .map(|port| format!("{host}:{port}"));
        let allowed = self
            .callback_hosts
            .iter()
            .any(|h| *h == host || Some(h) == with_port.as_ref());
        if allowed {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "X-Callback-Url: results are not sent to `{host}`; the server allows \
                 callbacks to the hosts of its --callback-host option ({})",
                match self.callback_hosts.is_empty() {
                    true => "none given".to_owned(),
                    false => self.callback_hosts.join(", "),
                }
            )))
        }
    }
}

impl From<QueueError> for Error {
    fn from(e: QueueError) -> Self {
        match e {
            QueueError::Full(_) => Error::Overloaded(e.to_string()),
            QueueError::NoSpace { .. } => Error::NoSpace(e.to_string()),
            QueueError::Store(_) => {
                tracing::error!("{e}");
                Error::Overloaded(format!("{e}; try again shortly"))
            }
        }
    }
}

/// The path `rest` (below the function's route, with its query) as a request to the
/// function: the full path, and how much of it is the route's (`SCRIPT_NAME`).
fn target(function: &Function, rest: &str) -> Result<(String, usize), Error> {
    let route = function.config.routes.first().ok_or_else(|| {
        Error::BadRequest(format!(
            "function `{}` has no route to call it on",
            function.name
        ))
    })?;
    let (prefix, wildcard) = route.pattern();
    let below = rest.split('?').next().unwrap_or_default();
    if !wildcard && !below.is_empty() {
        return Err(Error::NoRoute(format!("{prefix}{below}")));
    }
    if !below.is_empty() && !below.starts_with('/') {
        return Err(Error::NoRoute(format!("{prefix}{below}")));
    }
    let path = match (prefix.is_empty(), below.is_empty()) {
        (true, true) => format!("/{rest}"),
        _ => format!("{prefix}{rest}"),
    };
    Ok((path, prefix.len()))
}

impl App {
    /// `ANY /_wafer/async/NAME/REST`: queues the call, answers `202`. The request's headers
    /// are kept as they are: the caller has removed what a function must not see
    /// ([`App::sanitize`]).
    ///
    /// The trace context kept with the headers is the enqueue's own span's (tracing on), so
    /// the run, on whichever node, continues the trace of the request that queued it.
    pub async fn enqueue<B>(&self, request: http::Request<B>) -> Result<Response, Error>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let span = crate::spans::enqueue();
        match span.is_none() {
            true => self.enqueue_request(request).await,
            false => {
                use tracing::Instrument as _;
                self.enqueue_request(request).instrument(span).await
            }
        }
    }

    async fn enqueue_request<B>(&self, request: http::Request<B>) -> Result<Response, Error>
    where
        B: hyper::body::Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = request.into_parts();
        let after = parts.uri.path().strip_prefix(PREFIX).unwrap_or_default();
        let (name, below) = match after.find('/') {
            Some(slash) => after.split_at(slash),
            None => (after, ""),
        };
        let name: FunctionName = name.parse()?;
        let function = self
            .functions
            .function(&name)
            .ok_or_else(|| RegistryError::NotFound(name.to_string()))?;
        let rest = match parts.uri.query() {
            Some(query) => format!("{below}?{query}"),
            None => below.to_owned(),
        };
        target(&function, &rest)?;
        let asyncs = &self.invocations;
        let callback = match parts.headers.get(CALLBACK) {
            Some(url) => {
                let url = url
                    .to_str()
                    .map_err(|_| Error::BadRequest("X-Callback-Url is not text".into()))?;
                asyncs.check_callback(url)?;
                Some(url.to_owned())
            }
            None => None,
        };
        let limit = function.config.limits.request_body.as_u64();
        let body = {
            // Waiting for a turn is bounded too, so a flood of enqueues is refused rather
            // than held open.
            let reading = tokio::time::timeout(crate::QUEUE_WAIT, asyncs.reading.acquire());
            let _reading = match reading.await {
                Ok(Ok(permit)) => permit,
                _ => return Err(Error::Busy(name.to_string())),
            };
            let timeout = self.config.body_timeout;
            tokio::time::timeout(timeout, crate::read_body(body, limit))
                .await
                .map_err(|_| Error::BodyTimeout(timeout))??
        };
        let mut headers = kept_headers(&parts.headers);
        // An HTTP/2 request names its host in the URI, not a header: keep it, so the call
        // runs with the authority it was made to (an HTTP component needs one).
        if !parts.headers.contains_key(header::HOST) {
            if let Some(authority) = parts.uri.authority() {
                headers.push((header::HOST.to_string(), authority.to_string()));
            }
        }
        wafer_host::trace::replace_in(&mut headers);
        let invocation = Invocation::new(name, parts.method.as_str(), &rest, headers, callback);
        let id = invocation.id.clone();
        crate::spans::queued(invocation.function.as_str(), &id);
        asyncs.queue.enqueue(invocation, body).await?;
        let mut response = (StatusCode::ACCEPTED, Json(json!({ "id": id }))).into_response();
        if let Ok(location) = HeaderValue::from_str(&format!("/_wafer/invocations/{id}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        Ok(response)
    }
}

fn kept_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !DROPPED.contains(&name.as_str()))
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
        .collect()
}

impl Invocations {
    /// `GET /_wafer/invocations/ID`: the record, with the result once finished.
    pub async fn describe(&self, id: &str) -> Result<Value, Error> {
        let record = self
            .queue
            .get(id)
            .await?
            .ok_or_else(|| Error::NoInvocation(id.to_owned()))?;
        let body = match record.outcome {
            Some(_) => self.queue.result(id).await?,
            None => None,
        };
        Ok(to_json(record, body))
    }

    /// `GET /_wafer/invocations?limit=N`: the newest `limit` records (at most 10,000),
    /// without bodies.
    pub async fn list(&self, limit: usize) -> Result<Value, Error> {
        let records = self.queue.list(limit.min(10_000)).await?;
        Ok(Value::Array(
            records.into_iter().map(|r| to_json(r, None)).collect(),
        ))
    }
}

fn to_json(record: Record, body: Option<Bytes>) -> Value {
    let mut object = Map::new();
    let invocation = record.invocation;
    object.insert("id".into(), invocation.id.into());
    object.insert("function".into(), invocation.function.to_string().into());
    object.insert("method".into(), invocation.method.into());
    object.insert("path".into(), invocation.path.into());
    object.insert("state".into(), json!(record.state));
    object.insert("attempts".into(), record.attempts.into());
    object.insert("created".into(), invocation.created.into());
    object.insert("started".into(), json!(record.started));
    object.insert("finished".into(), json!(record.finished));
    if let Some(outcome) = record.outcome {
        object.insert("status".into(), outcome.status.into());
        let headers: Map<String, Value> = outcome
            .headers
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        object.insert("headers".into(), Value::Object(headers));
        if let Some(error) = outcome.error {
            object.insert("error".into(), error.into());
        }
        if let Some(body) = body {
            match std::str::from_utf8(&body) {
                Ok(text) => object.insert("body".into(), text.into()),
                Err(_) => {
                    use base64::Engine;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
                    object.insert("body_base64".into(), encoded.into())
                }
            };
        }
    }
    Value::Object(object)
}

/// Takes invocations out of the queue and runs them, until the app goes.
pub(crate) async fn dispatch(app: Weak<App>) {
    let Some((queue, functions, holding)) = app.upgrade().map(|app| {
        let asyncs = &app.invocations;
        (
            asyncs.queue.clone(),
            app.functions.clone(),
            asyncs.held.clone(),
        )
    }) else {
        return;
    };
    // A function of which this node holds as many calls as it may run soon (twice its
    // asynchronous slots) is passed over: its calls stay queued for later or another node.
    let skip: wafer_queue::Skip = {
        let holding = holding.clone();
        Arc::new(move |name: &FunctionName| {
            let most = functions
                .function(name)
                .map_or(HELD_UNKNOWN, |f| 2 * async_slots(&f));
            let held = holding.lock().unwrap_or_else(|e| e.into_inner());
            held.get(name).is_some_and(|&count| count >= most)
        })
    };
    let held = Arc::new(Semaphore::new(HELD));
    loop {
        let Ok(permit) = held.clone().acquire_owned().await else {
            return;
        };
        let job = match queue.next_except(skip.clone()).await {
            Ok(job) => job,
            Err(e) => {
                tracing::error!("taking an asynchronous invocation failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let name = job.invocation.function.clone();
        *holding
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.clone())
            .or_default() += 1;
        let holding = Holding {
            held: holding.clone(),
            name,
            queue: queue.clone(),
        };
        let Some(app) = app.upgrade() else { return };
        tokio::spawn(async move {
            // The call runs in a task of its own, so that a panic on its path is contained:
            // it is recorded as the invocation's failure instead of leaving it `running`.
            let run = wafer_host::tasks::contained("invocation", {
                let (app, job) = (app.clone(), job.clone());
                async move { app.run_invocation(job).await }
            });
            if let Err(e) = run.await {
                let why = "the server failed while running it (a panic; see its log)";
                tracing::error!(id = %job.invocation.id, "asynchronous invocation: {why}: {e}");
                let outcome = Outcome {
                    state: Stage::Failed,
                    status: 500,
                    headers: Vec::new(),
                    error: Some(why.to_owned()),
                    body: Bytes::new(),
                };
                if let Err(e) = app.invocations.queue.finish(&job, outcome).await {
                    tracing::error!(id = %job.invocation.id, "cannot record the failure: {e}");
                }
            }
            drop((holding, permit));
        });
    }
}

impl App {
    async fn run_invocation(&self, job: Job) {
        let outcome = self.run_job(&job).await;
        let asyncs = &self.invocations;
        if let Err(e) = asyncs.queue.finish(&job, outcome).await {
            // Not finished in the queue: it runs again, as after a crash.
            tracing::error!(id = %job.invocation.id, "cannot record how an invocation went: {e}");
        }
    }

    async fn run_job(&self, job: &Job) -> Outcome {
        let span = crate::spans::async_run(&job.invocation, job.attempt);
        if span.is_none() {
            return self.run_job_traced(job).await;
        }
        use tracing::Instrument as _;
        let outcome = self.run_job_traced(job).instrument(span.clone()).await;
        span.record("http.response.status_code", i64::from(outcome.status));
        if outcome.state == Stage::Failed {
            span.record("otel.status_code", "error");
        }
        outcome
    }

    async fn run_job_traced(&self, job: &Job) -> Outcome {
        let invocation = &job.invocation;
        let result = async {
            // A function this node is still loading (a deploy on another node, just
            // taken) is waited for rather than answered `404`.
            let function = self
                .functions
                .loaded(&invocation.function, LOADING)
                .await
                .ok_or_else(|| RegistryError::NotFound(invocation.function.to_string()))?;
            // A traffic split places a queued call as it places a request.
            let headers: http::HeaderMap = (invocation.headers.iter())
                .filter_map(|(name, value)| Some((name.parse().ok()?, value.parse().ok()?)))
                .collect();
            let function = self.functions.version_for(function, Some(&headers));
            let (path, script_name_len) = target(&function, &invocation.path)?;
            let _slot = self.invocations.slots(&function).acquire_owned().await;
            if let Err(e) = self.invocations.queue.start(job).await {
                // The call runs all the same; only its record says `queued` a while longer.
                tracing::warn!(id = %invocation.id, "cannot mark an invocation running: {e}");
            }
            let request = || {
                let mut request = http::Request::builder()
                    .method(invocation.method.as_str())
                    .uri(path.as_str());
                for (name, value) in &invocation.headers {
                    request = request.header(name.as_str(), value.as_str());
                }
                request
                    .header(INVOCATION_ID, invocation.id.as_str())
                    .body(Full::new(job.body.clone()))
                    .map_err(|e| Error::BadRequest(format!("cannot rebuild the request: {e}")))
            };
            let stdout = function.config.limits.stdout.as_u64();
            let peer = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
            let (busy_since, mut wait) = (std::time::Instant::now(), BUSY_WAIT);
            loop {
                let resolved = Resolved {
                    function: function.clone(),
                    route: 0,
                    script_name_len,
                };
                let response = match self.call_resolved(resolved, request()?, peer).await {
                    Ok(response) => response,
                    // Synchronous calls held every slot: an asynchronous one can wait.
                    Err(Error::Busy(_)) if busy_since.elapsed() < BUSY_FOR => {
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(BUSY_WAIT_MAX);
                        continue;
                    }
                    Err(error) => error.into_response(),
                };
                break Ok::<_, Error>(collect(response, stdout).await);
            }
        }
        .await;
        result.unwrap_or_else(|error| {
            let status = error.status().as_u16();
            Outcome {
                state: Stage::Failed,
                status,
                headers: Vec::new(),
                error: Some(error.to_string()),
                body: Bytes::new(),
            }
        })
    }

    /// One try of posting a finished invocation's result to its callback URL; says whether
    /// it went through (a `2xx`). An invocation forgotten meanwhile has nothing to post.
    async fn post_callback(&self, callback: &Callback) -> bool {
        let (id, url) = (callback.id.as_str(), callback.url.as_str());
        let queue = &self.invocations.queue;
        // The trace context kept with the call (tracing on): the post continues its trace.
        let mut trace = Vec::new();
        let outcome = match queue.get(id).await {
            Ok(Some(record)) => {
                if wafer_host::trace::enabled() {
                    trace = (record.invocation.headers.into_iter())
                        .filter(|(name, _)| wafer_host::trace::is_field(name))
                        .collect();
                }
                record.outcome
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(id, url, "cannot read the result for the callback: {e}");
                return false;
            }
        };
        let Some(outcome) = outcome else {
            tracing::warn!(
                id,
                url,
                "the invocation's result is no longer kept; no callback"
            );
            return true;
        };
        let body = match queue.result(id).await {
            Ok(body) => body.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(id, url, "cannot read the result for the callback: {e}");
                return false;
            }
        };
        let mut request = self
            .invocations
            .client
            .post(url)
            .header(INVOCATION_ID, id)
            .header("x-wafer-status", outcome.status.to_string())
            .body(body);
        if let Some((_, value)) = outcome.headers.iter().find(|(k, _)| k == "content-type") {
            request = request.header(header::CONTENT_TYPE, value.as_str());
        }
        for (name, value) in trace {
            request = request.header(name, value);
        }
        let attempt = callback.attempt;
        match request.send().await {
            Ok(response) if response.status().is_success() => return true,
            Ok(response) => {
                tracing::warn!(
                    id,
                    url,
                    attempt,
                    "the callback answered {}",
                    response.status()
                )
            }
            Err(e) => tracing::warn!(id, url, attempt, "the callback failed: {e}"),
        }
        if attempt >= CALLBACK_TRIES {
            tracing::error!(id, url, "gave up posting the result after {attempt} tries");
        }
        false
    }
}

/// Posts finished invocations' results to their callback URLs, as the queue hands them out
/// (a few at once), until the app goes. The queue keeps each callback until it is posted or
/// given up on, so a server that stops in between posts it when it starts again.
pub(crate) async fn post_callbacks(app: Weak<App>) {
    let Some(queue) = app.upgrade().map(|app| app.invocations.queue.clone()) else {
        return;
    };
    let posting = Arc::new(Semaphore::new(POSTING));
    loop {
        let Ok(permit) = posting.clone().acquire_owned().await else {
            return;
        };
        let callback = match queue.next_callback().await {
            Ok(callback) => callback,
            Err(e) => {
                tracing::error!("taking a callback to post failed: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let Some(app) = app.upgrade() else { return };
        tokio::spawn(async move {
            let post = wafer_host::tasks::contained("callback", {
                let (app, callback) = (app.clone(), callback.clone());
                async move { app.post_callback(&callback).await }
            });
            let posted = post.await.unwrap_or_else(|e| {
                tracing::error!(
                    id = callback.id,
                    "posting a callback failed inside the server: {e}"
                );
                false
            });
            if let Err(e) = app.invocations.queue.callback_done(&callback, posted).await {
                tracing::warn!(id = callback.id, "cannot record a callback's try: {e}");
            }
            drop(permit);
        });
    }
}

/// The response as an outcome: `done` when the function answered below 500, else `failed`
/// (with the answer's text as the error).
async fn collect(response: Response, limit: u64) -> Outcome {
    let status = response.status();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let body: Body = response.into_body();
    let (body, cut) = match Limited::new(body, limit).collect().await {
        Ok(collected) => (collected.to_bytes(), None),
        Err(e) => (
            Bytes::new(),
            Some(format!("the response body could not be read: {e}")),
        ),
    };
    let failed = status.is_server_error() || cut.is_some();
    let error = match failed {
        true => cut.or_else(|| Some(String::from_utf8_lossy(&body).trim_end().to_owned())),
        false => None,
    };
    Outcome {
        state: if failed { Stage::Failed } else { Stage::Done },
        status: status.as_u16(),
        headers,
        error,
        body,
    }
}
