//! What an anonymous client can make the server parse and hold, and what a guest's typed
//! result can make it build: JSON bodies of typed calls parsed within a budget of values
//! (the server's memory measured from /proc), typed component results bounded by the
//! function's `stdout` limit; and the CLI trusting a user's self-signed certificate made
//! with `openssl req -x509` when given with `--cacert`.

use crate::common;

use std::path::Path;
use std::process::Command;

use common::{built, Server};

/// The most values a typed call's JSON body may hold (`MAX_JSON_VALUES` in the gateway), as
/// the refusal names it.
const MAX_JSON_VALUES: &str = "262144";

/// A body just under the default 16 MiB request limit.
const BODY: usize = (16 << 20) - 1024;

/// `open` + `item,` repeated + `close`, `BODY` bytes or a little less: a JSON array of
/// small values as large as a client may send.
fn flood(open: &str, item: &str, close: &str) -> Vec<u8> {
    let count = (BODY - open.len() - close.len()) / (item.len() + 1);
    let mut body = Vec::with_capacity(BODY);
    body.extend_from_slice(open.as_bytes());
    for i in 0..count {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.extend_from_slice(close.as_bytes());
    body
}

/// The three floods of the issue: `[0,0,...]`, `[[],[],...]` and `[{},{},...]`.
fn floods(open: &str, close: &str) -> Vec<Vec<u8>> {
    ["0", "[]", "{}"]
        .into_iter()
        .map(|item| flood(&format!("{open}["), item, &format!("]{close}")))
        .collect()
}

/// A field of `/proc/PID/status`, in KiB.
fn status_kib(server: &Server, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {status}"));
    line[field.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap()
}

/// Resets the server's peak resident size (VmHWM) to its current size.
fn reset_peak(server: &Server) {
    std::fs::write(format!("/proc/{}/clear_refs", server.child.id()), "5").unwrap();
}

/// POSTs `body` to the function route `path`; the status and the answer's text.
fn post(server: &Server, path: &str, content_type: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut request = server.client.post(format!("{}{path}", server.url));
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.body(body).send().unwrap();
    (response.status().as_u16(), response.text().unwrap())
}

/// How much more than before the floods the server may hold at its peak: the 16 MiB body
/// as received and collected, and the values parsed up to the budget. Before the budget, each
/// of these floods took from 300 MiB to well over 1 GiB more.
const GROWTH_MAX_MIB: u64 = 128;

/// Sends each flood to `path`, checks each is refused with a `400` naming the limit, and that
/// the server's peak resident size grew by at most [`GROWTH_MAX_MIB`].
fn refused_within_memory(
    server: &Server,
    path: &str,
    content_type: Option<&str>,
    bodies: Vec<Vec<u8>>,
) {
    let before = status_kib(server, "VmRSS");
    reset_peak(server);
    let answers: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let start = String::from_utf8_lossy(&body[..24]).into_owned();
            (start, post(server, path, content_type, body))
        })
        .collect();
    let peak = status_kib(server, "VmHWM");
    let growth = peak.saturating_sub(before) / 1024;
    eprintln!(
        "{path}: {} MiB before, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        growth <= GROWTH_MAX_MIB,
        "{path}: the server grew by {growth} MiB (from {} to {} MiB) parsing 16 MiB bodies",
        before / 1024,
        peak / 1024
    );
    for (start, (status, text)) in answers {
        assert_eq!(status, 400, "{path} {start}...: {text}");
        assert!(
            text.contains(MAX_JSON_VALUES) && text.contains("JSON body"),
            "{path} {start}...: {text}"
        );
    }
}

#[test]
fn json_floods_to_a_plain_export_are_refused_in_bounded_memory() {
    let server = Server::start();
    server.deploy("ex", &built("exports-rust.wasm"), &[]);
    refused_within_memory(&server, "/ex/sum", None, floods("", ""));
    // It goes on serving, and a body within the budget is still a body.
    assert_eq!(
        post(&server, "/ex/sum", None, b"[3, 2]".to_vec()),
        (200, "5\n".into())
    );
}

#[test]
fn json_floods_to_a_component_function_are_refused_in_bounded_memory() {
    let server = Server::start();
    server.deploy("shapes", &built("shapes-component-rust.wasm"), &[]);
    let evens = "/shapes/wafer:shapes/shapes/evens";
    // The floods as the argument list, and as the one `list<u32>` argument.
    let mut bodies = floods("", "");
    bodies.extend(floods("[", "]"));
    refused_within_memory(&server, evens, None, bodies);
    let (status, text) = post(&server, evens, None, b"[[1, 2]]".to_vec());
    assert_eq!((status, text.trim()), (200, "[false,true]"));
    // A list within the budget crosses whole.
    let list: Vec<u32> = (0..100_000).collect();
    let body = serde_json::to_vec(&[list]).unwrap();
    let (status, text) = post(&server, evens, None, body);
    assert_eq!(status, 200, "{}", &text[..text.len().min(200)]);
    let answer: Vec<bool> = serde_json::from_str(&text).unwrap();
    assert_eq!(answer.len(), 100_000);
}

#[test]
fn json_floods_to_a_protobuf_operation_are_refused_in_bounded_memory() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let proto = dir.path().join("flood.proto");
    std::fs::write(
        &proto,
        "syntax = \"proto3\"; package flood;\n\
         import \"google/protobuf/struct.proto\";\n\
         message M { repeated int32 numbers = 1; repeated google.protobuf.Value values = 2; \
         repeated M messages = 3; }\n",
    )
    .unwrap();
    let module = built("complex-rust.wasm");
    let out = server.cli(&[
        "deploy",
        "pb",
        module.to_str().unwrap(),
        "--proto",
        proto.to_str().unwrap(),
        "--operation",
        "mul=flood.M:flood.M",
    ]);
    assert!(out.status.success(), "{out:?}");
    let json = Some("application/json");
    // The floods as the body, and in each repeated field they fit.
    let mut bodies = floods("", "");
    bodies.push(flood(r#"{"numbers": ["#, "0", "]}"));
    bodies.push(flood(r#"{"values": ["#, "[]", "]}"));
    bodies.push(flood(r#"{"messages": ["#, "{}", "]}"));
    refused_within_memory(&server, "/pb/mul", json, bodies);
    // It goes on transcoding: an empty message is the guest's empty `complex.Pair`, whose
    // product is the empty `complex.Complex`, read back as an empty `flood.M`.
    let (status, text) = post(&server, "/pb/mul", json, b"{}".to_vec());
    assert_eq!((status, text.trim()), (200, "{}"));
}

#[test]
fn a_typed_component_result_is_bounded_by_the_stdout_limit() {
    let server = Server::start();
    server.deploy(
        "shapes",
        &built("shapes-component-rust.wasm"),
        &[("stdout", "1KiB")],
    );
    let evens = "/shapes/wafer:shapes/shapes/evens";
    // `[false,true,...]` of 150 values is 826 bytes; of 200 values, 1,101: past 1 KiB.
    let list = |n: u32| serde_json::to_vec(&[(0..n).collect::<Vec<u32>>()]).unwrap();
    let (status, text) = post(&server, evens, None, list(150));
    assert_eq!(status, 200, "{text}");
    assert_eq!(text.trim().len(), 826);
    let (status, text) = post(&server, evens, None, list(200));
    assert_eq!(status, 502, "{text}");
    assert!(
        text.contains("function `shapes`") && text.contains("output limit of 1.0 KiB"),
        "{text}"
    );
    // A list of a million values stops at the limit the same way.
    let (status, text) = post(&server, evens, None, list(200_000));
    assert_eq!(status, 502, "{text}");
    // From the CLI (the admin API's invoke) too.
    let args = String::from_utf8(list(200)).unwrap();
    let out = server.cli(&[
        "invoke",
        "shapes",
        "wafer:shapes/shapes#evens",
        "--args",
        &args,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("output limit of 1.0 KiB"), "{stderr}");
    // The function goes on answering within its limit.
    let (status, text) = post(&server, evens, None, b"[[1, 2]]".to_vec());
    assert_eq!((status, text.trim()), (200, "[false,true]"));
}

/// Makes a self-signed certificate and key as a user would, `openssl req -x509 -newkey
/// rsa:2048 -nodes`, for `CN=localhost` and the subject alternative name `san`; writes
/// `NAME.pem` and `NAME.key` in `dir`.
fn openssl_certificate(dir: &Path, name: &str, san: &str) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let out = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes"])
        .args(["-subj", "/CN=localhost", "-addext"])
        .arg(format!("subjectAltName={san}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (scripts/setup.sh installs it): {e}"));
    assert!(out.status.success(), "{out:?}");
}

/// A server on HTTPS with the certificate `NAME.pem`/`NAME.key` in `dir`.
fn https_server(dir: &Path, name: &str) -> Server {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let server = Server::start_with(
        &dir.join(format!("{name}-data")),
        &[
            "serve",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    server
}

#[test]
fn the_cli_trusts_a_self_signed_certificate_made_with_openssl_given_with_cacert() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    openssl_certificate(dir, "tls", "IP:127.0.0.1");
    openssl_certificate(dir, "other", "IP:127.0.0.1");
    let server = https_server(dir, "tls");
    let cacert = dir.join("tls.pem");
    let cacert = cacert.to_str().unwrap();
    let hello = built("hello-wat.wat");
    let out = server.cli(&[
        "deploy",
        "hello",
        hello.to_str().unwrap(),
        "--cacert",
        cacert,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.cli(&["ls", "--cacert", cacert]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("hello"));

    // Another self-signed certificate, for the same name, is not this server's.
    let other = dir.join("other.pem");
    let out = server.cli(&["ls", "--cacert", other.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid peer certificate"), "{stderr}");
}

#[test]
fn a_given_certificate_must_still_name_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // For `localhost` only, while the CLI goes to 127.0.0.1.
    openssl_certificate(dir, "tls", "DNS:localhost");
    let server = https_server(dir, "tls");
    let cacert = dir.join("tls.pem");
    let out = server.cli(&["ls", "--cacert", cacert.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"certificate not valid for name "127.0.0.1""#),
        "{stderr}"
    );
}
