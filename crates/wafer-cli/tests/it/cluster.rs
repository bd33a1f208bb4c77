//! Cluster mode (docs/cluster.md): Wafer nodes sharing one registry through a real
//! `nats-server` with JetStream.

use crate::common;

use std::time::{Duration, Instant};

use common::{built, Nats, Server};
use reqwest::Method;

/// A node of the cluster at `nats`, with its own data directory.
fn node(nats: &Nats) -> Server {
    Server::cluster_node(nats)
}

/// Polls `server` at `path` until it answers `status` (and `body`, if given); returns how
/// long that took. Panics after 30 s (a change can wait for JetStream to elect a leader and
/// for a failed module load to be tried again): the change never arrived.
fn until(server: &Server, path: &str, status: u16, body: Option<&str>) -> Duration {
    let started = Instant::now();
    loop {
        let response = server.get(path);
        let got = response.status().as_u16();
        let text = response.text().unwrap();
        if got == status && body.is_none_or(|b| b == text) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{path} on {} still answers {got} {text:?}",
            server.url
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// A node of the NATS cluster `servers` (buckets and streams with three replicas), with
/// its own data directory.
fn node_of_cluster(servers: &[Nats]) -> Server {
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let dir = tempfile::tempdir().unwrap();
    let mut server = node_of(&urls, dir.path());
    server.keep(dir);
    server
}

#[test]
fn a_change_on_one_node_is_served_by_every_node() {
    // Three NATS servers (a JetStream cluster, everything in three copies).
    let servers = Nats::cluster(3);
    let nats = &servers[0];
    let (a, b) = (node_of_cluster(&servers), node_of_cluster(&servers));
    assert_eq!(a.token, b.token, "the nodes have different admin tokens");

    a.deploy("hello", &built("hello-wat.wat"), &[]);
    let deployed = until(&b, "/hello", 200, Some("Hello from WAT!\n"));
    b.deploy("hello", &built("hello-c.wasm"), &[]);
    let redeployed = until(&a, "/hello", 200, Some("Hello from C!\n"));
    let rolled = a
        .admin(Method::POST, "functions/hello/rollback")
        .send()
        .unwrap();
    assert_eq!(rolled.status(), 200);
    let rolled_back = until(&b, "/hello", 200, Some("Hello from WAT!\n"));
    println!(
        "propagation to the other node: deploy {}, redeploy {}, rollback {}",
        ms(deployed),
        ms(redeployed),
        ms(rolled_back)
    );

    // The same module for another function is stored once.
    a.deploy("again", &built("hello-wat.wat"), &[]);
    let c = node_of_cluster(&servers);
    assert_eq!(c.get("/hello").text().unwrap(), "Hello from WAT!\n");
    assert_eq!(c.get("/again").text().unwrap(), "Hello from WAT!\n");
    let record: serde_json::Value = c
        .admin(Method::GET, "functions/hello")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(record["versions"].as_array().unwrap().len(), 2);
    assert_eq!(modules_stored(nats), 2, "hello-wat and hello-c, each once");

    let removed = c.admin(Method::DELETE, "functions/hello").send().unwrap();
    assert!(removed.status().is_success());
    let gone = until(&a, "/hello", 404, None);
    until(&b, "/hello", 404, None);
    println!("propagation of rm: {}", ms(gone));
    assert_eq!(a.get("/again").status(), 200);
}

/// How many modules the cluster's Object Store holds.
fn modules_stored(nats: &Nats) -> usize {
    let url = nats.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        use tokio_stream::StreamExt;
        let client = async_nats::connect(url).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let modules = jetstream.get_object_store("wafer_modules").await.unwrap();
        let mut list = modules.list().await.unwrap();
        let mut count = 0;
        while let Some(info) = list.next().await {
            if !info.unwrap().deleted {
                count += 1;
            }
        }
        count
    })
}

#[test]
fn two_nodes_deploying_one_name_at_once_lose_no_version() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let wat = built("hello-wat.wat");
    let each = 5;
    std::thread::scope(|s| {
        for (n, server) in [&a, &b].into_iter().enumerate() {
            let wat = &wat;
            s.spawn(move || {
                for i in 0..each {
                    let env = format!("N={n}-{i}");
                    server.deploy("same", wat, &[("env", env.as_str())]);
                }
            });
        }
    });
    // Each node shows the record as its watch last brought it: wait for the other node's
    // last write to arrive (a version that was lost would never arrive).
    let started = Instant::now();
    let record = loop {
        let record: serde_json::Value = a
            .admin(Method::GET, "functions/same")
            .send()
            .unwrap()
            .json()
            .unwrap();
        let versions = record["versions"].as_array().map_or(0, Vec::len);
        if versions >= 2 * each || started.elapsed() > Duration::from_secs(10) {
            break record;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut envs: Vec<&str> = record["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["config"]["env"]["N"].as_str().unwrap())
        .collect();
    envs.sort_unstable();
    let mut expected: Vec<String> = (0..2)
        .flat_map(|n| (0..each).map(move |i| format!("{n}-{i}")))
        .collect();
    expected.sort_unstable();
    assert_eq!(envs, expected, "a version was lost");
}

#[test]
fn nats_unreachable_at_start_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{}", common::free_port());
    let started = Instant::now();
    let out = std::process::Command::new(common::WAFER)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--cluster",
            &url,
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot connect to the cluster at {url}")),
        "{stderr}"
    );
    println!("gave up after {}", ms(started.elapsed()));
}

#[test]
fn a_nats_server_too_small_for_the_byte_limits_is_a_clear_error() {
    // The defaults set aside about 6.5 GiB (docs/cluster.md#byte-limits).
    let nats = Nats::with_storage("1GB");
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::WAFER)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(["--cluster", &nats.url(), "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("insufficient storage"), "{stderr}");
    assert!(stderr.contains("--cluster-*-max-bytes"), "{stderr}");

    // Lower limits fit, and the node serves.
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url();
    let mut args = vec!["serve", "--cluster", &url];
    args.extend(["--cluster-modules-max-bytes", "256MiB"]);
    args.extend([
        "--cluster-messages-max-bytes",
        "64MiB",
        "--async-max-bytes",
        "64MiB",
    ]);
    let server = Server::start_with(dir.path(), &args);
    assert_eq!(server.get("/healthz").status(), 200);
}

#[test]
fn a_node_that_loses_nats_keeps_serving_and_catches_up() {
    let mut nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    a.deploy("hello", &built("hello-wat.wat"), &[]);
    until(&b, "/hello", 200, Some("Hello from WAT!\n"));
    assert_eq!(b.get_admin("/_wafer/health").text().unwrap(), "ok\n");
    nats.stop();
    for _ in 0..20 {
        assert_eq!(b.get("/hello").text().unwrap(), "Hello from WAT!\n");
    }
    // Its health says so (and stays 200: it still serves).
    let started = Instant::now();
    loop {
        let health = b.get_admin("/_wafer/health");
        assert_eq!(health.status(), 200);
        let text = health.text().unwrap();
        if text.contains("NATS connection is lost") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A deploy cannot be written meanwhile, and says so.
    let refused = a.deploy_with("other", &built("hello-c.wasm"), &[]);
    assert!(refused.status().is_server_error(), "{}", refused.status());
    nats.restart();
    // Back: a change on one node reaches the other again.
    let started = Instant::now();
    loop {
        let response = a.deploy_with("hello", &built("hello-c.wasm"), &[]);
        if response.status().is_success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never reconnected"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let caught_up = until(&b, "/hello", 200, Some("Hello from C!\n"));
    until(&b, "/readyz", 200, Some("ready\n"));
    println!("caught up {} after the deploy", ms(caught_up));
}

#[test]
fn key_value_is_one_store_for_the_whole_cluster() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let module = built("visits-rust.wasm");
    a.deploy_cli("visits", &module, &["--kv", "--config", "greeting=hey"]);
    until(&b, "/visits?probe", 200, None);
    // Each visit counts in the one store, whichever node serves it (the probe above was
    // visit 1).
    for (visit, server) in [(2, &a), (3, &b), (4, &a), (5, &b)] {
        let text = server.get("/visits").text().unwrap();
        assert_eq!(text, format!("hey, visit {visit}\n"));
    }
    // Removing the function removes its store: a new function of the name starts afresh.
    let removed = b.admin(Method::DELETE, "functions/visits").send().unwrap();
    assert!(removed.status().is_success());
    until(&a, "/visits", 404, None);
    a.deploy_cli("visits", &module, &["--kv", "--config", "greeting=hey"]);
    until(&b, "/visits", 200, Some("hey, visit 1\n"));
}

/// A Spin app applied to one node is served by every node; its components share the app's
/// store through JetStream, whichever node serves them; SQLite, which lives on one node,
/// answers a clear error rather than letting the nodes drift apart.
#[test]
fn a_spin_app_in_a_cluster_shares_its_store_across_nodes() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spin.toml");
    let text = format!(
        r#"
spin_manifest_version = 2
[application]
name = "shop"
[variables]
region = {{ default = "eu" }}
[[trigger.http]]
route = "/kv"
component = "store"
[[trigger.http]]
route = "/sql"
component = "store"
[component.store]
source = "{module}"
key_value_stores = ["default"]
sqlite_databases = ["default"]
"#,
        module = built("spin-rust.wasm").display()
    );
    std::fs::write(&manifest, text).unwrap();
    let out = a.cli(&["apply", manifest.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The app's own 404 (no route would be a 404 too).
    until(&b, "/kv?key=fruit", 404, Some("not found"));
    let stored = a
        .client
        .put(format!("{}/kv?key=fruit", a.url))
        .body("fig")
        .send()
        .unwrap();
    assert_eq!(stored.status(), 200);
    let read = b.get("/kv?key=fruit");
    assert_eq!(read.status(), 200);
    assert_eq!(read.text().unwrap(), "fig");
    let sql = b.get("/sql?name=widget&qty=1").text().unwrap();
    assert!(sql.contains("not served in cluster mode"), "{sql}");
}

#[test]
fn a_component_counter_incremented_on_two_nodes_at_once_loses_no_increment() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    let module = built("visits-component-rust.wasm");
    a.deploy_cli("visits", &module, &["--kv", "--publish", "x"]);
    until(&b, "/visits?probe", 200, None);
    // Where the count starts (the probe's visit may have met the bucket still being made).
    let visit = |server: &Server| -> u64 {
        let response = server.get("/visits");
        assert_eq!(response.status(), 200);
        let text = response.text().unwrap();
        assert!(!text.contains("error"), "{text}");
        let number = text.trim().rsplit(' ').next().unwrap();
        number.parse().unwrap()
    };
    let first = visit(&a);
    // wasi:keyvalue/atomics.increment is a compare-and-set on the key's revision: 40
    // visits, 20 per node, 8 at a time, none lost and none counted twice.
    let mut seen: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8)
            .map(|worker| {
                let server = if worker % 2 == 0 { &a } else { &b };
                scope.spawn(move || (0..5).map(|_| visit(server)).collect::<Vec<_>>())
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    seen.sort_unstable();
    let expected: Vec<u64> = (first + 1..=first + 40).collect();
    assert_eq!(seen, expected, "each visit got its own number");
    assert_eq!(visit(&b), first + 41);
}

/// The counters of `name` in `server`'s pub/sub stats (zeros if it has none yet).
fn subscriber_stats(server: &Server, name: &str) -> serde_json::Value {
    let stats = server.pubsub();
    let found = stats["subscribers"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["function"] == name).cloned());
    found.unwrap_or_else(|| serde_json::json!({"delivered": 0, "failed": 0, "dead": 0}))
}

/// The sum of counter `field` of `name` over `nodes`.
fn summed(nodes: &[&Server], name: &str, field: &str) -> u64 {
    nodes
        .iter()
        .map(|n| subscriber_stats(n, name)[field].as_u64().unwrap())
        .sum()
}

/// Polls until `done` holds, for at most `limit`.
fn wait(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_message_published_on_one_node_reaches_each_subscriber_once() {
    let nats = Nats::start();
    let (a, b, c) = (node(&nats), node(&nats), node(&nats));
    let nodes = [&a, &b, &c];
    a.deploy_cli(
        "publisher",
        &built("visits-rust.wasm"),
        &["--publish", "demo.>"],
    );
    a.deploy_cli(
        "sub-c",
        &built("visits-c.wasm"),
        &["--kv", "--subscribe", "demo.*"],
    );
    a.deploy_cli(
        "sub-wapc",
        &built("wapc-rust.wasm"),
        &["--subscribe", "demo.>"],
    );
    for node in [&b, &c] {
        for name in ["publisher", "sub-c", "sub-wapc"] {
            wait(Duration::from_secs(10), name, || {
                let path = format!("functions/{name}");
                node.admin(Method::GET, &path).send().unwrap().status() == 200
            });
        }
    }
    let published = 60;
    for i in 0..published {
        let text = nodes[i % 3].post("/publisher?publish=demo.event", "hello");
        assert!(text.ends_with("published\n"), "{text}");
    }
    for name in ["sub-c", "sub-wapc"] {
        wait(Duration::from_secs(20), name, || {
            summed(&nodes, name, "delivered") >= published as u64
        });
    }
    // Settled: nothing more arrives, nothing failed; each message was called once.
    std::thread::sleep(Duration::from_millis(500));
    for name in ["sub-c", "sub-wapc"] {
        let per_node: Vec<u64> = nodes
            .iter()
            .map(|n| subscriber_stats(n, name)["delivered"].as_u64().unwrap())
            .collect();
        println!("{name}: {published} messages delivered by the nodes as {per_node:?}");
        assert_eq!(per_node.iter().sum::<u64>(), published as u64, "{name}");
        assert_eq!(summed(&nodes, name, "failed"), 0, "{name}");
    }
}

#[test]
fn a_failing_subscriber_is_retried_then_dead_lettered() {
    let nats = Nats::start();
    let (a, b) = (node(&nats), node(&nats));
    a.deploy_cli(
        "publisher",
        &built("visits-rust.wasm"),
        &["--publish", "jobs"],
    );
    a.deploy_cli(
        "broken",
        &common::guest("trap.wat"),
        &["--subscribe", "jobs"],
    );
    until(&b, "/broken", 500, None);
    let text = b.post("/publisher?publish=jobs", "doomed");
    assert!(text.ends_with("published\n"), "{text}");
    let attempts = wafer_nats::ATTEMPTS as u64;
    wait(Duration::from_secs(30), "dead-lettered", || {
        summed(&[&a, &b], "broken", "dead") == 1
    });
    assert_eq!(summed(&[&a, &b], "broken", "failed"), attempts);
    assert_eq!(summed(&[&a, &b], "broken", "delivered"), 0);

    // The dead letter keeps the message, its topic and why it failed.
    let url = nats.url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (body, topic, error) = runtime.block_on(async move {
        let client = async_nats::connect(url).await.unwrap();
        let jetstream = async_nats::jetstream::new(client);
        let mut dead = jetstream.get_stream("wafer_dead").await.unwrap();
        assert_eq!(dead.info().await.unwrap().state.messages, 1);
        let letter = dead
            .get_last_raw_message_by_subject("wafer.dead.broken")
            .await
            .unwrap();
        let header = |name: &str| letter.headers.get(name).unwrap().as_str().to_owned();
        (letter.payload, header("Wafer-Topic"), header("Wafer-Error"))
    });
    assert_eq!(&body[..], b"doomed");
    assert_eq!(topic, "jobs");
    assert!(error.contains("unreachable"), "{error}");
}

/// A node of the NATS cluster at `urls` (buckets and streams with three replicas), on the
/// data directory `data`.
fn node_of(urls: &str, data: &std::path::Path) -> Server {
    Server::start_with(
        data,
        &["serve", "--cluster", urls, "--cluster-replicas", "3"],
    )
}

/// Queues `n` (the echo guest writes it back) on `server`: the id if it was acknowledged,
/// else why not.
fn enqueue(server: &Server, n: usize) -> Result<String, String> {
    let response = server
        .client
        .post(format!("{}/_wafer/async/echo", server.url))
        .body(format!("Content-Type: text/plain\n\n{n}"))
        .timeout(Duration::from_secs(10))
        .send()
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let text = response.text().map_err(|e| e.to_string())?;
    if status != 202 {
        return Err(format!("{status} {}", text.trim()));
    }
    let answer: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    Ok(answer["id"].as_str().unwrap().to_owned())
}

#[test]
fn no_acknowledged_invocation_is_lost_when_a_node_and_a_nats_server_die() {
    let mut servers = Nats::cluster(3);
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node_of(&urls, dir_a.path());
    let mut b = node_of(&urls, dir_b.path());
    a.deploy("echo", &common::guest("echo.wat"), &[]);
    until(&b, "/echo/", 200, None);

    let total = 1000;
    let mut acknowledged: Vec<(usize, String)> = Vec::new();
    let mut refusals: Vec<String> = Vec::new();
    for n in 0..total {
        // Half to each node; the other node while one is down. A refused call is tried
        // again, as a client would, until the cluster takes it.
        let first = if n % 2 == 0 { &a } else { &b };
        let started = Instant::now();
        let id = loop {
            match enqueue(first, n).or_else(|_| enqueue(&a, n)) {
                Ok(id) => break id,
                Err(why) => refusals.push(why),
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{refusals:?}");
            std::thread::sleep(Duration::from_millis(100));
        };
        acknowledged.push((n, id));
        if n == 300 {
            b.kill(); // kill -9, with invocations held and running
        }
        if n == 400 {
            b = node_of(&urls, dir_b.path());
        }
        if n == 600 && std::env::var_os("KEEP_NATS").is_none() {
            servers[2].stop(); // one NATS server of three
        }
    }
    let refused = refusals.len();
    refusals.dedup();
    let started = Instant::now();
    let mut duplicates = 0;
    for (n, id) in &acknowledged {
        let record = loop {
            let response = a.admin(Method::GET, &format!("invocations/{id}")).send();
            if let Ok(response) = response {
                if response.status() == 200 {
                    let record: serde_json::Value = response.json().unwrap();
                    if record["state"] == "done" {
                        break record;
                    }
                }
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "invocation {n} ({id}) never finished"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(record["body"], n.to_string(), "{record}");
        if record["attempts"].as_u64().unwrap() > 1 {
            duplicates += 1;
        }
    }
    println!(
        "{total} invocations acknowledged ({refused} tries refused while the cluster failed \
         over: {refusals:?}); all completed after a Wafer node was killed (-9) and restarted \
         and one of three NATS servers was killed; {duplicates} ran more than once; the last \
         finished {:.1} s after the last was queued",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn an_admin_token_given_to_the_nodes_is_the_clusters() {
    let nats = Nats::start();
    let url = nats.url();
    let given = "operator-chosen-token-0123";
    let start = |args: &[&str]| {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["serve", "--cluster", &url];
        all.extend_from_slice(args);
        let mut server = Server::start_with(dir.path(), &all);
        server.keep(dir);
        server
    };
    let (a, b) = (
        start(&["--admin-token", given]),
        start(&["--admin-token", given]),
    );
    // A node given no token adopts the cluster's.
    let c = start(&[]);
    for node in [&a, &b, &c] {
        assert_eq!(node.token, given);
    }
    a.deploy("hello", &built("hello-wat.wat"), &[]);
    until(&c, "/hello", 200, None);
    let removed = c.admin(Method::DELETE, "functions/hello").send().unwrap();
    assert!(removed.status().is_success(), "{}", removed.status());

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::WAFER)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--admin-token",
            "short",
            "--data",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 16 characters"), "{stderr}");
}

#[test]
fn a_node_cut_off_from_nats_while_others_deploy_converges_by_itself() {
    // Three NATS servers, everything in three copies: node A on all of them, node B on the
    // third only. Cutting the third off leaves the cluster a quorum, so A goes on deploying.
    let mut servers = Nats::cluster(3);
    let urls = servers.iter().map(Nats::url).collect::<Vec<_>>().join(",");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node_of(&urls, dir_a.path());
    let b = node_of(&servers[2].url(), dir_b.path());
    a.deploy("hello", &built("hello-wat.wat"), &[]);
    a.deploy("gone", &built("hello-wat.wat"), &[]);
    until(&b, "/hello", 200, Some("Hello from WAT!\n"));
    until(&b, "/gone", 200, Some("Hello from WAT!\n"));

    servers[2].stop();
    // Changes made elsewhere meanwhile: a new version, a new function, a removal. While
    // JetStream elects new leaders for what the stopped server led, a change can fail for
    // a few seconds: tried again, as a client would (for up to a minute: on a loaded
    // machine an election has taken over 30 s).
    let eventually = |what: &str, send: &dyn Fn() -> reqwest::blocking::Response| {
        let started = Instant::now();
        loop {
            let response = send();
            let status = response.status();
            if status.is_success() {
                return;
            }
            let text = response.text().unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: {status} {text}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    eventually("deploy hello", &|| {
        a.deploy_with("hello", &built("hello-c.wasm"), &[])
    });
    let route = [("route", "/other")];
    eventually("deploy other", &|| {
        a.deploy_with("other", &built("hello-c.wasm"), &route)
    });
    let started = Instant::now();
    // A removal that failed half-way (the record gone, its store not yet) is `404` when
    // tried again.
    while !matches!(
        a.admin(Method::DELETE, "functions/gone")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        204 | 404
    ) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "rm gone never went through"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    until(&a, "/gone", 404, None);
    until(&a, "/other", 200, Some("Hello from C!\n"));
    // B never fails a call meanwhile: it serves what it had, or the new version once its
    // client has failed over to a server it learned of (NATS clients do) and the module
    // loaded. A version it cannot load yet never replaces the one it runs.
    for _ in 0..20 {
        let response = b.get("/hello");
        assert_eq!(response.status(), 200);
        let text = response.text().unwrap();
        assert!(
            ["Hello from WAT!\n", "Hello from C!\n"].contains(&text.as_str()),
            "{text}"
        );
    }
    servers[2].restart();
    // Then it converges on its own: nobody redeploys anything.
    let caught_up = until(&b, "/hello", 200, Some("Hello from C!\n"));
    until(&b, "/other", 200, Some("Hello from C!\n"));
    until(&b, "/gone", 404, None);
    until(&b, "/readyz", 200, Some("ready\n"));
    println!("converged {} after NATS came back", ms(caught_up));
}

#[test]
fn a_new_admin_token_set_by_one_node_is_taken_by_the_running_ones() {
    let nats = Nats::start();
    let a = node(&nats);
    let old = a.token.clone();
    assert_eq!(
        a.admin(Method::GET, "functions").send().unwrap().status(),
        200
    );
    // A node started with a token of the operator's makes it the cluster's.
    let new = "a-new-token-for-the-whole-cluster";
    let dir = tempfile::tempdir().unwrap();
    let url = nats.url();
    let mut c = Server::start_with(
        dir.path(),
        &["serve", "--cluster", &url, "--admin-token", new],
    );
    c.keep(dir);
    let list = |token: &str| {
        a.client
            .get(format!("{}/_wafer/functions", a.admin_url))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    let started = Instant::now();
    while list(new) != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "A never took the new token"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(list(&old), 401, "A still accepts the old token");
    // And the CLI on A's machine finds the new one.
    let file = std::fs::read_to_string(a.data.join("admin-token")).unwrap();
    assert_eq!(file.trim(), new);
}
