//! `pubsub`: functions publish to topics; every function subscribed to a matching pattern is
//! invoked once per message.
//!
//! [`call`] checks a publish (the grant, the size, the hop limit), finds the subscribers as
//! the table stands (through [`Deliver`]) and hands the message to the [`Bus`]: [`LocalBus`]
//! on one machine, or a cluster's (NATS subjects with a durable consumer per function, in
//! `wafer-nats`). The delivery itself (a call of the function) is the gateway's, through
//! [`Deliver`].
//!
//! [`LocalBus`] gives each subscriber a bounded queue ([`QUEUE`] messages, [`QUEUE_BYTES`]
//! bytes) drained by one task, so messages reach a subscriber in the order they were
//! published, and a slow subscriber holds up no one else. A message that finds its
//! subscriber's queue full of messages is dropped for that subscriber and counted; so is one
//! whose subscriber is gone by the time it is delivered. One that would take a subscriber's
//! queue past [`QUEUE_BYTES`] is dropped for it and counted too, and the publisher's host
//! call fails with `too_large`, naming the subscriber and the limit: without the byte bound
//! a stuck subscriber would hold 1024 messages of 1 MiB, a GiB, per subscriber.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use wafer_registry::{check_topic, Deployment, FunctionName};

use crate::{bytes_field, json, unknown_operation, GuestError};

/// Messages waiting per subscriber before new ones are dropped. Default 1024: bursts of
/// small messages are absorbed while a subscriber runs.
pub const QUEUE: usize = 1024;

/// Bytes of messages held per subscriber (waiting, and the one being delivered) before a
/// publish to it is refused: 16 MiB, sixteen of the largest messages, so that a subscriber
/// that never finishes holds at most this much of the server's memory. Past it the
/// publisher's host call fails with `too_large`.
pub const QUEUE_BYTES: usize = 16 << 20;

/// Largest message, in bytes.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Deliveries a chain of messages may take: a message published by a call that a delivery
/// started carries one hop more than the message delivered, and a publish past this many
/// hops is refused. It ends the loop of a function subscribed to a topic it publishes to
/// (or of two functions feeding each other), while allowing pipelines of several stages.
pub const MAX_HOPS: u32 = 8;

/// A published message on its way to one subscriber.
#[derive(Debug, Clone)]
pub struct Message {
    /// The topic it was published to.
    pub topic: String,
    /// Its bytes.
    pub body: Bytes,
    /// Deliveries that led to it: 1 for a message published by a request's call, one more
    /// for each delivery in between.
    pub hops: u32,
    /// The trace context of its publish (`traceparent`, `tracestate`), which its deliveries
    /// continue; empty when tracing is off.
    pub trace: crate::trace::Carrier,
}

impl Message {
    /// The message as a waPC subscriber's `on_message` payload:
    /// `{"topic": T, "message": "text"}`, or `message_base64` when it is not UTF-8.
    pub fn to_json(&self) -> Vec<u8> {
        let mut object = serde_json::Map::new();
        object.insert("topic".into(), self.topic.clone().into());
        crate::put_bytes(&mut object, "message", self.body.to_vec());
        serde_json::Value::Object(object).to_string().into_bytes()
    }
}

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The subscriber was called and succeeded.
    Delivered,
    /// The subscriber was called and failed.
    Failed(String),
    /// The subscriber is gone, or no longer subscribed to the topic.
    Gone,
}

/// Finds subscribers and calls them with messages (the gateway).
pub trait Deliver: Send + Sync {
    /// The functions subscribed to `topic` now.
    fn subscribers(&self, topic: &str) -> Vec<FunctionName>;

    /// Calls `function` with `message`, if it still exists and is still subscribed to the
    /// message's topic.
    fn deliver(
        self: Arc<Self>,
        function: FunctionName,
        message: Message,
    ) -> Pin<Box<dyn Future<Output = Delivery> + Send>>;
}

/// Runs one delivery in a task of its own, so that a panic on its path costs that delivery
/// (a failure, retried and dead-lettered like any other, and logged) and never the task that
/// drains the subscriber's queue. Dropping the returned future cancels the delivery.
pub async fn contained(
    function: &FunctionName,
    delivery: Pin<Box<dyn Future<Output = Delivery> + Send>>,
) -> Delivery {
    match crate::tasks::contained("delivery", delivery).await {
        Ok(outcome) => outcome,
        Err(e) => {
            tracing::error!(%function, "a delivery failed inside the server: {e}");
            Delivery::Failed("the delivery failed inside the server (see its log)".into())
        }
    }
}

/// Counters of the broker.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    /// Messages accepted from publishers.
    pub published: u64,
    /// Per subscriber, by name.
    pub subscribers: Vec<SubscriberStats>,
}

/// What happened to the messages for one subscriber.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubscriberStats {
    /// The subscribed function.
    pub function: String,
    /// Waiting in its queue now.
    pub queued: u64,
    /// Delivered: the call succeeded.
    pub delivered: u64,
    /// Delivered, but the call failed (trap, timeout, error status).
    pub failed: u64,
    /// Never delivered: the queue was full, or the function was gone.
    pub dropped: u64,
    /// Given up after failing every attempt, and kept as a dead letter (cluster mode).
    pub dead: u64,
}

/// Where published messages travel to their subscribers.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sets who delivers the messages (the gateway). Until then nothing is delivered.
    fn set_deliver(&self, deliver: Weak<dyn Deliver>);

    /// Sends `message` to each of `subscribers`; returns once the bus holds it.
    async fn publish(
        &self,
        subscribers: Vec<FunctionName>,
        message: Message,
    ) -> Result<(), GuestError>;

    /// The functions this node serves that subscribe to anything, whenever the set changes:
    /// a bus that delivers by pulling starts pulling for new ones and stops for the others.
    fn serve(&self, subscribers: &[FunctionName]);

    /// Drops a removed function's queue with the messages in it, for every node.
    async fn forget(&self, name: &FunctionName) -> Result<(), GuestError>;

    /// Counters, per subscriber.
    async fn stats(&self) -> Stats;
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

struct Queue {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
    /// Bytes of the messages queued and being delivered (see [`QUEUE_BYTES`]).
    bytes: Arc<AtomicUsize>,
}

/// The in-process bus: a bounded queue per subscriber, drained in order by one task.
#[derive(Default)]
pub struct LocalBus {
    deliver: Arc<OnceLock<Weak<dyn Deliver>>>,
    queues: Mutex<HashMap<FunctionName, Queue>>,
    published: AtomicU64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Publish {
    topic: String,
    message: Option<String>,
    message_base64: Option<String>,
}

/// Answers one `pubsub` host call of `function`: checks the publish and hands the message
/// for the topic's subscribers to `bus`. `hops` is how many deliveries led to the call.
pub(crate) async fn call(
    bus: &dyn Bus,
    deliver: Option<Arc<dyn Deliver>>,
    function: &Deployment,
    operation: &str,
    payload: &[u8],
    hops: u32,
) -> Result<Vec<u8>, GuestError> {
    if operation != "publish" {
        return Err(unknown_operation("pubsub", operation, "publish"));
    }
    let publish: Publish = json(payload, "pubsub/publish")?;
    check_topic(&publish.topic).map_err(GuestError::Invalid)?;
    let grants = &function.config.grants;
    if !grants.publish.iter().any(|p| p.matches(&publish.topic)) {
        return Err(GuestError::Denied(format!(
            "this function may not publish to `{}` (grant it with `publish = [...]`)",
            publish.topic
        )));
    }
    let body = bytes_field(publish.message, publish.message_base64, "message")?;
    if body.len() > MAX_MESSAGE {
        return Err(GuestError::TooLarge(format!(
            "the message is {} bytes; messages are at most {MAX_MESSAGE}",
            body.len()
        )));
    }
    let hops = hops + 1;
    if hops > MAX_HOPS {
        return Err(GuestError::Denied(format!(
            "message hop limit reached: this call was started by a chain of {MAX_HOPS} \
             deliveries, so its messages would loop (is the function subscribed to a topic \
             it publishes to?)"
        )));
    }
    let subscribers = deliver
        .map(|d| d.subscribers(&publish.topic))
        .unwrap_or_default();
    let span = tracing::Span::current();
    if crate::trace::enabled() {
        crate::trace::rename(&span, format!("publish {}", publish.topic));
        span.record("messaging.destination.name", publish.topic.as_str());
    }
    let message = Message {
        topic: publish.topic,
        body: body.into(),
        hops,
        trace: crate::trace::carrier(),
    };
    bus.publish(subscribers, message).await?;
    Ok(Vec::new())
}

impl LocalBus {
    /// Starts the task that delivers one subscriber's messages, in order.
    fn start(&self, name: FunctionName) -> Queue {
        let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
        let counters = Arc::new(Counters::default());
        let bytes = Arc::new(AtomicUsize::new(0));
        let (deliver, task_counters) = (self.deliver.clone(), counters.clone());
        let task_bytes = bytes.clone();
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                let size = message.body.len();
                let outcome = match deliver.get().and_then(Weak::upgrade) {
                    Some(deliver) => contained(&name, deliver.deliver(name.clone(), message)).await,
                    None => Delivery::Gone,
                };
                task_bytes.fetch_sub(size, Ordering::Relaxed);
                let counter = match outcome {
                    Delivery::Delivered => &task_counters.delivered,
                    Delivery::Failed(_) => &task_counters.failed,
                    Delivery::Gone => &task_counters.dropped,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Queue {
            tx,
            counters,
            bytes,
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<FunctionName, Queue>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Bus for LocalBus {
    fn set_deliver(&self, deliver: Weak<dyn Deliver>) {
        let _ = self.deliver.set(deliver);
    }

    /// Queues `message` for each subscriber; a queue full of messages drops it for that
    /// subscriber. One whose bytes it would take past [`QUEUE_BYTES`] drops it too, and the
    /// publish fails naming those subscribers (the others have the message).
    async fn publish(
        &self,
        subscribers: Vec<FunctionName>,
        message: Message,
    ) -> Result<(), GuestError> {
        self.published.fetch_add(1, Ordering::Relaxed);
        let size = message.body.len();
        let mut refused = Vec::new();
        let mut queued = 0;
        let mut queues = self.queues();
        for name in subscribers {
            let queue = queues
                .entry(name.clone())
                .or_insert_with(|| self.start(name.clone()));
            // Counted before the send, so the task never takes away bytes not yet added.
            let held = queue.bytes.fetch_add(size, Ordering::Relaxed);
            if held.saturating_add(size) > QUEUE_BYTES {
                queue.bytes.fetch_sub(size, Ordering::Relaxed);
                queue.counters.dropped.fetch_add(1, Ordering::Relaxed);
                refused.push(format!("`{name}` ({held} bytes waiting)"));
                continue;
            }
            match queue.tx.try_send(message.clone()) {
                Ok(()) => queued += 1,
                Err(_) => {
                    queue.bytes.fetch_sub(size, Ordering::Relaxed);
                    queue.counters.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        Err(GuestError::TooLarge(format!(
            "the message of {size} bytes was not queued for {}: a subscriber's queue holds at \
             most {QUEUE_BYTES} bytes (16 MiB) of messages; it was queued for {queued} other \
             subscriber(s)",
            refused.join(", ")
        )))
    }

    /// Queues are made on the first message; those of functions no longer subscribed go
    /// (each task ends once its queue is drained).
    fn serve(&self, subscribers: &[FunctionName]) {
        let keep: std::collections::HashSet<&FunctionName> = subscribers.iter().collect();
        self.queues().retain(|name, _| keep.contains(name));
    }

    async fn forget(&self, name: &FunctionName) -> Result<(), GuestError> {
        self.queues().remove(name);
        Ok(())
    }

    async fn stats(&self) -> Stats {
        let queues = self.queues();
        let mut subscribers: Vec<SubscriberStats> = queues
            .iter()
            .map(|(name, q)| SubscriberStats {
                function: name.to_string(),
                queued: (q.tx.max_capacity() - q.tx.capacity()) as u64,
                delivered: q.counters.delivered.load(Ordering::Relaxed),
                failed: q.counters.failed.load(Ordering::Relaxed),
                dropped: q.counters.dropped.load(Ordering::Relaxed),
                dead: 0,
            })
            .collect();
        subscribers.sort_by(|a, b| a.function.cmp(&b.function));
        Stats {
            published: self.published.load(Ordering::Relaxed),
            subscribers,
        }
    }
}
