//! Components reach the capabilities through WIT interfaces (`wasi:keyvalue`, `wasi:config`,
//! `wasi:logging`, `wafer:pubsub`), behind the same grants and limits as core modules:
//! the `visits-component-rust` example, over real HTTP.

use crate::common;

use std::time::{Duration, Instant};

use common::{built, Server};

const VISITS: &str = "visits-component-rust.wasm";

fn get(server: &Server, path: &str) -> String {
    let response = server.get(path);
    assert_eq!(response.status(), 200, "{path}");
    response.text().unwrap()
}

fn logs(server: &Server, name: &str) -> String {
    String::from_utf8_lossy(&server.cli(&["logs", name]).stdout).into_owned()
}

/// Deploys with `wafer deploy`; the error text on failure.
fn try_deploy(server: &Server, name: &str, module: &str, flags: &[&str]) -> Result<(), String> {
    let mut args = vec!["deploy", name];
    let path = built(module);
    args.push(path.to_str().unwrap());
    args.extend_from_slice(flags);
    let out = server.cli(&args);
    match out.status.success() {
        true => Ok(()),
        false => Err(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
    }
}

/// Waits until `done` holds for the subscriber `name`'s pub/sub counters.
fn wait_for_subscriber(server: &Server, name: &str, done: impl Fn(&serde_json::Value) -> bool) {
    let start = Instant::now();
    loop {
        let stats = server.pubsub();
        let subscriber = stats["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["function"] == name)
            .cloned()
            .unwrap_or_default();
        if done(&subscriber) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the counters of {name} never got there: {stats}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The visits example in every language that builds components: the same behaviour.
const LANGUAGES: [&str; 3] = [
    VISITS,
    "visits-component-py.wasm",
    "visits-component-js.wasm",
];

#[test]
fn components_in_rust_python_and_javascript_count_greet_log_publish_and_subscribe() {
    let server = Server::start();
    for module in LANGUAGES {
        each_interface(&server, module);
    }
}

/// Every interface of `module` (a visits component) over HTTP, on functions of its own.
fn each_interface(server: &Server, module: &str) {
    let lang = module.trim_end_matches(".wasm");
    let (visits, reader) = (format!("{lang}-visits"), format!("{lang}-reader"));
    let topics = format!("news.{lang}.*");
    #[rustfmt::skip]
    try_deploy(server, &visits, module, &[
        "--kv", "--config", "greeting=hi", "--secret", "token=s3cret", "--publish", &topics,
    ])
    .unwrap();
    #[rustfmt::skip]
    try_deploy(server, &reader, module, &["--kv", "--publish", "x", "--subscribe", &topics]).unwrap();
    let path = |query: &str| format!("/{visits}{query}");

    // wasi:config and wasi:keyvalue (atomics).
    assert_eq!(get(server, &path("")), "hi, visit 1\n", "{lang}");
    assert_eq!(
        get(server, &path("?get=visits")),
        "hi, visit 2\nvisits = 2\n",
        "{lang}"
    );
    // A secret reads like a config value; the example prints its length only.
    assert_eq!(
        get(server, &path("?secret=token")),
        "hi, visit 3\nsecret token: 6 bytes\n",
        "{lang}"
    );
    // wasi:logging lands in the function's log, with the request id.
    let log = logs(server, &visits);
    for visit in ["visit 1", "visit 2", "visit 3"] {
        assert!(log.contains(visit), "{lang}: {log}");
    }

    // wafer:pubsub: published by one component, delivered to another's on-message.
    let topic = format!("news.{lang}.today");
    let text = server.post(&path(&format!("?publish={topic}")), "breaking");
    assert_eq!(text, "hi, visit 4\npublished\n", "{lang}");
    let denied = server.post(&path("?publish=sports.today"), "goal");
    assert!(
        denied.contains("publish error: denied: this function may not publish to `sports.today`"),
        "{lang}: {denied}"
    );
    wait_for_subscriber(server, &reader, |s| s["delivered"] == 1);
    // The subscriber's store is its own: its first visit is 1, and it has no greeting.
    assert_eq!(
        get(server, &format!("/{reader}?get=last-message")),
        "hello, visit 1\nlast-message = breaking\n",
        "{lang}"
    );
    assert_eq!(
        get(server, &format!("/{reader}?get=messages")),
        "hello, visit 2\nmessages = 1\n",
        "{lang}"
    );
    let log = logs(server, &reader);
    assert!(
        log.contains(&format!("message on {topic}")),
        "{lang}: {log}"
    );
    // Nor can one function read the other's keys.
    assert_eq!(
        get(server, &path("?get=last-message")),
        "hi, visit 6\nlast-message = (none)\n",
        "{lang}"
    );
}

#[test]
fn a_failing_component_subscriber_is_counted_as_failed() {
    let server = Server::start();
    #[rustfmt::skip]
    try_deploy(&server, "sender", VISITS, &["--kv", "--config", "greeting=hi", "--publish", ">"]).unwrap();
    for module in LANGUAGES {
        let reader = format!("{}-reader", module.trim_end_matches(".wasm"));
        #[rustfmt::skip]
        try_deploy(&server, &reader, module, &["--kv", "--publish", "x", "--subscribe", "fail"]).unwrap();
    }
    assert!(server
        .post("/sender?publish=fail", "x")
        .ends_with("published\n"));
    for module in LANGUAGES {
        let reader = format!("{}-reader", module.trim_end_matches(".wasm"));
        wait_for_subscriber(&server, &reader, |s| s["failed"] == 1);
        let log = logs(&server, &reader);
        assert!(log.contains("told to fail"), "{reader}: {log}");
    }
}

#[test]
fn an_import_without_its_grant_is_refused_at_deploy() {
    let server = Server::start();
    let refused = |flags: &[&str]| try_deploy(&server, "visits", VISITS, flags).unwrap_err();
    // wasi:config and wasi:logging need no grant; key-value and publishing do.
    assert_eq!(
        refused(&["--publish", "x"]),
        "error: invalid configuration: the component imports `wasi:keyvalue/store@0.2.0-draft`, \
         which needs the key-value grant: `kv = true` in the manifest, or `wafer deploy --kv` \
         (400 Bad Request)"
    );
    assert_eq!(
        refused(&["--kv"]),
        "error: invalid configuration: the component imports `wafer:pubsub/publisher@0.1.0`, \
         which needs topics to publish to: `publish = [\"PATTERN\"]` in the manifest, or \
         `wafer deploy --publish PATTERN` (400 Bad Request)"
    );
    // A subscriber must have somewhere for the messages to go.
    assert_eq!(
        try_deploy(
            &server,
            "hello",
            "http-hello-rust.wasm",
            &["--subscribe", "x"]
        )
        .unwrap_err(),
        "error: invalid configuration: a component granted `subscribe` receives each message \
         through its export `wafer:pubsub/subscriber@0.1.0` (on-message), which this component \
         does not export (400 Bad Request)"
    );
    // Nothing was deployed by the refusals.
    assert_eq!(server.get("/visits").status(), 404);
}

#[test]
fn component_key_value_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let flags = ["--kv", "--config", "greeting=hi", "--publish", "x"];
    {
        let server = Server::start_in(data.path());
        try_deploy(&server, "visits", VISITS, &flags).unwrap();
        assert_eq!(get(&server, "/visits"), "hi, visit 1\n");
        assert_eq!(get(&server, "/visits"), "hi, visit 2\n");
    }
    let server = Server::start_in(data.path());
    assert_eq!(get(&server, "/visits"), "hi, visit 3\n");
}

#[test]
fn key_value_limits_hold_for_components() {
    let server = Server::start();
    #[rustfmt::skip]
    try_deploy(&server, "visits", VISITS, &[
        "--kv", "--config", "greeting=hi", "--publish", "x", "--kv-value", "16B", "--kv-keys", "2",
    ])
    .unwrap();
    // The counter `visits` is one key; `a` is the second.
    assert_eq!(
        server.post("/visits?set=a", "small"),
        "hi, visit 1\nset a\n"
    );
    let text = server.post("/visits?set=a", "seventeen bytes!!");
    assert!(
        text.contains("set error: Error::Other(\"too_large: the value is 17 bytes, over the kv_value limit of 16 B\")"),
        "{text}"
    );
    let text = server.post("/visits?set=b", "x");
    assert!(
        text.contains("set error: Error::Other(\"too_large: the store already holds 2 keys, its kv_keys limit\")"),
        "{text}"
    );
    // Overwriting a key that exists is no new key.
    assert_eq!(
        server.post("/visits?set=a", "again"),
        "hi, visit 4\nset a\n"
    );
}

#[test]
fn a_component_opens_only_its_granted_directories() {
    let server = Server::start();
    let (data, assets) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(assets.path().join("motd"), "read me").unwrap();
    let rw = format!("{}::/data", data.path().display());
    let ro = format!("{}::/assets:ro", assets.path().display());
    #[rustfmt::skip]
    try_deploy(&server, "visits", VISITS, &[
        "--kv", "--publish", "x", "--dir", &rw, "--dir", &ro,
    ])
    .unwrap();
    let text = server.post("/visits?write=/data/note&read=/data/note", "kept");
    assert_eq!(text, "hello, visit 1\nwrote /data/note\nfile: kept\n");
    assert_eq!(
        std::fs::read_to_string(data.path().join("note")).unwrap(),
        "kept"
    );
    assert_eq!(
        get(&server, "/visits?read=/assets/motd"),
        "hello, visit 2\nfile: read me\n"
    );
    // Read-only is read-only; nothing outside the grants is reachable.
    let text = server.post("/visits?write=/assets/motd", "overwritten");
    assert!(text.contains("file error:"), "{text}");
    assert_eq!(
        std::fs::read_to_string(assets.path().join("motd")).unwrap(),
        "read me"
    );
    for path in ["/etc/passwd", "/data/../../etc/passwd"] {
        let text = get(&server, &format!("/visits?read={path}"));
        assert!(text.contains("file error:"), "{path}: {text}");
    }
}
