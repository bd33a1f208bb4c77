//! The cluster backends against what a client, a guest or a rollout can do to them, on a
//! real nats-server: byte limits on everything Wafer creates, the asynchronous queue's
//! budget and attempt cap, bounded histories, stale bucket handles, mixed versions.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio_stream::StreamExt;
use wafer_abi::Abi;
use wafer_host::kv::Kv;
use wafer_host::{Bus, Deliver, Delivery, Message};
use wafer_nats::{Cluster, ClusterConfig, NatsBus, NatsKv, NatsQueue, NatsStore};
use wafer_queue::{Invocation, Outcome, Queue, QueueConfig, QueueError, State};
use wafer_registry::{
    Digest, FunctionConfig, FunctionName, FunctionRecord, Registry, RegistryError, Update,
    MAX_VERSIONS,
};

const MIB: usize = 1 << 20;

/// A nats-server with JetStream in a temporary directory, killed on drop.
struct Nats {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nats {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("nats.conf");
        std::fs::write(&config, "jetstream { max_file_store: 1TB }\n").unwrap();
        let binary = match Path::new("/usr/sbin/nats-server").exists() {
            true => "/usr/sbin/nats-server",
            false => "nats-server",
        };
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir.path())
            // JetStream sets each stream's byte limit aside up front against
            // `max_file_store`, by default 75% of the disk's free space; fixed so the tests
            // do not depend on how full the disk is (they write far less).
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e} (scripts/setup.sh installs it)")
            });
        // Killed and waited for on drop, whatever happens next.
        let nats = Self {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nats;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nats-server did not start on port {port}");
    }

    fn config(&self) -> ClusterConfig {
        ClusterConfig::new(format!("nats://127.0.0.1:{}", self.port))
    }

    async fn connect(&self) -> Cluster {
        Cluster::connect(&self.config()).await.unwrap()
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn name(s: &str) -> FunctionName {
    s.parse().unwrap()
}

fn invocation(path: &str) -> Invocation {
    Invocation::new(name("f"), "POST", path, Vec::new(), None)
}

fn outcome(state: State, status: u16, body: Bytes, error: Option<String>) -> Outcome {
    Outcome {
        state,
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        error,
        body,
    }
}

async fn queue_with(cluster: &Cluster, max_bytes: u64, max_attempts: u32) -> NatsQueue {
    let config = QueueConfig {
        max_bytes,
        max_attempts,
    };
    NatsQueue::open_with(cluster, config).await.unwrap()
}

/// `next`, which must come within a few seconds (it waits for ever on an empty queue).
async fn next(queue: &NatsQueue) -> wafer_queue::Job {
    tokio::time::timeout(Duration::from_secs(10), queue.next())
        .await
        .expect("no invocation came out of the queue")
        .unwrap()
}

#[tokio::test]
async fn every_stream_and_bucket_wafer_creates_has_a_byte_limit() {
    let nats = Nats::start();
    // A bucket made by an earlier version, without a limit, gets one.
    {
        let client = async_nats::connect(format!("nats://127.0.0.1:{}", nats.port))
            .await
            .unwrap();
        let jetstream = async_nats::jetstream::new(client);
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "KV_wafer_functions".into(),
                subjects: vec!["$KV.wafer_functions.>".into()],
                max_messages_per_subject: 16,
                allow_rollup: true,
                deny_delete: true,
                allow_direct: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .unwrap();
        // And the invocation records as an earlier version made them: refusing past the
        // limit, which now drops the oldest instead.
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: "KV_wafer_invocations".into(),
                subjects: vec!["$KV.wafer_invocations.>".into()],
                max_messages_per_subject: 1,
                max_age: wafer_nats::KEPT,
                allow_rollup: true,
                deny_delete: true,
                discard: async_nats::jetstream::stream::DiscardPolicy::New,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    let cluster = nats.connect().await;
    let _store = NatsStore::open(&cluster).await.unwrap();
    let _bus = NatsBus::open(&cluster).await.unwrap();
    let _queue = NatsQueue::open(&cluster).await.unwrap();
    cluster.admin_token("secret").await.unwrap();
    let kv = NatsKv::new(&cluster);
    kv.set(&name("f"), "k", b"v".to_vec(), 10).await.unwrap();

    let mut streams = cluster.jetstream().streams();
    let mut seen = Vec::new();
    while let Some(info) = streams.next().await {
        let info = info.unwrap();
        assert!(
            info.config.max_bytes > 0,
            "the stream `{}` has no byte limit",
            info.config.name
        );
        seen.push((info.config.name.clone(), info.config.max_bytes));
    }
    seen.sort();
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "KV_wafer_cluster",
        "KV_wafer_functions",
        "KV_wafer_invocations",
        "KV_wafer_kv_f",
        "OBJ_wafer_modules",
        "wafer_dead",
        "wafer_invocation_body_chunks",
        "wafer_invocation_callbacks",
        "wafer_invocation_index",
        "wafer_invocation_queue",
        "wafer_invocation_result_chunks",
        "wafer_messages",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let limit = |name: &str| seen.iter().find(|(n, _)| n == name).unwrap().1;
    assert_eq!(
        limit("KV_wafer_functions"),
        wafer_nats::RECORDS_MAX_BYTES as i64
    );
    assert_eq!(
        limit("OBJ_wafer_modules"),
        wafer_nats::MODULES_MAX_BYTES as i64
    );
    assert_eq!(limit("KV_wafer_kv_f"), wafer_nats::KV_MAX_BYTES as i64);
    assert_eq!(
        limit("wafer_messages"),
        wafer_nats::MESSAGES_MAX_BYTES as i64
    );
    // The queue's budget is shared out, and all of it together is the budget.
    let queue_total: i64 = seen
        .iter()
        .filter(|(n, _)| n.contains("invocation"))
        .map(|(_, b)| b)
        .sum();
    assert_eq!(queue_total, wafer_queue::MAX_BYTES as i64);
    let mut records = cluster
        .jetstream()
        .get_stream("KV_wafer_invocations")
        .await
        .unwrap();
    let discard = records.info().await.unwrap().config.discard;
    assert_eq!(discard, async_nats::jetstream::stream::DiscardPolicy::Old);

    // A limit changed in the configuration applies to the existing stream at the next start.
    let mut config = nats.config();
    config.records_max_bytes = 32 * MIB as u64;
    let cluster = Cluster::connect(&config).await.unwrap();
    NatsStore::open(&cluster).await.unwrap();
    let mut stream = cluster
        .jetstream()
        .get_stream("KV_wafer_functions")
        .await
        .unwrap();
    assert_eq!(
        stream.info().await.unwrap().config.max_bytes,
        32 * MIB as i64
    );
}

#[tokio::test]
async fn the_async_byte_budget_refuses_past_it_and_space_comes_back() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let max = 8 * MIB as u64;
    let queue = queue_with(&cluster, max, 5).await;

    // Bodies past 512 KiB are stored in chunks: their share is a quarter, 2 MiB.
    let big = Bytes::from(vec![7u8; MIB]);
    let mut accepted = Vec::new();
    let refusal = loop {
        let invocation = invocation("/big");
        match queue.enqueue(invocation.clone(), big.clone()).await {
            Ok(()) => accepted.push(invocation.id),
            Err(e) => break e,
        }
        assert!(accepted.len() <= 2, "more than the budget was accepted");
    };
    assert!(!accepted.is_empty());
    let QueueError::NoSpace { max_bytes, size } = &refusal else {
        panic!("expected NoSpace, got {refusal}");
    };
    assert_eq!((*max_bytes, *size > MIB as u64), (max, true));
    let message = refusal.to_string();
    assert!(message.contains(&max.to_string()), "{message}");
    assert!(message.contains("--async-max-bytes"), "{message}");
    // A refused invocation leaves no trace and no stray chunks.
    assert_eq!(queue.depth().await.unwrap(), accepted.len() as u64);
    assert_eq!(queue.list(10).await.unwrap().len(), accepted.len());

    // Small bodies travel in the queue's messages: their share refuses too.
    let small = Bytes::from(vec![1u8; 400 << 10]);
    let mut small_accepted = 0;
    let refusal = loop {
        match queue.enqueue(invocation("/small"), small.clone()).await {
            Ok(()) => small_accepted += 1,
            Err(e) => break e,
        }
        assert!(small_accepted <= 5, "more than the budget was accepted");
    };
    assert!(matches!(refusal, QueueError::NoSpace { .. }), "{refusal}");

    // Everything runs; the room comes back.
    let total = accepted.len() + small_accepted;
    for _ in 0..total {
        let job = next(&queue).await;
        queue.start(&job).await.unwrap();
        let done = outcome(State::Done, 200, Bytes::from_static(b"ok"), None);
        queue.finish(&job, done).await.unwrap();
    }
    assert_eq!(queue.depth().await.unwrap(), 0);
    for _ in 0..accepted.len() {
        queue
            .enqueue(invocation("/again"), big.clone())
            .await
            .unwrap();
    }
    let job = next(&queue).await;
    assert_eq!(job.body, big, "a body stored in chunks comes back whole");
}

#[tokio::test]
async fn a_large_failed_result_is_kept_and_never_runs_again() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let queue = queue_with(&cluster, 64 * MIB as u64, 5).await;
    let invocation = invocation("/5xx");
    queue
        .enqueue(invocation.clone(), Bytes::from_static(b"in"))
        .await
        .unwrap();
    let job = next(&queue).await;
    queue.start(&job).await.unwrap();
    // A 5xx whose error is its whole (900 KiB) answer, as the gateway records it: together
    // far more than one KV value holds.
    let text = "e".repeat(900 << 10);
    let failed = outcome(
        State::Failed,
        502,
        Bytes::from(text.clone()),
        Some(text.clone()),
    );
    queue.finish(&job, failed).await.unwrap();
    assert_eq!(queue.depth().await.unwrap(), 0, "it left the queue");
    let record = queue.get(&invocation.id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Failed);
    let outcome = record.outcome.unwrap();
    assert_eq!(outcome.status, 502);
    let error = outcome.error.unwrap();
    assert!(
        error.len() < 8 << 10,
        "the error was not cut: {}",
        error.len()
    );
    assert!(error.contains("cut"), "{}", &error[error.len() - 60..]);
    let result = queue.result(&invocation.id).await.unwrap().unwrap();
    assert_eq!(result.len(), text.len());
    // Nothing is left to run.
    let more = tokio::time::timeout(Duration::from_secs(2), queue.next()).await;
    assert!(more.is_err(), "the invocation was handed out again");
}

#[tokio::test]
async fn an_invocation_is_given_up_after_the_attempt_cap() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let queue = queue_with(&cluster, 64 * MIB as u64, 3).await;
    let crashing = invocation("/crash");
    queue
        .enqueue(crashing.clone(), Bytes::from(vec![3u8; 600 << 10]))
        .await
        .unwrap();
    // Each time, the node running it goes away without an answer.
    for attempt in 1..=3 {
        let job = next(&queue).await;
        assert_eq!(
            (job.invocation.id.as_str(), job.attempt),
            (crashing.id.as_str(), attempt)
        );
        queue.start(&job).await.unwrap();
        queue.abandon(&job).await.unwrap();
    }
    let after = invocation("/after");
    queue.enqueue(after.clone(), Bytes::new()).await.unwrap();
    let job = next(&queue).await;
    assert_eq!(
        job.invocation.id, after.id,
        "the capped one was handed out again"
    );
    // The capped one is given up on when it comes round again, which on a loaded machine
    // may be after `after`: the queue settles it while looking for work, handing out nothing.
    let more = tokio::time::timeout(Duration::from_secs(3), queue.next()).await;
    assert!(more.is_err(), "the capped one was handed out again");
    let record = queue.get(&crashing.id).await.unwrap().unwrap();
    assert_eq!(record.state, State::Failed);
    assert_eq!(record.attempts, 3);
    let error = record.outcome.unwrap().error.unwrap();
    assert!(error.contains("gave up after 3 attempts"), "{error}");
    let body_chunks = cluster
        .jetstream()
        .get_stream("wafer_invocation_body_chunks")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(body_chunks.state.messages, 0, "its body was not removed");
}

#[tokio::test]
async fn listing_reads_the_newest_from_the_end() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let queue = queue_with(&cluster, 64 * MIB as u64, 5).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let invocation = invocation(&format!("/{i}"));
        ids.push(invocation.id.clone());
        queue.enqueue(invocation, Bytes::new()).await.unwrap();
    }
    let listed: Vec<String> = queue
        .list(5)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.invocation.id)
        .collect();
    let newest: Vec<String> = ids.iter().rev().take(5).cloned().collect();
    assert_eq!(listed, newest);
    assert_eq!(queue.list(100).await.unwrap().len(), 40);
}

#[tokio::test]
async fn a_node_recovers_from_a_stale_bucket_handle_after_rm_and_redeploy() {
    let nats = Nats::start();
    let (a, b) = (
        NatsKv::new(&nats.connect().await),
        NatsKv::new(&nats.connect().await),
    );
    let f = name("f");
    a.set(&f, "k", b"1".to_vec(), 10).await.unwrap();
    // Node b caches the bucket's handle.
    assert_eq!(b.get(&f, "k").await.unwrap().unwrap(), b"1");
    // `wafer rm f` on node a, then f is deployed again.
    a.delete_namespace(&f).await.unwrap();
    assert_eq!(b.get(&f, "k").await.unwrap(), None);
    b.set(&f, "k", b"2".to_vec(), 10).await.unwrap();
    assert_eq!(a.get(&f, "k").await.unwrap().unwrap(), b"2");
    assert_eq!(b.increment(&f, "n", 5, 10).await.unwrap(), 5);
}

#[tokio::test]
async fn the_key_limit_holds_without_listing_keys() {
    let nats = Nats::start();
    let kv = NatsKv::new(&nats.connect().await);
    let f = name("f");
    for key in ["a", "b", "c"] {
        kv.set(&f, key, b"x".to_vec(), 3).await.unwrap();
    }
    // Overwriting a key is not a new key.
    kv.set(&f, "a", b"y".to_vec(), 3).await.unwrap();
    let full = kv.set(&f, "d", b"x".to_vec(), 3).await.unwrap_err();
    assert!(full.to_string().contains("3 keys"), "{full}");
    assert!(kv.increment(&f, "d", 1, 3).await.is_err());
    // A deleted key frees its place (no delete marker stays behind to be counted).
    kv.delete(&f, "b").await.unwrap();
    kv.set(&f, "d", b"x".to_vec(), 3).await.unwrap();
    assert_eq!(kv.get(&f, "b").await.unwrap(), None);
    assert_eq!(kv.list(&f, "").await.unwrap(), ["a", "c", "d"]);
}

#[tokio::test]
async fn a_thousand_deploys_keep_a_bounded_history_and_module_store() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let store = NatsStore::open(&cluster).await.unwrap();
    let registry = Registry::new(store);
    let f = name("f");
    let mut digests = Vec::new();
    for i in 0..1_100u32 {
        let wasm = format!("(module) ;; {i}").into_bytes();
        let digest = Digest::of(&wasm);
        registry.put_module(&digest, wasm).await.unwrap();
        let (version, _) = registry
            .update(&f, |current| {
                let mut record = current.cloned().unwrap_or_else(|| FunctionRecord::new(&f));
                let v = record.push(
                    digest.clone(),
                    Abi::Cgi,
                    FunctionConfig::default(),
                    Vec::new(),
                );
                let number = v.version;
                Ok(Update::Write(record, number))
            })
            .await
            .unwrap();
        assert_eq!(version, i + 1);
        digests.push(digest);
    }
    let (record, _) = registry.record(&f).await.unwrap().unwrap();
    assert_eq!(record.versions.len(), MAX_VERSIONS);
    assert_eq!(record.active, 1_100);
    assert_eq!(record.versions[0].version, 1_001);
    assert_eq!(record.previous().unwrap().version, 1_099);
    // The modules of forgotten versions are gone; those of kept versions stay.
    let gone = registry.module(&digests[0]).await.unwrap_err();
    assert!(matches!(gone, RegistryError::ModuleNotFound(_)), "{gone}");
    let gone = registry.module(&digests[999]).await.unwrap_err();
    assert!(matches!(gone, RegistryError::ModuleNotFound(_)), "{gone}");
    registry.module(&digests[1_000]).await.unwrap();
    registry.module(&digests[1_099]).await.unwrap();
    // A module another function still runs is kept.
    let g = name("g");
    let shared = digests[1_000].clone();
    registry
        .update(&g, |_| {
            let mut record = FunctionRecord::new(&g);
            record.push(
                shared.clone(),
                Abi::Cgi,
                FunctionConfig::default(),
                Vec::new(),
            );
            Ok(Update::Write(record, ()))
        })
        .await
        .unwrap();
    registry.remove(&f).await.unwrap();
    registry.module(&shared).await.unwrap();
    let gone = registry.module(&digests[1_099]).await.unwrap_err();
    assert!(matches!(gone, RegistryError::ModuleNotFound(_)), "{gone}");
}

/// The gateway of a node during a rollout: for its first `behind` deliveries it does not
/// know the subscriber yet (it is on the old version), then it does.
struct Rollout {
    behind: u32,
    calls: AtomicU32,
    delivered: AtomicU32,
}

impl Deliver for Rollout {
    fn subscribers(&self, _topic: &str) -> Vec<FunctionName> {
        vec![name("sub")]
    }

    fn deliver(
        self: Arc<Self>,
        _function: FunctionName,
        _message: Message,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Delivery> + Send>> {
        Box::pin(async move {
            if self.calls.fetch_add(1, Ordering::SeqCst) < self.behind {
                Delivery::Gone
            } else {
                self.delivered.fetch_add(1, Ordering::SeqCst);
                Delivery::Delivered
            }
        })
    }
}

#[tokio::test]
async fn a_node_behind_in_a_rollout_hands_a_message_back_instead_of_losing_it() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let bus = NatsBus::open(&cluster).await.unwrap();
    let gateway = Arc::new(Rollout {
        behind: 2,
        calls: AtomicU32::new(0),
        delivered: AtomicU32::new(0),
    });
    let weak: Weak<dyn Deliver> = Arc::downgrade(&(gateway.clone() as Arc<dyn Deliver>));
    bus.set_deliver(weak);
    bus.serve(&[name("sub")]);
    let message = Message {
        topic: "t".into(),
        body: Bytes::from_static(b"hello"),
        hops: 1,
        trace: Vec::new(),
    };
    bus.publish(vec![name("sub")], message).await.unwrap();
    for _ in 0..200 {
        if gateway.delivered.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.delivered.load(Ordering::SeqCst), 1);
    assert_eq!(gateway.calls.load(Ordering::SeqCst), 3);
    let stats = bus.stats().await;
    assert_eq!(stats.subscribers[0].dropped, 0);
}

#[tokio::test]
async fn a_passed_over_invocation_waits_its_turn_and_costs_no_attempt() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let queue = queue_with(&cluster, 64 * MIB as u64, 2).await;
    let slow = Invocation::new(name("slow"), "POST", "/", Vec::new(), None);
    let other = Invocation::new(name("other"), "POST", "/", Vec::new(), None);
    queue.enqueue(slow.clone(), Bytes::new()).await.unwrap();
    queue.enqueue(other.clone(), Bytes::new()).await.unwrap();
    // A dispatcher holding as many of `slow`'s calls as it may passes it over, more times
    // than the attempt cap: the call behind it comes out.
    let skip_slow: wafer_queue::Skip = Arc::new(|f: &FunctionName| f.as_str() == "slow");
    let job = tokio::time::timeout(
        Duration::from_secs(10),
        queue.next_except(skip_slow.clone()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(job.invocation.id, other.id);
    queue.start(&job).await.unwrap();
    queue
        .finish(&job, outcome(State::Done, 200, Bytes::new(), None))
        .await
        .unwrap();
    let nothing = tokio::time::timeout(Duration::from_secs(2), queue.next_except(skip_slow)).await;
    assert!(nothing.is_err(), "a passed-over call was handed out");
    // Once the function is free, its call is handed out: its first attempt.
    let job = next(&queue).await;
    assert_eq!(
        (job.invocation.id.as_str(), job.attempt),
        (slow.id.as_str(), 1)
    );
    let record = queue.get(&slow.id).await.unwrap().unwrap();
    assert_eq!((record.state, record.attempts), (State::Queued, 0));
}

#[tokio::test]
async fn a_callback_is_kept_until_posted_and_tried_again_meanwhile() {
    let nats = Nats::start();
    let cluster = nats.connect().await;
    let queue = queue_with(&cluster, 64 * MIB as u64, 3).await;
    let url = "http://hooks.internal/done";
    let call = Invocation::new(name("f"), "POST", "/", Vec::new(), Some(url.into()));
    queue.enqueue(call.clone(), Bytes::new()).await.unwrap();
    let job = next(&queue).await;
    queue.start(&job).await.unwrap();
    queue
        .finish(&job, outcome(State::Done, 200, "result".into(), None))
        .await
        .unwrap();
    let take = || async {
        tokio::time::timeout(Duration::from_secs(10), queue.next_callback())
            .await
            .expect("no callback came out")
            .unwrap()
    };
    let first = take().await;
    assert_eq!(
        (first.id.as_str(), first.url.as_str(), first.attempt),
        (call.id.as_str(), url, 1)
    );
    // The receiver was down: the callback comes back, one try more.
    queue.callback_done(&first, false).await.unwrap();
    let second = take().await;
    assert_eq!((second.id.as_str(), second.attempt), (call.id.as_str(), 2));
    queue.callback_done(&second, true).await.unwrap();
    let more = tokio::time::timeout(Duration::from_secs(3), queue.next_callback()).await;
    assert!(more.is_err(), "a posted callback came out again");
    // Another node's queue (a restart) finds none either: posted is forgotten.
    let again = queue_with(&cluster, 64 * MIB as u64, 3).await;
    let more = tokio::time::timeout(Duration::from_secs(2), again.next_callback()).await;
    assert!(more.is_err(), "a posted callback came out on another node");
}
