//! Scheduled functions (docs/operations.md#schedules): cron expressions in the manifest and
//! on deploy, each tick an asynchronous invocation, once per tick across a cluster.

use crate::common;

use std::time::{Duration, Instant};

use common::{built, Nats, Server};
use reqwest::Method;
use serde_json::Value;

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

/// The invocations `server` lists for `function`.
fn invocations(server: &Server, function: &str) -> Vec<Value> {
    let list: Value = server
        .admin(Method::GET, "invocations?limit=10000")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let all = list.as_array().unwrap().iter().cloned();
    all.filter(|i| i["function"] == function).collect()
}

/// Waits until none of `function`'s invocations is queued or running.
fn settled(server: &Server, function: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let list = invocations(server, function);
        if list
            .iter()
            .all(|i| matches!(i["state"].as_str(), Some("done" | "failed")))
        {
            return list;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{list:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The visits counted so far by the `visits` example (its `GET` counts one more).
fn visits(server: &Server) -> u64 {
    let text = server.get("/visits").text().unwrap();
    let count = text.lines().next().unwrap().rsplit(' ').next().unwrap();
    count.parse::<u64>().unwrap() - 1
}

#[test]
fn a_manifest_schedule_calls_its_path_with_the_schedule_header() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wafer.toml");
    let module = built("http-echo-rust.wasm");
    std::fs::write(
        &manifest,
        format!(
            "[[function]]\nname = \"ticker\"\nmodule = {module:?}\n\
             schedule = [{{ cron = \"* * * * * *\", path = \"/headers\" }}]\n"
        ),
    )
    .unwrap();
    ok(&server, &["apply", manifest.to_str().unwrap()]);
    let list = ok(&server, &["ls"]);
    assert!(
        list.contains("schedule: * * * * * * -> /headers, next 20"),
        "{list}"
    );

    let started = Instant::now();
    let done = loop {
        let done: Vec<Value> = invocations(&server, "ticker")
            .into_iter()
            .filter(|i| i["state"] == "done")
            .collect();
        if done.len() >= 2 {
            break done;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{done:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let record = server.finished(done[0]["id"].as_str().unwrap());
    assert_eq!(record["method"], "POST");
    assert_eq!(record["path"], "/headers");
    let body = record["body"].as_str().unwrap();
    assert!(body.contains("x-wafer-schedule: * * * * * *"), "{body}");
}

#[test]
fn an_every_second_schedule_runs_once_a_second() {
    let server = Server::start();
    let module = built("visits-rust.wasm");
    server.deploy_cli("visits", &module, &["--kv", "--schedule", "* * * * * *"]);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    // Deployed without the schedule, it stops.
    server.deploy_cli("visits", &module, &["--kv"]);
    let seconds = started.elapsed().as_secs_f64().ceil() as u64;
    let ran = settled(&server, "visits");
    let count = visits(&server);
    println!("{count} runs in {seconds} s");
    // Each tick ran once, and about as many ticks as seconds passed.
    assert_eq!(count as usize, ran.len(), "{ran:?}");
    assert!(
        (3..=seconds + 2).contains(&count),
        "{count} runs in {seconds} s"
    );
    assert!(ran.iter().all(|i| i["state"] == "done"), "{ran:?}");
}

#[test]
fn a_bad_expression_is_refused_at_deploy_with_the_parsers_reason() {
    let server = Server::start();
    let module = built("hello-wat.wat");
    let out = server.cli(&[
        "deploy",
        "hello",
        module.to_str().unwrap(),
        "--schedule",
        "61 * * * *",
    ]);
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("schedule `61 * * * *`: "), "{e}");
    let out = server.cli(&[
        "deploy",
        "hello",
        module.to_str().unwrap(),
        "--schedule",
        "CRON_TZ=Nowhere/Else 0 9 * * *",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("unknown time zone `Nowhere/Else`"), "{e}");
}

#[test]
fn in_a_cluster_each_tick_runs_once_whichever_nodes_are_up() {
    let nats = Nats::start();
    let node = Server::cluster_node;
    let (a, mut b) = (node(&nats), node(&nats));
    let module = built("visits-rust.wasm");
    a.deploy_cli("visits", &module, &["--kv", "--schedule", "* * * * * *"]);
    let started = Instant::now();
    // Both nodes queue every tick; b is killed half-way, and a goes on alone.
    std::thread::sleep(Duration::from_secs(4));
    b.kill();
    std::thread::sleep(Duration::from_secs(4));
    a.deploy_cli("visits", &module, &["--kv"]);
    let seconds = started.elapsed().as_secs_f64().ceil() as u64;
    let ran = settled(&a, "visits");
    let count = visits(&a);
    println!("{count} runs in {seconds} s on two nodes, then one");
    // A run b had begun when it was killed runs again on a (as any queued call on a dying
    // node does): at most one more run than invocations.
    let extra = count as usize - ran.len();
    assert!(
        extra <= 1,
        "{count} runs of {} invocations: {ran:?}",
        ran.len()
    );
    assert!(
        (5..=seconds + 2).contains(&count),
        "{count} runs in {seconds} s"
    );
    // One invocation per tick: their ids (made from the tick's time) are all different and
    // their creation times a second apart.
    let mut created: Vec<u64> = ran.iter().map(|i| i["created"].as_u64().unwrap()).collect();
    created.sort_unstable();
    assert!(
        created.windows(2).all(|w| w[1] - w[0] >= 1000),
        "{created:?}"
    );
}
