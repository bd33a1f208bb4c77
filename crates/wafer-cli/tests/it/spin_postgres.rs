//! Spin's outbound PostgreSQL (docs/spin.md#postgresql): a Spin app built with the Spin Rust
//! SDK 7 (examples/spin-pg-rust, `spin:postgres/postgres@4.2.0`) served by `wafer up`,
//! against a real PostgreSQL (Debian's `postgresql`, scripts/setup.sh installs it) started
//! for each test on a free port.

use crate::common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{built, free_port, Server};
use serde_json::{json, Value};

/// A PostgreSQL server of its own: `initdb` in a temporary directory, then `postgres` on a
/// free port of localhost, with the user `postgres` (password `postgres`) signing in by
/// password over TCP. Run as the `postgres` user when the tests run as root (PostgreSQL
/// refuses root). Stopped when dropped.
struct Postgres {
    child: Child,
    port: u16,
    bin: PathBuf,
    owner: Option<(u32, u32)>,
    dir: tempfile::TempDir,
}

impl Postgres {
    fn start() -> Self {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let root = &dir.path().to_owned();
        let owner = as_postgres_user();
        std::fs::write(root.join("pwfile"), "postgres\n").unwrap();
        std::fs::create_dir(root.join("sock")).unwrap();
        if let Some((uid, gid)) = owner {
            for path in [root.to_owned(), root.join("pwfile"), root.join("sock")] {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let run = |program: &str| command(&bin, root, owner, program);
        let initdb = run("initdb")
            .args(["-D", "data", "-U", "postgres", "--pwfile=pwfile"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .args(["-E", "UTF8", "--locale=C.UTF-8"])
            .output()
            .unwrap();
        assert!(
            initdb.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&initdb.stderr)
        );
        let port = free_port();
        let child = run("postgres")
            .args(["-D", "data", "-p", &port.to_string(), "-k"])
            .arg(root.join("sock"))
            .args(["-c", "listen_addresses=localhost", "-c", "fsync=off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            port,
            bin,
            owner,
            dir,
        };
        // Ready when it answers a query (it listens a moment before it accepts sessions).
        let started = Instant::now();
        loop {
            if server.psql("select 1").as_deref() == Some("1") {
                return server;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "postgres did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `sql` through the server's socket as `postgres`: its output, if it succeeded.
    fn psql(&self, sql: &str) -> Option<String> {
        let root = self.dir.path();
        let output = command(&self.bin, root, self.owner, "psql")
            .args(["-h"])
            .arg(root.join("sock"))
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-Atc", sql])
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Waits until no session over TCP (a client's, not psql's on the socket) is open.
    fn wait_for_no_tcp_sessions(&self) {
        let sql = "select count(*) from pg_stat_activity where client_addr is not null";
        let started = Instant::now();
        while self.psql(sql).as_deref() != Some("0") {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "PostgreSQL connections still open: {:?}",
                self.psql("select client_addr, state, query from pg_stat_activity")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn address(&self) -> String {
        format!(
            "host=localhost port={} user=postgres password=postgres dbname=postgres",
            self.port
        )
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // A fast shutdown: the server ends its sessions and stops.
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        unsafe { libc::kill(pid, libc::SIGINT) };
        let _ = self.child.wait();
    }
}

/// A command of PostgreSQL's, run in `root` as `owner` if given.
fn command(bin: &Path, root: &Path, owner: Option<(u32, u32)>, program: &str) -> Command {
    let mut command = Command::new(bin.join(program));
    command.current_dir(root);
    if let Some((uid, gid)) = owner {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    command
}

/// Debian puts PostgreSQL's programs in /usr/lib/postgresql/VERSION/bin.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|dirs| {
            dirs.filter_map(|d| Some(d.ok()?.path().join("bin")))
                .collect()
        })
        .unwrap_or_default();
    found.retain(|bin| bin.join("postgres").exists() && bin.join("psql").exists());
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL in /usr/lib/postgresql/*/bin: scripts/setup.sh installs Debian's `postgresql`")
    })
}

/// The `postgres` user's ids, when running as root.
fn as_postgres_user() -> Option<(u32, u32)> {
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").unwrap();
    let user = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !user.is_null(),
        "running as root needs a `postgres` user to run PostgreSQL as (Debian's package makes it)"
    );
    let user = unsafe { &*user };
    Some((user.pw_uid, user.pw_gid))
}

/// `wafer up` of the example app, its database the given server, its allow-list
/// `postgres://localhost:PORT`.
fn serve(pg: &Postgres, dir: &Path, data: &Path) -> Server {
    let manifest = format!(
        r#"
spin_manifest_version = 2

[application]
name = "pg"

[variables]
pg_address = {{ default = "{address}" }}

[[trigger.http]]
route = "/pg/..."
component = "pg"

[component.pg]
source = "{source}"
allowed_outbound_hosts = ["postgres://localhost:{port}"]
variables = {{ pg_address = "{{{{ pg_address }}}}" }}
"#,
        address = pg.address(),
        source = built("spin-pg-rust.wasm").display(),
        port = pg.port,
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    Server::start_with(data, &["up", path.to_str().unwrap()])
}

fn get(server: &Server, path: &str) -> (u16, String) {
    let r = server.get(path);
    (r.status().as_u16(), r.text().unwrap())
}

#[test]
fn parameters_and_typed_results_round_trip_on_one_connection() {
    let pg = Postgres::start();
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = serve(&pg, dir.path(), data.path());

    let (status, body) = get(&server, "/pg/types");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["rows_affected"], 1, "{answer}");
    // Two queries on one connection run in one server process (one connection per
    // resource).
    assert_eq!(answer["same_backend"], true, "{answer}");

    let columns: Vec<(String, String)> = answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c[0].as_str().unwrap().into(), c[1].as_str().unwrap().into()))
        .collect();
    let expected_types = [
        ("b", "boolean"),
        ("i2", "int16"),
        ("i4", "int32"),
        ("i8", "int64"),
        ("f4", "floating32"),
        ("f8", "floating64"),
        ("s", "str"),
        ("c", "str"),
        ("bin", "binary"),
        ("d", "date"),
        ("t", "time"),
        ("ts", "datetime"),
        ("u", "uuid"),
        ("j", "jsonb"),
        ("n", "decimal"),
        ("r4", "range-int32"),
        ("r8", "range-int64"),
        ("rn", "range-decimal"),
        ("a4", "array-int32"),
        ("a8", "array-int64"),
        ("an", "array-decimal"),
        ("astr", "array-str"),
        ("iv", "interval"),
        ("nothing", "str"),
        ("m", "other(money)"),
    ];
    let expected_types: Vec<(String, String)> = expected_types
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect();
    assert_eq!(columns, expected_types);

    let row = answer["row"].as_array().unwrap();
    let expected = [
        json!({"boolean": true}),
        json!({"int16": -7}),
        json!({"int32": 2_000_000_000}),
        json!({"int64": -9_000_000_000_000i64}),
        json!({"floating32": 1.5}),
        json!({"floating64": -0.25}),
        json!({"str": "héllo"}),
        // char(6) pads, as PostgreSQL does.
        json!({"str": "ab    "}),
        json!({"binary": [0, 1, 254, 255]}),
        json!({"date": [2024, 2, 29]}),
        json!({"time": [23, 59, 58, 123_456_000]}),
        json!({"datetime": [1999, 12, 31, 23, 59, 59, 500_000_000]}),
        json!({"uuid": "12345678-1234-5678-9abc-def012345678"}),
        json!({"jsonb": r#"{"k":[1,"two",null]}"#}),
        json!({"decimal": "12345678901234.5678"}),
        // PostgreSQL keeps discrete ranges as [lower, upper).
        json!({"range_int32": [[2, "inclusive"], [11, "exclusive"]]}),
        json!({"range_int64": [[5_000_000_000i64, "inclusive"], null]}),
        json!({"range_decimal": [["1.5", "inclusive"], ["2.25", "exclusive"]]}),
        json!({"array_int32": [1, null, 3]}),
        json!({"array_int64": [1i64 << 40]}),
        json!({"array_decimal": ["0.5", null]}),
        json!({"array_str": ["x", null]}),
        json!({"interval": {"micros": 3_600_000_000i64, "days": 2, "months": 14}}),
        Value::Null,
        // money has no conversion: its binary form (1250 cents, a big-endian int8).
        json!({"unsupported": [0, 0, 0, 0, 0, 0, 4, 226]}),
    ];
    assert_eq!(row.len(), expected.len(), "{answer}");
    for ((value, expected), (name, _)) in row.iter().zip(&expected).zip(&columns) {
        assert_eq!(value, expected, "column {name}");
    }

    // The connection was closed when the guest dropped it: none is left open.
    pg.wait_for_no_tcp_sessions();
}

#[test]
fn a_connection_the_guest_never_drops_is_closed_when_its_call_ends() {
    let pg = Postgres::start();
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = serve(&pg, dir.path(), data.path());
    // More calls than a function may hold connections at once (64): each call's connection
    // was let go when it ended, or one of these would answer `too many connections`.
    for i in 0..70 {
        assert_eq!(get(&server, "/pg/leak"), (200, "leaked".into()), "call {i}");
    }
    pg.wait_for_no_tcp_sessions();
}

#[test]
fn a_statement_past_the_calls_deadline_is_cancelled_on_the_server() {
    let pg = Postgres::start();
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The same component as a function of a `wafer.toml`, for a short `timeout`; its
    // variable is a config value.
    let manifest = format!(
        r#"
[[function]]
name = "pg"
module = "{source}"
routes = ["/pg/..."]
outbound = ["postgres://localhost:{port}"]
config = {{ pg_address = "{address}" }}
limits = {{ timeout = "2s" }}
"#,
        source = built("spin-pg-rust.wasm").display(),
        port = pg.port,
        address = pg.address(),
    );
    let path = dir.path().join("wafer.toml");
    std::fs::write(&path, manifest).unwrap();
    let server = Server::start_with(data.path(), &["up", path.to_str().unwrap()]);

    // `SELECT pg_sleep(600)` outlives the call; the server stops it rather than sleeping on
    // in a session nobody reads (PostgreSQL would not notice the client gone).
    let (status, body) = get(&server, "/pg/sleep");
    assert_ne!(status, 200, "{body}");
    pg.wait_for_no_tcp_sessions();
}

#[test]
fn statements_the_server_refuses_are_spins_query_failed() {
    let pg = Postgres::start();
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = serve(&pg, dir.path(), data.path());

    // The database's own error, with its fields (4.x's db-error).
    let (status, body) = get(&server, "/pg/error");
    assert_eq!(status, 500);
    assert_eq!(
        body,
        "query-failed: db-error: severity=ERROR code=42601 message=syntax error at or near \"SELEC\""
    );
    // A parameter the host cannot convert never reaches the server.
    let (status, body) = get(&server, "/pg/bad-parameter");
    assert_eq!(status, 500);
    assert!(
        body.starts_with("bad-parameter: invalid UUID not-a-uuid"),
        "{body}"
    );
    // The connection is still good after both.
    assert_eq!(get(&server, "/pg/types").0, 200);
    pg.wait_for_no_tcp_sessions();
}

#[test]
fn addresses_off_the_allow_list_are_refused_before_connecting() {
    let pg = Postgres::start();
    let (dir, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = serve(&pg, dir.path(), data.path());
    let open = |address: &str| {
        let query =
            percent_encoding::utf8_percent_encode(address, percent_encoding::NON_ALPHANUMERIC);
        get(&server, &format!("/pg/open?address={query}"))
    };
    assert_eq!(open(&pg.address()), (200, "opened".into()));

    // Another port: refused without a connection to it (a listener there sees none).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let other = listener.local_addr().unwrap().port();
    let (status, body) = open(&format!("host=localhost port={other} user=postgres"));
    assert_eq!(status, 403);
    assert_eq!(
        body,
        format!("connection-failed: address postgres://localhost:{other} is not permitted")
    );
    assert!(
        listener.accept().is_err(),
        "wafer connected to a refused address"
    );

    // The URL form, and another host at the right port.
    let url = format!(
        "postgres://postgres:postgres@db.example.com:{}/postgres",
        pg.port
    );
    assert_eq!(
        open(&url),
        (
            403,
            format!(
                "connection-failed: address postgres://db.example.com:{} is not permitted",
                pg.port
            )
        )
    );
    // The rule names `localhost`, not its address; and `hostaddr` would bypass the check.
    let (status, body) = open(&format!("host=127.0.0.1 port={} user=postgres", pg.port));
    assert_eq!(status, 403);
    assert!(body.contains("address postgres://127.0.0.1"), "{body}");
    let (status, body) = open(&format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=postgres",
        pg.port
    ));
    assert_eq!(status, 403);
    assert!(
        body.starts_with("connection-failed: `hostaddr` is not supported"),
        "{body}"
    );

    // Allowed, but the server refuses the password: connection-failed, with its reason.
    let wrong = pg.address().replace("password=postgres", "password=wrong");
    let (status, body) = open(&wrong);
    assert_eq!(status, 403);
    assert!(body.starts_with("connection-failed: "), "{body}");
    assert!(body.contains("password authentication failed"), "{body}");
}
