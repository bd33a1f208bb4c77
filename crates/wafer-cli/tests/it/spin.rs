//! Spin applications (docs/spin.md): `wafer up spin.toml` serves each component as a
//! function, with Spin's routes, request headers, variables and grants.

use crate::common;

use std::path::Path;

use common::{built, Server};

/// A Spin app of two Wafer example components: the echo component on a route with
/// parameters, the hello component on everything else.
fn app(dir: &Path, extra: &str) -> std::path::PathBuf {
    let manifest = format!(
        r#"
spin_manifest_version = 2

[application]
name = "demo"
version = "0.1.0"
authors = ["Wafer"]

[variables]
greeting = {{ default = "hi" }}
token = {{ default = "s3cret", secret = true }}

[[trigger.http]]
route = "/users/:user_id/..."
component = "echo"

[[trigger.http]]
route = "/..."
component = "hello"

[component.echo]
source = "{echo}"
environment = {{ MODE = "spin" }}

[component.hello]
source = "{hello}"
{extra}
"#,
        echo = built("http-echo-rust.wasm").display(),
        hello = built("http-hello-rust.wasm").display(),
    );
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

#[test]
fn routes_with_parameters_and_spins_headers_reach_the_component() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "");
    let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);

    let r = server.get("/users/bob/x/headers?a=1");
    assert_eq!(r.status(), 200);
    // Spin's answer is the guest's alone.
    assert!(r.headers().get("x-wafer-request-id").is_none(), "{r:?}");
    let text = r.text().unwrap();
    let host = server.url.trim_start_matches("http://");
    for line in [
        format!("spin-full-url: http://{host}/users/bob/x/headers?a=1"),
        "spin-path-info: /x/headers".into(),
        "spin-matched-route: /users/:user_id/...".into(),
        "spin-raw-component-route: /users/:user_id/...".into(),
        "spin-component-route: /users/:user_id".into(),
        "spin-base-path: /".into(),
        "spin-path-match-user-id: bob".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("spin-client-addr: 127.0.0.1:")),
        "{text}"
    );

    // The environment, and the catch-all route for everything else.
    let env = server.get("/users/bob/env").text().unwrap();
    assert!(env.lines().any(|l| l == "MODE=spin"), "{env}");
    let r = server.get("/anything/else");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "Hello from a Rust component!\n");
    // A parameter matches one whole segment.
    assert_eq!(
        server.get("/users").text().unwrap(),
        "Hello from a Rust component!\n"
    );
}

#[test]
fn a_client_cannot_forge_spins_headers() {
    let data = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "");
    let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);
    let text = server
        .client
        .get(format!("{}/users/bob/headers", server.url))
        .header("spin-path-match-user-id", "mallory")
        .header("spin-whatever", "x")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("spin-path-match-user-id: bob\n"), "{text}");
    assert!(
        !text.contains("mallory") && !text.contains("spin-whatever"),
        "{text}"
    );
}

#[test]
fn what_wafer_cannot_honour_is_refused_naming_the_key() {
    for (extra, named) in [
        ("ai_models = [\"llama2-chat\"]", "ai_models"),
        ("allowed_outbound_hosts = [\"ftp://example.com\"]", "`ftp`"),
        (
            "allowed_http_hosts = [\"example.com\"]",
            "allowed_http_hosts",
        ),
        ("colour = \"blue\"", "unknown field `colour`"),
        ("variables = { x = \"{{ missing }}\" }", "`missing`"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let manifest = app(dir.path(), extra);
        let data = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(common::WAFER)
            .args(["up", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0", "--data"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(named), "{extra}: {stderr}");
        assert!(
            stderr.contains("[component.hello]") || named.contains("colour"),
            "{stderr}"
        );
    }
}

#[test]
fn wafer_apply_deploys_a_spin_app_to_a_running_server() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "");
    let out = server.cli(&["apply", manifest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deployed echo v1") && stdout.contains("deployed hello v1"),
        "{stdout}"
    );
    let r = server.get("/users/ann/headers");
    assert!(r.headers().get("x-wafer-request-id").is_none());
    assert!(r.text().unwrap().contains("spin-path-match-user-id: ann\n"));
    // Applied again unchanged, nothing changes.
    let out = server.cli(&["apply", manifest.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("unchanged echo v1"));
}

/// One of the Spin apps in examples/, built by examples/build.sh with the official SDKs,
/// served by `wafer up` on its own unchanged `spin.toml`.
fn serve_example(app: &str, env: &[(&str, &str)]) -> Server {
    let data = tempfile::tempdir().unwrap();
    let manifest = common::root().join("examples").join(app).join("spin.toml");
    let mut server = Server::start_with_env(data.path(), &["up", manifest.to_str().unwrap()], env);
    server.keep(data);
    server
}

fn answer(server: &Server, path: &str) -> (u16, String) {
    let r = server.get(path);
    (r.status().as_u16(), r.text().unwrap())
}

/// Key-value, variables and SQLite through each SDK's own API: the Rust `spin-sdk` 7 (a
/// WASI 0.3 component), the Python `spin-sdk` 5 (WASI 0.3, importing its whole platform
/// world) and the JavaScript build tools (WASI 0.2).
#[test]
fn apps_built_with_the_spin_sdks_run_unchanged() {
    for app in ["spin-rust", "spin-py", "spin-js"] {
        let server = serve_example(app, &[("SPIN_VARIABLE_REGION", "eu-west")]);
        // Variables: a default, one from the environment, a secret, Spin's errors.
        assert_eq!(
            answer(&server, "/var/message"),
            (200, "Hello from eu-west".into()),
            "{app}"
        );
        assert_eq!(
            answer(&server, "/var/api_key"),
            (200, "dev-key-0000".into()),
            "{app}"
        );
        let (status, text) = answer(&server, "/var/nope");
        assert_eq!(status, 404, "{app}");
        assert!(text.starts_with("undefined"), "{app}: {text}");
        let (_, text) = answer(&server, "/var/Bad-Name");
        assert!(text.starts_with("invalid-name"), "{app}: {text}");

        // Key-value: the granted store, and access-denied for another label.
        assert_eq!(answer(&server, "/kv?key=fruit").0, 404, "{app}");
        let stored = server
            .client
            .put(format!("{}/kv?key=fruit", server.url))
            .body("apple")
            .send()
            .unwrap();
        assert_eq!(stored.status(), 200, "{app}");
        assert_eq!(
            answer(&server, "/kv?key=fruit"),
            (200, "apple".into()),
            "{app}"
        );
        assert_eq!(
            answer(&server, "/kv-denied"),
            (403, "access-denied".into()),
            "{app}"
        );

        // SQLite: a table, a parameterised insert, typed rows; access-denied for another
        // database. The file is the app's, in the data directory.
        let (status, rows) = answer(&server, "/sql?name=widget&qty=3");
        assert_eq!(status, 200, "{app}: {rows}");
        let rows: serde_json::Value = serde_json::from_str(&rows).unwrap();
        assert_eq!(
            rows,
            serde_json::json!([{"id": 1, "name": "widget", "qty": 3, "price": 2.5, "note": null}]),
            "{app}"
        );
        let (_, rows) = answer(&server, "/sql?name=gadget&qty=4");
        let rows: serde_json::Value = serde_json::from_str(&rows).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 2, "{app}: {rows}");
        assert_eq!(
            answer(&server, "/sql-denied"),
            (403, "access-denied".into()),
            "{app}"
        );
        assert!(
            server
                .data
                .join(format!("sqlite/{app}--default.db"))
                .exists(),
            "{app}"
        );
    }
}

#[test]
fn a_required_variable_without_a_value_stops_wafer_up() {
    let data = tempfile::tempdir().unwrap();
    let manifest = common::root().join("examples/spin-rust/spin.toml");
    let out = std::process::Command::new(common::WAFER)
        .args(["up", manifest.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .env_remove("SPIN_VARIABLE_REGION")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("variable `region` is required") && stderr.contains("SPIN_VARIABLE_REGION"),
        "{stderr}"
    );
}

/// The components of one app granted a store label share that store, whatever interface
/// they use: a `wasi:keyvalue` component writes, a `spin:key-value@3` one (the Rust SDK
/// app) reads.
#[test]
fn components_of_one_app_share_a_store_by_label() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = format!(
        r#"
spin_manifest_version = 2
[application]
name = "shop"
[variables]
region = {{ default = "eu" }}
[[trigger.http]]
route = "/visits/..."
component = "visits"
[[trigger.http]]
route = "/kv"
component = "reader"
[component.visits]
source = "{visits}"
key_value_stores = ["default"]
variables = {{ greeting = "hi from {{{{ region }}}}" }}
[component.reader]
source = "{reader}"
key_value_stores = ["default"]
"#,
        visits = built("visits-component-rust.wasm").display(),
        reader = built("spin-rust.wasm").display(),
    );
    let path = dir.path().join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["up", path.to_str().unwrap()]);
    let visit = server
        .client
        .post(format!("{}/visits/x?set=fruit", server.url))
        .body("kiwi")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(visit.starts_with("hi from eu, visit 1\n"), "{visit}");
    assert!(visit.contains("set fruit\n"), "{visit}");
    assert_eq!(answer(&server, "/kv?key=fruit"), (200, "kiwi".into()));
    assert_eq!(answer(&server, "/kv?key=visits"), (200, "1".into()));
}

/// A TCP server on 127.0.0.1 that answers each connection's first line with `pong: LINE`.
fn pong_server() -> u16 {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut line = String::new();
            let mut reader = std::io::BufReader::new(&stream);
            if reader.read_line(&mut line).is_ok() {
                let _ = (&stream).write_all(format!("pong: {line}").as_bytes());
            }
        }
    });
    port
}

/// `wasi:sockets` TCP behind `allowed_outbound_hosts`, as Spin checks it: an address in an
/// allowed network and port connects; another port, or no grant, is `access-denied`.
#[test]
fn tcp_connections_follow_allowed_outbound_hosts() {
    let (open, other) = (pong_server(), pong_server());
    let dir = tempfile::tempdir().unwrap();
    let manifest = app(dir.path(), "");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "environment = { MODE = \"spin\" }",
        "environment = { MODE = \"spin\" }\n\
         allowed_outbound_hosts = [\"*://127.0.0.0/24:{{ port }}\"]",
    );
    let text = text.replace(
        "[variables]",
        &format!("[variables]\nport = {{ default = \"{open}\" }}"),
    );
    std::fs::write(&manifest, text).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);

    let (status, text) = answer(&server, &format!("/users/x/connect?addr=127.0.0.1:{open}"));
    assert_eq!((status, text.as_str()), (200, "connected: pong: ping\n"));
    let (status, text) = answer(&server, &format!("/users/x/connect?addr=127.0.0.1:{other}"));
    assert_eq!(status, 502, "{text}");
    assert!(text.contains("ermission denied"), "{text}");

    // Without the entry, every connection is refused.
    let dir = tempfile::tempdir().unwrap();
    let plain = app(dir.path(), "");
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["up", plain.to_str().unwrap()]);
    let (status, text) = answer(&server, &format!("/users/x/connect?addr=127.0.0.1:{open}"));
    assert_eq!(status, 502, "{text}");
}

/// A manifest of one component (the visits example, which reads files and keeps a store)
/// with `extra` in its entry, in `dir`.
fn visits_app(dir: &Path, extra: &str) -> std::path::PathBuf {
    let manifest = format!(
        r#"
spin_manifest_version = 2
[application]
name = "files"
[[trigger.http]]
route = "/..."
component = "visits"
[component.visits]
source = "visits.wasm"
key_value_stores = ["default"]
{extra}
"#
    );
    std::fs::copy(built("visits-component-rust.wasm"), dir.join("visits.wasm")).unwrap();
    let path = dir.join("spin.toml");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// `files`: patterns keep their paths under `/`, `{ source, destination }` maps a directory,
/// `exclude_files` drops matches; all read-only.
#[test]
fn files_are_mounted_as_spin_mounts_them() {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in [
        ("static/index.html", "<h1>hi</h1>"),
        ("static/secret.key", "no"),
        ("assets/img/logo.txt", "logo"),
    ] {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let manifest = visits_app(
        dir.path(),
        r#"files = ["static/**/*", { source = "assets", destination = "/media" }]
exclude_files = ["**/*.key"]"#,
    );
    let data = tempfile::tempdir().unwrap();
    let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);
    let read = |path: &str| server.get(&format!("/?read={path}")).text().unwrap();
    assert!(read("/static/index.html").contains("file: <h1>hi</h1>\n"));
    assert!(read("/media/img/logo.txt").contains("file: logo\n"));
    assert!(read("/static/secret.key").contains("file error"));
    let wrote = server
        .client
        .post(format!("{}/?write=/static/new.txt", server.url))
        .body("x")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(wrote.contains("file error"), "{wrote}");
}

/// `source = { url, digest }`: fetched once, checked against its digest.
#[test]
fn a_source_url_is_fetched_and_its_digest_checked() {
    let module = std::fs::read(built("http-hello-rust.wasm")).unwrap();
    let digest = format!("sha256:{}", wafer_registry::Digest::of(&module).hex());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let header = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                module.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let _ = stream.write_all(&module);
        }
    });
    let url = format!("http://127.0.0.1:{port}/hello.wasm");
    let write = |digest: &str| {
        let dir = tempfile::tempdir().unwrap();
        let manifest = format!(
            "spin_manifest_version = 2\n[application]\nname = \"u\"\n[[trigger.http]]\n\
             route = \"/...\"\ncomponent = \"hello\"\n[component.hello]\n\
             source = {{ url = \"{url}\", digest = \"{digest}\" }}\n"
        );
        std::fs::write(dir.path().join("spin.toml"), manifest).unwrap();
        dir
    };
    let good = write(&digest);
    let data = tempfile::tempdir().unwrap();
    let manifest = good.path().join("spin.toml");
    let server = Server::start_with(data.path(), &["up", manifest.to_str().unwrap()]);
    assert_eq!(
        server.get("/").text().unwrap(),
        "Hello from a Rust component!\n"
    );
    assert!(good.path().join(".wafer/sources").is_dir());

    let bad = write(&format!("sha256:{}", "0".repeat(64)));
    let out = std::process::Command::new(common::WAFER)
        .args(["up", bad.path().join("spin.toml").to_str().unwrap()])
        .args([
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("has the digest {digest}")),
        "{stderr}"
    );
}

/// `wafer build` runs each component's `build.command` in its `workdir`.
#[test]
fn wafer_build_runs_the_components_build_commands() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let manifest = visits_app(
        dir.path(),
        "[component.visits.build]\ncommand = [\"echo one > built.txt\", \"echo two >> built.txt\"]\nworkdir = \"sub\"",
    );
    let out = std::process::Command::new(common::WAFER)
        .args(["build", manifest.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let built = std::fs::read_to_string(dir.path().join("sub/built.txt")).unwrap();
    assert_eq!(built, "one\ntwo\n");
}
