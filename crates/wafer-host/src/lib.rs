//! Wafer's host capabilities: what a function may reach beyond its memory, its request and its
//! log, each granted per function (see [`wafer_registry::Grants`]) and denied otherwise.
//!
//! Guests ask through one channel, the waPC `__host_call` with binding `wafer`; the namespace
//! names the capability. [`Capabilities::call`] answers the namespaces of this crate:
//!
//! - `config`: config values and secrets ([`config`]).
//! - `kv`: a private key-value namespace per function, behind the [`Kv`] trait: an embedded
//!   redb database, or a cluster's ([`kv`]).
//! - `sqlite`: SQLite databases granted by label, in the data directory ([`sqlite`]; not in a
//!   cluster).
//! - `postgres`: PostgreSQL servers on the function's outbound allow-list, a connection per
//!   guest connection, held by the call's [`Session`] ([`postgres`]).
//! - `http`: outbound HTTP to the function's allow-list, checked on resolved addresses and
//!   on every redirect ([`http`]).
//! - `pubsub`: publishing to topics, delivered to subscribed functions through a
//!   [`Bus`]: bounded in-process queues, or a cluster's ([`pubsub`]).
//! - `redis`, `mqtt`: Spin's outbound Redis and MQTT clients, to the servers the function's
//!   outbound rules allow, connections kept between calls ([`redis`], [`mqtt`]).
//!
//! The payload formats are in `docs/host-calls.md`. Every failure is a [`GuestError`] whose
//! text (`denied: ...`, `not_found: ...`) the guest reads; none traps the guest or panics the
//! host.
//!
//! ```no_run
//! # async fn demo(function: &wafer_registry::Deployment) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::{Duration, Instant};
//! use wafer_host::Capabilities;
//! use wafer_runtime::HostCall;
//!
//! let caps = Capabilities::open(".wafer".as_ref())?;
//! let call = HostCall { binding: "wafer", namespace: "kv", operation: "get", payload: b"visits" };
//! let deadline = Instant::now() + Duration::from_secs(5);
//! // What the guest call holds open (its database connections), closed when dropped.
//! let session = wafer_host::Session::default();
//! // 0: the call was not started by a pub/sub delivery (see `pubsub::MAX_HOPS`).
//! match caps.call(function, &session, call, deadline, 0).await {
//!     Ok(value) => println!("visits = {}", String::from_utf8_lossy(&value)),
//!     Err(error) => println!("{error}"), // e.g. "denied: this function has no key-value store ..."
//! }
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod config;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod kv;
pub mod mqtt;
mod outbound;
pub mod postgres;
pub mod pubsub;
pub mod redis;
pub mod sqlite;
pub mod tasks;
pub mod trace;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use wafer_registry::{Deployment, FunctionName};
use wafer_runtime::HostCall;

pub use kv::Kv;
pub use pubsub::{contained, Bus, Deliver, Delivery, LocalBus, Message, SubscriberStats};

/// Why a host call failed, as the guest reads it: a code word, then a sentence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The function was not granted this.
    #[error("denied: {0}")]
    Denied(String),
    /// The key or value does not exist.
    #[error("not_found: {0}")]
    NotFound(String),
    /// The payload or operation is malformed.
    #[error("invalid: {0}")]
    Invalid(String),
    /// Over a size limit.
    #[error("too_large: {0}")]
    TooLarge(String),
    /// The host tried and failed.
    #[error("failed: {0}")]
    Failed(String),
}

/// Why the capabilities could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the key-value store {path}: {source}")]
pub struct OpenError {
    path: String,
    source: redb::DatabaseError,
}

/// The server-wide state behind every function's capabilities.
pub struct Capabilities {
    kv: Arc<dyn Kv>,
    /// SQLite databases: on one node only, none in a cluster.
    sqlite: Option<sqlite::Sqlite>,
    postgres: postgres::Postgres,
    http: Arc<http::Http>,
    bus: Arc<dyn Bus>,
    deliver: OnceLock<Weak<dyn Deliver>>,
    /// Spin's outbound Redis and MQTT connections, kept between calls.
    redis: redis::Redis,
    mqtt: mqtt::Mqtt,
}

impl Capabilities {
    /// The embedded capabilities: the key-value store in `data` (creating `kv.redb`),
    /// outbound HTTP, and the in-process pub/sub bus, which finds subscribers and delivers to
    /// them through the [`Deliver`] given to [`Capabilities::set_deliver`].
    pub fn open(data: &Path) -> Result<Arc<Self>, OpenError> {
        let path = data.join("kv.redb");
        let kv = kv::RedbKv::open(&path).map_err(|source| OpenError {
            path: path.display().to_string(),
            source,
        })?;
        let mut caps = Self::build(Arc::new(kv), Arc::new(LocalBus::default()));
        caps.sqlite = Some(sqlite::Sqlite::new(data.join("sqlite")));
        Ok(Arc::new(caps))
    }

    /// The capabilities with the key-value namespaces in `kv` and messages on `bus` (a
    /// cluster's, for example).
    pub fn new(kv: Arc<dyn Kv>, bus: Arc<dyn Bus>) -> Arc<Self> {
        Arc::new(Self::build(kv, bus))
    }

    fn build(kv: Arc<dyn Kv>, bus: Arc<dyn Bus>) -> Self {
        Self {
            kv,
            sqlite: None,
            postgres: postgres::Postgres::default(),
            http: Arc::default(),
            bus,
            deliver: OnceLock::new(),
            redis: redis::Redis::default(),
            mqtt: mqtt::Mqtt::default(),
        }
    }

    /// Answers one host call of `function` within its trace span: [`Capabilities::call`],
    /// for a server with tracing on. The span is `http.client` for outbound HTTP,
    /// `wafer.publish` for a publish, `wafer.host_call` for the others.
    pub async fn call_traced(
        &self,
        function: &Deployment,
        session: &Session,
        call: HostCall<'_>,
        deadline: Instant,
        hops: u32,
    ) -> Result<Vec<u8>, GuestError> {
        use tracing::Instrument as _;
        let span = host_call_span(function, &call);
        let answer = self.call(function, session, call, deadline, hops);
        let result = answer.instrument(span.clone()).await;
        if let Err(error) = &result {
            span.record("otel.status_code", "error");
            span.record("otel.status_description", error.to_string());
        }
        result
    }

    /// Answers one host call of `function`; a call still running at `deadline` (the guest
    /// call's own) fails. `session` holds what the guest call keeps open between its host
    /// calls. `hops` is how many deliveries led to the guest call (0 for a request): a
    /// message it publishes carries one more, up to [`pubsub::MAX_HOPS`].
    pub async fn call(
        &self,
        function: &Deployment,
        session: &Session,
        call: HostCall<'_>,
        deadline: Instant,
        hops: u32,
    ) -> Result<Vec<u8>, GuestError> {
        if call.binding != "wafer" {
            return Err(GuestError::Invalid(format!(
                "unknown binding `{}`: this host answers binding `wafer`",
                call.binding
            )));
        }
        let grants = &function.config.grants;
        let limits = &function.config.limits;
        match call.namespace {
            "config" => config::call(grants, call.operation, call.payload),
            kv if kv == "kv" || kv.starts_with("kv:") => {
                let label = kv.strip_prefix("kv:").unwrap_or("default");
                let namespace = kv::namespace(function, label)?;
                if call.operation == "open" {
                    return Ok(Vec::new());
                }
                kv::call(
                    self.kv.as_ref(),
                    namespace,
                    limits,
                    call.operation,
                    call.payload,
                )
                .await
            }
            sql if sql == "sqlite" || sql.starts_with("sqlite:") => {
                let label = sql.strip_prefix("sqlite:").unwrap_or("default");
                let Some(sqlite) = &self.sqlite else {
                    return Err(GuestError::Failed(
                        "SQLite databases live on one node, and a cluster does not replicate \
                         them: not served in cluster mode (docs/spin.md#sqlite)"
                            .into(),
                    ));
                };
                sqlite
                    .call(function, label, call.operation, call.payload, deadline)
                    .await
            }
            "postgres" => {
                let postgres = &self.postgres;
                let (operation, payload) = (call.operation, call.payload);
                postgres
                    .call(function, session, operation, payload, deadline)
                    .await
            }
            "http" => {
                self.http
                    .call(function, call.operation, call.payload, deadline)
                    .await
            }
            "redis" => {
                let redis = &self.redis;
                redis.call(function, call.operation, call.payload, deadline).await
            }
            "mqtt" => {
                let mqtt = &self.mqtt;
                mqtt.call(function, call.operation, call.payload, deadline).await
            }
            "pubsub" => {
                let deliver = self.deliver.get().and_then(Weak::upgrade);
                let bus = self.bus.as_ref();
                pubsub::call(bus, deliver, function, call.operation, call.payload, hops).await
            }
            other => Err(GuestError::Invalid(format!(
                "the host has no capability `{other}` (namespaces: config, http, kv, log, mqtt, postgres, \
                 pubsub, redis, sqlite)"
            ))),
        }
    }

    /// Sets who finds subscribers and delivers published messages to them (the gateway).
    /// Until then messages reach no one.
    pub fn set_deliver(&self, deliver: Weak<dyn Deliver>) {
        let _ = self.deliver.set(deliver.clone());
        self.bus.set_deliver(deliver);
    }

    /// Tells the capabilities which functions this node serves now (call it whenever the
    /// set changes): the bus delivers to those that subscribe, and what other functions
    /// held here (HTTP clients, message queues) is let go. Nothing is deleted for good;
    /// that is [`Capabilities::forget`].
    pub fn serve<'a>(&self, functions: impl IntoIterator<Item = &'a Deployment>) {
        let mut names = HashSet::new();
        let mut subscribers = Vec::new();
        for function in functions {
            if !function.config.grants.subscribe.is_empty() {
                subscribers.push(function.name.clone());
            }
            names.insert(function.name.clone());
        }
        self.http.retain(|name| names.contains(name));
        self.redis.retain(|name| names.contains(name));
        self.mqtt.retain(|name| names.contains(name));
        self.bus.serve(&subscribers);
    }

    /// Forgets a removed function for good: deletes its key-value namespace and its
    /// message queue with what is in it, and drops its HTTP clients.
    ///
    /// Call it after removing the function's record and letting its running calls finish
    /// (the gateway's `App::remove` does): then no call or queued invocation can write the
    /// namespace again afterwards.
    pub async fn forget(&self, name: &FunctionName) -> Result<(), GuestError> {
        self.http.retain(|n| n != name);
        self.postgres.forget(name);
        self.redis.retain(|n| n != name);
        self.mqtt.retain(|n| n != name);
        self.bus.forget(name).await?;
        self.kv.delete_namespace(name).await
    }

    /// The outbound HTTP policy of `function`, for HTTP components: for one call, made
    /// within its span (its requests are spans within it).
    pub fn outbound(&self, function: &Arc<Deployment>) -> Arc<http::Policy> {
        Arc::new(http::Policy {
            http: self.http.clone(),
            function: function.clone(),
            span: match trace::enabled() {
                true => tracing::Span::current(),
                false => tracing::Span::none(),
            },
        })
    }

    /// Pub/sub counters, per subscriber.
    pub async fn pubsub_stats(&self) -> pubsub::Stats {
        self.bus.stats().await
    }
}

/// The span of one host call (tracing on).
fn host_call_span(function: &Deployment, call: &HostCall<'_>) -> tracing::Span {
    use tracing::field::Empty;
    let name = function.name.as_str();
    match call.namespace {
        "http" => tracing::info_span!(
            target: trace::TARGET,
            "http.client",
            otel.kind = "client",
            otel.status_code = Empty,
            otel.status_description = Empty,
            http.request.method = Empty,
            server.address = Empty,
            server.port = Empty,
            url.full = Empty,
            http.response.status_code = Empty,
            wafer.function = name,
        ),
        "pubsub" => tracing::info_span!(
            target: trace::TARGET,
            "wafer.publish",
            otel.kind = "producer",
            otel.status_code = Empty,
            otel.status_description = Empty,
            messaging.system = "wafer",
            messaging.operation.type = "send",
            messaging.destination.name = Empty,
            wafer.function = name,
        ),
        namespace => {
            let capability = namespace.split(':').next().unwrap_or(namespace);
            tracing::info_span!(
                target: trace::TARGET,
                "wafer.host_call",
                otel.name = format!("{capability} {}", call.operation),
                otel.status_code = Empty,
                otel.status_description = Empty,
                wafer.capability = capability,
                wafer.operation = call.operation,
                wafer.function = name,
            )
        }
    }
}

/// What one guest call holds open on the host between its host calls: its PostgreSQL
/// connections. One per guest call ([`Capabilities::call`] takes it); dropping it, when the
/// call ends, closes them.
#[derive(Default)]
pub struct Session {
    postgres: postgres::Connections,
}

/// Reads a raw UTF-8 payload (a key, a name, a prefix).
pub(crate) fn text<'a>(payload: &'a [u8], what: &str) -> Result<&'a str, GuestError> {
    std::str::from_utf8(payload)
        .map_err(|_| GuestError::Invalid(format!("the {what} is not UTF-8")))
}

/// Parses a JSON payload.
pub(crate) fn json<'a, T: serde::Deserialize<'a>>(
    payload: &'a [u8],
    operation: &str,
) -> Result<T, GuestError> {
    serde_json::from_slice(payload)
        .map_err(|e| GuestError::Invalid(format!("the `{operation}` payload: {e}")))
}

/// Bytes given either as text (`field`) or base64 (`field_base64`), exactly one of them.
pub(crate) fn bytes_field(
    text: Option<String>,
    base64: Option<String>,
    field: &str,
) -> Result<Vec<u8>, GuestError> {
    use base64::Engine;
    match (text, base64) {
        (Some(text), None) => Ok(text.into_bytes()),
        (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| GuestError::Invalid(format!("`{field}_base64` is not base64: {e}"))),
        (None, None) => Ok(Vec::new()),
        (Some(_), Some(_)) => Err(GuestError::Invalid(format!(
            "give `{field}` or `{field}_base64`, not both"
        ))),
    }
}

/// Puts bytes in a JSON object as `field` when they are UTF-8, else as `field_base64`.
pub(crate) fn put_bytes(
    object: &mut serde_json::Map<String, serde_json::Value>,
    field: &str,
    bytes: Vec<u8>,
) {
    use base64::Engine;
    match String::from_utf8(bytes) {
        Ok(text) => {
            object.insert(field.to_owned(), text.into());
        }
        Err(e) => {
            let encoded = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            object.insert(format!("{field}_base64"), encoded.into());
        }
    }
}

pub(crate) fn unknown_operation(namespace: &str, operation: &str, known: &str) -> GuestError {
    GuestError::Invalid(format!(
        "`{namespace}` has no operation `{operation}` (operations: {known})"
    ))
}
