//! Function calls over HTTP and the CLI: waPC operations (`POST /NAME/OPERATION`) and plain
//! exports with JSON arguments, against a real server.

use crate::common;

use common::{built, Server};
use reqwest::blocking::Response;
use reqwest::Method;

fn post(server: &Server, path: &str, content_type: &str, body: &[u8]) -> Response {
    reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.url))
        .header("content-type", content_type)
        .body(body.to_vec())
        .send()
        .unwrap()
}

fn answer(response: Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().unwrap())
}

#[test]
fn wapc_operations_over_http() {
    let server = Server::start();
    server.deploy("wapc", &built("wapc-rust.wasm"), &[("timeout", "1s")]);
    server.deploy("wapc-bare", &built("wapc-rust-unknown.wasm"), &[]);
    let listed = server.cli(&["ls"]);
    assert!(listed.status.success());
    let listed = String::from_utf8(listed.stdout).unwrap();
    let row = listed.lines().find(|l| l.starts_with("wapc ")).unwrap();
    assert!(
        row.contains(" wapc ") && row.contains("/wapc/...") && row.ends_with("ready"),
        "{listed}"
    );

    for name in ["wapc", "wapc-bare"] {
        let r = post(
            &server,
            &format!("/{name}/ping"),
            "application/octet-stream",
            b"",
        );
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/octet-stream",
            "{name}"
        );
        assert_eq!(r.text().unwrap(), "pong");
    }
    let payload: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    let r = post(&server, "/wapc/echo", "application/octet-stream", &payload);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().to_vec(), payload);

    let r = post(&server, "/wapc/hello", "text/plain", b"Ann");
    let id = r.headers()["x-wafer-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(answer(r), (200, "Hello, Ann!".into()));
    // The guest's host-call log line and its console line reach the function's log.
    let logs: serde_json::Value = server
        .admin(Method::GET, "functions/wapc/logs")
        .send()
        .unwrap()
        .json()
        .unwrap();
    let lines: Vec<(String, String)> = logs
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["request_id"].as_str().unwrap().to_owned(),
                l["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        lines.contains(&(id.clone(), "greeting Ann".into())),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(id, "hello from the console".into())),
        "{lines:?}"
    );

    let (status, text) = answer(post(&server, "/wapc/fail", "text/plain", b"abc"));
    assert_eq!(status, 500);
    assert_eq!(text, "function `wapc`: refusing 3 bytes\n");
    let (status, text) = answer(post(&server, "/wapc/nope", "text/plain", b""));
    assert_eq!(status, 404);
    assert_eq!(text, "function `wapc`: unknown operation `nope`\n");
    // A host call the server does not offer fails inside the guest, which reports it.
    let (status, text) = answer(post(&server, "/wapc/relay", "text/plain", b"2"));
    assert_eq!(status, 500);
    assert!(text.contains("unknown binding `app`"), "{text}");
    let (status, text) = answer(post(&server, "/wapc/spin", "text/plain", b""));
    assert_eq!(status, 504);
    assert!(text.contains("exceeded its time limit of 1s"), "{text}");
    // The server carries on.
    assert_eq!(
        answer(post(&server, "/wapc/ping", "text/plain", b"")),
        (200, "pong".into())
    );

    let r = server.get("/wapc/ping");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let (status, text) = answer(server.get("/wapc"));
    assert_eq!(status, 404);
    assert!(text.contains("POST /wapc/OPERATION"), "{text}");

    // The CLI: payload as text, from a file, and from stdin.
    let out = server.cli(&["invoke", "wapc", "echo", "--payload", "from the CLI"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"from the CLI");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"\x00\x01binary").unwrap();
    let out = server.cli(&[
        "invoke",
        "wapc",
        "echo",
        "--payload-file",
        file.path().to_str().unwrap(),
    ]);
    assert_eq!(out.stdout, b"\x00\x01binary");
    let out = server.cli(&["invoke", "wapc", "fail", "--payload", "x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing 1 bytes"),
        "{out:?}"
    );
}

#[test]
fn exports_with_json_arguments() {
    let server = Server::start();
    server.deploy("ex", &built("exports-rust.wasm"), &[("timeout", "1s")]);
    let json =
        |path: &str, body: &str| answer(post(&server, path, "application/json", body.as_bytes()));

    assert_eq!(json("/ex/sum", "[3, 2]"), (200, "5\n".into()));
    assert_eq!(json("/ex/sum", "[-3, 4294967295]"), (200, "-4\n".into()));
    assert_eq!(
        json("/ex/mul64", "[3000000000, 3]"),
        (200, "9000000000\n".into())
    );
    assert_eq!(json("/ex/norm", "[3, 4.0]"), (200, "5.0\n".into()));
    assert_eq!(
        json("/ex/count_plus", r#"["four", 10]"#),
        (200, "14\n".into())
    );
    assert_eq!(
        json("/ex/greet?returns=string", r#"["world"]"#),
        (200, "Hello, world!".into())
    );
    let r = post(
        &server,
        "/ex/reverse?returns=bytes",
        "application/octet-stream",
        b"\x01\x02\x03",
    );
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().unwrap().as_ref(), b"\x03\x02\x01");
    let r = post(
        &server,
        "/ex/greet?returns=string",
        "text/plain",
        "Zoë".as_bytes(),
    );
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.text().unwrap(), "Hello, Zoë!");

    // Wrong calls name the export's real signature.
    let (status, text) = json("/ex/sum", "[3]");
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "function `ex`: sum(i32, i32) -> i32: called with (i32)\n"
    );
    let (status, text) = json("/ex/sum", r#"[3, "x"]"#);
    assert_eq!(status, 400);
    assert!(text.contains("sum(i32, i32) -> i32"), "{text}");
    let (status, text) = json("/ex/sum", "[3, 2.5]");
    assert_eq!(status, 400);
    assert_eq!(text, "argument 2 (2.5) must be an integer (i32)\n");
    let (status, text) = json("/ex/sum", "[1e20, 1]");
    assert_eq!(status, 400);
    assert!(text.contains("argument 1"), "{text}");
    let (status, text) = json("/ex/sum", "[3, {}]");
    assert_eq!(status, 400);
    assert_eq!(
        text,
        "argument 2 is an object; arguments are numbers or strings\n"
    );
    let (status, text) = json("/ex/sum", "[3, 2");
    assert_eq!(status, 400);
    assert!(text.starts_with("the body is not valid JSON"), "{text}");
    let (status, text) = json("/ex/sum?returns=string", "[3, 2]");
    assert_eq!(status, 400);
    assert!(text.contains("(ptr << 32) | len"), "{text}");
    let (status, text) = json("/ex/sum?returns=xml", "[3, 2]");
    assert_eq!(status, 400);
    assert!(text.contains("`returns` must be"), "{text}");
    let (status, text) = json("/ex/nope", "[]");
    assert_eq!(status, 404);
    assert!(
        text.contains("no exported function `nope`") && text.contains("sum"),
        "{text}"
    );

    // Faults cost their own call only.
    let (status, text) = json("/ex/div", "[1, 0]");
    assert_eq!(status, 500);
    assert!(text.contains("unreachable"), "{text}");
    let (status, text) = json("/ex/spin", "");
    assert_eq!(status, 504);
    assert!(text.contains("time limit"), "{text}");
    assert_eq!(json("/ex/div", "[7, 2]"), (200, "3\n".into()));

    // The C example follows the same convention.
    server.deploy("exc", &built("exports-c.wasm"), &[]);
    assert_eq!(json("/exc/sum", "[40, 2]"), (200, "42\n".into()));
    assert_eq!(
        json("/exc/greet?returns=string", r#"["C"]"#),
        (200, "Hello, C!".into())
    );

    // The CLI and the admin API's invoke.
    let out = server.cli(&["invoke", "ex", "sum", "--args", "[40, 2]"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout, b"42\n");
    let out = server.cli(&[
        "invoke",
        "ex",
        "greet",
        "--args",
        r#"["CLI"]"#,
        "--returns",
        "string",
    ]);
    assert_eq!(out.stdout, b"Hello, CLI!");
    let out = server.cli(&["invoke", "ex", "sum", "--args", "[1]"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("sum(i32, i32) -> i32"),
        "{out:?}"
    );
    let r = reqwest::blocking::Client::new()
        .post(format!(
            "{}/_wafer/functions/ex/invoke/sum",
            server.admin_url
        ))
        .body("[1, 2]")
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "invoke through the admin API needs the token"
    );
}

#[test]
fn cgi_functions_are_not_invoked_by_operation() {
    let server = Server::start();
    server.deploy("hello", &built("hello-wat.wat"), &[]);
    let out = server.cli(&["invoke", "hello", "anything"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CGI program"),
        "{out:?}"
    );
    let out = server.cli(&["invoke", "missing", "op"]);
    assert!(!out.status.success());
}

#[test]
fn protobuf_described_functions_transcode_json() {
    let server = Server::start();
    let proto = common::root().join("examples/complex-rust/complex.proto");
    let module = built("complex-rust.wasm");
    let out = server.cli(&[
        "deploy",
        "complex",
        module.to_str().unwrap(),
        "--proto",
        proto.to_str().unwrap(),
        "--operation",
        "mul=complex.Pair:complex.Complex",
        "--operation",
        "add=complex.Pair:complex.Complex",
    ]);
    assert!(out.status.success(), "{out:?}");
    let json =
        |path: &str, body: &str| answer(post(&server, path, "application/json", body.as_bytes()));

    let pair = r#"{"a": {"re": 1, "im": 2}, "b": {"re": 3, "im": 4}}"#;
    let (status, text) = json("/complex/mul", pair);
    assert_eq!(status, 200, "{text}");
    let product: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(product, serde_json::json!({"re": -5.0, "im": 10.0}));
    let (_, text) = json("/complex/add", pair);
    let sum: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sum, serde_json::json!({"re": 4.0, "im": 6.0}));

    // Invalid input is refused before the guest runs, naming the field.
    let (status, text) = json("/complex/mul", r#"{"a": {"real": 1}}"#);
    assert_eq!(status, 400);
    assert!(
        text.contains("complex.Pair") && text.contains("real"),
        "{text}"
    );
    let (status, text) = json("/complex/mul", r#"{"a": {"re": "one"}}"#);
    assert_eq!(status, 400);
    assert!(text.contains("complex.Pair"), "{text}");
    let (status, text) = json("/complex/mul", r#"{"a": "#);
    assert_eq!(status, 400);
    assert!(text.contains("not a valid `complex.Pair`"), "{text}");

    // Binary protobuf passes straight through.
    let complex = |tag: u8, re: f64| {
        let mut m = vec![tag, 9, 0x09];
        m.extend_from_slice(&re.to_le_bytes());
        m
    };
    let mut pair = complex(0x0a, 1.5);
    pair.extend(complex(0x12, 2.0));
    let r = post(&server, "/complex/add", "application/octet-stream", &pair);
    assert_eq!(r.status(), 200);
    let mut expected = vec![0x09];
    expected.extend_from_slice(&3.5f64.to_le_bytes());
    assert_eq!(r.bytes().unwrap().as_ref(), expected.as_slice());

    // The CLI sends JSON arguments as JSON, so it transcodes too.
    let out = server.cli(&[
        "invoke",
        "complex",
        "mul",
        "--args",
        r#"{"a": {"re": 2}, "b": {"re": 3}}"#,
    ]);
    assert!(out.status.success(), "{out:?}");
    let product: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(product, serde_json::json!({"re": 6.0}));

    // A descriptor set works as well as a .proto.
    let set = protox::compile([proto.file_name().unwrap()], [proto.parent().unwrap()]).unwrap();
    let set_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(set_file.path(), prost::Message::encode_to_vec(&set)).unwrap();
    let out = server.cli(&[
        "deploy",
        "complex-set",
        module.to_str().unwrap(),
        "--descriptor-set",
        set_file.path().to_str().unwrap(),
        "--operation",
        "add=complex.Pair:complex.Complex",
    ]);
    assert!(out.status.success(), "{out:?}");
    let (status, text) = json("/complex-set/add", r#"{"a": {"im": 1}, "b": {"im": 2}}"#);
    assert_eq!(status, 200, "{text}");
    let sum: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(sum, serde_json::json!({"im": 3.0}));

    // Bad schemas change nothing.
    let deploy = |extra: &[&str]| {
        let mut args = vec!["deploy", "complex", module.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = server.cli(&args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, err) = deploy(&[
        "--proto",
        proto.to_str().unwrap(),
        "--operation",
        "mul=complex.Pair:complex.Nope",
    ]);
    assert!(!ok);
    assert!(err.contains("no message type `complex.Nope`"), "{err}");
    let (ok, err) = deploy(&["--operation", "mul=complex.Pair:complex.Complex"]);
    assert!(!ok);
    assert!(err.contains("need a schema"), "{err}");
    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(broken.path(), "syntax = \"proto3\"; message {").unwrap();
    let (ok, err) = deploy(&[
        "--proto",
        broken.path().to_str().unwrap(),
        "--operation",
        "mul=a.B:a.C",
    ]);
    assert!(!ok);
    assert!(err.contains("invalid .proto"), "{err}");
    let (ok, err) = deploy(&["--proto", proto.to_str().unwrap(), "--operation", "mul"]);
    assert!(!ok);
    assert!(err.contains("OPERATION=INPUT_TYPE:OUTPUT_TYPE"), "{err}");
    let versions: serde_json::Value = server
        .admin(Method::GET, "functions/complex")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(versions["versions"].as_array().unwrap().len(), 1);
}

#[test]
fn the_abi_can_be_chosen_at_deploy() {
    let server = Server::start();
    // A WASI command that also exports functions: CGI by default, exports when asked. Its
    // `_start` (the command's program) traps, so it must not run when exports are called.
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("both.wat");
    std::fs::write(
        &module,
        r#"(module
            (memory (export "memory") 1)
            (func (export "_start") unreachable)
            (func (export "sum") (param i32 i32) (result i32)
                (i32.add (local.get 0) (local.get 1)))
            (func (export "pair") (result i32 i64) (i32.const 1) (i64.const 2)))"#,
    )
    .unwrap();
    let path = module.to_str().unwrap();
    let out = server.cli(&["deploy", "both", path, "--abi", "exports"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        answer(post(&server, "/both/sum", "application/json", b"[40, 2]")),
        (200, "42\n".into())
    );
    let out = server.cli(&["ls"]);
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("both ") && l.contains(" exports ")),
        "{listed}"
    );

    let out = server.cli(&["deploy", "both", path, "--abi", "wapc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot be called as `wapc`: it exports no `__guest_call`"),
        "{err}"
    );
    let out = server.cli(&["deploy", "both", path, "--abi", "grpc"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown variant `grpc`"),
        "{out:?}"
    );
    // Neither failure changed the function.
    assert_eq!(
        answer(post(&server, "/both/sum", "application/json", b"[1, 2]")),
        (200, "3\n".into())
    );
}

#[test]
fn unknown_operations_are_told_by_the_guest_in_its_own_words() {
    let server = Server::start();
    server.deploy("own", &common::guest("wapc-own-words.wat"), &[]);
    assert_eq!(
        answer(post(&server, "/own/ping", "text/plain", b"")),
        (200, "pong".into())
    );
    let (status, text) = answer(post(&server, "/own/nope", "text/plain", b""));
    assert_eq!(status, 404, "{text}");
    assert_eq!(text, "function `own`: unknown operation `nope`\n");
    // "404" as an operation name, and an ordinary failure that names its operation.
    let (status, text) = answer(post(&server, "/own/404", "text/plain", b""));
    assert_eq!(
        (status, text.as_str()),
        (404, "function `own`: unknown operation `404`\n")
    );
    let (status, text) = answer(post(&server, "/own/fail", "text/plain", b""));
    assert_eq!(
        (status, text.as_str()),
        (500, "function `own`: it failed: fail\n")
    );
}
