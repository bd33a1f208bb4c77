//! The admin API and the CLI commands over it: deploy, versions, rollback, rm, auth.

use crate::common;

use common::{built, Server};
use reqwest::Method;

#[test]
fn deploy_versions_rollback_and_remove_through_the_cli() {
    let server = Server::start();
    let wat = built("hello-wat.wat");
    let c = built("hello-c.wasm");
    let ok = |args: &[&str]| {
        let out = server.cli(args);
        assert!(
            out.status.success(),
            "wafer {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(ok(&["deploy", "hello", wat.to_str().unwrap()]).starts_with("deployed hello v1"));
    assert_eq!(server.get("/hello").text().unwrap(), "Hello from WAT!\n");
    assert!(ok(&["deploy", "hello", wat.to_str().unwrap()]).starts_with("unchanged hello v1"));
    assert!(ok(&[
        "deploy",
        "hello",
        c.to_str().unwrap(),
        "--route",
        "/hello/...",
        "--env",
        "A=B"
    ])
    .starts_with("deployed hello v2"));
    assert_eq!(server.get("/hello").text().unwrap(), "Hello from C!\n");

    let versions = ok(&["versions", "hello"]);
    assert_eq!(versions.lines().count(), 3, "{versions}");
    assert!(
        versions.lines().nth(2).unwrap().contains('*'),
        "v2 is active:\n{versions}"
    );

    assert!(ok(&["rollback", "hello"]).contains("v1"));
    assert_eq!(server.get("/hello").text().unwrap(), "Hello from WAT!\n");
    let out = server.cli(&["rollback", "hello"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version before the active one"));

    let list = ok(&["ls"]);
    assert!(list.contains("hello") && list.contains("ready"), "{list}");

    ok(&["rm", "hello"]);
    assert_eq!(server.get("/hello").status(), 404);
    let out = server.cli(&["rm", "hello"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no function named `hello`"));
}

#[test]
fn module_is_fetched_by_digest() {
    let server = Server::start();
    let deployed = server.deploy("hello", &built("hello-c.wasm"), &[]);
    let digest = deployed["digest"].as_str().unwrap();
    let r = server
        .admin(Method::GET, &format!("modules/{digest}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.bytes().unwrap().as_ref(),
        std::fs::read(built("hello-c.wasm")).unwrap()
    );
    let missing = format!("modules/sha256:{}", "0".repeat(64));
    assert_eq!(
        server.admin(Method::GET, &missing).send().unwrap().status(),
        404
    );
    assert_eq!(
        server
            .admin(Method::GET, "modules/sha256:zz")
            .send()
            .unwrap()
            .status(),
        400
    );
}

#[test]
fn invalid_uploads_get_400_with_the_reason_and_change_nothing() {
    let server = Server::start();
    server.deploy("hello", &built("hello-wat.wat"), &[]);
    let put = |name: &str, body: &'static [u8], query: &[(&str, &str)]| {
        let r = server
            .admin(Method::PUT, &format!("functions/{name}"))
            .query(query)
            .body(body)
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    };
    let cases: [(&str, &[u8], &[(&str, &str)], &str); 8] = [
        (
            "hello",
            b"\0asm\x01\0\0\0garbage",
            &[],
            "invalid wasm module",
        ),
        (
            "hello",
            b"(module (func $f (result i32)))",
            &[],
            "invalid wasm module",
        ),
        ("hello", b"(module", &[], "invalid WAT"),
        ("hello", b"(component)", &[], "unsupported module"),
        (
            "hello",
            b"(module (import \"nope\" \"f\" (func)) (func (export \"_start\")))",
            &[],
            "cannot link module",
        ),
        ("Hello", b"(module)", &[], "invalid function name `Hello`"),
        (
            "hello",
            b"(module)",
            &[("memory", "lots")],
            "invalid deploy parameters",
        ),
        (
            "hello",
            b"(module)",
            &[("colour", "red")],
            "unknown deploy parameter `colour`",
        ),
    ];
    for (name, body, query, says) in cases {
        let (status, text) = put(name, body, query);
        assert_eq!(status, 400, "{says}: {text}");
        assert!(text.contains(says), "expected {says:?} in {text:?}");
    }
    let record: serde_json::Value = server
        .admin(Method::GET, "functions/hello")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(record["versions"].as_array().unwrap().len(), 1);
    assert_eq!(server.get("/hello").text().unwrap(), "Hello from WAT!\n");
}

#[test]
fn admin_calls_need_the_token() {
    let server = Server::start();
    let module = std::fs::read(built("hello-wat.wat")).unwrap();
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("Basic abc"),
        Some("Bearer "),
    ] {
        let mut put = server
            .client
            .put(format!("{}/_wafer/functions/hello", server.admin_url))
            .body(module.clone());
        let mut list = server
            .client
            .get(format!("{}/_wafer/functions", server.admin_url));
        if let Some(auth) = auth {
            put = put.header("Authorization", auth);
            list = list.header("Authorization", auth);
        }
        assert_eq!(put.send().unwrap().status(), 401, "{auth:?}");
        assert_eq!(list.send().unwrap().status(), 401, "{auth:?}");
    }
    assert_eq!(
        server.get("/hello").status(),
        404,
        "refused deploys change nothing"
    );
    let out = server.cli(&["ls", "--token", "wrong"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(server.data.join("admin-token"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn wafer_run_passes_stdio_and_exit_codes() {
    let run = |args: &[&str]| {
        std::process::Command::new(common::WAFER)
            .arg("run")
            .args(args)
            .output()
            .unwrap()
    };
    // Options before the module; everything after it is the module's, `--` or not.
    let rustenv = built("rustenv.wasm");
    for args in [
        [
            "--env",
            "K=v",
            rustenv.to_str().unwrap(),
            "x",
            "-y",
            "--env",
        ]
        .as_slice(),
        &[
            "--env",
            "K=v",
            rustenv.to_str().unwrap(),
            "--",
            "x",
            "-y",
            "--env",
        ],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(
            text.contains("K=v") && text.contains("rustenv.wasm x -y --env"),
            "{args:?}: {text}"
        );
    }
    let out = run(&[common::guest("echo-exit3.wat").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    let dir = tempfile::tempdir().unwrap();
    let trap = dir.path().join("trap.wat");
    std::fs::write(&trap, "(module (func (export \"_start\") unreachable))").unwrap();
    let out = run(&[trap.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(134));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
}

#[test]
fn an_upload_past_the_limit_is_413() {
    let server = Server::start();
    let too_big = vec![0u8; wafer_admin::MAX_UPLOAD + 1];
    for multipart in [false, true] {
        let request = server.admin(Method::PUT, "functions/big");
        let request = if multipart {
            let part = reqwest::blocking::multipart::Part::bytes(too_big.clone());
            request.multipart(reqwest::blocking::multipart::Form::new().part("module", part))
        } else {
            request.body(too_big.clone())
        };
        let response = request.send().unwrap();
        assert_eq!(response.status(), 413, "multipart: {multipart}");
        let text = response.text().unwrap();
        assert!(
            text.contains("larger than the limit of 256.0 MiB"),
            "{text}"
        );
    }
}

#[test]
fn concurrent_deploys_of_one_name_keep_every_version() {
    let server = Server::start();
    let wat = built("hello-wat.wat");
    let deployers = 8;
    std::thread::scope(|s| {
        for i in 0..deployers {
            let (server, wat) = (&server, &wat);
            s.spawn(move || {
                let env = format!("N={i}");
                server.deploy("same", wat, &[("env", env.as_str())]);
            });
        }
    });
    let record: serde_json::Value = server
        .admin(Method::GET, "functions/same")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let versions = record["versions"].as_array().unwrap();
    let mut numbers: Vec<u64> = versions
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=deployers).collect::<Vec<u64>>());
    let mut envs: Vec<&str> = versions
        .iter()
        .map(|v| v["config"]["env"]["N"].as_str().unwrap())
        .collect();
    envs.sort_unstable();
    let expected: Vec<String> = (0..deployers).map(|i| i.to_string()).collect();
    assert_eq!(envs, expected, "a deploy's version was lost");
    assert_eq!(record["active"].as_u64(), Some(deployers));
    assert_eq!(server.get("/same").text().unwrap(), "Hello from WAT!\n");
}
