//! What an operator sees: Prometheus metrics at `/metrics`, the `/healthz` and `/readyz`
//! probes, and the routes they reserve.

use crate::common;

use common::{built, guest, Server};

/// The value of the sample `name{labels}` in an OpenMetrics text, where `labels` are
/// `key="value"` pairs that must all be among the sample's labels.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines().find_map(|line| {
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, rest) = series.split_once('{').unwrap_or((series, "}"));
        let all = labels.iter().all(|l| rest.contains(l));
        (metric == name && all).then(|| value.parse().unwrap())
    })
}

fn scrape(server: &Server) -> String {
    let response = server.get_admin("/metrics");
    assert_eq!(response.status(), 200);
    let kind = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let text = response.text().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

#[test]
fn metrics_count_requests_by_status_faults_and_durations_per_version() {
    let server = Server::start();
    server.deploy("hello-wat", &built("hello-wat.wat"), &[]);
    server.deploy("trap", &guest("trap.wat"), &[]);
    server.deploy("spin", &guest("spin.wat"), &[("timeout", "100ms")]);
    server.deploy("memhog", &guest("memhog.wat"), &[("memory", "1MiB")]);
    for _ in 0..5 {
        assert_eq!(server.get("/hello-wat/").status(), 200);
    }
    assert_eq!(server.get("/trap/").status(), 500);
    assert_eq!(server.get("/spin/").status(), 504);
    assert_eq!(server.get("/memhog/").status(), 500);

    let text = scrape(&server);
    let hello = ["function=\"hello-wat\"", "version=\"1\""];
    let with = |extra: &'static str| [hello[0], hello[1], extra];
    assert_eq!(
        sample(&text, "wafer_requests_total", &with("class=\"2xx\"")),
        Some(5.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "wafer_requests_total", &with("class=\"5xx\"")),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "wafer_request_duration_seconds_count", &hello),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &text,
            "wafer_request_duration_seconds_bucket",
            &with("le=\"+Inf\"")
        ),
        Some(5.0)
    );
    let sum = sample(&text, "wafer_request_duration_seconds_sum", &hello).unwrap();
    assert!(sum > 0.0, "{text}");
    assert_eq!(sample(&text, "wafer_requests_in_flight", &hello), Some(0.0));
    assert!(sample(&text, "wafer_compile_duration_seconds", &hello).unwrap() > 0.0);

    let of = |name: &'static str| [name];
    assert_eq!(
        sample(
            &text,
            "wafer_requests_total",
            &[of("function=\"trap\"")[0], "class=\"5xx\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "wafer_traps_total", &of("function=\"trap\"")),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "wafer_timeouts_total", &of("function=\"spin\"")),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "wafer_memory_limit_hits_total",
            &of("function=\"memhog\"")
        ),
        Some(1.0)
    );
    assert_eq!(sample(&text, "wafer_traps_total", &hello), Some(0.0));

    // The server's own figures.
    assert!(sample(&text, "wafer_open_connections", &[]).unwrap() >= 1.0);
    assert_eq!(sample(&text, "wafer_async_queue_depth", &[]), Some(0.0));
    assert!(sample(&text, "wafer_instance_slots", &[]).unwrap() >= 1.0);
    assert!(sample(&text, "process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(sample(&text, "process_cpu_seconds_total", &[]).is_some());

    // A new version is a new series; the old one's counts go with it.
    server.deploy("hello-wat", &built("hello-wat.wat"), &[("timeout", "2s")]);
    assert_eq!(server.get("/hello-wat/").status(), 200);
    let text = scrape(&server);
    let v2 = ["function=\"hello-wat\"", "version=\"2\"", "class=\"2xx\""];
    assert_eq!(
        sample(&text, "wafer_requests_total", &v2),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "wafer_requests_total", &with("class=\"2xx\"")),
        None
    );
}

#[test]
fn metrics_count_queue_waits_and_busy_refusals() {
    let server = Server::start();
    server.deploy(
        "spin",
        &guest("spin.wat"),
        &[("max_concurrency", "1"), ("timeout", "2s")],
    );
    let url = format!("{}/spin/", server.url);
    let calls: Vec<_> = (0..3)
        .map(|i| {
            let (client, url) = (server.client.clone(), url.clone());
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(100 * i));
                client.get(url).send().unwrap().status().as_u16()
            })
        })
        .collect();
    let statuses: Vec<u16> = calls.into_iter().map(|c| c.join().unwrap()).collect();
    let refused = statuses.iter().filter(|&&s| s == 503).count() as f64;
    assert!(refused >= 1.0, "{statuses:?}");
    let text = scrape(&server);
    let spin = ["function=\"spin\""];
    assert_eq!(
        sample(&text, "wafer_busy_rejections_total", &spin),
        Some(refused),
        "{text}"
    );
    assert!(
        sample(&text, "wafer_queue_waits_total", &spin).unwrap() >= 2.0,
        "{text}"
    );
    assert_eq!(
        sample(&text, "wafer_requests_total", &[spin[0], "class=\"5xx\""]),
        Some(3.0),
        "503s and the 504 are 5xx: {statuses:?}\n{text}"
    );
}

#[test]
fn health_probes_answer_without_a_token() {
    let server = Server::start();
    let live = server.get("/healthz");
    assert_eq!(live.status(), 200);
    assert_eq!(live.text().unwrap(), "ok\n");
    let ready = server.get("/readyz");
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.text().unwrap(), "ready\n");
    // Metrics are the admin plane's; the function plane has none of it.
    assert_eq!(server.get_admin("/metrics").status(), 200);
    assert_eq!(server.get("/metrics").status(), 404);
    assert_eq!(server.get("/_wafer/metrics").status(), 404);
}

#[test]
fn the_probe_and_metrics_paths_cannot_be_taken_by_a_function() {
    let server = Server::start();
    for route in ["/metrics", "/healthz", "/readyz/..."] {
        let response = server.deploy_with("taker", &built("hello-wat.wat"), &[("route", route)]);
        assert_eq!(response.status(), 400, "{route}");
        let text = response.text().unwrap();
        assert!(text.contains("belong to the server"), "{route}: {text}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_logged(dir.path(), &["serve", "--log-format", "json"]);
    server.deploy("trap", &guest("trap.wat"), &[]);
    assert_eq!(server.get("/trap/").status(), 500);
    let mut found = None;
    for _ in 0..100 {
        let stderr = server.stderr();
        found = stderr
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|line| {
                line["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("trapped"))
            });
        if found.is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let line = found.unwrap_or_else(|| panic!("no JSON line about the trap:\n{}", server.stderr()));
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(line["fields"]["request_id"].is_string(), "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    // Every line is JSON.
    for text in server.stderr().lines() {
        assert!(
            serde_json::from_str::<serde_json::Value>(text).is_ok(),
            "not JSON: {text}"
        );
    }
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    for (shell, marker) in [
        ("bash", "_wafer()"),
        ("zsh", "#compdef wafer"),
        ("fish", "complete -c wafer"),
    ] {
        let out = std::process::Command::new(common::WAFER)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        // The subcommands and their flags are in it.
        assert!(
            script.contains("deploy") && script.contains("log-format"),
            "{shell}"
        );
    }
    let out = std::process::Command::new(common::WAFER)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid value 'tcsh'"));
}

#[test]
fn logs_follow_streams_new_lines_and_since_filters() {
    use std::io::BufRead;
    let server = Server::start();
    server.deploy("logger", &guest("logger.wat"), &[]);
    assert_eq!(server.get("/logger").status(), 200);

    // --since: an hour back shows the call's lines, a time to come none; a bad value is named.
    let text = |out: std::process::Output| String::from_utf8(out.stdout).unwrap();
    let recent = text(server.cli(&["logs", "logger", "--since", "1h"]));
    assert!(recent.contains("hello from stderr"), "{recent}");
    let none = text(server.cli(&["logs", "logger", "--since", "2099-01-01T00:00:00Z"]));
    assert_eq!(none, "");
    let bad = server.cli(&["logs", "logger", "--since", "yesterday"]);
    assert!(!bad.status.success());
    let said = String::from_utf8_lossy(&bad.stderr);
    assert!(
        said.contains("since: `yesterday` is neither a duration"),
        "{said}"
    );

    // --follow with no tail: every line printed came through the stream.
    let mut follower = std::process::Command::new(common::WAFER)
        .args(["logs", "logger", "--follow", "--tail", "0"])
        .env("WAFER_SERVER", &server.admin_url)
        .env("WAFER_DATA", &server.data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    // Calls until the follower has subscribed and prints what the next call logs.
    let caller = {
        let (client, url) = (server.client.clone(), format!("{}/logger", server.url));
        std::thread::spawn(move || {
            for _ in 0..50 {
                let _ = client.get(&url).send();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("] "), "{first}");
    let mut seen = vec![first];
    while !seen.iter().any(|l| l.contains("hello from stderr")) {
        seen.push(lines.next().unwrap().unwrap());
    }
    follower.kill().unwrap();
    let _ = follower.wait();
    caller.join().unwrap();
}

#[test]
fn a_deploy_reports_its_compile_time_and_draws_no_progress_off_a_terminal() {
    let server = Server::start();
    let module = built("http-hello-rust.wasm");
    let out = server.cli(&["deploy", "hello", module.to_str().unwrap()]);
    assert!(out.status.success());
    let said = String::from_utf8(out.stdout).unwrap();
    let (_, ms) = said
        .trim_end()
        .strip_suffix(" ms)")
        .and_then(|s| s.rsplit_once("compiled in "))
        .unwrap_or_else(|| panic!("no compile time in {said:?}"));
    assert!(ms.parse::<f64>().unwrap() > 0.0, "{said}");
    // stderr is a pipe here: no progress bar, no escape codes.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The admin API answers the same figure.
    let answer = server.deploy("hello2", &module, &[]);
    assert!(answer["compile_ms"].as_f64().unwrap() > 0.0, "{answer}");
}

#[test]
fn admin_invoke_calls_are_counted_like_requests() {
    let server = Server::start();
    server.deploy("ex", &built("exports-rust.wasm"), &[]);
    for body in ["[3, 2]", "[1, 1]", "not json"] {
        server
            .admin(reqwest::Method::POST, "functions/ex/invoke/sum")
            .body(body)
            .send()
            .unwrap();
    }
    let text = scrape(&server);
    let fn_ex = "function=\"ex\"";
    assert_eq!(
        sample(&text, "wafer_requests_total", &[fn_ex, "class=\"2xx\""]),
        Some(2.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "wafer_requests_total", &[fn_ex, "class=\"4xx\""]),
        Some(1.0),
        "{text}"
    );
}
