//! Gradual rollouts (docs/operations.md#gradual-rollouts): a canary deploy, any traffic
//! split, stickiness by header or cookie, promote and rollback, on one node and in a
//! cluster.

use crate::common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{built, Nats, Server};
use reqwest::Method;
use serde_json::Value;

const V1: &str = "Hello from WAT!\n";
const V2: &str = "Hello from C!\n";

/// Runs `wafer ARGS` against `server`, asserting success; returns stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "wafer {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `wafer ARGS`, asserting failure; returns stderr.
fn refused(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(!out.status.success(), "wafer {args:?} succeeded");
    String::from_utf8(out.stderr).unwrap()
}

/// `hello` at v1 (WAT) and v2 (C) with the same route; v2 deployed as `flags` say.
fn two_versions(server: &Server, flags: &[&str]) -> String {
    let (wat, c) = (built("hello-wat.wat"), built("hello-c.wasm"));
    ok(server, &["deploy", "hello", wat.to_str().unwrap()]);
    let mut args = vec!["deploy", "hello", c.to_str().unwrap()];
    args.extend_from_slice(flags);
    ok(server, &args)
}

/// How many of `n` requests to `/hello` each version answered.
fn tally(server: &Server, n: usize, header: Option<(&str, &str)>) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for _ in 0..n {
        let mut request = server.client.get(format!("{}/hello", server.url));
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let response = request.send().unwrap();
        assert_eq!(response.status(), 200);
        *seen.entry(response.text().unwrap()).or_default() += 1;
    }
    seen
}

#[test]
fn a_canary_takes_its_share_until_promoted() {
    let server = Server::start();
    let out = two_versions(&server, &["--canary", "10"]);
    assert!(out.starts_with("deployed hello v2"), "{out}");
    assert!(out.contains("traffic: v2 10%, v1 90%"), "{out}");
    let list = ok(&server, &["ls"]);
    assert!(list.contains("traffic: v2 10%, v1 90%"), "{list}");
    // While the split stands, the stable version is the active one.
    let record: Value = server
        .admin(Method::GET, "functions/hello")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(record["active"], 1, "{record}");
    let versions = ok(&server, &["versions", "hello"]);
    let rows: Vec<Vec<&str>> = versions
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0][..3], ["v1", "*", "90%"], "{versions}");
    assert_eq!(rows[1][..2], ["v2", "10%"], "{versions}");

    let seen = tally(&server, 2000, None);
    let canary = seen.get(V2).copied().unwrap_or(0);
    println!("2000 requests: {seen:?}");
    assert!((140..=260).contains(&canary), "{seen:?}");
    assert_eq!(canary + seen[V1], 2000);

    // Both versions count in the metrics, each under its own version label.
    let metrics = server.get_admin("/metrics").text().unwrap();
    for version in ["1", "2"] {
        let series = format!("wafer_requests_total{{function=\"hello\",version=\"{version}\"");
        assert!(metrics.contains(&series), "{series} missing:\n{metrics}");
    }

    let out = ok(&server, &["promote", "hello"]);
    assert!(out.contains("v2 takes every request"), "{out}");
    assert_eq!(tally(&server, 50, None)[V2], 50);
    assert!(!ok(&server, &["ls"]).contains("traffic:"));
    assert!(refused(&server, &["promote", "hello"]).contains("no traffic split"));
}

#[test]
fn rollback_ends_a_split_the_other_way() {
    let server = Server::start();
    two_versions(&server, &["--canary", "50"]);
    let seen = tally(&server, 200, None);
    assert!(seen[V1] > 0 && seen[V2] > 0, "{seen:?}");
    let out = ok(&server, &["rollback", "hello"]);
    assert!(out.contains("v1 takes every request"), "{out}");
    assert_eq!(tally(&server, 50, None)[V1], 50);
    // With the split ended, rollback goes back a version as before.
    assert!(refused(&server, &["rollback", "hello"]).contains("no version before the active one"));
}

#[test]
fn any_split_can_be_set_and_one_client_sticks_to_one_version() {
    let server = Server::start();
    two_versions(&server, &[]);
    let out = ok(
        &server,
        &[
            "traffic",
            "hello",
            "v2=50",
            "v1=50",
            "--sticky-header",
            "X-User",
        ],
    );
    assert!(
        out.contains("v2 50%, v1 50% (sticky by header x-user)"),
        "{out}"
    );
    let mut versions = HashMap::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let seen = tally(&server, 10, Some(("x-user", &user)));
        assert_eq!(seen.len(), 1, "{user} saw {seen:?}");
        *versions
            .entry(seen.into_keys().next().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        versions.len(),
        2,
        "20 users all on one version: {versions:?}"
    );

    // A queued call with the header runs on that client's version.
    let user = ("x-user", "user-3");
    let version = tally(&server, 1, Some(user)).into_keys().next().unwrap();
    let queued: Value = server
        .client
        .post(format!("{}/_wafer/async/hello", server.url))
        .header(user.0, user.1)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let record = server.finished(queued["id"].as_str().unwrap());
    assert_eq!(record["body"].as_str(), Some(version.as_str()), "{record}");

    // By cookie: the server sets one, and a client sending it back stays put.
    ok(
        &server,
        &[
            "traffic",
            "hello",
            "v2=50",
            "v1=50",
            "--sticky-cookie",
            "wafer-v",
        ],
    );
    let first = server.get("/hello");
    let set = first.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("wafer-v=") && set.contains("Path=/"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let version = first.text().unwrap();
    for _ in 0..10 {
        let response = server
            .client
            .get(format!("{}/hello", server.url))
            .header("cookie", format!("theme=dark; {cookie}"))
            .send()
            .unwrap();
        assert!(response.headers().get("set-cookie").is_none());
        assert_eq!(response.text().unwrap(), version);
    }
}

#[test]
fn a_split_that_cannot_stand_is_refused_with_its_reason() {
    let server = Server::start();
    let c = built("hello-c.wasm");
    let c = c.to_str().unwrap();
    let e = refused(&server, &["deploy", "hello", c, "--canary", "10"]);
    assert!(e.contains("no version yet for a canary"), "{e}");
    two_versions(&server, &[]);
    let e = refused(
        &server,
        &["deploy", "hello", c, "--env", "A=1", "--canary", "100"],
    );
    assert!(e.contains("1 to 99%"), "{e}");
    let e = refused(&server, &["traffic", "hello", "v2=50", "v1=40"]);
    assert!(e.contains("add up to 90%"), "{e}");
    let e = refused(&server, &["traffic", "hello", "v2=50", "v9=50"]);
    assert!(e.contains("no version 9 (versions kept: 1, 2)"), "{e}");
    let e = refused(&server, &["traffic", "hello", "v2=50", "1"]);
    assert!(e.contains("`1` must be vN=PERCENT"), "{e}");
    // A version on other routes cannot share requests: they are routed before a version
    // is chosen.
    ok(&server, &["deploy", "hello", c, "--route", "/other"]);
    let e = refused(&server, &["traffic", "hello", "v3=50", "v2=50"]);
    assert!(e.contains("must answer on the same routes"), "{e}");
    let e = refused(&server, &["deploy", "hello", c, "--sticky-header", "x"]);
    assert!(e.contains("go with --canary"), "{e}");
}

#[test]
fn a_split_in_a_cluster_is_applied_by_every_node() {
    let nats = Nats::start();
    let node = Server::cluster_node;
    let (a, b) = (node(&nats), node(&nats));
    two_versions(&a, &["--canary", "10"]);
    // Node b applies the record as it comes through the watch.
    let started = Instant::now();
    while !ok(&b, &["ls"]).contains("traffic: v2 10%, v1 90%") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "b never saw the split"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The record comes first, then b loads (compiles) the canary's module: until then the
    // active version takes the canary's share there.
    while !tally(&b, 50, None).contains_key(V2) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "b never served the canary"
        );
    }
    for server in [&a, &b] {
        let seen = tally(server, 1000, None);
        let canary = seen.get(V2).copied().unwrap_or(0);
        assert!((60..=140).contains(&canary), "{}: {seen:?}", server.url);
    }
    // Stickiness hashes alike on every node.
    ok(
        &a,
        &[
            "traffic",
            "hello",
            "v2=50",
            "v1=50",
            "--sticky-header",
            "x-user",
        ],
    );
    let started = Instant::now();
    while !ok(&b, &["ls"]).contains("sticky by header x-user") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "b never saw the split"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for user in 0..10 {
        let user = format!("user-{user}");
        let on_a = tally(&a, 1, Some(("x-user", &user)));
        assert_eq!(on_a, tally(&b, 1, Some(("x-user", &user))), "{user}");
    }
}
