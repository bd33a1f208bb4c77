//! `mqtt`: Spin's outbound MQTT (`fermyon:spin/mqtt@2.0.0`, `spin:mqtt/mqtt@3.0.0`):
//! publishing to the MQTT brokers a function's outbound rules allow (`mqtt://` or `*://`
//! entries of a Spin app's `allowed_outbound_hosts`), with `rumqttc` (MQTT 3.1.1, on tokio).
//!
//! Host-call namespace `mqtt`. Every payload is a JSON object naming the connection:
//! `address` (`mqtt://host[:port]?client_id=ID[&option=...]`, the options `rumqttc`
//! reads), `username`, `password` and `keep_alive_secs`. The address is checked against
//! the rules on every call, before anything connects:
//!
//! | op | payload beyond the connection | answer |
//! |---|---|---|
//! | `open` | | empty (the connection is made in the background, as Spin makes it at the first publish) |
//! | `publish` | `topic`, `payload`/`payload_base64`, `qos` (0, 1 or 2) | empty, once the broker has the message: sent (QoS 0), acknowledged (1), or completed (2) |
//!
//! Errors: `denied` for an address the rules do not allow; `invalid: address ...` for one
//! `rumqttc` does not read (no `client_id`, another scheme: `mqtts://` is not supported);
//! `failed` when the connection failed (refused, bad credentials) or the call's deadline
//! came first; `too_large` for a message over the packet limit ([`MAX_PACKET`] by default,
//! `max_outgoing_packet_size_bytes` in the address).
//!
//! One connection is kept per function and connection (address, user, password and
//! keep-alive), its event loop polled by a task of its own (which answers the broker's
//! keep-alive), publishes on it one at a time: at most [`MAX_CONNECTIONS_PER_FUNCTION`] per
//! function and [`MAX_CONNECTIONS`] in all, the least recently used let go first, none idle
//! longer than [`IDLE`]. A connection that fails is let go and the next call connects
//! afresh; its task ends with it.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use serde::Deserialize;
use tokio::sync::broadcast;
use wafer_registry::{Deployment, FunctionName};

use crate::outbound::{self, Pool};
use crate::{bytes_field, json, unknown_operation, GuestError};

/// Most connections kept for one function.
pub const MAX_CONNECTIONS_PER_FUNCTION: usize = 16;
/// Most connections kept in all.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection is kept unused.
pub const IDLE: Duration = Duration::from_secs(300);
/// The largest packet sent (topic and payload with a few bytes of header) unless the
/// address says otherwise: 1 MiB.
pub const MAX_PACKET: usize = 1 << 20;
/// The largest `max_outgoing_packet_size_bytes` (and `..._incoming_...`) an address may
/// give: 16 MiB.
pub const MAX_PACKET_LIMIT: usize = 16 << 20;
/// The longest keep-alive, in seconds (MQTT carries it in 16 bits).
const MAX_KEEP_ALIVE: u64 = u16::MAX as u64;
/// Requests queued for a connection's event loop.
const CHANNEL: usize = 16;

/// The MQTT connections of one node.
pub(crate) struct Mqtt {
    pool: Pool<Key, Arc<Link>>,
}

impl Default for Mqtt {
    fn default() -> Self {
        Self {
            pool: Pool::new(MAX_CONNECTIONS_PER_FUNCTION, MAX_CONNECTIONS, IDLE),
        }
    }
}

/// What makes two connections differ.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Key {
    address: String,
    username: String,
    password: String,
    keep_alive: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    address: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    keep_alive_secs: u64,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    qos: u8,
}

impl Mqtt {
    /// Answers one `mqtt` host call of `function`; the call gives up at `deadline`.
    pub(crate) async fn call(
        &self,
        function: &Deployment,
        operation: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, GuestError> {
        if !matches!(operation, "open" | "publish") {
            return Err(unknown_operation("mqtt", operation, "open, publish"));
        }
        let request: Request = json(payload, &format!("mqtt/{operation}"))?;
        let allowed = outbound::check(function, &request.address, "mqtt")?;
        let key = Key {
            address: request.address.clone(),
            username: request.username.clone(),
            password: request.password.clone(),
            keep_alive: request.keep_alive_secs.min(MAX_KEEP_ALIVE),
        };
        let settings = Settings::read(&key)?;
        let message = match operation {
            "open" => None,
            _ => {
                let topic = request
                    .topic
                    .ok_or_else(|| GuestError::Invalid("`mqtt/publish` needs `topic`".into()))?;
                let payload = bytes_field(request.payload, request.payload_base64, "payload")?;
                let qos = match request.qos {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    2 => QoS::ExactlyOnce,
                    n => return Err(GuestError::Invalid(format!("QoS {n} is not 0, 1 or 2"))),
                };
                // The event loop would fail the whole connection on a packet too large.
                let size = topic.len() + payload.len() + 16;
                if size > settings.max_packet {
                    return Err(GuestError::TooLarge(format!(
                        "a message of {size} bytes is over the packet limit of {} \
                         (`max_outgoing_packet_size_bytes` in the address)",
                        settings.max_packet
                    )));
                }
                Some((topic, payload, qos))
            }
        };
        let link = match self.pool.get(&function.name, &key) {
            Some(link) if link.failed.get().is_none() => link,
            kept => {
                if let Some(failed) = kept {
                    self.forget(&function.name, &key, &failed);
                }
                let addrs = within(deadline, allowed.resolve()).await??;
                let link = Link::start(settings, addrs)?;
                self.pool.put(&function.name, key.clone(), link)
            }
        };
        let Some((topic, payload, qos)) = message else {
            return Ok(Vec::new());
        };
        match within(deadline, link.publish(topic, payload, qos)).await {
            Ok(Ok(())) => Ok(Vec::new()),
            Ok(Err(e)) => {
                self.forget(&function.name, &key, &link);
                Err(e)
            }
            Err(late) => {
                // Its acknowledgement may still come, and be taken for the next message's.
                self.forget(&function.name, &key, &link);
                Err(late)
            }
        }
    }

    /// Lets `link` go, if it is still the one kept.
    fn forget(&self, function: &FunctionName, key: &Key, link: &Arc<Link>) {
        if self
            .pool
            .get(function, key)
            .is_some_and(|kept| Arc::ptr_eq(&kept, link))
        {
            self.pool.remove(function, key);
        }
    }

    /// Keeps only the connections of the functions `keep` says yes to.
    pub(crate) fn retain(&self, keep: impl Fn(&FunctionName) -> bool) {
        self.pool.retain(keep);
    }
}

/// Runs `work` until `deadline`.
async fn within<T>(
    deadline: Instant,
    work: impl std::future::Future<Output = T>,
) -> Result<T, GuestError> {
    tokio::time::timeout_at(deadline.into(), work)
        .await
        .map_err(|_| {
            GuestError::Failed("the MQTT call was still running at the call's deadline".into())
        })
}

/// A connection's options, read from its address as `rumqttc` reads it, with what `rumqttc`
/// would panic on or take without bound refused.
struct Settings {
    url: url::Url,
    username: String,
    password: String,
    keep_alive: Duration,
    max_packet: usize,
}

impl Settings {
    fn read(key: &Key) -> Result<Self, GuestError> {
        let invalid = |why: &str| GuestError::Invalid(format!("address {}: {why}", key.address));
        let url = url::Url::parse(&key.address).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "mqtt" | "tcp") {
            return Err(invalid(&format!(
                "the scheme is `{}`; Wafer connects to `mqtt://` and `tcp://` brokers (not TLS)",
                url.scheme()
            )));
        }
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let client_id = query("client_id")
            .ok_or_else(|| invalid("give the client id (`?client_id=...`), as rumqttc needs"))?;
        if query("clean_session").as_deref() == Some("false") && client_id.is_empty() {
            return Err(invalid("clean_session=false needs a client id"));
        }
        if query("inflight_num").as_deref() == Some("0") {
            return Err(invalid("inflight_num must be 1 or more"));
        }
        for name in ["request_channel_capacity_num", "max_request_batch_num"] {
            if let Some(value) = query(name) {
                if value.parse::<usize>().map_or(true, |n| n > 1000) {
                    return Err(invalid(&format!("{name} must be 0 to 1000")));
                }
            }
        }
        let mut max_packet = MAX_PACKET;
        for name in [
            "max_incoming_packet_size_bytes",
            "max_outgoing_packet_size_bytes",
        ] {
            if let Some(value) = query(name) {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n <= MAX_PACKET_LIMIT)
                    .ok_or_else(|| {
                        invalid(&format!("{name} must be at most {MAX_PACKET_LIMIT}"))
                    })?;
                if name.starts_with("max_outgoing") {
                    max_packet = n;
                }
            }
        }
        let settings = Self {
            url,
            username: key.username.clone(),
            password: key.password.clone(),
            keep_alive: Duration::from_secs(key.keep_alive),
            max_packet,
        };
        // Everything else rumqttc reads: an unknown option, a bad number.
        settings
            .options(None)
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(settings)
    }

    /// The options of a connection to `ip` (the address's own host when `None`).
    fn options(&self, ip: Option<std::net::IpAddr>) -> Result<MqttOptions, rumqttc::OptionError> {
        let mut url = self.url.clone();
        if let Some(ip) = ip {
            // An address of a name is where the check was made: no second lookup.
            let _ = url.set_ip_host(ip);
        }
        let mut options = MqttOptions::try_from(url)?;
        options.set_credentials(self.username.clone(), self.password.clone());
        options.set_keep_alive(self.keep_alive);
        let has = |name: &str| self.url.query_pairs().any(|(k, _)| k == name);
        if !has("max_outgoing_packet_size_bytes") {
            options.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        }
        Ok(options)
    }
}

/// One connection to a broker: the client that queues requests, the task polling its event
/// loop (ended when the link is dropped), and what that task saw.
struct Link {
    client: AsyncClient,
    notices: broadcast::Sender<Notice>,
    /// Why the connection failed, once it has: the task has ended.
    failed: Arc<OnceLock<String>>,
    /// Publishes go one at a time, so that the next packet sent is the one waited for.
    turn: tokio::sync::Mutex<()>,
    task: tokio::task::JoinHandle<()>,
}

/// What the event loop did that a publish waits for.
#[derive(Clone, Debug)]
enum Notice {
    Sent(u16),
    Acknowledged(u16),
    Completed(u16),
    Failed(String),
}

impl Drop for Link {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Link {
    /// Starts connecting to the broker at the first of `addrs` that answers.
    fn start(settings: Settings, addrs: Vec<SocketAddr>) -> Result<Arc<Self>, GuestError> {
        let (notices, _) = broadcast::channel(64);
        let failed = Arc::new(OnceLock::new());
        let candidates = addrs
            .iter()
            .map(|addr| settings.options(Some(addr.ip())))
            .collect::<Result<Vec<MqttOptions>, _>>()
            .map_err(|e| GuestError::Invalid(format!("address {}: {e}", settings.url)))?;
        let first = candidates
            .first()
            .cloned()
            .ok_or_else(|| GuestError::Failed(format!("{} has no address", settings.url)))?;
        let (client, eventloop) = AsyncClient::new(first, CHANNEL);
        let task = tokio::spawn(run(eventloop, candidates, notices.clone(), failed.clone()));
        Ok(Arc::new(Self {
            client,
            notices,
            failed,
            turn: tokio::sync::Mutex::new(()),
            task,
        }))
    }

    async fn publish(&self, topic: String, payload: Vec<u8>, qos: QoS) -> Result<(), GuestError> {
        let _turn = self.turn.lock().await;
        let failed = |why: &str| GuestError::Failed(format!("the MQTT connection failed: {why}"));
        if let Some(why) = self.failed.get() {
            return Err(failed(why));
        }
        let mut notices = self.notices.subscribe();
        self.client
            .publish(topic, qos, false, payload)
            .await
            .map_err(|e| failed(&e.to_string()))?;
        let mut mine = None;
        loop {
            let notice = match notices.recv().await {
                Ok(notice) => notice,
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => {
                    return Err(failed("the connection's task ended"))
                }
            };
            match (notice, mine) {
                (Notice::Failed(why), _) => return Err(failed(&why)),
                (Notice::Sent(_), None) if qos == QoS::AtMostOnce => return Ok(()),
                (Notice::Sent(id), None) => mine = Some(id),
                (Notice::Acknowledged(id), Some(m)) if id == m && qos == QoS::AtLeastOnce => {
                    return Ok(())
                }
                (Notice::Completed(id), Some(m)) if id == m => return Ok(()),
                _ => {}
            }
        }
    }
}

/// Polls a connection's event loop until it fails: connecting to each candidate address in
/// turn until one answers, then sending, answering pings and passing on what publishes wait
/// for.
async fn run(
    mut eventloop: EventLoop,
    candidates: Vec<MqttOptions>,
    notices: broadcast::Sender<Notice>,
    failed: Arc<OnceLock<String>>,
) {
    let mut rest: std::collections::VecDeque<MqttOptions> =
        candidates.into_iter().skip(1).collect();
    let mut connected = false;
    loop {
        let notice = match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                connected = true;
                continue;
            }
            Ok(Event::Outgoing(Outgoing::Publish(id))) => Notice::Sent(id),
            Ok(Event::Incoming(Incoming::PubAck(ack))) => Notice::Acknowledged(ack.pkid),
            Ok(Event::Incoming(Incoming::PubComp(comp))) => Notice::Completed(comp.pkid),
            Ok(_) => continue,
            Err(rumqttc::ConnectionError::Io(_) | rumqttc::ConnectionError::NetworkTimeout)
                if !connected && !rest.is_empty() =>
            {
                // This address did not answer: the next one (requests wait in the channel).
                if let Some(options) = rest.pop_front() {
                    eventloop.mqtt_options = options;
                }
                continue;
            }
            Err(e) => {
                let why = e.to_string();
                let _ = failed.set(why.clone());
                let _ = notices.send(Notice::Failed(why));
                return;
            }
        };
        let _ = notices.send(notice);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(address: &str) -> Key {
        Key {
            address: address.into(),
            username: "u".into(),
            password: "p".into(),
            keep_alive: 30,
        }
    }

    #[test]
    fn addresses_rumqttc_would_panic_on_are_refused() {
        for (address, why) in [
            ("mqtt://h:1", "client id"),
            ("mqtts://h:1?client_id=a", "not TLS"),
            ("mqtt://h:1?client_id=&clean_session=false", "clean_session"),
            ("mqtt://h:1?client_id=a&inflight_num=0", "inflight_num"),
            (
                "mqtt://h:1?client_id=a&request_channel_capacity_num=99999999999",
                "0 to 1000",
            ),
            (
                "mqtt://h:1?client_id=a&max_outgoing_packet_size_bytes=999999999999",
                "at most",
            ),
            ("mqtt://h:1?client_id=a&color=blue", "Unknown option"),
        ] {
            let Err(e) = Settings::read(&key(address)) else {
                panic!("{address} was read");
            };
            assert!(e.to_string().contains(why), "{address}: {e}");
        }
        let settings = Settings::read(&key("mqtt://h?client_id=a&keep_alive_secs=5")).unwrap();
        let options = settings
            .options(Some("127.0.0.1".parse().unwrap()))
            .unwrap();
        assert_eq!(options.broker_address(), ("127.0.0.1".to_owned(), 1883));
        assert_eq!(
            options.keep_alive(),
            Duration::from_secs(30),
            "the open's keep-alive wins"
        );
        let options = settings.options(Some("::1".parse().unwrap())).unwrap();
        assert_eq!(options.broker_address(), ("[::1]".to_owned(), 1883));
    }
}
