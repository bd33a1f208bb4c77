//! WASI 0.2 HTTP components (`wasi:http/proxy`): deployed and detected like any module, called
//! with streaming bodies in both directions, with traps, missing responses, env, limits and
//! outbound requests handled.

use crate::common;

use std::io::Read;

use common::{built, Endpoint, Server};

fn deploy(server: &Server, name: &str, module: &str, flags: &[&str]) {
    server.deploy_cli(name, &built(module), flags);
}

fn logs(server: &Server, name: &str) -> String {
    String::from_utf8_lossy(&server.cli(&["logs", name]).stdout).into_owned()
}

#[test]
fn a_rust_component_answers_and_is_listed_as_http() {
    let server = Server::start();
    deploy(&server, "hello", "http-hello-rust.wasm", &[]);
    let response = server.get("/hello/anything?x=1");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert!(response.headers().contains_key("x-wafer-request-id"));
    assert_eq!(response.text().unwrap(), "Hello from a Rust component!\n");
    let ls = String::from_utf8_lossy(&server.cli(&["ls"]).stdout).into_owned();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("hello ") && l.contains(" http ")),
        "{ls}"
    );
}

#[test]
fn bodies_stream_both_ways_and_headers_pass_through() {
    let server = Server::start();
    deploy(
        &server,
        "echo",
        "http-echo-rust.wasm",
        &["--request-body", "8MiB"],
    );
    // A multi-megabyte body, not all the same byte, comes back intact.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();
    let response = server
        .client
        .post(format!("{}/echo/upload?q=1", server.url))
        .header("content-type", "application/x-test")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-test");
    assert_eq!(response.headers()["x-echo-method"], "POST");
    assert_eq!(response.headers()["x-echo-path"], "/echo/upload?q=1");
    assert!(response.bytes().unwrap() == body, "the echoed body differs");

    // The response streams: the first read sees the first tick, not the whole answer the
    // guest writes over about a second.
    let mut response = server.get("/echo/slow");
    assert_eq!(response.status(), 200);
    let mut first = [0u8; 64];
    let n = response.read(&mut first).unwrap();
    assert_eq!(&first[..n], b"tick 1\n");
    let mut rest = String::new();
    response.read_to_string(&mut rest).unwrap();
    assert!(rest.ends_with("tick 5\n"), "{rest}");
}

#[test]
fn traps_missing_responses_and_limits_cost_only_their_request() {
    let server = Server::start();
    #[rustfmt::skip]
    deploy(&server, "echo", "http-echo-rust.wasm", &[
        "--env", "GREETING=hi", "--request-body", "1KiB", "--timeout", "500ms",
    ]);
    let response = server.get("/echo/trap");
    assert_eq!(response.status(), 500);
    assert!(response.text().unwrap().contains("trap"));
    let response = server.get("/echo/no-response");
    assert_eq!(response.status(), 500);
    let text = response.text().unwrap();
    assert!(text.contains("without setting a response"), "{text}");
    let log = logs(&server, "echo");
    assert!(log.contains("trap requested by /echo/trap"), "{log}");

    // Env vars reach wasi:cli/environment.
    let env = server.get("/echo/env").text().unwrap();
    assert!(env.lines().any(|l| l == "GREETING=hi"), "{env}");

    // A declared body over the limit is refused before the guest runs.
    let response = server
        .client
        .post(format!("{}/echo/big", server.url))
        .body(vec![b'x'; 4096])
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    // A request that outlives its time: the stream is cut, and the log says so.
    let mut response = server.get("/echo/slow");
    let mut text = String::new();
    let _ = response.read_to_string(&mut text);
    assert!(!text.contains("tick 5"), "{text}");
    // And the function still serves.
    let response = server
        .client
        .post(format!("{}/echo/x", server.url))
        .body("ok")
        .send()
        .unwrap();
    assert_eq!(response.text().unwrap(), "ok");
}

#[test]
fn memory_limit_costs_only_its_request() {
    let server = Server::start();
    deploy(
        &server,
        "grow",
        "http-echo-rust.wasm",
        &["--memory", "16MiB"],
    );
    let response = server.get("/grow/grow?mib=64");
    assert_eq!(response.status(), 500);
    let text = response.text().unwrap();
    assert!(text.contains("memory"), "{text}");
    assert_eq!(
        server.get("/grow/grow?mib=4").text().unwrap(),
        "grew 4 MiB\n"
    );
}

#[test]
fn instance_reuse_is_opt_in_bounded_and_skips_failed_instances() {
    let server = Server::start();
    deploy(&server, "fresh", "http-echo-rust.wasm", &[]);
    deploy(
        &server,
        "reused",
        "http-echo-rust.wasm",
        &["--instance-reuse", "3"],
    );
    let count = |function: &str| -> u32 {
        let response = server.get(&format!("/{function}/count"));
        assert_eq!(response.status(), 200, "{function}");
        response.text().unwrap().trim().parse().unwrap()
    };
    // By default every request sees a fresh instance.
    let fresh: Vec<u32> = (0..6).map(|_| count("fresh")).collect();
    assert_eq!(fresh, [1; 6]);
    // Reused instances: the counter carries over, never past three requests. (A request can
    // arrive before the previous one's instance is back in the pool and get a new one, so
    // the exact sequence is not fixed; that reuse happens at all is.)
    let reused: Vec<u32> = (0..12).map(|_| count("reused")).collect();
    assert!(reused.iter().all(|n| (1..=3).contains(n)), "{reused:?}");
    assert!(reused.iter().any(|&n| n > 1), "never reused: {reused:?}");
    // A trapped instance is dropped, not handed the next request.
    for _ in 0..3 {
        assert_eq!(server.get("/reused/trap").status(), 500);
        count("reused");
    }
    // Reuse is for HTTP components only.
    let out = server.cli(&[
        "deploy",
        "cgi",
        built("hello-wat.wat").to_str().unwrap(),
        "--instance-reuse",
        "3",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("instance_reuse = 3 is for HTTP components"),
        "{stderr}"
    );
}

#[test]
fn outgoing_requests_follow_the_allow_list() {
    let server = Server::start();
    let allowed = Endpoint::start();
    let other = Endpoint::start();
    deploy(
        &server,
        "fetcher",
        "http-echo-rust.wasm",
        &["--http", &allowed.url("")],
    );
    deploy(&server, "closed", "http-echo-rust.wasm", &[]);
    let text = server
        .get(&format!("/fetcher/fetch?url={}", allowed.url("/ping")))
        .text()
        .unwrap();
    assert_eq!(text, "fetched 200: pong");
    let not_listed = format!(
        "denied: http://127.0.0.1:{} is not on this function's allow-list",
        other.port
    );
    for (function, url, why) in [
        ("fetcher", other.url("/x"), not_listed.as_str()),
        (
            "closed",
            allowed.url("/y"),
            "denied: this function may not make HTTP requests",
        ),
    ] {
        let response = server.get(&format!("/{function}/fetch?url={url}"));
        assert_eq!(response.status(), 502);
        let text = response.text().unwrap();
        assert!(text.contains("HttpRequestDenied"), "{function}: {text}");
        let log = logs(&server, function);
        let line = format!("outgoing request to {url} {why}");
        assert!(log.contains(&line), "{function}: {log}");
    }
    // A name the list gives explicitly (`localhost`) may resolve to loopback: the request
    // goes out to the address the sender's resolver checked.
    let named = format!("http://localhost:{}", allowed.port);
    deploy(&server, "named", "http-echo-rust.wasm", &["--http", &named]);
    let text = server
        .get(&format!("/named/fetch?url={named}/named"))
        .text()
        .unwrap();
    assert_eq!(text, "fetched 200: pong");
    // Redirects are the guest's to follow: an allowed host redirecting to another one hands
    // the 302 back, and nothing reaches the other host.
    let redirect = allowed.url(&format!("/redirect?to={}", other.url("/r")));
    let text = server
        .get(&format!("/fetcher/fetch?url={redirect}"))
        .text()
        .unwrap();
    assert_eq!(text, "fetched 302: ");
    let seen = allowed.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen[1].starts_with("GET /named "), "{seen:?}");
    assert!(other.seen().is_empty());
}

/// Every file under `dir` with its modification time.
fn mtimes(dir: &std::path::Path) -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
            (path, mtime)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn python_and_javascript_components_are_compiled_once() {
    let data = tempfile::tempdir().unwrap();
    {
        let server = Server::start_in(data.path());
        deploy(&server, "py", "http-hello-py.wasm", &[]);
        deploy(&server, "js", "http-hello-js.wasm", &[]);
        assert_eq!(
            server.get("/py").text().unwrap(),
            "Hello from a Python component!\n"
        );
        assert_eq!(
            server.get("/js").text().unwrap(),
            "Hello from a JavaScript component!\n"
        );
    }
    let artifacts = data.path().join("artifacts");
    let before = mtimes(&artifacts);
    // Restarted: served at once from the stored artifacts, nothing recompiled.
    let server = Server::start_in(data.path());
    for (path, text) in [
        ("/py", "Hello from a Python component!\n"),
        ("/js", "Hello from a JavaScript component!\n"),
    ] {
        let start = std::time::Instant::now();
        let response = server.get(path);
        let first = start.elapsed();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().unwrap(), text);
        eprintln!("first request to {path} after the restart: {first:?}");
    }
    assert_eq!(mtimes(&artifacts), before, "artifacts changed: recompiled");

    // With instance reuse (a new version, the same compiled artifact): Python components are
    // reused; JavaScript ones, which keep resources open past their handler, quietly get
    // fresh instances. Either way every request is answered.
    deploy(
        &server,
        "py",
        "http-hello-py.wasm",
        &["--instance-reuse", "3"],
    );
    deploy(
        &server,
        "js",
        "http-hello-js.wasm",
        &["--instance-reuse", "3"],
    );
    for _ in 0..4 {
        let text = server.get("/py").text().unwrap();
        assert_eq!(text, "Hello from a Python component!\n");
        let text = server.get("/js").text().unwrap();
        assert_eq!(text, "Hello from a JavaScript component!\n");
    }
}
