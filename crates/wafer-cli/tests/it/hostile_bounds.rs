//! Bounds a deployer or a guest could push past: absurd limits, wildcard HTTP rules against
//! addresses, module-declared routes under `/`, the in-process pub/sub queue in bytes, and the
//! data directory's modes. Each test runs a real server over real sockets.

use crate::common;

use std::path::Path;

use common::{built, guest, Endpoint, Server};
use reqwest::Method;

fn answer(server: &Server, path: &str) -> (u16, String) {
    let response = server.get(path);
    (response.status().as_u16(), response.text().unwrap())
}

/// Runs `wafer deploy NAME MODULE FLAGS...` against `server`: success, and what it printed.
fn deploy_cli(server: &Server, name: &str, module: &Path, flags: &[&str]) -> (bool, String) {
    let mut args = vec!["deploy", name, module.to_str().unwrap()];
    args.extend_from_slice(flags);
    let out = server.cli(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Reported: `--timeout 18446744073709551615s` was accepted, and every call of the function
/// then panicked in `Instant + Duration`.
#[test]
fn absurd_limits_are_refused_at_deploy_naming_the_limit_its_value_and_its_maximum() {
    let server = Server::start();
    let echo = guest("echo.wat");
    for (limit, value, says) in [
        (
            "timeout",
            "18446744073709551615s",
            "limit `timeout` is 18446744073709551615s, above its maximum of 86400s (1 day)",
        ),
        (
            "http_timeout",
            "1000000h",
            "limit `http_timeout` is 3600000000s, above its maximum of 86400s (1 day)",
        ),
        (
            "memory",
            "8GiB",
            "limit `memory` is 8589934592 bytes (8.0 GiB), above its maximum of 4294967296 \
             bytes (4.0 GiB)",
        ),
        (
            "max_concurrency",
            "4294967295",
            "limit `max_concurrency` is 4294967295, above its maximum of 10000",
        ),
        (
            "request_body",
            "8EiB",
            "limit `request_body` is 9223372036854775808 bytes (8.0 EiB), above its \
             maximum of 1073741824 bytes (1.0 GiB)",
        ),
        (
            "stdout",
            "2GiB",
            "limit `stdout` is 2147483648 bytes (2.0 GiB), above its maximum of 1073741824 \
             bytes (1.0 GiB)",
        ),
        (
            "kv_keys",
            "18446744073709551615",
            "limit `kv_keys` is 18446744073709551615, above its maximum of 10000000",
        ),
    ] {
        let response = server.deploy_with("absurd", &echo, &[(limit, value)]);
        let status = response.status().as_u16();
        let text = response.text().unwrap();
        assert_eq!(status, 400, "{limit}={value}: {text}");
        assert!(text.contains(says), "{limit}={value}: {text}");
    }
    // The CLI gets the same refusal, and nothing was deployed.
    let (ok, text) = deploy_cli(
        &server,
        "absurd",
        &echo,
        &["--timeout", "18446744073709551615s"],
    );
    assert!(!ok, "{text}");
    assert!(
        text.contains("limit `timeout` is 18446744073709551615s, above its maximum"),
        "{text}"
    );
    let missing = server
        .admin(Method::GET, "functions/absurd")
        .send()
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The maxima themselves are accepted, and the function answers.
    server.deploy(
        "most",
        &echo,
        &[
            ("timeout", "1day"),
            ("memory", "4GiB"),
            ("max_concurrency", "10000"),
        ],
    );
    assert_eq!(server.post("/most", "hello"), "hello");
}

/// Reported: WAGI's dynamic-routes module mounted at `/` was refused as `invalid route
/// //exact`.
#[test]
fn module_declared_routes_under_the_root_route_are_served() {
    let server = Server::start();
    let module = guest("routes.wat");
    server.deploy("root", &module, &[("route", "/")]);
    let listed: serde_json::Value = server
        .admin(Method::GET, "functions/root")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        listed["versions"][0]["module_routes"][0]["route"], "/hello",
        "{listed}"
    );
    for (path, says) in [
        ("/", "from _start\n"),
        ("/hello", "from hello\n"),
        ("/goodbye", "from goodbye\n"),
        ("/goodbye/and/more", "from goodbye\n"),
        ("/main", "from _start\n"),
    ] {
        assert_eq!(answer(&server, path), (200, says.to_owned()), "{path}");
    }
    // `/` is exact: nothing else answers.
    assert_eq!(answer(&server, "/other").0, 404);

    // Under a wildcard base, as WAGI does.
    server.deploy("based", &module, &[("route", "/base/...")]);
    assert_eq!(answer(&server, "/base/hello").1, "from hello\n");
    assert_eq!(answer(&server, "/base/goodbye/x").1, "from goodbye\n");
    assert_eq!(answer(&server, "/base/anything").1, "from _start\n");
}

/// Reported: the allow-list entry `*.0.0.1` let a function reach 127.0.0.1.
#[test]
fn a_wildcard_http_rule_does_not_reach_an_address() {
    let server = Server::start();
    let endpoint = Endpoint::start();
    let visits = built("visits-rust.wasm");
    let (ok, text) = deploy_cli(&server, "wild", &visits, &["--http", "*.0.0.1:*"]);
    assert!(ok, "{text}");
    let fetched = answer(&server, &format!("/wild?fetch={}", endpoint.url("/ping")));
    assert!(
        fetched.1.contains(&format!(
            "fetch error: denied: http://127.0.0.1:{} is not on this function's allow-list",
            endpoint.port
        )),
        "{fetched:?}"
    );
    assert!(endpoint.seen().is_empty(), "{:?}", endpoint.seen());
    // An entry naming the address reaches it.
    let named = format!("127.0.0.1:{}", endpoint.port);
    let (ok, text) = deploy_cli(&server, "named", &visits, &["--http", &named]);
    assert!(ok, "{text}");
    let fetched = answer(&server, &format!("/named?fetch={}", endpoint.url("/ping")));
    assert!(fetched.1.contains("fetch: 200 pong"), "{fetched:?}");
}

/// Reported: a subscriber that never finishes could hold 1024 queued messages of 1 MiB.
#[test]
fn a_stuck_subscriber_holds_at_most_16_mib_and_the_publisher_is_told() {
    let server = Server::start();
    let visits = built("visits-rust.wasm");
    let (ok, text) = deploy_cli(&server, "publisher", &visits, &["--publish", "big.>"]);
    assert!(ok, "{text}");
    #[rustfmt::skip]
    let slow = ["--subscribe", "big.stuck", "--timeout", "1h", "--max-concurrency", "1"];
    let (ok, text) = deploy_cli(&server, "stuck", &guest("spin.wat"), &slow);
    assert!(ok, "{text}");
    let message = "x".repeat(1 << 20);
    // The message being delivered counts with those waiting: sixteen fit.
    for i in 0..16 {
        let text = server.post("/publisher?publish=big.stuck", &message);
        assert!(text.ends_with("published\n"), "message {i}: {text}");
    }
    let text = server.post("/publisher?publish=big.stuck", &message);
    assert!(
        text.contains(
            "publish error: too_large: the message of 1048576 bytes was not queued for \
             `stuck` (16777216 bytes waiting): a subscriber's queue holds at most 16777216 \
             bytes (16 MiB) of messages"
        ),
        "{text}"
    );
    let stats = server.pubsub();
    let stuck = stats["subscribers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["function"] == "stuck")
        .unwrap()
        .clone();
    assert_eq!(stuck["dropped"], 1, "{stats}");
    // Other topics and functions carry on.
    assert!(server.cli(&["rm", "stuck"]).status.success());
    let text = server.post("/publisher?publish=big.other", "small");
    assert!(text.ends_with("published\n"), "{text}");
}

/// Every directory (0700) and file (0600) under `dir` that others may read.
#[cfg(unix)]
fn open_to_others(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut open = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(d) = dirs.pop() {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        if mode & 0o077 != 0 {
            open.push(format!("{} {:o}", d.display(), mode & 0o777));
        }
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                dirs.push(path);
                continue;
            }
            let mode = entry.metadata().unwrap().permissions().mode();
            if mode & 0o077 != 0 {
                open.push(format!("{} {:o}", path.display(), mode & 0o777));
            }
        }
    }
    open
}

/// Reported: the data directory's files were created 0644 in directories a default umask
/// leaves 0755.
#[cfg(unix)]
#[test]
fn the_data_directory_is_the_servers_users_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    // A data directory made beforehand, open to others as a default umask leaves it.
    let data = parent.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let server = Server::start_with(&data, &["serve"]);
    let visits = built("visits-rust.wasm");
    let (ok, text) = deploy_cli(&server, "visits", &visits, &["--kv"]);
    assert!(ok, "{text}");
    assert!(answer(&server, "/visits").1.contains("visit 1"));
    assert!(answer(&server, "/visits").1.contains("visit 2"));
    let files: Vec<String> = ["admin-token", "kv.redb"]
        .into_iter()
        .filter(|f| !data.join(f).exists())
        .map(str::to_owned)
        .collect();
    assert!(files.is_empty(), "missing: {files:?}");
    // Every file and directory, `invocations.redb` (request headers, bodies, results)
    // included: made private by the library that creates it, and by the umask `wafer serve`
    // sets besides.
    let open = open_to_others(&data);
    assert!(open.is_empty(), "readable by others: {open:#?}");
}
