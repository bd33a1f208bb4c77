//! [`NatsQueue`]: asynchronous invocations in JetStream, so any node accepts them and any
//! node runs them.
//!
//! - Records live in the KV bucket `wafer_invocations`, one key per id, read from the
//!   stream's leader (so a record just written on another node is seen): the record's JSON,
//!   then the response body once finished, or, when the two together pass [`INLINE`] bytes,
//!   the body is stored in chunks on `wafer.invocation.result.<id>.<n>` in the stream
//!   `wafer_invocation_result_chunks`. An error text past [`MAX_ERROR`] bytes is cut, with a
//!   note; a result that cannot be kept is dropped, with a note: writing how a call went
//!   never fails for its size.
//! - Each invocation is one message on `wafer.invoke` in the work-queue stream
//!   `wafer_invocation_queue`: the invocation's JSON, then its request body, or, past
//!   [`INLINE`] bytes, the body is stored in chunks on `wafer.invocation.body.<id>.<n>` in
//!   the stream `wafer_invocation_body_chunks`. A message holds all a node needs to run the
//!   call. Its record counts its starts (the attempts).
//! - Each accepted id is also appended to the stream `wafer_invocation_index`, so listing
//!   the newest N reads N entries from its end.
//! - JetStream expires records, bodies and results after [`KEPT`].
//!
//! The byte budget ([`QueueConfig::max_bytes`]) is shared out a quarter each: the queue
//! stream and the request-body chunks refuse past their quarter (`enqueue` fails with
//! [`QueueError::NoSpace`]); the records and the result chunks drop their oldest entries
//! past theirs (the result chunks give 1/32 of the budget to the index, which does the
//! same, and 1/32 to the callbacks not posted yet), so kept results never keep new
//! invocations out.
//!
//! Every node pulls from one durable consumer, `run`. A message is acknowledged once the
//! invocation's outcome is written; the node holding one says "in progress" every
//! [`PROGRESS`], so a node that dies leaves it unacknowledged and JetStream hands it to another
//! node after [`ACK_WAIT`]. A message whose record counts [`QueueConfig::max_attempts`] starts
//! is not run again: its record says `failed`, "gave up after N attempts". A node that holds
//! as many calls of a function as it may run soon passes over that function's messages
//! (`next_except`): it hands them back with a delay, which costs no attempt. The `202` is sent
//! after both the record and the message are stored (with `--cluster-replicas 3`, on a
//! majority of three servers).
//!
//! Earlier versions kept large bodies and results in the Object Stores
//! `wafer_invocation_bodies` and `wafer_invocation_results`; they are still read if they
//! exist, so invocations queued before an upgrade run after it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use async_nats::jetstream::stream::{
    self, DiscardPolicy, LastRawMessageErrorKind, RetentionPolicy,
};
use async_nats::jetstream::{self, kv, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use wafer_queue::{
    callback_wait, now, Callback, Invocation, Job, Outcome, Queue, QueueConfig, QueueError, Record,
    Skip, State, CALLBACK_TRIES, MAX_QUEUED,
};

use crate::{as_i64, Cluster, ClusterError, KvSpec};

const RECORDS: &str = "wafer_invocations";
const QUEUE: &str = "wafer_invocation_queue";
const SUBJECT: &str = "wafer.invoke";
const CONSUMER: &str = "run";
const BODY_CHUNKS: &str = "wafer_invocation_body_chunks";
const BODY_SUBJECT: &str = "wafer.invocation.body";
const RESULT_CHUNKS: &str = "wafer_invocation_result_chunks";
const RESULT_SUBJECT: &str = "wafer.invocation.result";
const INDEX: &str = "wafer_invocation_index";
const INDEX_SUBJECT: &str = "wafer.invocation.index";
const CALLBACKS: &str = "wafer_invocation_callbacks";
const CALLBACK_SUBJECT: &str = "wafer.invocation.callback";
const POSTER: &str = "post";
/// How long a node may take over one try of a callback (a post times out well within it).
const CALLBACK_ACK_WAIT: Duration = Duration::from_secs(60);
/// Where earlier versions kept large request bodies and results.
const OLD_BODIES: &str = "wafer_invocation_bodies";
const OLD_RESULTS: &str = "wafer_invocation_results";

/// Largest request or response body carried in the message or record itself (NATS messages
/// are at most 1 MiB by default); larger ones are stored in chunks of this size.
pub const INLINE: usize = 512 << 10;

/// Longest error text a record keeps (a failed call's error is its `5xx` answer's text,
/// which may be as long as the response); the rest is cut, with a note: 4 KiB.
pub const MAX_ERROR: usize = 4 << 10;

/// Largest record (its JSON, the body aside) written: 256 KiB. The response headers of
/// one larger are dropped, with a note.
const MAX_RECORD_JSON: usize = 256 << 10;

/// How long a node may hold an invocation without a word before JetStream gives it to
/// another node.
pub const ACK_WAIT: Duration = Duration::from_secs(15);
/// How often a node holding an invocation says so.
pub const PROGRESS: Duration = Duration::from_secs(5);

/// How long records and results are kept (JetStream expires them): a week, as an upper bound
/// on both the wait of a queued invocation and the life of a finished one's result.
pub const KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long to wait before pulling again after the consumer failed.
const REPULL: Duration = Duration::from_secs(1);

/// Tries of writing an invocation's outcome before it is left to run again.
const FINISH_TRIES: u32 = 3;
/// Deliveries of one message past which it is given up on whatever its record says: one
/// that fails before it ever starts (passing over a busy function's calls costs one each,
/// [`pass_over`] apart).
const MAX_DELIVERIES: i64 = 10_000;

/// How long a passed-over message stays out of the queue: longer each time it is passed
/// over, from 100 ms to 5 s, so a long backlog of one function is looked at a few times a
/// second at most.
fn pass_over(delivered: i64) -> Duration {
    let times = u32::try_from(delivered.clamp(1, 50)).unwrap_or(50);
    Duration::from_millis(100) * times
}

/// The cluster's queue of asynchronous invocations: see the module docs.
pub struct NatsQueue {
    jetstream: jetstream::Context,
    client: async_nats::Client,
    config: QueueConfig,
    records: kv::Store,
    queue: stream::Stream,
    bodies: stream::Stream,
    results: stream::Stream,
    index: stream::Stream,
    /// The bytes one result may take in chunks: half the result chunks' share, so a
    /// result never pushes out its own first chunks.
    max_result: u64,
    old_bodies: Option<ObjectStore>,
    old_results: Option<ObjectStore>,
    messages: tokio::sync::Mutex<Option<pull::Stream>>,
    held: Mutex<HashMap<u64, Held>>,
    leases: AtomicU64,
    callbacks: stream::Stream,
    callback_messages: tokio::sync::Mutex<Option<pull::Stream>>,
    posting: Mutex<HashMap<u64, jetstream::Message>>,
}

/// A callback to post, as its message says.
#[derive(Serialize, Deserialize)]
struct CallbackMessage {
    id: String,
    url: String,
}

/// A message this node holds, the task that keeps telling JetStream so, and when the call
/// started.
struct Held {
    message: jetstream::Message,
    heartbeat: tokio::task::JoinHandle<()>,
    started: Option<u64>,
}

/// A record as stored: where its result is, when not inline.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    record: Record,
    /// The length of the result stored in chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result_chunked: Option<u64>,
}

/// `json` and `body` as one value: the JSON's length (4 bytes, big-endian), the JSON, the body.
fn frame(json: &[u8], body: &[u8]) -> Bytes {
    let mut framed = Vec::with_capacity(4 + json.len() + body.len());
    framed.extend_from_slice(&(json.len() as u32).to_be_bytes());
    framed.extend_from_slice(json);
    framed.extend_from_slice(body);
    framed.into()
}

/// The JSON and the body of a framed value.
fn unframe(framed: &Bytes) -> Result<(&[u8], Bytes), QueueError> {
    let bad = || QueueError::Store("a malformed invocation entry".into());
    let length: [u8; 4] = framed
        .get(..4)
        .ok_or_else(bad)?
        .try_into()
        .map_err(|_| bad())?;
    let end = 4 + u32::from_be_bytes(length) as usize;
    let json = framed.get(4..end).ok_or_else(bad)?;
    Ok((json, framed.slice(end..)))
}

fn store(context: &str) -> impl FnOnce(String) -> QueueError + '_ {
    move |e| QueueError::Store(format!("{context}: {e}"))
}

/// `text` cut to [`MAX_ERROR`] bytes (on a character boundary), with a note if it was.
fn cut_error(text: &str) -> String {
    if text.len() <= MAX_ERROR {
        return text.to_owned();
    }
    let mut end = MAX_ERROR;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... (cut: {} bytes in all)", &text[..end], text.len())
}

fn subject(prefix: &str, id: &str, n: usize) -> String {
    format!("{prefix}.{id}.{n}")
}

fn has_header(message: &jetstream::Message, name: &str, value: &str) -> bool {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .is_some_and(|v| v.as_str() == value)
}

fn header_u64(message: &jetstream::Message, name: &str) -> Option<u64> {
    message.headers.as_ref()?.get(name)?.as_str().parse().ok()
}

impl NatsQueue {
    /// The queue on `cluster`'s streams and buckets with the default [`QueueConfig`].
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        Self::open_with(cluster, QueueConfig::default()).await
    }

    /// The queue on `cluster`'s streams and buckets, created if they do not exist, within
    /// the limits of `config` (the byte budget shared out as the module docs say; applied
    /// to existing streams too).
    pub async fn open_with(cluster: &Cluster, config: QueueConfig) -> Result<Self, ClusterError> {
        let quarter = (config.max_bytes / 4).max(1);
        // The index and the callbacks not posted yet take 1/32 each of the results' quarter.
        let index_share = (config.max_bytes / 32).max(1);
        let results_share = quarter.saturating_sub(2 * index_share).max(1);
        let records = cluster
            .kv_with(KvSpec {
                max_age: KEPT,
                direct: false,
                max_bytes: quarter,
                discard: DiscardPolicy::Old,
                ..KvSpec::new(RECORDS)
            })
            .await?;
        let queue = cluster
            .stream(stream::Config {
                name: QUEUE.into(),
                subjects: vec![SUBJECT.into()],
                retention: RetentionPolicy::WorkQueue,
                num_replicas: cluster.replicas,
                max_messages: MAX_QUEUED as i64,
                max_bytes: as_i64(quarter),
                discard: DiscardPolicy::New,
                ..stream::Config::default()
            })
            .await?;
        let chunks = |name: &str, subject: &str, max_bytes: u64, discard| stream::Config {
            name: name.into(),
            subjects: vec![format!("{subject}.>")],
            num_replicas: cluster.replicas,
            max_age: KEPT,
            max_bytes: as_i64(max_bytes),
            discard,
            ..stream::Config::default()
        };
        let bodies = cluster
            .stream(chunks(
                BODY_CHUNKS,
                BODY_SUBJECT,
                quarter,
                DiscardPolicy::New,
            ))
            .await?;
        let results = cluster
            .stream(chunks(
                RESULT_CHUNKS,
                RESULT_SUBJECT,
                results_share,
                DiscardPolicy::Old,
            ))
            .await?;
        let index = cluster
            .stream(stream::Config {
                name: INDEX.into(),
                subjects: vec![INDEX_SUBJECT.into()],
                num_replicas: cluster.replicas,
                max_age: KEPT,
                max_bytes: as_i64(index_share),
                discard: DiscardPolicy::Old,
                ..stream::Config::default()
            })
            .await?;
        let callbacks = cluster
            .stream(stream::Config {
                name: CALLBACKS.into(),
                subjects: vec![CALLBACK_SUBJECT.into()],
                retention: RetentionPolicy::WorkQueue,
                num_replicas: cluster.replicas,
                max_age: KEPT,
                max_bytes: as_i64(index_share),
                discard: DiscardPolicy::New,
                ..stream::Config::default()
            })
            .await?;
        Ok(Self {
            jetstream: cluster.jetstream.clone(),
            client: cluster.client.clone(),
            config,
            records,
            queue,
            bodies,
            results,
            index,
            max_result: results_share / 2,
            old_bodies: cluster.jetstream.get_object_store(OLD_BODIES).await.ok(),
            old_results: cluster.jetstream.get_object_store(OLD_RESULTS).await.ok(),
            messages: tokio::sync::Mutex::new(None),
            held: Mutex::default(),
            leases: AtomicU64::new(0),
            callbacks,
            callback_messages: tokio::sync::Mutex::new(None),
            posting: Mutex::default(),
        })
    }

    /// Stores `bytes` in chunks on `prefix.<id>.<n>`; on failure, removes what was stored.
    async fn put_chunks(&self, prefix: &str, id: &str, bytes: &Bytes) -> Result<(), String> {
        let stored = async {
            let mut acks = Vec::new();
            for (n, start) in (0..bytes.len()).step_by(INLINE).enumerate() {
                let chunk = bytes.slice(start..(start + INLINE).min(bytes.len()));
                let ack = self
                    .jetstream
                    .publish(subject(prefix, id, n), chunk)
                    .await
                    .map_err(|e| e.to_string())?;
                acks.push(ack);
            }
            for ack in acks {
                ack.await.map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(())
        }
        .await;
        if stored.is_err() {
            self.drop_chunks(prefix, id).await;
        }
        stored
    }

    /// Removes the chunks of `prefix.<id>`.
    async fn drop_chunks(&self, prefix: &str, id: &str) {
        let stream = match prefix == BODY_SUBJECT {
            true => &self.bodies,
            false => &self.results,
        };
        if let Err(e) = stream.purge().filter(format!("{prefix}.{id}.>")).await {
            tracing::warn!(id, "cannot remove the stored chunks of an invocation: {e}");
        }
    }

    /// The `len` bytes stored in chunks on `prefix.<id>.<n>`; `None` if some are gone.
    async fn read_chunks(
        stream: &stream::Stream,
        prefix: &str,
        id: &str,
        len: u64,
    ) -> Result<Option<Bytes>, QueueError> {
        let len = usize::try_from(len).map_err(|e| store("a bad body length")(e.to_string()))?;
        let mut bytes = Vec::with_capacity(len);
        for n in 0..len.div_ceil(INLINE) {
            match stream
                .get_last_raw_message_by_subject(&subject(prefix, id, n))
                .await
            {
                Ok(chunk) => bytes.extend_from_slice(&chunk.payload),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(None),
                Err(e) => return Err(store("cannot read a stored body")(e.to_string())),
            }
        }
        Ok((bytes.len() == len).then(|| bytes.into()))
    }

    /// Writes `record` with the response `body`: inline if both fit in [`INLINE`], else
    /// the body in chunks. Too long an error is cut, too many response headers dropped,
    /// and a body that cannot be kept is dropped, each with a note: only JetStream failing
    /// makes this fail.
    async fn put_record(&self, record: &Record, body: &Bytes) -> Result<(), QueueError> {
        let id = record.invocation.id.as_str();
        let mut record = record.clone();
        if let Some(outcome) = &mut record.outcome {
            outcome.error = outcome.error.as_deref().map(cut_error);
        }
        let mut stored = Stored {
            record,
            result_chunked: None,
        };
        let encode = |stored: &Stored| {
            serde_json::to_vec(stored).map_err(|e| store("encoding")(e.to_string()))
        };
        let mut json = encode(&stored)?;
        if json.len() > MAX_RECORD_JSON {
            if let Some(outcome) = &mut stored.record.outcome {
                let dropped = outcome.headers.len();
                outcome.headers.clear();
                let note = format!("({dropped} response headers were not kept: too large)");
                outcome.error = Some(match outcome.error.take() {
                    Some(error) => format!("{error} {note}"),
                    None => note,
                });
                json = encode(&stored)?;
            }
        }
        let mut inline = body.clone();
        if json.len() + body.len() > INLINE {
            inline = Bytes::new();
            let kept = match body.len() as u64 > self.max_result {
                true => Err(format!(
                    "larger than the {} bytes one result may take (a quarter of \
                     --async-max-bytes {}, halved)",
                    self.max_result, self.config.max_bytes
                )),
                false => self.put_chunks(RESULT_SUBJECT, id, body).await,
            };
            match kept {
                Ok(()) => stored.result_chunked = Some(body.len() as u64),
                Err(e) => {
                    tracing::warn!(id, "the result of an invocation is not kept: {e}");
                    if let Some(outcome) = &mut stored.record.outcome {
                        let note = format!("(the {}-byte result was not kept: {e})", body.len());
                        outcome.error = Some(match outcome.error.take() {
                            Some(error) => format!("{error} {note}"),
                            None => note,
                        });
                    }
                }
            }
            json = encode(&stored)?;
        }
        self.records
            .put(id, frame(&json, &inline))
            .await
            .map(drop)
            .map_err(|e| store("cannot write the invocation's record")(e.to_string()))
    }

    /// Enqueues `invocation`; with `once`, not if a record of its id exists (then `false`):
    /// the record is created, not put, so of two nodes enqueueing one id one wins.
    async fn put(
        &self,
        invocation: Invocation,
        body: Bytes,
        once: bool,
    ) -> Result<bool, QueueError> {
        let id = invocation.id.clone();
        let json = serde_json::to_vec(&invocation).map_err(|e| store("encoding")(e.to_string()))?;
        let size = (json.len() + body.len()) as u64;
        let max_bytes = self.config.max_bytes;
        let mut headers = HeaderMap::new();
        // The message id makes a publish retried after a lost ack land once.
        headers.insert("Nats-Msg-Id", id.as_str());
        let chunked = body.len() > INLINE;
        let inline = if chunked {
            self.put_chunks(BODY_SUBJECT, &id, &body)
                .await
                .map_err(|e| refused(e, size, max_bytes))?;
            headers.insert("Wafer-Body", "chunks");
            headers.insert("Wafer-Body-Length", body.len().to_string().as_str());
            Bytes::new()
        } else {
            body
        };
        let payload = frame(&json, &inline);
        let record = Record::queued(invocation);
        let written = match once {
            true => self.create_record(&record).await,
            false => self.put_record(&record, &Bytes::new()).await.map(|()| true),
        };
        match written {
            Ok(true) => {}
            Ok(false) | Err(_) if chunked => self.drop_chunks(BODY_SUBJECT, &id).await,
            _ => {}
        }
        if !written? {
            return Ok(false);
        }
        let stored = async {
            self.jetstream
                .publish_with_headers(SUBJECT, headers, payload)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = stored {
            // Not acknowledged: leave no record of a call that will never run.
            let _ = self.records.purge(&id).await;
            if chunked {
                self.drop_chunks(BODY_SUBJECT, &id).await;
            }
            return Err(refused(e, size, max_bytes));
        }
        // For listing only: a lost entry leaves the invocation out of lists, nothing more.
        if let Err(e) = self.client.publish(INDEX_SUBJECT, id.clone().into()).await {
            tracing::warn!(id, "cannot index an invocation: {e}");
        }
        Ok(true)
    }

    /// Creates the record of a queued invocation unless one of its id exists: `false` then.
    async fn create_record(&self, record: &Record) -> Result<bool, QueueError> {
        let stored = Stored {
            record: record.clone(),
            result_chunked: None,
        };
        let json = serde_json::to_vec(&stored).map_err(|e| store("encoding")(e.to_string()))?;
        match self
            .records
            .create(&record.invocation.id, frame(&json, &[]))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == async_nats::jetstream::kv::CreateErrorKind::AlreadyExists => {
                Ok(false)
            }
            Err(e) => Err(store("cannot write the invocation's record")(e.to_string())),
        }
    }

    /// The stored record of `id` and its response body as stored inline.
    async fn read_record(&self, id: &str) -> Result<Option<(Stored, Bytes)>, QueueError> {
        let Some(framed) = self
            .records
            .get(id)
            .await
            .map_err(|e| store("cannot read the invocation's record")(e.to_string()))?
        else {
            return Ok(None);
        };
        let (json, body) = unframe(&framed)?;
        let stored = serde_json::from_slice(json)
            .map_err(|e| store("a bad invocation record")(e.to_string()))?;
        Ok(Some((stored, body)))
    }

    async fn read_object(
        bucket: Option<&ObjectStore>,
        id: &str,
    ) -> Result<Option<Bytes>, QueueError> {
        let Some(bucket) = bucket else {
            return Ok(None);
        };
        let mut object = match bucket.get(id).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(store("cannot read a body")(e.to_string())),
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| store("cannot read a body")(e.to_string()))?;
        Ok(Some(bytes.into()))
    }

    /// The next message of the consumer that runs invocations.
    async fn pull(&self) -> Result<jetstream::Message, QueueError> {
        Self::pull_from(
            &self.queue,
            CONSUMER,
            ACK_WAIT,
            &self.messages,
            "asynchronous invocations",
        )
        .await
    }

    /// The next message of `stream`'s durable consumer `name`, (re)opening its pull
    /// stream (kept in `messages`) as needed.
    async fn pull_from(
        stream: &stream::Stream,
        name: &str,
        ack_wait: Duration,
        messages: &tokio::sync::Mutex<Option<pull::Stream>>,
        what: &str,
    ) -> Result<jetstream::Message, QueueError> {
        let mut messages = messages.lock().await;
        loop {
            if messages.is_none() {
                let config = pull::Config {
                    durable_name: Some(name.into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait,
                    max_ack_pending: 10_000,
                    ..pull::Config::default()
                };
                let opened = async {
                    let consumer = stream
                        .get_or_create_consumer(name, config)
                        .await
                        .map_err(|e| e.to_string())?;
                    consumer.messages().await.map_err(|e| e.to_string())
                }
                .await;
                match opened {
                    Ok(stream) => *messages = Some(stream),
                    Err(e) => {
                        tracing::warn!("{what}: cannot pull: {e}");
                        tokio::time::sleep(REPULL).await;
                        continue;
                    }
                }
            }
            let Some(stream) = messages.as_mut() else {
                continue;
            };
            match stream.next().await {
                Some(Ok(message)) => return Ok(message),
                Some(Err(e)) => {
                    tracing::warn!("{what}: pulling failed: {e}");
                    *messages = None;
                    tokio::time::sleep(REPULL).await;
                }
                None => *messages = None,
            }
        }
    }

    /// Keeps the callback of finished `record`, if it has one: a message on the callback
    /// stream, published once per invocation (a repeat within the stream's duplicate window
    /// lands once).
    async fn keep_callback(&self, record: &Record) -> Result<(), QueueError> {
        let Some(url) = &record.invocation.callback else {
            return Ok(());
        };
        let id = &record.invocation.id;
        let message = CallbackMessage {
            id: id.clone(),
            url: url.clone(),
        };
        let payload = serde_json::to_vec(&message).map_err(|e| store("encoding")(e.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("callback-{id}").as_str());
        async {
            self.jetstream
                .publish_with_headers(CALLBACK_SUBJECT, headers, payload.into())
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())
        }
        .await
        .map(drop)
        .map_err(store("cannot keep the invocation's callback"))
    }

    /// The invocation a message stands for, and its request body inline.
    fn invocation(message: &jetstream::Message) -> Result<(Invocation, Bytes), QueueError> {
        let (json, inline) = unframe(&message.payload)?;
        let invocation: Invocation = serde_json::from_slice(json)
            .map_err(|e| store("a bad invocation message")(e.to_string()))?;
        Ok((invocation, inline))
    }

    /// The job a message stands for.
    async fn job(&self, message: &jetstream::Message, attempt: u32) -> Result<Job, QueueError> {
        let (invocation, inline) = Self::invocation(message)?;
        let gone = || QueueError::Store("the request body is gone".into());
        let body = if has_header(message, "Wafer-Body", "chunks") {
            let len = header_u64(message, "Wafer-Body-Length").ok_or_else(gone)?;
            Self::read_chunks(&self.bodies, BODY_SUBJECT, &invocation.id, len)
                .await?
                .ok_or_else(gone)?
        } else if has_header(message, "Wafer-Body", "object") {
            Self::read_object(self.old_bodies.as_ref(), &invocation.id)
                .await?
                .ok_or_else(gone)?
        } else {
            inline
        };
        Ok(Job {
            invocation,
            body,
            attempt,
            lease: self.leases.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// Removes what `message` kept apart from itself (its request body).
    async fn drop_body(&self, message: &jetstream::Message, id: &str) {
        if has_header(message, "Wafer-Body", "chunks") {
            self.drop_chunks(BODY_SUBJECT, id).await;
        } else if has_header(message, "Wafer-Body", "object") {
            if let Some(old) = &self.old_bodies {
                let _ = old.delete(id).await;
            }
        }
    }

    /// Acknowledges the message of an invocation already finished (its outcome `record`),
    /// once its callback is kept; or leaves it to be settled again later.
    async fn settle(&self, message: jetstream::Message, record: &Record) {
        let id = &record.invocation.id;
        if let Err(e) = self.keep_callback(record).await {
            tracing::warn!(id, "{e}");
            let _ = message.ack_with(AckKind::Nak(Some(REPULL))).await;
            return;
        }
        match message.double_ack().await {
            Ok(()) => self.drop_body(&message, id).await,
            Err(e) => tracing::warn!(id, "cannot acknowledge a finished invocation: {e}"),
        }
    }

    /// Records `message`'s invocation failed, given up on after `attempts` starts, and
    /// acknowledges it; or leaves it to be tried again if that cannot be written.
    async fn give_up(&self, message: jetstream::Message, attempts: u32) {
        let Ok((invocation, _)) = Self::invocation(&message) else {
            tracing::error!("a malformed asynchronous invocation was dropped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        tracing::error!(
            id = invocation.id,
            function = %invocation.function,
            "asynchronous invocation given up after {attempts} attempts"
        );
        let id = invocation.id.clone();
        let at = now();
        let record = Record {
            invocation,
            state: State::Failed,
            attempts,
            started: None,
            finished: Some(at),
            outcome: Some(QueueConfig::gave_up(attempts)),
        };
        let kept = async {
            self.put_record(&record, &Bytes::new()).await?;
            self.keep_callback(&record).await
        };
        match kept.await {
            Ok(()) => {
                if let Err(e) = message.double_ack().await {
                    tracing::warn!(id, "cannot acknowledge an invocation given up on: {e}");
                    return;
                }
                self.drop_body(&message, &id).await;
            }
            Err(e) => {
                tracing::warn!(id, "cannot record an invocation given up on: {e}");
                let _ = message.ack_with(AckKind::Nak(Some(REPULL))).await;
            }
        }
    }

    /// Hands `job` back at once, to run again here or on another node (a node that stops
    /// gives back what it holds rather than leave it for [`ACK_WAIT`]). A start it had counts
    /// as an attempt: past [`QueueConfig::max_attempts`], it is given up on.
    pub async fn abandon(&self, job: &Job) -> Result<(), QueueError> {
        let Some(held) = self.release(job) else {
            return Ok(());
        };
        held.message
            .ack_with(AckKind::Nak(None))
            .await
            .map_err(|e| store("cannot hand the invocation back")(e.to_string()))
    }

    /// Takes a held message back; `None` if this node does not hold it.
    fn release(&self, job: &Job) -> Option<Held> {
        let held = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&job.lease)?;
        held.heartbeat.abort();
        Some(held)
    }
}

/// What a refused publish to a full stream means for the caller.
fn refused(e: String, size: u64, max_bytes: u64) -> QueueError {
    if e.contains("maximum bytes exceeded") {
        QueueError::NoSpace { size, max_bytes }
    } else if e.contains("maximum messages exceeded") {
        QueueError::Full(MAX_QUEUED)
    } else {
        store("cannot queue the invocation")(e)
    }
}

#[async_trait]
impl Queue for NatsQueue {
    async fn depth(&self) -> Result<u64, QueueError> {
        // A work-queue stream keeps a message until it is acknowledged: queued or running.
        let mut queue = self.queue.clone();
        let info = queue
            .info()
            .await
            .map_err(|e| store("cannot read the queue stream")(e.to_string()))?;
        Ok(info.state.messages)
    }

    async fn enqueue(&self, invocation: Invocation, body: Bytes) -> Result<(), QueueError> {
        self.put(invocation, body, false).await.map(drop)
    }

    async fn enqueue_once(&self, invocation: Invocation, body: Bytes) -> Result<bool, QueueError> {
        self.put(invocation, body, true).await
    }

    async fn next_except(&self, skip: Skip) -> Result<Job, QueueError> {
        let (message, job) = loop {
            let message = self.pull().await?;
            let delivered = message.info().map_or(1, |info| info.delivered.max(1));
            let Ok((invocation, _)) = Self::invocation(&message) else {
                self.give_up(message, 0).await;
                continue;
            };
            if skip(&invocation.function) {
                // Passed over: back in the queue for a while, for this node or another.
                let _ = message
                    .ack_with(AckKind::Nak(Some(pass_over(delivered))))
                    .await;
                continue;
            }
            // The attempts are the starts its record counts, not the deliveries: passing
            // over costs none. A ceiling on deliveries stands for a message that fails
            // before it ever starts.
            let record = match self.read_record(&invocation.id).await {
                Ok(record) => record.map(|(stored, _)| stored.record),
                Err(e) => {
                    let _ = message.ack_with(AckKind::Nak(Some(REPULL))).await;
                    return Err(e);
                }
            };
            if let Some(done) = record.as_ref().filter(|r| r.outcome.is_some()) {
                // Finished, and the node that ran it stopped before the message was
                // acknowledged: not run again; only its callback is made sure of.
                self.settle(message, done).await;
                continue;
            }
            let started = record.map_or(0, |r| r.attempts);
            if started >= self.config.max_attempts || delivered > MAX_DELIVERIES {
                self.give_up(message, started).await;
                continue;
            }
            match self.job(&message, started + 1).await {
                Ok(job) => break (message, job),
                Err(e) => {
                    // Try again later, here or on another node.
                    let _ = message.ack_with(AckKind::Nak(Some(REPULL))).await;
                    return Err(e);
                }
            }
        };
        let heartbeat = {
            let message = message.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PROGRESS);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            })
        };
        let held = Held {
            message,
            heartbeat,
            started: None,
        };
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job.lease, held);
        Ok(job)
    }

    async fn start(&self, job: &Job) -> Result<(), QueueError> {
        let started = now();
        if let Some(held) = self
            .held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&job.lease)
        {
            held.started = Some(started);
        }
        let record = Record {
            invocation: job.invocation.clone(),
            state: State::Running,
            attempts: job.attempt,
            started: Some(started),
            finished: None,
            outcome: None,
        };
        self.put_record(&record, &Bytes::new()).await
    }

    async fn finish(&self, job: &Job, outcome: Outcome) -> Result<(), QueueError> {
        let started = {
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            held.get(&job.lease).and_then(|h| h.started)
        };
        let body = outcome.body.clone();
        let record = Record {
            invocation: job.invocation.clone(),
            state: outcome.state,
            attempts: job.attempt,
            started,
            finished: Some(now()),
            outcome: Some(outcome),
        };
        let write = || async {
            self.put_record(&record, &body).await?;
            self.keep_callback(&record).await
        };
        let mut written = write().await;
        for _ in 1..FINISH_TRIES {
            if written.is_ok() {
                break;
            }
            tokio::time::sleep(REPULL).await;
            written = write().await;
        }
        let Some(held) = self.release(job) else {
            return written;
        };
        if written.is_err() {
            // Run it again (here or elsewhere, within the attempt cap) rather than lose
            // how it went.
            let _ = held.message.ack_with(AckKind::Nak(Some(REPULL))).await;
            return written;
        }
        held.message
            .double_ack()
            .await
            .map_err(|e| store("cannot acknowledge the invocation")(e.to_string()))?;
        self.drop_body(&held.message, &job.invocation.id).await;
        Ok(())
    }

    async fn next_callback(&self) -> Result<Callback, QueueError> {
        loop {
            let message = Self::pull_from(
                &self.callbacks,
                POSTER,
                CALLBACK_ACK_WAIT,
                &self.callback_messages,
                "callbacks",
            )
            .await?;
            let Ok(callback) = serde_json::from_slice::<CallbackMessage>(&message.payload) else {
                tracing::error!("a malformed callback message was dropped");
                let _ = message.ack_with(AckKind::Term).await;
                continue;
            };
            let delivered = message.info().map_or(1, |info| info.delivered.max(1));
            let lease = self.leases.fetch_add(1, Ordering::Relaxed);
            self.posting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(lease, message);
            return Ok(Callback {
                id: callback.id,
                url: callback.url,
                attempt: u32::try_from(delivered).unwrap_or(u32::MAX),
                lease,
            });
        }
    }

    async fn callback_done(&self, callback: &Callback, posted: bool) -> Result<(), QueueError> {
        let Some(message) = self
            .posting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&callback.lease)
        else {
            return Ok(());
        };
        let answered = match posted || callback.attempt >= CALLBACK_TRIES {
            true => message.double_ack().await,
            false => {
                let wait = callback_wait(callback.attempt);
                message.ack_with(AckKind::Nak(Some(wait))).await
            }
        };
        answered.map_err(|e| store("cannot settle a callback")(e.to_string()))
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, QueueError> {
        Ok(self.read_record(id).await?.map(|(stored, _)| stored.record))
    }

    async fn result(&self, id: &str) -> Result<Option<Bytes>, QueueError> {
        let Some((stored, inline)) = self.read_record(id).await? else {
            return Ok(None);
        };
        if stored.record.outcome.is_none() {
            return Ok(None);
        }
        if let Some(len) = stored.result_chunked {
            // `None` if the oldest results gave way to newer ones.
            return Self::read_chunks(&self.results, RESULT_SUBJECT, id, len).await;
        }
        match inline.is_empty() {
            false => Ok(Some(inline)),
            // Empty, or kept in the Object Store by an earlier version.
            true => Ok(Self::read_object(self.old_results.as_ref(), id)
                .await?
                .or(Some(inline))),
        }
    }

    async fn list(&self, limit: usize) -> Result<Vec<Record>, QueueError> {
        let index = &self.index;
        let state = index
            .get_info()
            .await
            .map_err(|e| store("cannot read the invocation index")(e.to_string()))?
            .state;
        let mut records: Vec<Record> = Vec::with_capacity(limit);
        let mut seen = std::collections::HashSet::new();
        let mut sequence = state.last_sequence;
        // Entries whose records expired or gave way are skipped; at most as many again.
        let mut budget = limit.saturating_mul(2).max(16);
        while records.len() < limit && sequence >= state.first_sequence.max(1) && budget > 0 {
            budget -= 1;
            let entry = index.get_raw_message(sequence).await;
            sequence -= 1;
            let id = match entry {
                Ok(entry) => String::from_utf8_lossy(&entry.payload).into_owned(),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => continue,
                Err(e) => return Err(store("cannot read the invocation index")(e.to_string())),
            };
            if !seen.insert(id.clone()) {
                continue;
            }
            if let Some((stored, _)) = self.read_record(&id).await? {
                records.push(stored.record);
            }
        }
        // Index order is the order the ids were accepted across nodes; show them by id.
        records.sort_unstable_by(|a, b| b.invocation.id.cmp(&a.invocation.id));
        Ok(records)
    }
}
