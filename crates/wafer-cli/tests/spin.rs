//! Spin applications (docs/spin.md): `wafer up spin.toml` serves each component as a
//! function, with Spin's routes, request headers, variables and grants.

#![allow(clippy::unwrap_used)]

mod common;

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
