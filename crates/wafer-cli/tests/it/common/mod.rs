//! Test harness: a real `wafer serve` child process on 127.0.0.1:0, talked to over real sockets.
#![allow(dead_code)]

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::blocking::{Client, Response};

pub const WAFER: &str = env!("CARGO_BIN_EXE_wafer");

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A guest built by `examples/build.sh` (the test command builds them first).
pub fn built(name: &str) -> PathBuf {
    let path = root().join("target/wasm").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `bash examples/build.sh` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// A WAT test guest under crates/wafer-cli/tests/guests.
pub fn guest(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/guests")
        .join(name)
}

pub struct Server {
    pub child: Child,
    /// The function plane: functions' routes and gRPC services, `/_wafer/async/`, probes.
    pub url: String,
    /// The admin plane (`--admin-listen`): the admin API and gRPC service, the dashboard,
    /// invocation records, logs, `/metrics`.
    pub admin_url: String,
    pub data: PathBuf,
    pub token: String,
    pub client: Client,
    /// What the server wrote to stderr, when started with [`Server::start_logged`].
    stderr: Option<Arc<Mutex<String>>>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// A node of the cluster at `nats`, with its own data directory.
    pub fn cluster_node(nats: &Nats) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Self::start_with(dir.path(), &["serve", "--cluster", &nats.url()]);
        server.keep(dir);
        server
    }

    /// Starts a server on a fresh data directory.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_owned();
        let mut server = Self::start_in(&data);
        server._dir = Some(dir);
        server
    }

    /// Starts a server on `data` (which outlives it).
    pub fn start_in(data: &Path) -> Self {
        Self::start_with(data, &["serve"])
    }

    /// Starts `wafer <args> --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data <data>`.
    pub fn start_with(data: &Path, args: &[&str]) -> Self {
        Self::spawn(data, args, false, None, &[])
    }

    /// Like [`Server::start_with`], with these environment variables.
    pub fn start_with_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(data, args, false, None, env)
    }

    /// Like [`Server::start_logged`], with the process's file descriptor limit (soft and
    /// hard) set to `nofile`.
    pub fn start_with_fd_limit(data: &Path, args: &[&str], nofile: u64) -> Self {
        Self::spawn(data, args, true, Some(nofile), &[])
    }

    /// Like [`Server::start_with`], keeping what the server writes to stderr for
    /// [`Server::stderr`].
    pub fn start_logged(data: &Path, args: &[&str]) -> Self {
        Self::spawn(data, args, true, None, &[])
    }

    /// Like [`Server::start_logged`], with these environment variables.
    pub fn start_logged_with_env(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(data, args, true, None, env)
    }

    /// The server's stderr so far (for a server from [`Server::start_logged`]).
    pub fn stderr(&self) -> String {
        self.stderr
            .as_ref()
            .map(|s| s.lock().unwrap().clone())
            .unwrap_or_default()
    }

    fn spawn(
        data: &Path,
        args: &[&str],
        logged: bool,
        nofile: Option<u64>,
        env: &[(&str, &str)],
    ) -> Self {
        let mut command = Command::new(WAFER);
        if let Some(limit) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: only an async-signal-safe system call between fork and exec.
            unsafe {
                command.pre_exec(move || rlimit::setrlimit(rlimit::Resource::NOFILE, limit, limit));
            }
        }
        let mut child = command
            .args(args)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--data",
            ])
            .arg(data)
            .env("RUST_LOG", "warn")
            // JetStream sets each stream's byte limit aside when it is made, against the
            // NATS server's `max_file_store` (by default 75% of the disk's free space);
            // Wafer's defaults ask for about 6.5 GiB (docs/cluster.md#byte-limits). Cluster
            // nodes in tests ask for less, so a nearly full disk cannot fail them; tests of
            // the limits give their own flags, which win.
            .env("WAFER_CLUSTER_RECORDS_MAX_BYTES", "64MiB")
            .env("WAFER_CLUSTER_MODULES_MAX_BYTES", "256MiB")
            .env("WAFER_CLUSTER_MESSAGES_MAX_BYTES", "64MiB")
            .env("WAFER_CLUSTER_DEAD_MAX_BYTES", "64MiB")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if logged {
                Stdio::piped()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().map(|pipe| {
            let text = Arc::new(Mutex::new(String::new()));
            let sink = text.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("{line}");
                    let mut sink = sink.lock().unwrap();
                    sink.push_str(&line);
                    sink.push('\n');
                }
            });
            text
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut read = |prefix: &str| {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            line.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("expected `{prefix}...` from wafer, got {line:?}"))
                .to_owned()
        };
        let url = read("listening on ");
        let admin_url = read("admin on ");
        let token = std::fs::read_to_string(data.join("admin-token"))
            .unwrap()
            .trim()
            .to_owned();
        let client = Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            child,
            url,
            admin_url,
            data: data.to_owned(),
            token,
            client,
            stderr,
            _dir: None,
        }
    }

    /// The pub/sub counters (`GET /_wafer/pubsub`).
    pub fn pubsub(&self) -> serde_json::Value {
        self.admin(reqwest::Method::GET, "pubsub")
            .send()
            .unwrap()
            .json()
            .unwrap()
    }

    /// Keeps `dir` (the data directory) until the server is dropped.
    pub fn keep(&mut self, dir: tempfile::TempDir) {
        self._dir = Some(dir);
    }

    /// `GET path` on the function plane.
    pub fn get(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .unwrap()
    }

    /// `GET path` on the admin plane, without the token.
    pub fn get_admin(&self, path: &str) -> Response {
        self.client
            .get(format!("{}{path}", self.admin_url))
            .send()
            .unwrap()
    }

    /// A request to the admin API (`/_wafer/PATH` on the admin listener) with the token.
    pub fn admin(&self, method: reqwest::Method, path: &str) -> reqwest::blocking::RequestBuilder {
        self.client
            .request(method, format!("{}/_wafer/{path}", self.admin_url))
            .bearer_auth(&self.token)
    }

    /// The record of asynchronous invocation `id` (`GET /_wafer/invocations/ID`).
    pub fn invocation(&self, id: &str) -> serde_json::Value {
        let response = self
            .admin(reqwest::Method::GET, &format!("invocations/{id}"))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{id}");
        response.json().unwrap()
    }

    /// Polls invocation `id` until it has finished (`done` or `failed`); returns its record.
    pub fn finished(&self, id: &str) -> serde_json::Value {
        let started = std::time::Instant::now();
        loop {
            let record = self.invocation(id);
            if matches!(record["state"].as_str(), Some("done" | "failed")) {
                return record;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{record}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Deploys `module` with extra query parameters; returns the response.
    pub fn deploy_with(&self, name: &str, module: &Path, query: &[(&str, &str)]) -> Response {
        self.admin(reqwest::Method::PUT, &format!("functions/{name}"))
            .query(query)
            .body(std::fs::read(module).unwrap())
            .send()
            .unwrap()
    }

    /// Deploys and asserts success.
    pub fn deploy(&self, name: &str, module: &Path, query: &[(&str, &str)]) -> serde_json::Value {
        let response = self.deploy_with(name, module, query);
        let status = response.status();
        let text = response.text().unwrap();
        assert!(
            status.is_success(),
            "deploy of {name} failed: {status} {text}"
        );
        serde_json::from_str(&text).unwrap()
    }

    /// Deploys `module` with `wafer deploy NAME MODULE FLAGS...` and asserts success.
    pub fn deploy_cli(&self, name: &str, module: &Path, flags: &[&str]) {
        let mut args = vec!["deploy", name, module.to_str().unwrap()];
        args.extend_from_slice(flags);
        let out = self.cli(&args);
        assert!(
            out.status.success(),
            "deploy {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// POSTs `body` to `path` and returns the answer's text.
    pub fn post(&self, path: &str, body: &str) -> String {
        self.client
            .post(format!("{}{path}", self.url))
            .body(body.to_owned())
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// Runs the `wafer` CLI against this server.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(WAFER)
            .args(args)
            .env("WAFER_SERVER", &self.admin_url)
            .env("WAFER_DATA", &self.data)
            .env_remove("WAFER_TOKEN")
            .output()
            .unwrap()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A tiny HTTP server on 127.0.0.1 that records what it receives. `/redirect?to=URL`
/// answers `302 Location: URL`; anything else `200 pong`.
pub struct Endpoint {
    pub port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Endpoint {
    pub fn start() -> Self {
        Self::start_on(0)
    }

    /// An endpoint on `port` of 127.0.0.1 (any free one for 0).
    pub fn start_on(port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                let request_line = head.lines().next().unwrap_or("").to_owned();
                record
                    .lock()
                    .unwrap()
                    .push(format!("{request_line} {}", String::from_utf8_lossy(&body)));
                let target = request_line.split(' ').nth(1).unwrap_or("/");
                let ok = |body: &str| {
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                };
                let reply = match target.strip_prefix("/redirect?to=") {
                    Some(to) => format!(
                        "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    ),
                    None if target == "/big" => ok(&"x".repeat(4096)),
                    None if target == "/slow" => {
                        std::thread::sleep(Duration::from_secs(4));
                        ok("late")
                    }
                    None => ok("pong"),
                };
                let _ = stream.write_all(reply.as_bytes());
            }
        });
        Self { port, seen }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// A real `nats-server` with JetStream on a free port of 127.0.0.1, its storage in a
/// temporary directory; killed when dropped. `scripts/setup.sh` installs it.
pub struct Nats {
    child: Child,
    pub port: u16,
    pub store: PathBuf,
    /// The clustering options, for a server of a NATS cluster.
    cluster: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Nats {
    pub fn start() -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), Vec::new())
    }

    /// A server whose JetStream may store at most `max_file_store` (`"1GB"`).
    pub fn with_storage(max_file_store: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!("jetstream {{ max_file_store: {max_file_store} }}\n");
        std::fs::write(dir.path().join("nats.conf"), config).unwrap();
        Self::start_with(dir, Vec::new())
    }

    fn start_with(dir: tempfile::TempDir, cluster: Vec<String>) -> Self {
        let store = dir.path().to_owned();
        let port = free_port();
        let mut nats = Self {
            child: Self::spawn(port, &store, &cluster),
            port,
            store,
            cluster,
            _dir: dir,
        };
        nats.wait();
        nats
    }

    /// A JetStream cluster of `n` servers routed to each other, ready for streams with
    /// `n` replicas.
    pub fn cluster(n: usize) -> Vec<Self> {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let servers: Vec<Self> = routes
            .iter()
            .enumerate()
            .map(|(i, port)| {
                Self::start_with(
                    tempfile::tempdir().unwrap(),
                    vec![
                        "--server_name".into(),
                        format!("n{i}"),
                        "--cluster_name".into(),
                        "wafer-test".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{port}"),
                        "--routes".into(),
                        all.clone(),
                    ],
                )
            })
            .collect();
        wait_for_jetstream(&servers[0].url(), n);
        servers
    }

    fn spawn(port: u16, store: &Path, cluster: &[String]) -> Child {
        let binary = std::env::var("NATS_SERVER").unwrap_or_else(|_| {
            if Path::new("/usr/sbin/nats-server").exists() {
                "/usr/sbin/nats-server".into()
            } else {
                "nats-server".into()
            }
        });
        // A configuration file only where a test wrote one (`with_storage`).
        let config = store.join("nats.conf");
        let config = config
            .exists()
            .then(|| [OsString::from("-c"), config.into_os_string()]);
        Command::new(&binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .args(config.into_iter().flatten())
            .args(cluster)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {binary}: {e} (scripts/setup.sh installs it)"))
    }

    /// Waits until the server accepts connections.
    fn wait(&mut self) {
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nats-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its stored state stays).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port, &self.store, &self.cluster);
        self.wait();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until the JetStream cluster at `url` has elected its leader and can place a stream
/// of `replicas` copies (a few seconds after its servers start).
fn wait_for_jetstream(url: &str, replicas: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = async_nats::connect(url).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let started = std::time::Instant::now();
        loop {
            let config = async_nats::jetstream::stream::Config {
                name: "ready".into(),
                subjects: vec!["ready".into()],
                num_replicas: replicas,
                ..Default::default()
            };
            if jetstream.create_stream(config).await.is_ok() {
                let _ = jetstream.delete_stream("ready").await;
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "JetStream cluster not ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
