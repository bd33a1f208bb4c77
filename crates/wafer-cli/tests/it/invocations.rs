//! Asynchronous invocations (docs/async.md): `POST /_wafer/async/NAME/...` answers `202`
//! with an id, the call runs later, and its result is kept (and posted to a callback).

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{guest, Endpoint, Server};
use reqwest::Method;
use serde_json::Value;

/// Queues `body` for `path` below `/_wafer/async/`; returns the id.
fn enqueue(server: &Server, path: &str, body: &str) -> String {
    let response = server
        .client
        .post(format!("{}/_wafer/async/{path}", server.url))
        .body(body.to_owned())
        .send()
        .unwrap();
    assert_eq!(response.status(), 202, "{path}");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let answer: Value = response.json().unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/_wafer/invocations/{id}"));
    id
}

#[test]
fn an_async_call_answers_at_once_and_keeps_its_result() {
    let server = Server::start();
    server.deploy("echo", &guest("echo.wat"), &[]);
    // The body is the CGI output the echo guest writes back.
    let id = enqueue(
        &server,
        "echo/sub?x=1",
        "Content-Type: text/plain\n\nlater\n",
    );
    let done = server.finished(&id);
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["function"], "echo");
    assert_eq!(done["status"], 200);
    assert_eq!(done["body"], "later\n");
    assert_eq!(done["headers"]["content-type"], "text/plain");
    assert_eq!(done["path"], "/sub?x=1");
    assert_eq!(done["attempts"], 1);

    // A guest that traps: the invocation failed, with the reason.
    server.deploy("trap", &guest("trap.wat"), &[]);
    let failed = server.finished(&enqueue(&server, "trap", ""));
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["status"], 500);
    assert!(
        failed["error"].as_str().unwrap().contains("unreachable"),
        "{failed}"
    );

    // Listed newest first, without bodies.
    let listed: Value = server
        .admin(Method::GET, "invocations")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [failed["id"].as_str().unwrap(), id.as_str()]);

    // Clear refusals.
    let post = |path: &str| {
        let response = server
            .client
            .post(format!("{}/_wafer/async/{path}", server.url))
            .send()
            .unwrap();
        (response.status().as_u16(), response.text().unwrap())
    };
    let (status, text) = post("nobody/x");
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("nobody"), "{text}");
    let (status, text) = post("Bad*Name");
    assert_eq!(status, 400, "{text}");
    let missing = server
        .admin(Method::GET, "invocations/0000")
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
    let unauthorized = server
        .client
        .get(format!("{}/_wafer/invocations/{id}", server.admin_url))
        .send()
        .unwrap();
    assert_eq!(
        unauthorized.status(),
        401,
        "reading a result needs the admin token"
    );
}

#[test]
fn the_result_goes_to_an_allowed_callback_only() {
    let endpoint = Endpoint::start();
    let dir = tempfile::tempdir().unwrap();
    let allowed = format!("127.0.0.1:{}", endpoint.port);
    let mut server = Server::start_with(dir.path(), &["serve", "--callback-host", &allowed]);
    server.keep(dir);
    server.deploy("echo", &guest("echo.wat"), &[]);
    let with_callback = |url: &str| {
        server
            .client
            .post(format!("{}/_wafer/async/echo", server.url))
            .header("X-Callback-Url", url)
            .body("Content-Type: text/plain\n\ncalled back")
            .send()
            .unwrap()
    };
    let refused = with_callback("http://example.com/hook");
    assert_eq!(refused.status(), 403);
    let text = refused.text().unwrap();
    assert!(text.contains("--callback-host"), "{text}");
    let accepted = with_callback(&endpoint.url("/hook"));
    assert_eq!(accepted.status(), 202);
    let id: Value = accepted.json().unwrap();
    server.finished(id["id"].as_str().unwrap());
    let started = Instant::now();
    while endpoint.seen().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "no callback");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(endpoint.seen(), ["POST /hook HTTP/1.1 called back"]);
}

#[test]
fn a_burst_of_async_calls_leaves_room_for_synchronous_ones() {
    let server = Server::start();
    // Each call sleeps until its 1 s timeout; two may run at once, one of them async.
    server.deploy(
        "nap",
        &guest("sleep.wat"),
        &[("abi", "cgi"), ("timeout", "1s"), ("max_concurrency", "2")],
    );
    let ids: Vec<String> = (0..6).map(|_| enqueue(&server, "nap", "")).collect();
    std::thread::sleep(Duration::from_millis(200));
    // The synchronous call gets the free slot at once, whatever waits in the queue.
    let response = server.get("/nap/");
    assert_eq!(
        response.status(),
        504,
        "the synchronous call ran into its own timeout"
    );
    let running = ids
        .iter()
        .filter(|id| server.invocation(id)["state"] == "running")
        .count();
    assert_eq!(running, 1, "async calls took more than half the slots");
    for id in &ids {
        assert_eq!(server.finished(id)["status"], 504);
    }
}

#[test]
fn a_callback_not_posted_yet_survives_kill_9() {
    // The receiver is down when the call finishes; the server dies; the receiver comes up.
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let allowed = format!("127.0.0.1:{port}");
    let args = ["serve", "--callback-host", allowed.as_str()];
    let mut server = Server::start_with(dir.path(), &args);
    server.deploy("echo", &guest("echo.wat"), &[]);
    let accepted = server
        .client
        .post(format!("{}/_wafer/async/echo", server.url))
        .header("X-Callback-Url", format!("http://{allowed}/hook"))
        .body("Content-Type: text/plain\n\nheld over")
        .send()
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let id: Value = accepted.json().unwrap();
    assert_eq!(server.finished(id["id"].as_str().unwrap())["state"], "done");
    server.kill();
    let endpoint = Endpoint::start_on(port);
    let server = Server::start_with(dir.path(), &args);
    let started = Instant::now();
    while endpoint.seen().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the callback was lost with the server"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(endpoint.seen(), ["POST /hook HTTP/1.1 held over"]);
    drop(server);
}

#[test]
fn a_backlog_for_one_slow_function_never_holds_up_another_functions_calls() {
    let server = Server::start();
    // Each call of `nap` sleeps for its minute; one of them runs at a time.
    server.deploy(
        "nap",
        &guest("sleep.wat"),
        &[("abi", "cgi"), ("timeout", "60s"), ("max_concurrency", "2")],
    );
    server.deploy("echo", &guest("echo.wat"), &[]);
    // More than a node holds at once (256): before the fix, every held place waited for
    // `nap`'s one slot, and nothing queued after them ran for an hour.
    let naps: Vec<String> = (0..300).map(|_| enqueue(&server, "nap", "")).collect();
    let echo = enqueue(&server, "echo", "after the backlog");
    let done = server.finished(&echo);
    assert_eq!(done["state"], "done", "{done}");
    // Passed over, `nap`'s calls are still queued (no attempt spent), none given up on.
    let states: Vec<Value> = naps.iter().map(|id| server.invocation(id)).collect();
    let queued = states.iter().filter(|r| r["state"] == "queued").count();
    assert!(queued >= 297, "{queued} of 300 still queued");
    assert!(
        states.iter().all(|r| r["attempts"].as_u64().unwrap() <= 1),
        "a passed-over call counted an attempt"
    );
}

#[test]
fn no_acknowledged_invocation_is_lost_to_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(dir.path());
    server.deploy("echo", &guest("echo.wat"), &[]);
    let mut acknowledged = Vec::new();
    let total = 300;
    let mut kill_at = vec![150, 50];
    let mut restarts = 0;
    while acknowledged.len() < total {
        let response = server
            .client
            .post(format!("{}/_wafer/async/echo", server.url))
            .body(format!(
                "Content-Type: text/plain\n\n{}",
                acknowledged.len()
            ))
            .send();
        if let Ok(response) = response {
            if response.status() == 202 {
                let id: Value = response.json().unwrap();
                acknowledged.push(id["id"].as_str().unwrap().to_owned());
            }
        }
        // Twice, mid-stream: the server dies without warning and comes back.
        if kill_at.last() == Some(&acknowledged.len()) {
            kill_at.pop();
            server.kill();
            server = Server::start_in(dir.path());
            restarts += 1;
        }
    }
    let mut attempts: HashMap<u64, usize> = HashMap::new();
    for (n, id) in acknowledged.iter().enumerate() {
        let done = server.finished(id);
        assert_eq!(done["state"], "done", "{done}");
        assert_eq!(done["body"], n.to_string(), "{done}");
        *attempts
            .entry(done["attempts"].as_u64().unwrap())
            .or_default() += 1;
    }
    let repeated: usize = attempts
        .iter()
        .filter(|(a, _)| **a > 1)
        .map(|(_, n)| n)
        .sum();
    println!(
        "{total} acknowledged invocations across {restarts} kill -9 restarts: all done; \
         {repeated} ran more than once (attempts: {attempts:?})"
    );
    assert_eq!(restarts, 2);
}

#[test]
fn the_cli_queues_calls_and_shows_them() {
    let server = Server::start();
    server.deploy("echo", &guest("echo.wat"), &[]);
    let out = server.cli(&[
        "invoke",
        "--async",
        "echo",
        "/sub",
        "--payload",
        "Content-Type: text/plain\n\nvia cli",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(id.len(), 24, "{id}");
    let done = server.finished(&id);
    assert_eq!(done["body"], "via cli");
    let out = server.cli(&["invocations"]);
    let table = String::from_utf8(out.stdout).unwrap();
    let row = table.lines().nth(1).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        columns,
        [id.as_str(), "done", "200", "1", "echo", "/sub"],
        "{table}"
    );
    let out = server.cli(&["invocations", &id]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["state"], "done");
    let out = server.cli(&["invocations", "feedbeef"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no invocation `feedbeef`"), "{stderr}");
}
