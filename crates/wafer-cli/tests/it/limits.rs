//! Resource limits and faults: each misbehaving guest gets the documented status,
//! the fault is logged, and the server keeps serving other functions.

use crate::common;

use std::thread;

use common::{built, guest, Server};
use reqwest::Method;

/// Deploys the WAT hello guest used to check that the server still serves.
fn deploy_hello(server: &Server) {
    server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
}

fn assert_hello(server: &Server) {
    let response = server.get("/hello-wat/");
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("Hello from WAT!"));
}

/// The last `tail` log lines of `name`, joined by newlines, once `ready` accepts them or
/// after about a second (they may be written just after the response).
fn wait_for_logs(server: &Server, name: &str, tail: usize, ready: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    for _ in 0..50 {
        text = logs_tail(server, name, tail);
        if ready(&text) {
            break;
        }
        thread::sleep(std::time::Duration::from_millis(20));
    }
    text
}

/// Polls the last 50 log lines until one of `needles` shows (case-insensitively).
fn assert_logged(server: &Server, name: &str, needles: &[&str]) {
    let found = |text: &str| {
        let text = text.to_lowercase();
        needles.iter().any(|needle| text.contains(needle))
    };
    let text = wait_for_logs(server, name, 50, found);
    assert!(
        found(&text),
        "logs of {name} mention none of {needles:?}:\n{text}"
    );
}

#[test]
fn trap_is_500_and_server_keeps_serving() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy("trap", &guest("trap.wat"), &[]);
    let response = server.get("/trap/");
    assert_eq!(response.status(), 500);
    assert_hello(&server);
    assert_logged(&server, "trap", &["trap"]);
}

#[test]
fn time_limit_is_504() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy("spin", &guest("spin.wat"), &[("timeout", "200ms")]);
    let response = server.get("/spin/");
    assert_eq!(response.status(), 504);
    assert_hello(&server);
    assert_logged(&server, "spin", &["time limit", "timed out", "timeout"]);
}

#[test]
fn memory_limit_is_500_and_says_so() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy("memhog", &guest("memhog.wat"), &[("memory", "1MiB")]);
    let response = server.get("/memhog/");
    assert_eq!(response.status(), 500);
    let body = response.text().unwrap();
    assert!(body.to_lowercase().contains("memory limit"), "body: {body}");
    assert_hello(&server);
    assert_logged(&server, "memhog", &["memory limit"]);
}

#[test]
fn stdout_limit_is_502() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "flood",
        &guest("flood.wat"),
        &[("stdout", "64KiB"), ("timeout", "10s")],
    );
    let response = server.get("/flood/");
    assert_eq!(response.status(), 502);
    assert_hello(&server);
    assert_logged(&server, "flood", &["stdout", "output limit"]);
}

#[test]
fn request_body_limit_is_413() {
    let server = Server::start();
    server.deploy(
        "hello-wat",
        &built("hello-wat.wat"),
        &[("request_body", "16")],
    );
    let response = server
        .client
        .post(format!("{}/hello-wat/", server.url))
        .body(vec![b'a'; 1000])
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    // A body within the limit is fine.
    let response = server
        .client
        .post(format!("{}/hello-wat/", server.url))
        .body(vec![b'a'; 10])
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn concurrency_limit_queues_then_503_with_retry_after() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "spin",
        &guest("spin.wat"),
        &[("max_concurrency", "1"), ("timeout", "3s")],
    );
    let url = format!("{}/spin/", server.url);
    let handles: Vec<_> = (0..3)
        .map(|i| {
            let client = server.client.clone();
            let url = url.clone();
            thread::spawn(move || {
                // Stagger slightly so the first request gets the slot.
                thread::sleep(std::time::Duration::from_millis(100 * i));
                let response = client.get(url).send().unwrap();
                let retry_after = response.headers().get("retry-after").is_some();
                (response.status().as_u16(), retry_after)
            })
        })
        .collect();
    // While spin's slot is taken, other functions still answer.
    thread::sleep(std::time::Duration::from_millis(300));
    assert_hello(&server);
    let results: Vec<(u16, bool)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        results
            .iter()
            .any(|&(status, retry)| status == 503 && retry),
        "no 503 with Retry-After: {results:?}"
    );
    assert!(
        results.iter().any(|&(status, _)| status == 504),
        "the running one times out: {results:?}"
    );
    assert_hello(&server);
}

#[test]
fn log_limit_cuts_stderr_and_log_calls_and_the_call_carries_on() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy("logflood", &guest("logflood.wat"), &[("stderr", "1KiB")]);
    let response = server.get("/logflood/");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "done\n");
    // 1,000 lines of 50 bytes each way; 1 KiB keeps 20 whole lines and part of the 21st.
    let text = wait_for_logs(&server, "logflood", 500, |text| {
        text.matches("[log truncated at").count() == 2
    });
    let count = |prefix: &str| text.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("host line"), 21, "{text}");
    assert_eq!(count("stderr line"), 21, "{text}");
    assert_eq!(text.matches("[log truncated at").count(), 2, "{text}");
    assert_hello(&server);
}

/// The last `tail` log lines of `name`, joined by newlines.
fn logs_tail(server: &Server, name: &str, tail: usize) -> String {
    let response = server
        .admin(Method::GET, &format!("functions/{name}/logs?tail={tail}"))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let lines: serde_json::Value = response.json().unwrap();
    lines
        .as_array()
        .expect("logs are a JSON array")
        .iter()
        .map(|line| line["text"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}
