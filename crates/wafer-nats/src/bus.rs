//! [`NatsBus`]: pub/sub through JetStream, so a message published on any node reaches each
//! subscribing function once, whichever node runs it.
//!
//! A publish stores one message per subscriber (the subscribers as the publishing node's
//! table stands) on `wafer.deliver.<function>` in the work-queue stream `wafer_messages`,
//! with the topic and hop count in headers, and returns once JetStream has it. Each function
//! has one durable consumer, `deliver_<function>`, that every node serving the function
//! pulls from: that is the function's queue group, so each message goes to one node. A
//! message is acknowledged after the subscriber's call succeeds; a failed call is retried
//! after a growing delay ([`retry_delay`]), and after [`ATTEMPTS`] failures the message moves
//! to `wafer.dead.<function>` in the stream `wafer_dead` (with the last error in the header
//! `Wafer-Error`) and is acknowledged. A node that does not know the function as a
//! subscriber (one still on the old version during a rollout) hands the message back with the
//! same delays, and it is dropped only after [`ATTEMPTS`] deliveries found no subscriber.
//! `wafer_messages` holds at most [`ClusterConfig::messages_max_bytes`](crate::ClusterConfig)
//! (past it a publish fails), `wafer_dead` at most
//! [`ClusterConfig::dead_max_bytes`](crate::ClusterConfig) (past it the oldest go). A node that dies mid-call leaves the message
//! unacknowledged, and JetStream gives it to another node after the ack wait.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy};
use async_nats::jetstream::{self, AckKind};
use async_nats::HeaderMap;
use async_trait::async_trait;
use tokio_stream::StreamExt;
use wafer_host::pubsub::{Stats, SubscriberStats, MAX_MESSAGE};
use wafer_host::{Bus, Deliver, Delivery, GuestError, Message};
use wafer_registry::FunctionName;

use crate::{as_i64, Cluster, ClusterError};

/// The stream of messages on their way to subscribers.
const MESSAGES: &str = "wafer_messages";
/// The stream of messages given up on.
const DEAD: &str = "wafer_dead";

/// Calls a message gets before it is given up on and kept as a dead letter.
pub const ATTEMPTS: i64 = 5;

/// How long a node may hold a message without a word before JetStream gives it to
/// another; a node working on one says "in progress" every [`PROGRESS`].
const ACK_WAIT: Duration = Duration::from_secs(30);
const PROGRESS: Duration = Duration::from_secs(10);

/// How long dead letters are kept.
const DEAD_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

/// How long to wait before pulling again after the consumer failed (NATS lost, say).
const REPULL: Duration = Duration::from_secs(1);

/// The wait before attempt `attempt + 1` of a message whose attempt `attempt` failed:
/// half a second, 1 s, 2 s, 4 s, ... up to a minute.
pub fn retry_delay(attempt: i64) -> Duration {
    let exponent = attempt.clamp(1, 9) as u32 - 1;
    Duration::from_millis(500 << exponent).min(Duration::from_secs(60))
}

#[derive(Default)]
struct Counters {
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    dead: AtomicU64,
}

struct Puller {
    task: tokio::task::JoinHandle<()>,
    counters: Arc<Counters>,
}

impl Drop for Puller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The cluster's pub/sub bus: see the module docs.
pub struct NatsBus {
    jetstream: jetstream::Context,
    messages: stream::Stream,
    deliver: Arc<OnceLock<Weak<dyn Deliver>>>,
    pullers: Mutex<HashMap<FunctionName, Puller>>,
    published: AtomicU64,
}

fn subject(function: &FunctionName) -> String {
    format!("wafer.deliver.{function}")
}

fn consumer_name(function: &FunctionName) -> String {
    format!("deliver_{function}")
}

fn failed(context: &str) -> impl FnOnce(String) -> GuestError + '_ {
    move |e| GuestError::Failed(format!("pub/sub: {context}: {e}"))
}

impl NatsBus {
    /// The bus on `cluster`'s streams, created if they do not exist.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        let jetstream = cluster.jetstream().clone();
        let messages = cluster
            .stream(stream::Config {
                name: MESSAGES.into(),
                subjects: vec!["wafer.deliver.>".into()],
                retention: RetentionPolicy::WorkQueue,
                num_replicas: cluster.replicas,
                max_message_size: (MAX_MESSAGE + 4096) as i32,
                // Past it a publish fails: the publishing guest is told, nothing is lost.
                max_bytes: as_i64(cluster.limits.messages),
                discard: DiscardPolicy::New,
                ..stream::Config::default()
            })
            .await?;
        cluster
            .stream(stream::Config {
                name: DEAD.into(),
                subjects: vec!["wafer.dead.>".into()],
                num_replicas: cluster.replicas,
                max_age: DEAD_AGE,
                max_message_size: (MAX_MESSAGE + 8192) as i32,
                // Past it the oldest dead letters go: burying one never fails for room.
                max_bytes: as_i64(cluster.limits.dead),
                discard: DiscardPolicy::Old,
                ..stream::Config::default()
            })
            .await?;
        Ok(Self {
            jetstream,
            messages,
            deliver: Arc::new(OnceLock::new()),
            pullers: Mutex::default(),
            published: AtomicU64::new(0),
        })
    }

    fn pullers(&self) -> std::sync::MutexGuard<'_, HashMap<FunctionName, Puller>> {
        self.pullers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start(&self, name: FunctionName) -> Puller {
        let counters = Arc::new(Counters::default());
        let pull = Pull {
            jetstream: self.jetstream.clone(),
            messages: self.messages.clone(),
            deliver: self.deliver.clone(),
            counters: counters.clone(),
            name,
        };
        let task = wafer_host::tasks::supervise("pubsub puller", move || pull.clone().run());
        Puller { task, counters }
    }
}

#[async_trait]
impl Bus for NatsBus {
    fn set_deliver(&self, deliver: Weak<dyn Deliver>) {
        let _ = self.deliver.set(deliver);
    }

    async fn publish(
        &self,
        subscribers: Vec<FunctionName>,
        message: Message,
    ) -> Result<(), GuestError> {
        self.published.fetch_add(1, Ordering::Relaxed);
        let mut acks = Vec::with_capacity(subscribers.len());
        for function in &subscribers {
            let mut headers = HeaderMap::new();
            headers.insert("Wafer-Topic", message.topic.as_str());
            headers.insert("Wafer-Hops", message.hops.to_string().as_str());
            // The publish's trace context, which the delivery on whichever node continues.
            for (name, value) in &message.trace {
                headers.insert(name.as_str(), value.as_str());
            }
            let ack = self
                .jetstream
                .publish_with_headers(subject(function), headers, message.body.clone())
                .await
                .map_err(|e| failed("cannot publish")(e.to_string()))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| failed("the message was not stored")(e.to_string()))?;
        }
        Ok(())
    }

    fn serve(&self, subscribers: &[FunctionName]) {
        let mut pullers = self.pullers();
        let keep: std::collections::HashSet<&FunctionName> = subscribers.iter().collect();
        pullers.retain(|name, _| keep.contains(name));
        for name in subscribers {
            if !pullers.contains_key(name) {
                let puller = self.start(name.clone());
                pullers.insert(name.clone(), puller);
            }
        }
    }

    async fn forget(&self, name: &FunctionName) -> Result<(), GuestError> {
        self.pullers().remove(name);
        match self.messages.delete_consumer(&consumer_name(name)).await {
            Ok(_) => {}
            Err(e) if e.to_string().contains("not found") => {}
            Err(e) => {
                return Err(failed("cannot delete the function's consumer")(
                    e.to_string(),
                ))
            }
        }
        self.messages
            .purge()
            .filter(subject(name))
            .await
            .map_err(|e| failed("cannot drop the function's messages")(e.to_string()))?;
        Ok(())
    }

    async fn stats(&self) -> Stats {
        let counters: Vec<(FunctionName, Arc<Counters>)> = self
            .pullers()
            .iter()
            .map(|(name, puller)| (name.clone(), puller.counters.clone()))
            .collect();
        let mut subscribers = Vec::with_capacity(counters.len());
        for (name, counters) in counters {
            let queued = match self.messages.consumer_info(consumer_name(&name)).await {
                Ok(info) => info.num_pending + info.num_ack_pending as u64,
                Err(_) => 0,
            };
            subscribers.push(SubscriberStats {
                function: name.to_string(),
                queued,
                delivered: counters.delivered.load(Ordering::Relaxed),
                failed: counters.failed.load(Ordering::Relaxed),
                dropped: counters.dropped.load(Ordering::Relaxed),
                dead: counters.dead.load(Ordering::Relaxed),
            });
        }
        subscribers.sort_by(|a, b| a.function.cmp(&b.function));
        Stats {
            published: self.published.load(Ordering::Relaxed),
            subscribers,
        }
    }
}

/// One node pulling one function's messages.
#[derive(Clone)]
struct Pull {
    jetstream: jetstream::Context,
    messages: stream::Stream,
    deliver: Arc<OnceLock<Weak<dyn Deliver>>>,
    counters: Arc<Counters>,
    name: FunctionName,
}

impl Pull {
    /// Pulls and delivers until aborted, starting over whenever the consumer fails.
    async fn run(self) {
        loop {
            if let Err(e) = self.pull().await {
                tracing::warn!(function = %self.name, "pub/sub: pulling messages failed: {e}");
            }
            tokio::time::sleep(REPULL).await;
        }
    }

    async fn pull(&self) -> Result<(), String> {
        let config = pull::Config {
            durable_name: Some(consumer_name(&self.name)),
            filter_subject: subject(&self.name),
            ack_policy: AckPolicy::Explicit,
            ack_wait: ACK_WAIT,
            ..pull::Config::default()
        };
        let consumer = self
            .messages
            .get_or_create_consumer(&consumer_name(&self.name), config)
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| e.to_string())?;
            self.handle(message).await;
        }
        Ok(())
    }

    async fn handle(&self, message: jetstream::Message) {
        let attempt = message.info().map(|i| i.delivered).unwrap_or(1);
        let header = |name: &str| {
            let headers = message.headers.as_ref()?;
            Some(headers.get(name)?.as_str().to_owned())
        };
        let delivered = Message {
            topic: header("Wafer-Topic").unwrap_or_default(),
            body: message.payload.clone(),
            hops: header("Wafer-Hops")
                .and_then(|h| h.parse().ok())
                .unwrap_or(1),
            trace: ["traceparent", "tracestate"]
                .into_iter()
                .filter_map(|name| Some((name.to_owned(), header(name)?)))
                .collect(),
        };
        let Some(deliver) = self.deliver.get().and_then(Weak::upgrade) else {
            // The gateway is gone (the server is stopping): leave it for another node.
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return;
        };
        let delivery =
            wafer_host::contained(&self.name, deliver.deliver(self.name.clone(), delivered));
        tokio::pin!(delivery);
        let mut progress = tokio::time::interval(PROGRESS);
        progress.tick().await;
        let outcome = loop {
            tokio::select! {
                outcome = &mut delivery => break outcome,
                _ = progress.tick() => {
                    let _ = message.ack_with(AckKind::Progress).await;
                }
            }
        };
        let counters = &self.counters;
        let acked = match outcome {
            Delivery::Delivered => {
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                message.ack().await
            }
            // This node does not serve the function as a subscriber of the topic, though
            // the publishing node did: during a rollout, this node may be the one behind.
            // Another node (or this one, once caught up) gets it after a pause; only after
            // every attempt is it dropped.
            Delivery::Gone if attempt < ATTEMPTS => {
                message
                    .ack_with(AckKind::Nak(Some(retry_delay(attempt))))
                    .await
            }
            Delivery::Gone => {
                counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    function = %self.name,
                    "pub/sub: a message for a function no node served as a subscriber in \
                     {ATTEMPTS} attempts was dropped"
                );
                message.ack().await
            }
            Delivery::Failed(error) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                if attempt < ATTEMPTS || !self.bury(&message, &error).await {
                    message
                        .ack_with(AckKind::Nak(Some(retry_delay(attempt))))
                        .await
                } else {
                    message.ack_with(AckKind::Term).await
                }
            }
        };
        if let Err(e) = acked {
            tracing::warn!(function = %self.name, "pub/sub: cannot acknowledge a message: {e}");
        }
    }

    /// Keeps a message given up on in the dead-letter stream; false if it could not (the
    /// message is then retried rather than lost).
    async fn bury(&self, message: &jetstream::Message, error: &str) -> bool {
        let mut headers = message.headers.clone().unwrap_or_default();
        let excerpt: String = error.chars().take(512).collect();
        headers.insert("Wafer-Error", excerpt.as_str());
        let subject = format!("wafer.dead.{}", self.name);
        let stored = match self
            .jetstream
            .publish_with_headers(subject, headers, message.payload.clone())
            .await
        {
            Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match stored {
            Ok(()) => {
                self.counters.dead.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    function = %self.name,
                    "pub/sub: a message failed {ATTEMPTS} times and was moved to wafer.dead.{}: {error}",
                    self.name
                );
                true
            }
            Err(e) => {
                tracing::error!(function = %self.name, "pub/sub: cannot keep a dead letter ({e})");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_minute() {
        let delays: Vec<u128> = (0..=10).map(|a| retry_delay(a).as_millis()).collect();
        let expected = [
            500, 500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000,
        ];
        assert_eq!(delays, expected);
    }
}
