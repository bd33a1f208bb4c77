//! [`NatsQueue`]: asynchronous invocations in JetStream, so any node accepts them and any
//! node runs them.
//!
//! - Records live in the KV bucket `wafer_invocations`, one key per id, read from the
//!   stream's leader (so a record just written on another node is seen): the record's JSON,
//!   then the response body once finished, or, past [`INLINE`] bytes, the body is an object
//!   in `wafer_invocation_results`.
//! - Each invocation is one message on `wafer.invoke` in the work-queue stream
//!   `wafer_invocation_queue`: the invocation's JSON, then its request body, or, past
//!   [`INLINE`] bytes, the body is an object in `wafer_invocation_bodies`. A message holds
//!   all a node needs to run the call; JetStream counts its deliveries (the attempts).
//! - JetStream expires records, bodies and results after [`KEPT`].
//!
//! Every node pulls from one durable consumer, `run`. A message is acknowledged once the
//! invocation's outcome is written; the node holding one says "in progress" every
//! [`PROGRESS`], so a node that dies leaves it unacknowledged and JetStream hands it to another
//! node after [`ACK_WAIT`]. The `202` is sent after both the record and the message are
//! stored (with `--cluster-replicas 3`, on a majority of three servers).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use async_nats::jetstream::stream::{self, RetentionPolicy};
use async_nats::jetstream::{self, kv, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt;
use wafer_queue::{now, Invocation, Job, Outcome, Queue, QueueError, Record, State, MAX_QUEUED};

use crate::{Cluster, ClusterError};

const RECORDS: &str = "wafer_invocations";
const QUEUE: &str = "wafer_invocation_queue";
const SUBJECT: &str = "wafer.invoke";
const CONSUMER: &str = "run";
const BODIES: &str = "wafer_invocation_bodies";
const RESULTS: &str = "wafer_invocation_results";

/// Largest request or response body carried in the message or record itself (NATS messages
/// are at most 1 MiB by default); larger ones go to an Object Store.
pub const INLINE: usize = 512 << 10;

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

/// The cluster's queue of asynchronous invocations: see the module docs.
pub struct NatsQueue {
    jetstream: jetstream::Context,
    records: kv::Store,
    queue: stream::Stream,
    bodies: ObjectStore,
    results: ObjectStore,
    messages: tokio::sync::Mutex<Option<pull::Stream>>,
    held: Mutex<HashMap<u64, Held>>,
    leases: AtomicU64,
}

/// A message this node holds, the task that keeps telling JetStream so, and when the call
/// started.
struct Held {
    message: jetstream::Message,
    heartbeat: tokio::task::JoinHandle<()>,
    started: Option<u64>,
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

impl NatsQueue {
    /// The queue on `cluster`'s streams and buckets, created if they do not exist.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        let records = cluster.kv_with(RECORDS, 1, KEPT, false).await?;
        let queue = cluster
            .jetstream
            .get_or_create_stream(stream::Config {
                name: QUEUE.into(),
                subjects: vec![SUBJECT.into()],
                retention: RetentionPolicy::WorkQueue,
                num_replicas: cluster.replicas,
                max_messages: MAX_QUEUED as i64,
                discard: stream::DiscardPolicy::New,
                ..stream::Config::default()
            })
            .await
            .map_err(|e| {
                ClusterError::jetstream(format!("cannot create the stream `{QUEUE}`"))(
                    e.to_string(),
                )
            })?;
        Ok(Self {
            jetstream: cluster.jetstream.clone(),
            records,
            queue,
            bodies: cluster.object_store(BODIES, KEPT).await?,
            results: cluster.object_store(RESULTS, KEPT).await?,
            messages: tokio::sync::Mutex::new(None),
            held: Mutex::default(),
            leases: AtomicU64::new(0),
        })
    }

    /// Writes `record` with the response `body` (inline, or in the Object Store if large).
    async fn put_record(&self, record: &Record, body: &[u8]) -> Result<(), QueueError> {
        let id = record.invocation.id.as_str();
        let inline = if body.len() > INLINE {
            self.results
                .put(id, &mut &body[..])
                .await
                .map_err(|e| store("cannot store the result")(e.to_string()))?;
            &[][..]
        } else {
            body
        };
        let json = serde_json::to_vec(record).map_err(|e| store("encoding")(e.to_string()))?;
        self.records
            .put(id, frame(&json, inline))
            .await
            .map(drop)
            .map_err(|e| store("cannot write the invocation's record")(e.to_string()))
    }

    /// The record of `id` and its response body as stored inline.
    async fn read_record(&self, id: &str) -> Result<Option<(Record, Bytes)>, QueueError> {
        let Some(framed) = self
            .records
            .get(id)
            .await
            .map_err(|e| store("cannot read the invocation's record")(e.to_string()))?
        else {
            return Ok(None);
        };
        let (json, body) = unframe(&framed)?;
        let record = serde_json::from_slice(json)
            .map_err(|e| store("a bad invocation record")(e.to_string()))?;
        Ok(Some((record, body)))
    }

    async fn read_object(bucket: &ObjectStore, id: &str) -> Result<Option<Bytes>, QueueError> {
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

    /// The next message of the consumer, (re)opening its pull stream as needed.
    async fn pull(&self) -> Result<jetstream::Message, QueueError> {
        let mut messages = self.messages.lock().await;
        loop {
            if messages.is_none() {
                let config = pull::Config {
                    durable_name: Some(CONSUMER.into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: ACK_WAIT,
                    max_ack_pending: 10_000,
                    ..pull::Config::default()
                };
                let opened = async {
                    let consumer = self
                        .queue
                        .get_or_create_consumer(CONSUMER, config)
                        .await
                        .map_err(|e| e.to_string())?;
                    consumer.messages().await.map_err(|e| e.to_string())
                }
                .await;
                match opened {
                    Ok(stream) => *messages = Some(stream),
                    Err(e) => {
                        tracing::warn!("asynchronous invocations: cannot pull: {e}");
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
                    tracing::warn!("asynchronous invocations: pulling failed: {e}");
                    *messages = None;
                    tokio::time::sleep(REPULL).await;
                }
                None => *messages = None,
            }
        }
    }

    /// The job a message stands for.
    async fn job(&self, message: &jetstream::Message) -> Result<Job, QueueError> {
        let (json, inline) = unframe(&message.payload)?;
        let invocation: Invocation = serde_json::from_slice(json)
            .map_err(|e| store("a bad invocation message")(e.to_string()))?;
        let in_object = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Wafer-Body"))
            .is_some_and(|v| v.as_str() == "object");
        let body = match in_object {
            true => Self::read_object(&self.bodies, &invocation.id)
                .await?
                .ok_or_else(|| QueueError::Store("the request body is gone".into()))?,
            false => inline,
        };
        let attempt = message
            .info()
            .map_or(1, |info| info.delivered.max(1) as u32);
        Ok(Job {
            invocation,
            body,
            attempt,
            lease: self.leases.fetch_add(1, Ordering::Relaxed),
        })
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
        let id = invocation.id.clone();
        let mut headers = HeaderMap::new();
        // The message id makes a publish retried after a lost ack land once.
        headers.insert("Nats-Msg-Id", id.as_str());
        let inline = if body.len() > INLINE {
            self.bodies
                .put(id.as_str(), &mut &body[..])
                .await
                .map_err(|e| store("cannot store the request body")(e.to_string()))?;
            headers.insert("Wafer-Body", "object");
            Bytes::new()
        } else {
            body
        };
        let json = serde_json::to_vec(&invocation).map_err(|e| store("encoding")(e.to_string()))?;
        let payload = frame(&json, &inline);
        let record = Record::queued(invocation);
        self.put_record(&record, &[]).await?;
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
            return Err(match e.contains("maximum messages exceeded") {
                true => QueueError::Full(MAX_QUEUED),
                false => store("cannot queue the invocation")(e),
            });
        }
        Ok(())
    }

    async fn next(&self) -> Result<Job, QueueError> {
        let message = self.pull().await?;
        let job = match self.job(&message).await {
            Ok(job) => job,
            Err(e) => {
                // Try again later, here or on another node.
                let _ = message.ack_with(AckKind::Nak(Some(REPULL))).await;
                return Err(e);
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
        self.put_record(&record, &[]).await
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
        let written = self.put_record(&record, &body).await;
        let Some(held) = self.release(job) else {
            return written;
        };
        if written.is_err() {
            // Run it again (here or elsewhere) rather than lose how it went.
            let _ = held.message.ack_with(AckKind::Nak(Some(REPULL))).await;
            return written;
        }
        held.message
            .double_ack()
            .await
            .map_err(|e| store("cannot acknowledge the invocation")(e.to_string()))?;
        let headers = held.message.headers.as_ref();
        if headers
            .and_then(|h| h.get("Wafer-Body"))
            .map(|v| v.as_str())
            == Some("object")
        {
            let _ = self.bodies.delete(job.invocation.id.as_str()).await;
        }
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>, QueueError> {
        Ok(self.read_record(id).await?.map(|(record, _)| record))
    }

    async fn result(&self, id: &str) -> Result<Option<Bytes>, QueueError> {
        let Some((record, inline)) = self.read_record(id).await? else {
            return Ok(None);
        };
        match &record.outcome {
            None => Ok(None),
            Some(_) if !inline.is_empty() => Ok(Some(inline)),
            // Empty, or too large to keep inline.
            Some(_) => Ok(Self::read_object(&self.results, id).await?.or(Some(inline))),
        }
    }

    async fn list(&self, limit: usize) -> Result<Vec<Record>, QueueError> {
        let mut keys: Vec<String> = self
            .records
            .keys()
            .await
            .map_err(|e| store("cannot list invocations")(e.to_string()))?
            .filter_map(Result::ok)
            .collect()
            .await;
        keys.sort_unstable_by(|a, b| b.cmp(a));
        let mut records = Vec::with_capacity(limit.min(keys.len()));
        for key in keys.into_iter().take(limit) {
            if let Some((record, _)) = self.read_record(&key).await? {
                records.push(record);
            }
        }
        Ok(records)
    }
}
