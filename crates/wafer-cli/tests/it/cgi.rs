//! The CGI contract (docs/cgi.md): request -> environment, stdout -> response.

use crate::common;

use std::collections::HashMap;

use common::{built, guest, Server};
use reqwest::Method;

fn env_of(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn request_becomes_cgi_environment() {
    let server = Server::start();
    server.deploy(
        "watenv",
        &built("watenv.wat"),
        &[("env", "GREETING=hi"), ("env", "REQUEST_METHOD=spoofed")],
    );
    let response = server
        .client
        .post(format!("{}/watenv/sub/p%20q?x=1&y=a%20b", server.url))
        .header("Content-Type", "application/json")
        .header("X-Multi", "one")
        .header("X-Multi", "two")
        .header("Proxy", "http://evil.example")
        .header("Authorization", "Basic c2VjcmV0")
        .body("{\"k\":1}")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let env = env_of(&response.text().unwrap());
    let port = server.url.rsplit(':').next().unwrap();
    let expect = [
        ("REQUEST_METHOD", "POST"),
        ("CONTENT_TYPE", "application/json"),
        ("CONTENT_LENGTH", "7"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SCRIPT_NAME", "/watenv"),
        ("PATH_INFO", "/sub/p q"),
        ("PATH_TRANSLATED", "/sub/p q"),
        ("X_RAW_PATH_INFO", "/sub/p%20q"),
        ("QUERY_STRING", "x=1&y=a%20b"),
        ("X_MATCHED_ROUTE", "/watenv/..."),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REMOTE_HOST", "127.0.0.1"),
        ("REMOTE_USER", ""),
        ("AUTH_TYPE", "Basic"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", port),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_X_MULTI", "one, two"),
        ("http_path", "/watenv/sub/p%20q"),
        ("http_method", "POST"),
        ("http_query", "x=1&y=a%20b"),
        ("GREETING", "hi"),
    ];
    for (key, value) in expect {
        assert_eq!(
            env.get(key).map(String::as_str),
            Some(value),
            "{key} in {env:?}"
        );
    }
    assert_eq!(
        env["X_FULL_URL"],
        format!("{}/watenv/sub/p%20q?x=1&y=a%20b", server.url)
    );
    assert_eq!(env["http_host"], server.url.trim_start_matches("http://"));
    assert!(env["remote_addr"].starts_with("127.0.0.1:"));
    assert!(env["SERVER_SOFTWARE"].starts_with("Wafer/"));
    assert!(
        !env.contains_key("HTTP_PROXY"),
        "Proxy header must never become HTTP_PROXY"
    );
    assert!(
        !env.contains_key("HTTP_AUTHORIZATION"),
        "Authorization must not reach the guest"
    );
    assert!(!env.values().any(|v| v.contains("c2VjcmV0")));
}

#[test]
fn query_pairs_become_argv_and_body_is_stdin() {
    let server = Server::start();
    server.deploy("rustenv", &built("rustenv.wasm"), &[]);
    let text = server
        .client
        .post(format!("{}/rustenv/x?a=1&b=two%20words", server.url))
        .body("the body")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("args: /rustenv a=1 b=two words"), "{text}");
    assert!(text.contains("body: the body"), "{text}");
}

fn echo(server: &Server, output: &str) -> reqwest::blocking::Response {
    server
        .client
        .post(format!("{}/echo", server.url))
        .body(output.to_owned())
        .send()
        .unwrap()
}

#[test]
fn header_block_is_parsed() {
    let server = Server::start();
    server.deploy("echo", &guest("echo.wat"), &[]);

    let r = echo(&server, "Status: 404 Not Found\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Custom: yes\r\n\r\n<h1>nope</h1>");
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/html");
    assert_eq!(r.headers()["x-custom"], "yes");
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"], "repeated headers stay repeated");
    assert_eq!(r.text().unwrap(), "<h1>nope</h1>");

    let r = echo(&server, "Location: /elsewhere\n\n");
    assert_eq!(r.status(), 302);
    assert_eq!(r.headers()["location"], "/elsewhere");

    let r = echo(&server, "Status: 301\nLocation: /moved\n\n");
    assert_eq!(r.status(), 301);

    let r = echo(&server, "Content-Type: application/json\n\n{}");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.text().unwrap(), "{}");
}

#[test]
fn output_without_header_block_is_a_plain_body() {
    let server = Server::start();
    server.deploy("echo", &guest("echo.wat"), &[]);
    for raw in [
        "just text\n",
        "Name: not a cgi header\n\nbody",
        "line one\n\nline three",
    ] {
        let r = echo(&server, raw);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        assert_eq!(r.text().unwrap(), raw);
    }
}

#[test]
fn malformed_header_block_is_502() {
    let server = Server::start();
    server.deploy("echo", &guest("echo.wat"), &[]);
    for (bad, says) in [
        ("Status: teapot\n\n", "invalid Status"),
        ("Status: 42\n\n", "invalid Status"),
        (
            "Content-Type: text/plain\nthis is not a header\n\nbody",
            "malformed CGI header line",
        ),
        (
            "Content-Type: text/\x01plain\n\n",
            "invalid value for header",
        ),
        ("Status: 101 Switching Protocols\n\n", "invalid Status"),
        (
            "Status: 100\nContent-Type: text/plain\n\n",
            "invalid Status",
        ),
    ] {
        let r = echo(&server, bad);
        assert_eq!(r.status(), 502, "{bad:?}");
        let text = r.text().unwrap();
        assert!(text.contains(says), "{bad:?}: {text}");
    }
    // The server carries on.
    assert_eq!(echo(&server, "ok").status(), 200);
}

#[test]
fn a_huge_malformed_header_line_is_quoted_in_a_few_hundred_bytes() {
    let server = Server::start();
    server.deploy("echo", &guest("echo.wat"), &[]);
    let line = "x".repeat(8 << 20);
    let r = echo(
        &server,
        &format!("Content-Type: text/plain\n{line}\n\nbody"),
    );
    assert_eq!(r.status(), 502);
    let text = r.text().unwrap();
    assert!(text.len() < 600, "a {} byte error message", text.len());
    assert!(text.contains("(8388608 bytes in all)"), "{text}");
    let logs: serde_json::Value = server
        .admin(Method::GET, "functions/echo/logs?tail=5")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let logged: usize = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap().len())
        .sum();
    assert!(logged < 600, "{logged} bytes logged");
}

#[test]
fn underscore_headers_nul_paths_and_bare_credentials_do_not_reach_the_environment() {
    let server = Server::start();
    server.deploy("watenv", &built("watenv.wat"), &[]);
    let response = server
        .client
        .get(format!("{}/watenv/", server.url))
        .header("X-Remote-User", "proxy-said-alice")
        .header("X_Remote_User", "client-says-admin")
        .header("Authorization", "s3cret")
        .send()
        .unwrap();
    let env = env_of(&response.text().unwrap());
    assert_eq!(env["HTTP_X_REMOTE_USER"], "proxy-said-alice");
    assert_eq!(env["AUTH_TYPE"], "");
    assert!(
        !env.values()
            .any(|v| v.contains("s3cret") || v.contains("client-says-admin")),
        "{env:?}"
    );
    // argv comes from the query for a module that reads its arguments (rustenv does).
    server.deploy("rustenv", &built("rustenv.wasm"), &[]);
    for path in ["/watenv/a%00b", "/rustenv/?x=%00"] {
        let response = server.get(path);
        assert_eq!(response.status(), 400, "{path}");
        assert!(response.text().unwrap().contains("NUL"), "{path}");
    }
}

#[test]
fn head_has_headers_but_no_body() {
    let server = Server::start();
    server.deploy("hello", &built("hello-wat.wat"), &[]);
    let r = server
        .client
        .head(format!("{}/hello", server.url))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "16");
    assert_eq!(r.bytes().unwrap().len(), 0);
}

#[test]
fn nonzero_exit_is_500_unless_headers_were_complete() {
    let server = Server::start();
    server.deploy("exit3", &guest("echo-exit3.wat"), &[]);
    let post = |body: &str| {
        server
            .client
            .post(format!("{}/exit3", server.url))
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    let r = post("partial output");
    assert_eq!(r.status(), 500);
    assert!(r.text().unwrap().contains("exited with code 3"));
    let r = post("Status: 201 Created\n\ncreated anyway");
    assert_eq!(r.status(), 201);
    assert_eq!(r.text().unwrap(), "created anyway");
}

#[test]
fn log_imports_and_stderr_reach_wafer_logs() {
    let server = Server::start();
    server.deploy("logger", &guest("logger.wat"), &[]);
    let r = server.get("/logger");
    assert_eq!(r.status(), 200);
    let request_id = r.headers()["x-wafer-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(r.text().unwrap(), "logged\n");
    let out = server.cli(&["logs", "logger"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let logs = String::from_utf8(out.stdout).unwrap();
    for line in ["42", "hello from log_string", "hello from stderr"] {
        assert!(
            logs.lines()
                .any(|l| l.ends_with(line) && l.contains(&format!("[{request_id}]"))),
            "{line:?} with request id {request_id} missing from:\n{logs}"
        );
    }
}

#[test]
fn routes_exact_wildcard_and_unknown() {
    let server = Server::start();
    server.deploy(
        "watenv",
        &built("watenv.wat"),
        &[("route", "/exact"), ("route", "/api/...")],
    );
    let script = |path: &str| {
        let r = server.get(path);
        assert_eq!(r.status(), 200, "{path}");
        let env = env_of(&r.text().unwrap());
        (env["SCRIPT_NAME"].clone(), env["PATH_INFO"].clone())
    };
    assert_eq!(script("/exact"), ("/exact".into(), "".into()));
    assert_eq!(script("/api"), ("/api".into(), "".into()));
    assert_eq!(script("/api/v1/users"), ("/api".into(), "/v1/users".into()));
    assert_eq!(server.get("/exact/below").status(), 404);
    assert_eq!(server.get("/apix").status(), 404);
    assert_eq!(
        server.get("/watenv").status(),
        404,
        "declared routes replace the default"
    );
    let r = server.get("/nothing-here");
    assert_eq!(r.status(), 404);
    assert!(r
        .text()
        .unwrap()
        .contains("no function is served at `/nothing-here`"));
    // A second function cannot take a route that is in use.
    let r = server.deploy_with("other", &built("hello-wat.wat"), &[("route", "/api/...")]);
    assert_eq!(r.status(), 409);
    assert!(r
        .text()
        .unwrap()
        .contains("route `/api/...` is already served by function `watenv`"));
    assert_eq!(
        server
            .admin(Method::GET, "functions/other")
            .send()
            .unwrap()
            .status(),
        404,
        "a refused deploy creates nothing"
    );
}

#[test]
fn a_wasi_preview0_module_runs_as_cgi() {
    let server = Server::start();
    server.deploy("old", &guest("preview0.wat"), &[]);
    let response = server.get("/old/");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "Hello from preview 0!\n");
}

#[test]
fn an_entrypoint_runs_another_export_than_start() {
    let server = Server::start();
    let module = guest("entrypoints.wat");
    server.deploy("plain", &module, &[]);
    server.deploy("hello", &module, &[("entrypoint", "hello")]);
    assert_eq!(server.get("/plain/").text().unwrap(), "from _start\n");
    assert_eq!(server.get("/hello/").text().unwrap(), "from hello\n");
    for (entrypoint, says) in [
        ("add", "the entrypoint `add` must take and return nothing; it is add(i32, i32) -> i32"),
        ("nope", "the entrypoint `nope` is not an exported function (the module exports: _start, hello, add)"),
    ] {
        let response = server.deploy_with("bad", &module, &[("entrypoint", entrypoint)]);
        assert_eq!(response.status(), 400);
        let text = response.text().unwrap();
        assert!(text.contains(says), "{text}");
    }
}

/// The answer's status and text at `path`.
fn answer(server: &Server, path: &str) -> (u16, String) {
    let response = server.get(path);
    (response.status().as_u16(), response.text().unwrap())
}

#[test]
fn module_declared_routes_are_served_by_their_exports() {
    let data = tempfile::tempdir().unwrap();
    let module = guest("routes.wat");
    {
        let server = Server::start_in(data.path());
        server.deploy("routes", &module, &[("route", "/example")]);
        let deployed = server
            .admin(Method::GET, "functions/routes")
            .send()
            .unwrap()
            .json::<serde_json::Value>()
            .unwrap();
        assert_eq!(
            deployed["versions"][0]["module_routes"],
            serde_json::json!([
                {"route": "/hello", "handler": "hello"},
                {"route": "/goodbye/...", "handler": "goodbye"},
                {"route": "/main", "handler": "_start"},
            ])
        );
        let listed = server.admin(Method::GET, "functions").send().unwrap();
        let listed: serde_json::Value = listed.json().unwrap();
        assert_eq!(
            listed[0]["routes"],
            serde_json::json!([
                "/example",
                "/example/hello",
                "/example/goodbye/...",
                "/example/main"
            ])
        );
    }
    // After a restart the routes come from the record, and still answer.
    let server = Server::start_in(data.path());
    for (path, says) in [
        ("/example", "from _start\n"),
        ("/example/hello", "from hello\n"),
        ("/example/goodbye", "from goodbye\n"),
        ("/example/goodbye/and/more", "from goodbye\n"),
        ("/example/main", "from _start\n"),
    ] {
        assert_eq!(answer(&server, path), (200, says.to_owned()), "{path}");
    }
    // The function's route is exact, so nothing else below it answers.
    assert_eq!(answer(&server, "/example/other").0, 404);
    assert_eq!(answer(&server, "/example/hello/more").0, 404);

    // With the default wildcard route and another entrypoint: the declared routes win over
    // the wildcard, which runs the entrypoint.
    server.deploy("plain", &module, &[("entrypoint", "goodbye")]);
    assert_eq!(answer(&server, "/plain/hello").1, "from hello\n");
    assert_eq!(answer(&server, "/plain/anything").1, "from goodbye\n");
    assert_eq!(answer(&server, "/plain/main").1, "from _start\n");

    // A version whose module declares nothing takes the declared routes away.
    server.deploy(
        "routes",
        &guest("entrypoints.wat"),
        &[("route", "/example")],
    );
    assert_eq!(answer(&server, "/example").1, "from _start\n");
    assert_eq!(answer(&server, "/example/hello").0, 404);
    // ... and rollback brings them back.
    let rolled = server
        .admin(Method::POST, "functions/routes/rollback")
        .send()
        .unwrap();
    assert_eq!(rolled.status(), 200);
    assert_eq!(answer(&server, "/example/hello").1, "from hello\n");
}

/// A CGI module whose `_routes` export runs `body`, then prints `routes`.
fn declaring(dir: &std::path::Path, name: &str, body: &str, routes: &str) -> std::path::PathBuf {
    let wat = format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "{}")
  (func (export "_start"))
  (func (export "hello"))
  (func (export "add") (param i32 i32) (result i32) (local.get 0))
  (func (export "_routes")
    {body}
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const {}))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
        routes.replace('\n', "\\n"),
        routes.len()
    );
    let path = dir.join(format!("{name}.wat"));
    std::fs::write(&path, wat).unwrap();
    path
}

#[test]
fn a_bad_routes_export_fails_the_deploy_and_changes_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    server.deploy("other", &guest("entrypoints.wat"), &[("route", "/taken")]);
    let loops = "(loop $forever (br $forever))";
    for (name, body, routes, says) in [
        (
            "half",
            "",
            "/hello hello\n/bye\n",
            "line 2 is `/bye`; each line must be a route and the export",
        ),
        (
            "badroute",
            "",
            "hello hello\n",
            "line 1: invalid route `hello`: it must start with `/`",
        ),
        (
            "noexport",
            "",
            "/x nope\n",
            "route `/x`: the entrypoint `nope` is not an exported function",
        ),
        (
            "params",
            "",
            "/x add\n",
            "route `/x`: the entrypoint `add` must take and return nothing",
        ),
        ("traps", "unreachable", "", "unreachable"),
        ("loops", loops, "", "exceeded its time limit of 1s"),
    ] {
        let module = declaring(dir.path(), name, body, routes);
        let response = server.deploy_with(name, &module, &[("timeout", "1s")]);
        assert_eq!(response.status(), 400, "{name}");
        let text = response.text().unwrap();
        assert!(
            text.contains("the module's `_routes` export"),
            "{name}: {text}"
        );
        assert!(text.contains(says), "{name}: {text}");
        assert_eq!(
            answer(&server, &format!("/{name}/")).0,
            404,
            "{name} was deployed"
        );
    }
    // A declared route another function serves is refused like any taken route.
    let module = declaring(dir.path(), "clash", "", "/taken hello\n");
    let response = server.deploy_with("clash", &module, &[("route", "/...")]);
    assert_eq!(response.status(), 409);
    assert!(response
        .text()
        .unwrap()
        .contains("route `/taken` is already served by function `other`"));
    assert_eq!(answer(&server, "/taken").1, "from _start\n");
}
