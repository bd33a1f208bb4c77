//! WASI 0.3 HTTP components (`wasi:http/service`, component-model async), as Spin 4 and
//! `wasmtime serve -Sp3` run them: detected at deploy, served on their routes with streaming
//! bodies, outbound calls through the allow-list, reuse, and asynchronous invocations.

use crate::common;

use std::time::Duration;

use common::{built, Server};
use serde_json::Value;

const HELLO: &str = "Hello from a WASI 0.3 component!\n";

#[test]
fn a_p3_component_answers_and_is_listed_as_http() {
    let server = Server::start();
    server.deploy_cli("p3", &built("http-p3-rust.wasm"), &[]);
    let response = server.get("/p3/anything?x=1");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert!(response.headers().contains_key("x-wafer-request-id"));
    assert_eq!(response.text().unwrap(), HELLO);
    let ls = String::from_utf8_lossy(&server.cli(&["ls"]).stdout).into_owned();
    assert!(
        ls.lines()
            .any(|l| l.starts_with("p3 ") && l.contains(" http ")),
        "{ls}"
    );
}

#[test]
fn a_request_body_streams_back_whole() {
    let server = Server::start();
    server.deploy_cli("p3", &built("http-p3-rust.wasm"), &[]);
    // Larger than any buffer on the way: it streams through the guest's stream.
    let body: Vec<u8> = (0..3 << 20).map(|i: u32| (i * 7 % 251) as u8).collect();
    let response = server
        .client
        .post(format!("{}/p3/echo", server.url))
        .header("content-type", "application/x-test")
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-test");
    assert_eq!(response.bytes().unwrap().as_ref(), body.as_slice());
}

#[test]
fn outbound_calls_go_through_the_allow_list() {
    let server = Server::start();
    let module = built("http-p3-rust.wasm");
    server.deploy_cli("closed", &module, &[]);
    let host = server.url.trim_start_matches("http://").to_owned();
    server.deploy_cli("open", &module, &["--http", &host]);
    server.deploy_cli("target", &built("hello-wat.wat"), &[]);
    let fetch = |name: &str| server.get(&format!("/{name}/fetch?url=http://{host}/target"));
    let denied = fetch("closed");
    assert_eq!(denied.status(), 500);
    let text = denied.text().unwrap();
    assert!(text.contains("HttpRequestDenied"), "{text}");
    let allowed = fetch("open");
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.text().unwrap(), "Hello from WAT!\n");
}

#[test]
fn a_reused_p3_instance_serves_request_after_request() {
    let server = Server::start();
    server.deploy_cli(
        "p3",
        &built("http-p3-rust.wasm"),
        &["--instance-reuse", "8"],
    );
    for n in 0..20 {
        let response = server.get("/p3/");
        assert_eq!(response.status(), 200, "request {n}");
        assert_eq!(response.text().unwrap(), HELLO, "request {n}");
        let echoed = server.post("/p3/echo", &format!("body {n}"));
        assert_eq!(echoed, format!("body {n}"));
    }
}

#[test]
fn a_p3_component_runs_queued_calls() {
    let server = Server::start();
    server.deploy_cli("p3", &built("http-p3-rust.wasm"), &[]);
    let accepted = server
        .client
        .post(format!("{}/_wafer/async/p3/echo", server.url))
        .body("queued for later")
        .send()
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = server.finished(&id);
    assert_eq!(record["state"], "done", "{record}");
    assert_eq!(record["body"], "queued for later", "{record}");
}

/// Sends `count` `GET path` requests at once; their answers, in order.
fn at_once(server: &Server, path: &str, count: usize) -> Vec<(u16, String)> {
    std::thread::scope(|scope| {
        let requests: Vec<_> = (0..count)
            .map(|_| {
                scope.spawn(|| {
                    let response = server.get(path);
                    (response.status().as_u16(), response.text().unwrap())
                })
            })
            .collect();
        requests.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

/// The instance an answer of `/meet` names.
fn instance(answer: &str) -> &str {
    answer.trim().rsplit(' ').next().unwrap()
}

/// A server with `p3`, whose instances serve 100 requests each, `at_once` at a time.
fn shared_p3(at_once: u32) -> Server {
    let server = Server::start();
    let at_once = at_once.to_string();
    let flags = [
        "--instance-reuse",
        "100",
        "--max-concurrent-per-instance",
        &at_once,
    ];
    server.deploy_cli("p3", &built("http-p3-rust.wasm"), &flags);
    server
}

#[test]
fn with_concurrent_reuse_one_instance_serves_slow_requests_side_by_side() {
    let server = shared_p3(4);
    // Each request waits until 3 requests are in its instance at once: they can only meet
    // if one instance runs them side by side.
    let answers = at_once(&server, "/p3/meet?n=3&wait=20000", 3);
    for (status, text) in &answers {
        assert_eq!(*status, 200, "{text}");
        assert!(text.starts_with("together in instance "), "{answers:?}");
    }
    assert!(
        answers
            .iter()
            .all(|(_, t)| instance(t) == instance(&answers[0].1)),
        "{answers:?}"
    );
    // The instance stays for the next requests (it has served 3 of its 100).
    let next = server.get("/p3/meet?n=1").text().unwrap();
    assert_eq!(instance(&next), instance(&answers[0].1), "{next}");
}

#[test]
fn requests_beyond_an_instances_share_go_to_another_instance() {
    let server = shared_p3(2);
    std::thread::scope(|scope| {
        // Two requests fill an instance (two per instance): each waits 3 s for a third,
        // which cannot join them there.
        let filling =
            [0, 1].map(|_| scope.spawn(|| server.get("/p3/meet?n=3&wait=3000").text().unwrap()));
        std::thread::sleep(Duration::from_millis(500));
        // Two more while it is full: they meet in another one.
        let next = at_once(&server, "/p3/meet?n=2&wait=20000", 2);
        let filling = filling.map(|request| request.join().unwrap());
        assert!(
            filling.iter().all(|t| t.starts_with("alone"))
                && instance(&filling[0]) == instance(&filling[1]),
            "{filling:?}"
        );
        assert!(
            next.iter()
                .all(|(s, t)| *s == 200 && t.starts_with("together")),
            "{next:?}"
        );
        assert_eq!(instance(&next[0].1), instance(&next[1].1), "{next:?}");
        assert_ne!(
            instance(&next[0].1),
            instance(&filling[0]),
            "{next:?} / {filling:?}"
        );
    });
}

#[test]
fn fresh_instances_never_share_and_a_timed_out_request_retires_its_instance() {
    let server = Server::start();
    server.deploy_cli("fresh", &built("http-p3-rust.wasm"), &[]);
    // Without reuse each request has an instance of its own: they never meet.
    let answers = at_once(&server, "/fresh/meet?n=2&wait=300", 2);
    assert!(
        answers.iter().all(|(_, t)| t.starts_with("alone")),
        "{answers:?}"
    );

    server.deploy_cli(
        "shared",
        &built("http-p3-rust.wasm"),
        &["--instance-reuse", "100", "--timeout", "1s"],
    );
    let first = server.get("/shared/meet?n=1").text().unwrap();
    // Past its deadline: a timeout, and the instance is not used again.
    let late = server.get("/shared/meet?n=2&wait=5000");
    assert_eq!(late.status(), 504, "{:?}", late.text());
    let after = server.get("/shared/meet?n=1").text().unwrap();
    assert_ne!(instance(&after), instance(&first), "{first} / {after}");
}
