//! Wafer's cluster backends on NATS JetStream, chosen by `wafer serve --cluster`: every node
//! of a cluster reads and writes the same state through them, and nothing above the seams
//! knows which backend it talks to.
//!
//! - [`NatsStore`]: the registry's [`Store`](wafer_registry::Store). Function records live
//!   in the KV bucket `wafer_functions` (one key per function, with history; a write is
//!   compare-and-set on the key's revision), modules in the Object Store bucket
//!   `wafer_modules` (named by digest, verified on every read). A watch is a KV watch with
//!   history: the records as they stand, then every change, in stream order, the same on
//!   every node.
//! - [`NatsKv`]: functions' key-value namespaces
//!   ([`Kv`](wafer_host::kv::Kv)), one KV bucket per function, `wafer_kv_<name>`.
//! - [`NatsBus`]: pub/sub ([`Bus`](wafer_host::Bus)): a durable JetStream consumer per
//!   subscribing function shared by every node (the function's queue group), at-least-once
//!   with retries and a dead-letter subject.
//! - [`NatsQueue`]: asynchronous invocations ([`Queue`](wafer_queue::Queue)): records in
//!   a KV bucket, the calls in a work-queue stream that every node pulls from.
//! - [`Cluster::admin_token`]: one admin token for the whole cluster, created by the first
//!   node and read by the others.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use wafer_nats::{Cluster, ClusterConfig, NatsStore};
//!
//! let cluster = Cluster::connect(&ClusterConfig::new("nats://127.0.0.1:4222")).await?;
//! let registry = wafer_registry::Registry::new(NatsStore::open(&cluster).await?);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod bus;
mod namespaces;
mod queue;
mod store;

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::kv;

pub use bus::{retry_delay, NatsBus, ATTEMPTS};
pub use namespaces::NatsKv;
pub use queue::{NatsQueue, ACK_WAIT, INLINE, KEPT, MAX_ERROR, PROGRESS};
pub use store::NatsStore;

/// The bucket of cluster-wide settings (the admin token).
const SETTINGS: &str = "wafer_cluster";

/// How to reach the NATS servers.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Server URLs, comma-separated (`nats://a:4222,nats://b:4222`).
    pub urls: String,
    /// A token to authenticate with.
    pub token: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// A CA certificate to verify TLS servers with; also requires TLS.
    pub tls_ca: Option<PathBuf>,
    /// How many copies JetStream keeps of each bucket (1 for a single NATS server; 3 is
    /// the usual for a NATS cluster). Used when a bucket is first created.
    pub replicas: usize,
    /// How long connecting may take before it fails. Default 5 s.
    pub connect_timeout: Duration,
    /// Bytes the function records may take (the KV bucket `wafer_functions`, with its 16
    /// revisions per key). Default [`RECORDS_MAX_BYTES`] (256 MiB). Apart from the modules'
    /// and the queue's budgets, so neither can take the room deploys need.
    pub records_max_bytes: u64,
    /// Bytes the modules may take (the Object Store `wafer_modules`). Default
    /// [`MODULES_MAX_BYTES`] (4 GiB).
    pub modules_max_bytes: u64,
    /// Bytes each function's key-value bucket (`wafer_kv_<name>`) may take. Default
    /// [`KV_MAX_BYTES`] (64 MiB).
    pub kv_max_bytes: u64,
    /// Bytes the pub/sub messages on their way to subscribers may take (the stream
    /// `wafer_messages`); past it a publish fails. Default [`MESSAGES_MAX_BYTES`] (1 GiB).
    pub messages_max_bytes: u64,
    /// Bytes the dead letters may take (the stream `wafer_dead`); past it the oldest go.
    /// Default [`DEAD_MAX_BYTES`] (256 MiB).
    pub dead_max_bytes: u64,
}

/// Default [`ClusterConfig::records_max_bytes`]: 256 MiB, a thousand functions with long
/// histories.
pub const RECORDS_MAX_BYTES: u64 = 256 << 20;
/// Default [`ClusterConfig::modules_max_bytes`]: 4 GiB, a few hundred modules of several MiB.
pub const MODULES_MAX_BYTES: u64 = 4 << 30;
/// Default [`ClusterConfig::kv_max_bytes`]: 64 MiB per function.
pub const KV_MAX_BYTES: u64 = 64 << 20;
/// Default [`ClusterConfig::messages_max_bytes`]: 1 GiB of undelivered messages.
pub const MESSAGES_MAX_BYTES: u64 = 1 << 30;
/// Default [`ClusterConfig::dead_max_bytes`]: 256 MiB of dead letters.
pub const DEAD_MAX_BYTES: u64 = 256 << 20;
/// The byte limit of the settings bucket `wafer_cluster` (the admin token): 1 MiB.
const SETTINGS_MAX_BYTES: u64 = 1 << 20;

impl ClusterConfig {
    /// The defaults for `urls`: no authentication, one replica.
    pub fn new(urls: impl Into<String>) -> Self {
        Self {
            urls: urls.into(),
            token: None,
            credentials: None,
            tls_ca: None,
            replicas: 1,
            connect_timeout: Duration::from_secs(5),
            records_max_bytes: RECORDS_MAX_BYTES,
            modules_max_bytes: MODULES_MAX_BYTES,
            kv_max_bytes: KV_MAX_BYTES,
            messages_max_bytes: MESSAGES_MAX_BYTES,
            dead_max_bytes: DEAD_MAX_BYTES,
        }
    }
}

/// The byte limits a node applies to what it creates (from [`ClusterConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) records: u64,
    pub(crate) modules: u64,
    pub(crate) kv: u64,
    pub(crate) messages: u64,
    pub(crate) dead: u64,
}

/// A byte count as JetStream takes it.
pub(crate) fn as_i64(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

/// Why the cluster could not be reached or set up.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The NATS servers did not answer.
    #[error("cannot connect to the cluster at {urls}: {reason}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// What went wrong.
        reason: String,
    },
    /// JetStream refused or failed an operation.
    #[error("{context}: {reason}")]
    JetStream {
        /// What was being done.
        context: String,
        /// What went wrong.
        reason: String,
    },
}

impl ClusterError {
    fn jetstream(context: impl Into<String>) -> impl FnOnce(String) -> Self {
        let context = context.into();
        move |reason| {
            // JetStream sets each stream's byte limit aside when the stream is made; say
            // what to do when the server has less room than Wafer's limits add up to.
            let reason = if reason.contains("insufficient storage") {
                format!(
                    "{reason} (the NATS server's JetStream storage, `max_file_store`, is \
                     smaller than Wafer's byte limits add up to: give it more room or lower \
                     the --cluster-*-max-bytes limits, docs/cluster.md#byte-limits)"
                )
            } else {
                reason
            };
            Self::JetStream { context, reason }
        }
    }
}

/// How a KV bucket is made: see [`Cluster::kv_with`].
pub(crate) struct KvSpec<'a> {
    pub(crate) name: &'a str,
    /// Revisions kept per key.
    pub(crate) history: i64,
    /// Entries expire after this (never if zero).
    pub(crate) max_age: Duration,
    /// Reads answered by any replica (fast, but a read right after a write on another
    /// node may miss it) rather than by the stream's leader only (always up to date).
    pub(crate) direct: bool,
    /// Bytes the bucket may hold.
    pub(crate) max_bytes: u64,
    /// What happens past `max_bytes`: `New` refuses writes, `Old` drops the oldest entries.
    pub(crate) discard: jetstream::stream::DiscardPolicy,
}

impl<'a> KvSpec<'a> {
    pub(crate) fn new(name: &'a str) -> Self {
        Self {
            name,
            history: 1,
            max_age: Duration::ZERO,
            direct: true,
            max_bytes: 0,
            discard: jetstream::stream::DiscardPolicy::New,
        }
    }
}

/// A connection to the cluster's NATS servers, with JetStream.
#[derive(Clone)]
pub struct Cluster {
    client: async_nats::Client,
    jetstream: jetstream::Context,
    replicas: usize,
    limits: Limits,
}

impl Cluster {
    /// Connects to the servers of `config`, failing within its timeout if none answers. Once
    /// connected, the client reconnects by itself whenever the connection drops.
    pub async fn connect(config: &ClusterConfig) -> Result<Self, ClusterError> {
        let failed = |reason: String| ClusterError::Connect {
            urls: config.urls.clone(),
            reason,
        };
        let mut options = async_nats::ConnectOptions::new()
            .name("wafer")
            .connection_timeout(config.connect_timeout)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Disconnected => {
                        tracing::warn!("lost the cluster's NATS connection; serving what is loaded, reconnecting")
                    }
                    async_nats::Event::Connected => tracing::info!("connected to the cluster's NATS"),
                    other => tracing::debug!("NATS: {other}"),
                }
            });
        if let Some(token) = &config.token {
            options = options.token(token.clone());
        }
        if let Some(path) = &config.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| failed(format!("cannot read {}: {e}", path.display())))?;
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let urls: Vec<&str> = config.urls.split(',').map(str::trim).collect();
        let addrs = urls
            .iter()
            .map(|u| u.parse::<async_nats::ServerAddr>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(format!("bad URL: {e}")))?;
        let connecting = options.connect(addrs);
        let client = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|_| failed(format!("no answer within {:?}", config.connect_timeout)))?
            .map_err(|e| failed(e.to_string()))?;
        let jetstream = jetstream::new(client.clone());
        Ok(Self {
            client,
            jetstream,
            replicas: config.replicas.max(1),
            limits: Limits {
                records: config.records_max_bytes,
                modules: config.modules_max_bytes,
                kv: config.kv_max_bytes,
                messages: config.messages_max_bytes,
                dead: config.dead_max_bytes,
            },
        })
    }

    /// What is wrong with the connection to the cluster, if anything: for the node's health.
    pub fn problem(&self) -> Option<String> {
        match self.client.connection_state() {
            async_nats::connection::State::Connected => None,
            _ => Some(
                "the cluster's NATS connection is lost: serving what is loaded, reconnecting"
                    .into(),
            ),
        }
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.jetstream
    }

    /// The NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// The KV bucket `name`, created (with `history` revisions per key, at most `max_bytes`,
    /// refusing writes past it) if it does not exist.
    ///
    /// The bucket's stream is created here with the KV layout rather than by
    /// `create_key_value`, which first asks for the account's info, and the answer of
    /// nats-server 2.9 (Debian's) is one async-nats 0.51 cannot parse.
    pub(crate) async fn kv(
        &self,
        name: &str,
        history: i64,
        max_bytes: u64,
    ) -> Result<kv::Store, ClusterError> {
        self.kv_with(KvSpec {
            history,
            max_bytes,
            ..KvSpec::new(name)
        })
        .await
    }

    /// The KV bucket `spec.name`, created as `spec` says if it does not exist; its byte
    /// limit, discard policy and direct reads are brought to `spec`'s if it does.
    pub(crate) async fn kv_with(&self, spec: KvSpec<'_>) -> Result<kv::Store, ClusterError> {
        let name = spec.name;
        let config = jetstream::stream::Config {
            name: format!("KV_{name}"),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: spec.history,
            max_age: spec.max_age,
            max_bytes: as_i64(spec.max_bytes),
            num_replicas: self.replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: spec.direct,
            discard: spec.discard,
            ..jetstream::stream::Config::default()
        };
        self.stream(config).await?;
        self.jetstream.get_key_value(name).await.map_err(|e| {
            ClusterError::jetstream(format!("cannot open the KV bucket `{name}`"))(e.to_string())
        })
    }

    /// The stream `config.name`, created with `config` if it does not exist. If it does, its
    /// byte limit, discard policy and direct reads are brought to `config`'s (so a limit
    /// changed in the configuration applies at the next start, and streams created before
    /// Wafer set limits get one); its other settings stay as they were created.
    pub(crate) async fn stream(
        &self,
        config: jetstream::stream::Config,
    ) -> Result<jetstream::stream::Stream, ClusterError> {
        let name = config.name.clone();
        let (max_bytes, discard, direct) = (config.max_bytes, config.discard, config.allow_direct);
        // Creating a stream that exists with the same settings (another node just made it)
        // succeeds; with other settings, it fails, and the existing stream is adjusted.
        let stream = match self.jetstream.get_or_create_stream(config).await {
            Ok(stream) => stream,
            Err(created) => self.jetstream.get_stream(&name).await.map_err(|_| {
                ClusterError::jetstream(format!("cannot create the stream `{name}`"))(
                    created.to_string(),
                )
            })?,
        };
        let current = &stream.cached_info().config;
        if current.max_bytes != max_bytes
            || current.discard != discard
            || current.allow_direct != direct
        {
            let mut adjusted = current.clone();
            adjusted.max_bytes = max_bytes;
            adjusted.discard = discard;
            adjusted.allow_direct = direct;
            tracing::info!(
                "setting the byte limit of the stream `{name}` to {max_bytes} (was {})",
                current.max_bytes
            );
            return self
                .jetstream
                .update_stream(adjusted)
                .await
                .map_err(|e| {
                    ClusterError::jetstream(format!(
                        "cannot set the byte limit of the stream `{name}` to {max_bytes}"
                    ))(e.to_string())
                })
                .map(|_| stream);
        }
        Ok(stream)
    }

    /// The Object Store bucket `name`, created (its objects expiring after `max_age`, or
    /// never if zero; at most `max_bytes`, refusing writes past it) if it does not exist.
    pub(crate) async fn object_store(
        &self,
        name: &str,
        max_age: Duration,
        max_bytes: u64,
    ) -> Result<jetstream::object_store::ObjectStore, ClusterError> {
        let bucket = match self.jetstream.get_object_store(name).await {
            Ok(bucket) => bucket,
            Err(_) => {
                let config = jetstream::object_store::Config {
                    bucket: name.to_owned(),
                    num_replicas: self.replicas,
                    max_age,
                    max_bytes: as_i64(max_bytes),
                    ..jetstream::object_store::Config::default()
                };
                match self.jetstream.create_object_store(config).await {
                    Ok(bucket) => bucket,
                    // Another node may have just created it.
                    Err(e) => self.jetstream.get_object_store(name).await.map_err(|_| {
                        ClusterError::jetstream(format!(
                            "cannot create the Object Store bucket `{name}`"
                        ))(e.to_string())
                    })?,
                }
            }
        };
        self.limit(&format!("OBJ_{name}"), max_bytes).await?;
        Ok(bucket)
    }

    /// Gives the existing stream `name` the byte limit `max_bytes` if it has another.
    pub(crate) async fn limit(&self, name: &str, max_bytes: u64) -> Result<(), ClusterError> {
        let failed = |e: String| {
            ClusterError::jetstream(format!(
                "cannot set the byte limit of the stream `{name}` to {max_bytes}"
            ))(e)
        };
        let mut stream = self
            .jetstream
            .get_stream(name)
            .await
            .map_err(|e| failed(e.to_string()))?;
        let info = stream.info().await.map_err(|e| failed(e.to_string()))?;
        if info.config.max_bytes == as_i64(max_bytes) {
            return Ok(());
        }
        let mut adjusted = info.config.clone();
        adjusted.max_bytes = as_i64(max_bytes);
        self.jetstream
            .update_stream(adjusted)
            .await
            .map(drop)
            .map_err(|e| failed(e.to_string()))
    }

    /// Makes `token` the cluster's admin token (an operator gave it).
    pub async fn set_admin_token(&self, token: &str) -> Result<(), ClusterError> {
        let settings = self.kv(SETTINGS, 1, SETTINGS_MAX_BYTES).await?;
        settings
            .put("admin-token", token.to_owned().into())
            .await
            .map(drop)
            .map_err(|e| {
                ClusterError::jetstream("cannot set the cluster's admin token")(e.to_string())
            })
    }

    /// The cluster's admin token: the one stored in the cluster, or else `proposed`, which
    /// becomes the cluster's (the first node to start sets it).
    pub async fn admin_token(&self, proposed: &str) -> Result<String, ClusterError> {
        let settings = self.kv(SETTINGS, 1, SETTINGS_MAX_BYTES).await?;
        let read = |e: String| ClusterError::jetstream("cannot read the cluster's admin token")(e);
        if let Some(token) = settings
            .get("admin-token")
            .await
            .map_err(|e| read(e.to_string()))?
        {
            return Ok(String::from_utf8_lossy(&token).into_owned());
        }
        match settings
            .create("admin-token", proposed.to_owned().into())
            .await
        {
            Ok(_) => Ok(proposed.to_owned()),
            Err(_) => settings
                .get("admin-token")
                .await
                .map_err(|e| read(e.to_string()))?
                .map(|token| String::from_utf8_lossy(&token).into_owned())
                .ok_or_else(|| read("it is neither set nor settable".into())),
        }
    }
}

/// How long to wait before watching the cluster's admin token again after the watch failed.
const TOKEN_REWATCH: Duration = Duration::from_secs(1);

impl Cluster {
    /// Follows the cluster's admin token: calls `changed` with each value set from now on (a
    /// node started with `--admin-token` sets it), so every running node accepts the new token
    /// and stops accepting the old one without a restart. Runs until the process ends; a
    /// failed watch is set up again.
    pub fn follow_admin_token(&self, changed: impl Fn(String) + Send + Sync + 'static) {
        use tokio_stream::StreamExt;
        let cluster = self.clone();
        tokio::spawn(async move {
            loop {
                let watched = async {
                    let settings = cluster
                        .kv(SETTINGS, 1, SETTINGS_MAX_BYTES)
                        .await
                        .map_err(|e| e.to_string())?;
                    settings
                        .watch("admin-token")
                        .await
                        .map_err(|e| e.to_string())
                };
                match watched.await {
                    Ok(mut changes) => {
                        while let Some(change) = changes.next().await {
                            match change {
                                Ok(entry) if entry.operation == kv::Operation::Put => {
                                    changed(String::from_utf8_lossy(&entry.value).into_owned())
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!("watching the cluster's admin token: {e}");
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => tracing::warn!("cannot watch the cluster's admin token: {e}"),
                }
                tokio::time::sleep(TOKEN_REWATCH).await;
            }
        });
    }
}
