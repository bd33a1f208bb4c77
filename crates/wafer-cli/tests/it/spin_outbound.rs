//! Spin's outbound Redis and MQTT (docs/spin.md#redis-and-mqtt): a Spin app served by
//! `wafer up spin.toml` talks to a real `redis-server` and a real `mosquitto` (both started
//! here on free ports; scripts/setup.sh installs them), through the WASI 0.2 interfaces
//! (`fermyon:spin/redis@2.0.0`, `mqtt@2.0.0`) and the WASI 0.3 ones of the Spin Rust SDK 7
//! (`spin:redis@3.0.0`, `spin:mqtt@3.0.0`). What the component did is read back with real
//! clients; addresses its `allowed_outbound_hosts` do not name are refused with Spin's errors.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{built, free_port, Server};

/// A real `redis-server` on a free port of 127.0.0.1, nothing persisted; killed when dropped.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::spawn(port, dir.path());
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn spawn(port: u16, dir: &Path) -> Child {
        let binary = binary("REDIS_SERVER", "redis-server", &["/usr/bin/redis-server"]);
        let child = Command::new(&binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e} (scripts/setup.sh installs it)")
            });
        wait_for(port, "redis-server");
        child
    }

    /// Stops the server and starts a new one on the same port (empty: nothing persists).
    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.port, self._dir.path());
    }

    fn address(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client of the test's own.
    fn client(&self) -> redis::Connection {
        redis::Client::open(self.address())
            .unwrap()
            .get_connection()
            .unwrap()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `mosquitto` broker on a free port of 127.0.0.1, anonymous clients allowed;
/// killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Mosquitto {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest none\n"
        );
        // As root, mosquitto would otherwise drop to a user `mosquitto` that may not exist.
        if is_root() {
            config.push_str("user root\n");
        }
        let file = dir.path().join("mosquitto.conf");
        std::fs::write(&file, config).unwrap();
        let binary = binary("MOSQUITTO", "mosquitto", &["/usr/sbin/mosquitto"]);
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start {binary}: {e} (scripts/setup.sh installs it)")
            });
        wait_for(port, "mosquitto");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// A subscriber of the test's own to `topic`: what it receives comes out of the channel.
    fn subscribe(&self, topic: &str) -> mpsc::Receiver<(String, Vec<u8>)> {
        let options = rumqttc::MqttOptions::new("wafer-test-subscriber", "127.0.0.1", self.port);
        let (client, mut connection) = rumqttc::Client::new(options, 10);
        client.subscribe(topic, rumqttc::QoS::ExactlyOnce).unwrap();
        let (sender, received) = mpsc::channel();
        let (subscribed, ready) = mpsc::channel();
        std::thread::spawn(move || {
            let _client = client;
            for event in connection.iter() {
                match event {
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::SubAck(_))) => {
                        let _ = subscribed.send(());
                    }
                    Ok(rumqttc::Event::Incoming(rumqttc::Incoming::Publish(p))) => {
                        if sender.send((p.topic, p.payload.to_vec())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        ready.recv_timeout(Duration::from_secs(30)).unwrap();
        received
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// `$VAR`, else the first of `paths` that exists, else `name` on PATH.
fn binary(var: &str, name: &str, paths: &[&str]) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        paths
            .iter()
            .find(|p| Path::new(p).exists())
            .map_or_else(|| name.to_owned(), |p| (*p).to_owned())
    })
}

fn wait_for(port: u16, what: &str) {
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not start on port {port}");
}

/// A Spin app of the two test guests, each allowed `hosts`, and the WASI 0.2 one again as
/// `denied`, allowed nothing.
fn app(dir: &Path, hosts: &[String]) -> PathBuf {
    let hosts = hosts
        .iter()
        .map(|h| format!("\"{h}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let manifest = format!(
        r#"
spin_manifest_version = 2

[application]
name = "outbound"
version = "0.1.0"

[[trigger.http]]
route = "/v2/..."
component = "v2"

[[trigger.http]]
route = "/p3/..."
component = "p3"

[[trigger.http]]
route = "/denied/..."
component = "denied"

[component.v2]
source = "{v2}"
allowed_outbound_hosts = [{hosts}]

[component.p3]
source = "{p3}"
allowed_outbound_hosts = [{hosts}]

[component.denied]
source = "{v2}"
"#,
        v2 = built("spin-outbound-v2.wasm").display(),
        p3 = built("spin-outbound-p3.wasm").display(),
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

struct App {
    server: Server,
    _dirs: [tempfile::TempDir; 2],
}

impl App {
    fn up(hosts: &[String]) -> Self {
        let (data, dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let manifest = app(dir.path(), hosts);
        let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);
        Self {
            server,
            _dirs: [data, dir],
        }
    }

    /// `GET path` with `headers`: the status and the body.
    fn get(&self, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
        let mut request = self.server.client.get(format!("{}{path}", self.server.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    }
}

#[test]
fn redis_commands_round_trip_through_a_real_redis() {
    let redis = Redis::start();
    let app = App::up(&[format!("redis://127.0.0.1:{}", redis.port)]);
    let mut client = redis.client();
    let address = redis.address();
    for version in ["v2", "p3"] {
        let call = |op: &str, query: &str| {
            let (status, body) = app.get(
                &format!("/{version}/redis/{op}?{query}"),
                &[("redis-address", &address)],
            );
            assert_eq!(status, 200, "{version} {op}?{query}: {body}");
            body
        };
        let key = |name: &str| format!("{version}-{name}");

        // set, then read back with the test's own client; and the other way round.
        assert_eq!(
            call("set", &format!("key={}&value=Eureka!", key("a"))),
            "ok"
        );
        let stored: String = redis::cmd("GET").arg(key("a")).query(&mut client).unwrap();
        assert_eq!(stored, "Eureka!");
        let () = redis::cmd("SET")
            .arg(key("b"))
            .arg("from the test")
            .query(&mut client)
            .unwrap();
        assert_eq!(call("get", &format!("key={}", key("b"))), "from the test");
        let (status, body) = app.get(
            &format!("/{version}/redis/get?key={}", key("none")),
            &[("redis-address", &address)],
        );
        assert_eq!(
            (status, body.as_str()),
            (404, "nil"),
            "a missing key is none"
        );

        // incr counts in the server, atomically with the test's own increments.
        assert_eq!(call("incr", &format!("key={}", key("n"))), "1");
        let n: i64 = redis::cmd("INCR").arg(key("n")).query(&mut client).unwrap();
        assert_eq!(n, 2);
        assert_eq!(call("incr", &format!("key={}", key("n"))), "3");

        // sets.
        let set = key("s");
        assert_eq!(call("sadd", &format!("key={set}&value=x,y,z")), "3");
        assert_eq!(call("srem", &format!("key={set}&value=y,w")), "1");
        assert_eq!(call("smembers", &format!("key={set}")), "x,z");
        let mut members: Vec<String> = redis::cmd("SMEMBERS").arg(&set).query(&mut client).unwrap();
        members.sort();
        assert_eq!(members, ["x", "z"]);

        // del, seen gone by the test's client.
        let deleted = call(
            "del",
            &format!("key={},{},{}", key("a"), key("b"), key("none")),
        );
        assert_eq!(deleted, "2");
        let exists: i64 = redis::cmd("EXISTS")
            .arg(key("a"))
            .query(&mut client)
            .unwrap();
        assert_eq!(exists, 0);

        // execute: any command, its results as Spin gives them.
        let e = key("e");
        assert_eq!(
            call("execute", &format!("command=set&args={e},Eureka!")),
            "status:OK"
        );
        let appended = call(
            "execute",
            &format!("command=append&args={e},%20I%27ve%20got%20it!"),
        );
        assert_eq!(appended, "int:20");
        let got = call("execute", &format!("command=get&args={e}"));
        assert_eq!(got, "bin:Eureka! I've got it!");
        let l = key("l");
        call("execute", &format!("command=rpush&args={l},a,%231"));
        assert_eq!(
            call("execute", &format!("command=lrange&args={l},%230,%23-1")),
            "bin:a,bin:1"
        );

        // publish reaches a subscriber of the test's own.
        let mut subscriber = redis.client();
        let mut pubsub = subscriber.as_pubsub();
        pubsub.subscribe(key("channel")).unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let query = format!("channel={}&value=hello", key("channel"));
        assert_eq!(call("publish", &query), "ok");
        let message = pubsub.get_message().unwrap();
        assert_eq!(message.get_channel_name(), key("channel"));
        assert_eq!(message.get_payload::<String>().unwrap(), "hello");
    }
}

#[test]
fn redis_errors_are_spins() {
    let redis = Redis::start();
    let app = App::up(&["redis://127.0.0.1:*".to_owned()]);
    let address = redis.address();
    let mut client = redis.client();
    let () = redis::cmd("SADD")
        .arg("a-set")
        .arg("x")
        .query(&mut client)
        .unwrap();
    for version in ["v2", "p3"] {
        let headers = [("redis-address", address.as_str())];
        // A key holding another type: Spin's type-error.
        let (status, body) = app.get(&format!("/{version}/redis/incr?key=a-set"), &headers);
        assert_eq!((status, body.as_str()), (500, "Error::TypeError"));
        // The server's own refusal.
        let (status, body) = app.get(
            &format!("/{version}/redis/execute?command=nosuch"),
            &headers,
        );
        assert_eq!(status, 500);
        assert!(
            body.starts_with("Error::Other(") && body.contains("nosuch"),
            "{body}"
        );
        // A command that would change the connection shared with later calls.
        let (status, body) = app.get(
            &format!("/{version}/redis/execute?command=select&args=%231"),
            &headers,
        );
        assert_eq!(status, 500);
        assert!(
            body.contains("changes the state of the connection"),
            "{body}"
        );
        // A server that is not there.
        let gone = format!("redis://127.0.0.1:{}", free_port());
        let (status, body) = app.get(
            &format!("/{version}/redis/open"),
            &[("redis-address", &gone)],
        );
        assert_eq!(status, 500);
        assert!(
            body.starts_with("Error::Other(\"cannot connect to"),
            "{body}"
        );
        // Not a Redis URL.
        let (status, body) = app.get(
            &format!("/{version}/redis/open"),
            &[("redis-address", "unix:///tmp/redis.sock")],
        );
        assert_eq!((status, body.as_str()), (500, "Error::InvalidAddress"));
    }
}

#[test]
fn redis_connections_are_made_afresh_after_the_server_restarts() {
    let mut redis = Redis::start();
    let app = App::up(&[format!("redis://127.0.0.1:{}", redis.port)]);
    let address = redis.address();
    let headers = [("redis-address", address.as_str())];
    for version in ["v2", "p3"] {
        let set = format!("/{version}/redis/set?key=k&value={version}");
        assert_eq!(app.get(&set, &headers), (200, "ok".to_owned()));
        // The connection kept from the call before is closed by the server's restart.
        redis.restart();
        let get = format!("/{version}/redis/get?key=k");
        assert_eq!(
            app.get(&get, &headers),
            (404, "nil".to_owned()),
            "{version}"
        );
        assert_eq!(app.get(&set, &headers), (200, "ok".to_owned()));
        assert_eq!(app.get(&get, &headers), (200, version.to_owned()));
    }
}

#[test]
fn mqtt_publishes_reach_a_real_subscriber() {
    let broker = Mosquitto::start();
    let app = App::up(&[format!("mqtt://127.0.0.1:{}", broker.port)]);
    let received = broker.subscribe("telemetry/#");
    for version in ["v2", "p3"] {
        let address = format!("mqtt://127.0.0.1:{}?client_id=wafer-{version}", broker.port);
        for qos in ["0", "1", "2"] {
            let topic = format!("telemetry/{version}/{qos}");
            let (status, body) = app.get(
                &format!("/{version}/mqtt/publish?topic={topic}&value=Eureka-{qos}&qos={qos}"),
                &[
                    ("mqtt-address", &address),
                    ("mqtt-username", "user"),
                    ("mqtt-password", "password"),
                ],
            );
            assert_eq!((status, body.as_str()), (200, "ok"), "{version} QoS {qos}");
            let (got_topic, payload) = received.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(got_topic, topic);
            assert_eq!(payload, format!("Eureka-{qos}").into_bytes());
        }
    }
}

#[test]
fn addresses_not_allowed_are_refused_as_spin_refuses_them() {
    let redis = Redis::start();
    let broker = Mosquitto::start();
    let app = App::up(&[
        format!("redis://127.0.0.1:{}", redis.port),
        format!("mqtt://127.0.0.1:{}", broker.port),
    ]);
    let redis_address = redis.address();
    let mqtt_address = format!("mqtt://127.0.0.1:{}?client_id=denied", broker.port);
    let other_port = format!("mqtt://127.0.0.1:{}?client_id=other", free_port());
    let cases = [
        // The component allowed nothing.
        ("/denied", redis_address.as_str(), mqtt_address.as_str()),
        // Allowed components, other ports and hosts.
        ("/v2", "redis://127.0.0.1:1", other_port.as_str()),
        ("/p3", "redis://localhost:6379", "mqtt://[::1]?client_id=x"),
    ];
    for (prefix, redis_address, mqtt_address) in cases {
        let (status, body) = app.get(
            &format!("{prefix}/redis/set?key=k&value=v"),
            &[("redis-address", redis_address)],
        );
        assert_eq!(
            (status, body.as_str()),
            (500, "Error::InvalidAddress"),
            "{prefix} {redis_address}"
        );
        let (status, body) = app.get(
            &format!("{prefix}/mqtt/publish?topic=t&value=v"),
            &[
                ("mqtt-address", mqtt_address),
                ("mqtt-username", "user"),
                ("mqtt-password", "password"),
            ],
        );
        let expected =
            format!("Error::ConnectionFailed(\"address {mqtt_address} is not permitted\")");
        assert_eq!((status, body), (500, expected), "{prefix}");
    }
    // Nothing reached the server.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.client())
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
