//! Capabilities, granted and denied, through the SDK examples (`visits-rust`, `visits-go`,
//! `visits-c`) on a real server: config and secrets, key-value (durable across restarts,
//! private per function), outbound HTTP (allow-list, addresses, redirects), directories (no
//! escape), and pub/sub (fan-out, a full queue).

use crate::common;

use std::time::{Duration, Instant};

use common::{built, guest, Endpoint, Server};
use reqwest::Method;

fn get(server: &Server, path: &str) -> String {
    let response = server.get(path);
    assert_eq!(response.status(), 200, "{path}");
    response.text().unwrap()
}

#[test]
fn sdk_examples_reach_granted_capabilities_and_nothing_else() {
    let server = Server::start();
    let endpoint = Endpoint::start();
    let allow = endpoint.url("");
    for example in ["visits-rust", "visits-go", "visits-c"] {
        let module = built(&format!("{example}.wasm"));
        #[rustfmt::skip]
        server.deploy_cli(example, &module, &[
            "--kv", "--config", "greeting=hey", "--secret", "token=s3cret-value",
            "--http", &allow, "--publish", "demo.>",
        ]);
        assert_eq!(get(&server, &format!("/{example}")), "hey, visit 1\n");
        assert_eq!(get(&server, &format!("/{example}")), "hey, visit 2\n");
        let fetched = get(
            &server,
            &format!("/{example}?fetch={}", endpoint.url("/ping")),
        );
        assert_eq!(fetched, "hey, visit 3\nfetch: 200 pong\n", "{example}");
        let text = get(&server, &format!("/{example}?secret=token"));
        assert!(text.ends_with("secret length: 12\n"), "{example}: {text}");
        let text = server.post(&format!("/{example}?publish=demo.{example}"), "hi");
        assert!(text.ends_with("published\n"), "{example}: {text}");
        let text = server.post(&format!("/{example}?publish=other"), "hi");
        assert!(
            text.contains("publish error: denied: this function may not publish to `other`"),
            "{example}: {text}"
        );

        // The same module with no grants reaches nothing, and says why.
        let bare = format!("{example}-bare");
        server.deploy_cli(&bare, &module, &[]);
        let text = server.post(
            &format!(
                "/{bare}?fetch={}&publish=demo.x&secret=token",
                endpoint.url("/")
            ),
            "hi",
        );
        for line in [
            "hello, visit 0",
            "kv error: denied: this function has no key-value store",
            "fetch error: denied: this function may not make HTTP requests",
            "publish error: denied: this function may not publish to `demo.x`",
            "secret error: not_found: no config value or secret named `token`",
        ] {
            assert!(text.contains(line), "{bare}: missing `{line}` in:\n{text}");
        }
    }
    // The endpoint got exactly the three allowed requests.
    let seen = endpoint.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|r| r.starts_with("GET /ping ")), "{seen:?}");

    // Key-value namespaces are per function.
    let text = get(&server, "/visits-rust");
    assert!(text.starts_with("hey, visit 7\n"), "{text}");

    // Secrets are never shown: not by ls, the admin API, or the logs.
    let ls = server.cli(&["ls"]);
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(ls.contains("secrets=token=********"), "{ls}");
    assert!(ls.contains("kv") && ls.contains(&allow), "{ls}");
    for path in [
        "functions",
        "functions/visits-go",
        "functions/visits-go/logs",
    ] {
        let text = server
            .admin(Method::GET, path)
            .send()
            .unwrap()
            .text()
            .unwrap();
        assert!(!text.contains("s3cret"), "{path}: {text}");
    }
    let logs = String::from_utf8_lossy(&server.cli(&["logs", "visits-c"]).stdout).into_owned();
    assert!(
        logs.contains("visit 1") && logs.contains("visit 3"),
        "{logs}"
    );
}

#[test]
fn outbound_http_is_checked_on_every_hop_and_address() {
    let server = Server::start();
    let allowed = Endpoint::start();
    let other = Endpoint::start();
    let module = built("visits-rust.wasm");
    #[rustfmt::skip]
    server.deploy_cli("fetcher", &module, &[
        "--http", &allowed.url(""), "--http", &format!("http://localhost:{}", other.port),
        "--http", "*.example.com", "--http-timeout", "1s", "--http-response", "1KiB",
    ]);
    let fetch = |url: &str| {
        let text = get(&server, &format!("/fetcher?fetch={url}"));
        text.lines().nth(2).unwrap_or_default().to_owned()
    };
    assert_eq!(fetch(&allowed.url("/a")), "fetch: 200 pong");
    // Not on the list: another port, the metadata address, a private address.
    assert_eq!(
        fetch(&other.url("/b")),
        format!(
            "fetch error: denied: http://127.0.0.1:{} is not on this function's allow-list",
            other.port
        )
    );
    for url in [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.1/",
    ] {
        let line = fetch(url);
        assert!(line.starts_with("fetch error: denied: "), "{url}: {line}");
    }
    // A name the list gives explicitly (`localhost`) may resolve to loopback.
    assert_eq!(
        fetch(&format!("http://localhost:{}/c", other.port)),
        "fetch: 200 pong"
    );
    // An allowed host redirecting to one that is not: refused at the hop.
    let hop = format!(
        "{}?to=http://127.0.0.1:{}/d",
        allowed.url("/redirect"),
        other.port
    );
    let line = fetch(&hop);
    assert!(
        line.starts_with("fetch error: denied: http://127.0.0.1:")
            && line.ends_with("is not on this function's allow-list"),
        "{line}"
    );
    let hop = format!("{}?to=http://169.254.169.254/", allowed.url("/redirect"));
    assert!(fetch(&hop).starts_with("fetch error: denied: "));
    // Redirects within the list are followed.
    let hop = format!("{}?to={}", allowed.url("/redirect"), allowed.url("/e"));
    assert_eq!(fetch(&hop), "fetch: 200 pong");
    // Limits: the response size cap and the timeout.
    let line = fetch(&allowed.url("/big"));
    assert!(
        line.starts_with(
            "fetch error: too_large: the response body is over the http_response limit"
        ),
        "{line}"
    );
    let line = fetch(&allowed.url("/slow"));
    assert_eq!(
        line,
        "fetch error: failed: the request took longer than 1.0 s"
    );
    let other_seen: Vec<String> = other.seen();
    assert_eq!(
        other_seen.len(),
        1,
        "only the localhost request: {other_seen:?}"
    );
    assert!(other_seen[0].starts_with("GET /c "), "{other_seen:?}");
    let allowed_seen = allowed.seen();
    assert!(
        allowed_seen.iter().any(|r| r.starts_with("GET /e ")),
        "{allowed_seen:?}"
    );
}

#[test]
fn directories_are_granted_read_write_or_read_only_without_escape() {
    let server = Server::start();
    let root = tempfile::tempdir().unwrap();
    let (data, fixed) = (root.path().join("data"), root.path().join("fixed"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&fixed).unwrap();
    std::fs::write(fixed.join("motd.txt"), "good morning").unwrap();
    std::fs::write(root.path().join("secret.txt"), "outside").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), data.join("link")).unwrap();
    let module = built("visits-rust.wasm");
    let rw = format!("{}::/data", data.display());
    let ro = format!("{}::/fixed:ro", fixed.display());
    server.deploy_cli("files", &module, &["--dir", &rw, "--dir", &ro]);
    let file_line = |query: &str, body: &str| {
        let text = server.post(&format!("/files?{query}"), body);
        text.lines().last().unwrap_or_default().to_owned()
    };
    assert_eq!(file_line("read=/fixed/motd.txt", ""), "file: good morning");
    assert_eq!(file_line("write=/data/new.txt", "fresh"), "file: written");
    assert_eq!(
        std::fs::read_to_string(data.join("new.txt")).unwrap(),
        "fresh"
    );
    assert_eq!(file_line("read=/data/new.txt", ""), "file: fresh");
    // Read-only is read-only.
    assert!(file_line("write=/fixed/motd.txt", "x").starts_with("file error: "));
    assert_eq!(
        std::fs::read_to_string(fixed.join("motd.txt")).unwrap(),
        "good morning"
    );
    // No way out: `..`, absolute paths elsewhere, symlinks pointing outside.
    for path in [
        "/data/../secret.txt",
        "/data/../../etc/passwd",
        "/etc/passwd",
        "/data/link",
    ] {
        let line = file_line(&format!("read={path}"), "");
        assert!(line.starts_with("file error: "), "{path}: {line}");
    }
    assert!(file_line("write=/data/../escaped.txt", "x").starts_with("file error: "));
    assert!(!root.path().join("escaped.txt").exists());
    // A function without the grant sees no files at all.
    server.deploy_cli("nofiles", &module, &[]);
    let text = server.post("/nofiles?read=/fixed/motd.txt", "");
    assert!(
        text.lines().last().unwrap().starts_with("file error: "),
        "{text}"
    );
    // A grant of a directory that does not exist is refused at deploy.
    let missing = format!("{}::/x", root.path().join("missing").display());
    let out = server.cli(&["deploy", "bad", module.to_str().unwrap(), "--dir", &missing]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a directory"));
}

#[test]
fn key_value_survives_restarts_and_goes_with_the_function() {
    let data = tempfile::tempdir().unwrap();
    let module = built("visits-go.wasm");
    {
        let server = Server::start_in(data.path());
        server.deploy_cli("counter", &module, &["--kv"]);
        assert_eq!(get(&server, "/counter"), "hello, visit 1\n");
        assert_eq!(get(&server, "/counter"), "hello, visit 2\n");
    }
    let server = Server::start_in(data.path());
    assert_eq!(get(&server, "/counter"), "hello, visit 3\n");
    // Removed with its function: a new function of the same name starts afresh.
    assert!(server.cli(&["rm", "counter"]).status.success());
    server.deploy_cli("counter", &module, &["--kv"]);
    assert_eq!(get(&server, "/counter"), "hello, visit 1\n");
}

/// Polls the pub/sub counters until `done` holds (deliveries are asynchronous).
fn wait_for_stats(server: &Server, done: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let stats = server.pubsub();
        if done(&stats) {
            return stats;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "pub/sub counters never got there: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn subscriber<'a>(stats: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    stats["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == name)
        .unwrap_or(&serde_json::Value::Null)
}

#[test]
fn published_messages_fan_out_and_a_full_queue_drops_and_counts() {
    let server = Server::start();
    let visits = built("visits-rust.wasm");
    server.deploy_cli("publisher", &visits, &["--publish", "demo.>"]);
    // Two subscribers, in two languages: each message counts a visit in their store.
    #[rustfmt::skip]
    server.deploy_cli("sub-c", &built("visits-c.wasm"), &[
        "--kv", "--subscribe", "demo.a", "--subscribe", "demo.b",
    ]);
    server.deploy_cli(
        "sub-go",
        &built("visits-go.wasm"),
        &["--kv", "--subscribe", "demo.*.>"],
    );
    for topic in ["demo.a", "demo.b", "demo.b.deep"] {
        let text = server.post(&format!("/publisher?publish={topic}"), "event");
        assert!(text.ends_with("published\n"), "{text}");
    }
    let stats = wait_for_stats(&server, |s| {
        subscriber(s, "sub-c")["delivered"] == 2 && subscriber(s, "sub-go")["delivered"] == 1
    });
    assert_eq!(stats["published"], 3);
    assert_eq!(get(&server, "/sub-c"), "hello, visit 3\n");
    assert_eq!(get(&server, "/sub-go"), "hello, visit 2\n");

    // A subscriber that never finishes (each delivery runs into its timeout) fills its
    // queue; the rest is dropped and counted, and other subscribers are not held up.
    let slow = [
        "--subscribe",
        "demo.flood",
        "--timeout",
        "60s",
        "--max-concurrency",
        "1",
    ];
    server.deploy_cli("stuck", &guest("spin.wat"), &slow);
    let published = 1100;
    for _ in 0..published {
        let text = server.post("/publisher?publish=demo.flood", "x");
        assert!(text.ends_with("published\n"), "{text}");
    }
    server.post("/publisher?publish=demo.a", "after the flood");
    let stats = wait_for_stats(&server, |s| subscriber(s, "sub-c")["delivered"] == 3);
    let stuck = subscriber(&stats, "stuck");
    let queued = stuck["queued"].as_u64().unwrap();
    let dropped = stuck["dropped"].as_u64().unwrap();
    // One message is being delivered, up to 1024 wait, the rest was dropped.
    assert!((1023..=1024).contains(&queued), "{stats}");
    assert_eq!(queued + dropped + 1, published, "{stats}");
    assert!(server.cli(&["rm", "stuck"]).status.success());
}

#[test]
fn telemetry_pipeline_posts_batches_to_the_allowed_endpoint_only() {
    let allowed = Endpoint::start();
    let other = Endpoint::start();
    // The example's own manifest, pointed at this test's receiver.
    let example = common::root().join("examples/telemetry-pipeline/wafer.toml");
    let manifest = std::fs::read_to_string(example)
        .unwrap()
        .replace(
            "../../target/wasm/",
            &format!("{}/", common::root().join("target/wasm").display()),
        )
        .replace("http://127.0.0.1:9900", &allowed.url(""));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wafer.toml");
    std::fs::write(&path, manifest).unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["up", path.to_str().unwrap()]);

    let events = [
        r#"{"kind":"cpu","value":0.93}"#,
        r#"{"kind":"mem","value":512}"#,
    ];
    for event in [events[0], events[1], events[0]] {
        let response = server
            .client
            .post(format!("{}/telemetry", server.url))
            .body(event)
            .send()
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    let start = Instant::now();
    while allowed.seen().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no batch arrived"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = allowed.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].starts_with("POST /ingest HTTP/1.1 ["), "{seen:?}");
    for part in [
        r#""topic":"telemetry.cpu""#,
        r#""topic":"telemetry.mem""#,
        "0.93",
        "512",
    ] {
        assert!(seen[0].contains(part), "{part} not in {seen:?}");
    }
    let counts: serde_json::Value = server.get("/aggregator").json().unwrap();
    assert_eq!(counts["counts"]["telemetry.cpu"], 2, "{counts}");
    assert_eq!(counts["pending"], 0, "{counts}");
    // The component subscriber beside the gateway got the same batch.
    wait_for_stats(&server, |s| {
        subscriber(s, "pipeline-monitor")["delivered"] == 1
    });
    let monitor: serde_json::Value = server.get("/pipeline-monitor").json().unwrap();
    assert_eq!(monitor, serde_json::json!({"batches": 1, "events": 3}));
    let logs = server.cli(&["logs", "pipeline-monitor"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("batch of 3 events"));
    let text = server.get("/bad-kind").status();
    assert_eq!(text, 404);

    // Pointed at an endpoint not on its list, the gateway gets nowhere: the delivery fails,
    // the other endpoint receives nothing, and the log says why.
    let endpoint = format!("endpoint={}", other.url("/ingest"));
    #[rustfmt::skip]
    server.deploy_cli("pipeline-gateway", &common::built("pipeline-gateway.wasm"), &[
        "--subscribe", "batches.ready", "--http", &allowed.url(""), "--config", &endpoint,
    ]);
    for _ in 0..3 {
        let response = server
            .client
            .post(format!("{}/telemetry", server.url))
            .body(events[1])
            .send()
            .unwrap();
        assert_eq!(response.status(), 202);
    }
    wait_for_stats(&server, |s| {
        subscriber(s, "pipeline-gateway")["failed"] == 1
    });
    assert!(other.seen().is_empty(), "{:?}", other.seen());
    assert_eq!(allowed.seen().len(), 1);
    let logs = server.cli(&["logs", "pipeline-gateway"]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("is not on this function's allow-list"),
        "{logs}"
    );
}

#[test]
fn a_wapc_subscriber_gets_on_message_with_the_topic() {
    let server = Server::start();
    server.deploy_cli(
        "publisher",
        &built("visits-rust.wasm"),
        &["--publish", "news.>"],
    );
    server.deploy_cli(
        "reader",
        &built("wapc-rust.wasm"),
        &["--subscribe", "news.*"],
    );
    let text = server.post("/publisher?publish=news.today", "all quiet");
    assert!(text.ends_with("published\n"), "{text}");
    wait_for_stats(&server, |s| subscriber(s, "reader")["delivered"] == 1);
    let logs = String::from_utf8_lossy(&server.cli(&["logs", "reader"]).stdout).into_owned();
    assert!(
        logs.contains(r#"message {"message":"all quiet","topic":"news.today"}"#),
        "{logs}"
    );
}

#[test]
fn a_function_subscribed_to_its_own_topic_stops_at_the_hop_limit() {
    let server = Server::start();
    #[rustfmt::skip]
    server.deploy_cli("echoer", &guest("republish.wat"), &[
        "--publish", "loop", "--subscribe", "loop",
    ]);
    assert_eq!(get(&server, "/echoer/"), "published\n");
    // The request's message, then one per delivery, until the eighth delivery's publish is
    // refused.
    let hops = wafer_host::pubsub::MAX_HOPS as u64;
    let stats = wait_for_stats(&server, |s| subscriber(s, "echoer")["delivered"] == hops);
    assert_eq!(stats["published"], hops, "{stats}");
    std::thread::sleep(Duration::from_millis(500));
    let stats = server.pubsub();
    assert_eq!(stats["published"], hops, "the loop went on: {stats}");
    assert_eq!(subscriber(&stats, "echoer")["delivered"], hops, "{stats}");
}
