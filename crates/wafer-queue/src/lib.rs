//! Asynchronous invocations: a call of a function that the caller does not wait for. The
//! gateway stores each one in a [`Queue`] before it answers `202`, a dispatcher takes them
//! out and runs them, and the queue keeps the outcome for `GET /_wafer/invocations/ID`.
//!
//! An invocation the queue has accepted is never lost and runs at least once: a node that
//! stops mid-run leaves it to run again (the guest sees the same `X-Wafer-Invocation-Id`
//! both times, to tell a repeat). Two backends: [`LocalQueue`] (redb, in the data
//! directory) on one machine, and a cluster's (a JetStream work queue, in `wafer-nats`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wafer_queue::{Invocation, LocalQueue, Queue};
//!
//! let queue = LocalQueue::open(".wafer".as_ref())?;
//! let invocation = Invocation::new("hello".parse()?, "POST", "/", Vec::new(), None);
//! let id = invocation.id.clone();
//! queue.enqueue(invocation, "payload".into()).await?;
//! let job = queue.next().await?; // what a dispatcher does: `start`, run, `finish`
//! assert_eq!(job.invocation.id, id);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod local;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use wafer_registry::FunctionName;

pub use local::LocalQueue;

/// Invocations that may wait at once; past it, new ones are refused.
pub const MAX_QUEUED: u64 = 100_000;

/// The default byte budget of a queue ([`QueueConfig::max_bytes`]): 1 GiB, room for a
/// thousand 1 MiB requests and their results, small enough for any disk Wafer runs on.
pub const MAX_BYTES: u64 = 1 << 30;

/// The default number of times one invocation is started before it is given up on
/// ([`QueueConfig::max_attempts`]): 5, enough to ride out a node or two dying under it, few
/// enough that a call that kills every node it runs on stops doing so within minutes.
pub const MAX_ATTEMPTS: u32 = 5;

/// The limits of a queue, the same for both backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Bytes the queue may hold: the request bodies of the invocations not finished yet
    /// plus the records and results kept of the finished ones. Past it, the oldest finished
    /// invocations are forgotten early to make room (before [`RETAIN`] is up), and when the
    /// unfinished ones alone leave no room, [`Queue::enqueue`] fails with
    /// [`QueueError::NoSpace`]. Default [`MAX_BYTES`] (1 GiB); the server's
    /// `--async-max-bytes`.
    pub max_bytes: u64,
    /// Times one invocation is started at most; one that never finished in as many (the
    /// server stopped, or the node running it died, each time) is recorded `failed`
    /// ("gave up after N attempts") and not run again. Default [`MAX_ATTEMPTS`] (5).
    pub max_attempts: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: MAX_BYTES,
            max_attempts: MAX_ATTEMPTS,
        }
    }
}

impl QueueConfig {
    /// The outcome recorded for an invocation given up on after `attempts` starts.
    pub fn gave_up(attempts: u32) -> Outcome {
        Outcome {
            state: State::Failed,
            status: 500,
            headers: Vec::new(),
            error: Some(format!(
                "gave up after {attempts} attempts: the call never finished (the server \
                 stopped or the node running it was lost each time)"
            )),
            body: Bytes::new(),
        }
    }
}

/// How long a finished invocation's record and result are kept: 24 hours at most, less when
/// the byte budget ([`QueueConfig::max_bytes`]) needs the room for newer ones.
pub const RETAIN: Duration = Duration::from_secs(24 * 3600);

/// A call to run later, as the gateway took it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Its id: 24 hex digits, ordered by time.
    pub id: String,
    /// The function to call.
    pub function: FunctionName,
    /// The request's method.
    pub method: String,
    /// The request's path below the function's route, with the query (`/a/b?c=d`).
    pub path: String,
    /// The request's headers (those with UTF-8 values).
    pub headers: Vec<(String, String)>,
    /// Where to send the result when the call is done.
    pub callback: Option<String>,
    /// When it was queued, in milliseconds since the Unix epoch.
    pub created: u64,
}

impl Invocation {
    /// A new invocation with a fresh id, created now.
    pub fn new(
        function: FunctionName,
        method: &str,
        path: &str,
        headers: Vec<(String, String)>,
        callback: Option<String>,
    ) -> Self {
        let created = now();
        // Time, then a counter (ids made on one node sort in the order they were made), then
        // randomness (ids made on two nodes in the same millisecond differ).
        let count = next_local() & 0xffff;
        let mut random = [0u8; 4];
        if getrandom::fill(&mut random).is_err() {
            random = std::process::id().to_be_bytes();
        }
        Self {
            id: format!("{created:012x}{count:04x}{}", hex(&random)),
            function,
            method: method.to_owned(),
            path: path.to_owned(),
            headers,
            callback,
            created,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn next_local() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Milliseconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where an invocation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting to run.
    Queued,
    /// Running.
    Running,
    /// The function answered; its status may still be an error status.
    Done,
    /// The call failed: a trap, a timeout, the function gone.
    Failed,
}

/// How a call went: the function's answer, or the gateway's answer when the call failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// [`State::Done`] or [`State::Failed`].
    pub state: State,
    /// The HTTP status.
    pub status: u16,
    /// The response headers (those with UTF-8 values).
    pub headers: Vec<(String, String)>,
    /// Why the call failed.
    pub error: Option<String>,
    /// The response body.
    #[serde(skip)]
    pub body: Bytes,
}

/// An invocation as the queue keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The call.
    #[serde(flatten)]
    pub invocation: Invocation,
    /// Where it is.
    pub state: State,
    /// How many times it was started (more than 1 after a node stopped mid-run; at most
    /// [`QueueConfig::max_attempts`]).
    pub attempts: u32,
    /// When it last started, in milliseconds since the Unix epoch.
    pub started: Option<u64>,
    /// When it finished.
    pub finished: Option<u64>,
    /// How it went, once finished (the body is read with [`Queue::result`]).
    pub outcome: Option<Outcome>,
}

impl Record {
    /// The record of `invocation` just queued.
    pub fn queued(invocation: Invocation) -> Self {
        Self {
            invocation,
            state: State::Queued,
            attempts: 0,
            started: None,
            finished: None,
            outcome: None,
        }
    }
}

/// An invocation taken out of the queue to run, with its request body.
#[derive(Debug, Clone)]
pub struct Job {
    /// The call.
    pub invocation: Invocation,
    /// The request body.
    pub body: Bytes,
    /// Which start this is (1 the first time), once started.
    pub attempt: u32,
    /// The backend's handle on the job.
    pub lease: u64,
}

/// Times a finished invocation's result is posted to its callback URL before it is given
/// up on: 10, [`callback_wait`] apart (about eight and a half minutes in all).
pub const CALLBACK_TRIES: u32 = 10;

/// How long after try `attempt` of a callback (1 the first) the next one is made: 1 s,
/// doubled each time, at most 5 minutes.
pub fn callback_wait(attempt: u32) -> Duration {
    Duration::from_secs(1 << attempt.clamp(1, 9).saturating_sub(1)).min(Duration::from_secs(300))
}

/// A finished invocation whose result is to be posted to its callback URL. The queue keeps
/// it, with the outcome, from the moment the outcome is recorded until it is posted or
/// given up on: a server that stops in between posts it when it starts again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Callback {
    /// The invocation.
    pub id: String,
    /// Where to post its result.
    pub url: String,
    /// Which try this is (1 the first time).
    pub attempt: u32,
    /// The backend's handle on it.
    pub lease: u64,
}

/// Why the queue failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue holds [`MAX_QUEUED`] invocations.
    #[error("the asynchronous queue is full ({0} invocations wait); try again later")]
    Full(u64),
    /// The queue's byte budget ([`QueueConfig::max_bytes`]) has no room for the invocation.
    #[error(
        "the asynchronous queue has no room for a {size}-byte invocation: invocations not \
         finished yet fill its budget of {max_bytes} bytes (--async-max-bytes); try again later"
    )]
    NoSpace {
        /// The bytes the refused invocation needed (its request body and record).
        size: u64,
        /// The budget.
        max_bytes: u64,
    },
    /// The store failed.
    #[error("the asynchronous queue failed: {0}")]
    Store(String),
}

impl QueueError {
    pub(crate) fn store(e: impl std::fmt::Display) -> Self {
        Self::Store(e.to_string())
    }
}

/// Which functions' invocations [`Queue::next_except`] passes over.
pub type Skip = Arc<dyn Fn(&FunctionName) -> bool + Send + Sync>;

/// Where asynchronous invocations wait and their records are kept.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Stores `invocation` with its request `body` as queued; returns once it is durable.
    async fn enqueue(&self, invocation: Invocation, body: Bytes) -> Result<(), QueueError>;

    /// Stores `invocation` as [`Queue::enqueue`] does, unless one with its id is known
    /// already (queued, running, or finished and still kept): then nothing, and `false`.
    /// Atomic, on one node and across a cluster: what makes a schedule's tick, enqueued by
    /// every node under one id, run once.
    async fn enqueue_once(&self, invocation: Invocation, body: Bytes) -> Result<bool, QueueError>;

    /// Takes the next queued invocation out of the queue (waits until there is one). It
    /// stays `queued` until [`Queue::start`]; if this node stops before [`Queue::finish`],
    /// it is queued again.
    async fn next(&self) -> Result<Job, QueueError> {
        self.next_except(Arc::new(|_: &FunctionName| false)).await
    }

    /// [`Queue::next`], passing over the invocations of the functions `skip` names: they
    /// stay queued, in their place, for this dispatcher's next call or another node's, and
    /// passing over one never counts as an attempt. A dispatcher that holds as many calls of
    /// a function as it may run soon skips that function, so that one slow function's backlog
    /// never holds up the calls of the others. Waits until an invocation it may take exists
    /// (or [`Queue::resume`] is called).
    async fn next_except(&self, skip: Skip) -> Result<Job, QueueError>;

    /// Says that a function passed over may be taken again: a waiting
    /// [`Queue::next_except`] looks again (one queue may pass over it until told).
    fn resume(&self) {}

    /// Marks `job` running: it starts now (one attempt more).
    async fn start(&self, job: &Job) -> Result<(), QueueError>;

    /// Records how `job` went; it leaves the queue. If it has a callback URL, the callback
    /// is kept in the same step ([`Queue::next_callback`]).
    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<(), QueueError>;

    /// Takes the next callback that is due (waits until there is one): an invocation
    /// finished with an `X-Callback-Url`, its result not posted yet.
    async fn next_callback(&self) -> Result<Callback, QueueError>;

    /// Ends a try of `callback`: `posted`, or its last try ([`CALLBACK_TRIES`]), it is
    /// forgotten; otherwise it is due again after [`callback_wait`].
    async fn callback_done(&self, callback: &Callback, posted: bool) -> Result<(), QueueError>;

    /// The record of invocation `id`, if it exists (a finished one is kept for [`RETAIN`]).
    async fn get(&self, id: &str) -> Result<Option<Record>, QueueError>;

    /// The response body of finished invocation `id`.
    async fn result(&self, id: &str) -> Result<Option<Bytes>, QueueError>;

    /// The newest `limit` records, newest first.
    async fn list(&self, limit: usize) -> Result<Vec<Record>, QueueError>;

    /// How many invocations are accepted and not yet finished (queued or running).
    async fn depth(&self) -> Result<u64, QueueError>;
}
