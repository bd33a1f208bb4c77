//! The admin plane is out of every function's reach (docs/security.md): it has its own
//! listener, the function listener serves nothing of it, the admin token never reaches a
//! function by any path, and a client cannot forge the headers only the server sets.

use crate::common;

use std::time::{Duration, Instant};

use common::{built, guest, Server};

use reqwest::Method;
use serde_json::Value;

/// The id from a `202` of `/_wafer/async/...`.
fn accepted(response: reqwest::blocking::Response) -> String {
    let status = response.status();
    let text = response.text().unwrap();
    assert_eq!(status, 202, "{text}");
    let answer: Value = serde_json::from_str(&text).unwrap();
    answer["id"].as_str().unwrap().to_owned()
}

#[test]
fn the_function_listener_serves_nothing_of_the_admin_plane() {
    let server = Server::start();
    server.deploy("hello", &built("hello-wat.wat"), &[]);
    for path in [
        "/_wafer/functions",
        "/_wafer/functions/hello",
        "/_wafer/ui",
        "/_wafer/ui/app.js",
        "/_wafer/openapi.json",
        "/_wafer/invocations",
        "/_wafer/stats",
        "/_wafer/health",
        "/_wafer/pubsub",
        "/metrics",
    ] {
        // With the token or without it: the path is not there.
        let response = server
            .client
            .get(format!("{}{path}", server.url))
            .bearer_auth(&server.token)
            .send()
            .unwrap();
        assert_eq!(response.status(), 404, "{path} on the function listener");
    }
    let deploy = server
        .client
        .put(format!("{}/_wafer/functions/taken", server.url))
        .bearer_auth(&server.token)
        .body(std::fs::read(built("hello-wat.wat")).unwrap())
        .send()
        .unwrap();
    assert_eq!(deploy.status(), 404);
    assert!(
        server
            .admin(Method::GET, "functions/taken")
            .send()
            .unwrap()
            .status()
            == 404
    );

    // The admin listener serves no function, and the function listener serves them.
    assert_eq!(server.get_admin("/hello").status(), 404);
    assert_eq!(server.get("/hello").status(), 200);
    // The admin plane is there, on its own listener.
    assert_eq!(server.get_admin("/_wafer/ui").status(), 200);
    assert_eq!(server.get_admin("/metrics").status(), 200);
    assert_eq!(
        server.get_admin("/_wafer/functions").status(),
        401,
        "the admin API wants the token"
    );
}

#[test]
fn the_admin_grpc_service_is_not_on_the_function_listener() {
    use wafer_admin::proto::wafer_client::WaferClient;
    use wafer_admin::proto::ListRequest;

    let server = Server::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let list = |url: String| {
            let token = server.token.clone();
            async move {
                let mut client = WaferClient::connect(url).await.unwrap();
                let mut request = tonic::Request::new(ListRequest {});
                let bearer = format!("Bearer {token}").parse().unwrap();
                request.metadata_mut().insert("authorization", bearer);
                client.list(request).await
            }
        };
        let refused = list(server.url.clone()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");
        list(server.admin_url.clone()).await.unwrap();
    });
}

/// Deploys the waPC example as `name` with the `.proto` source `proto`.
fn deploy_with_proto(server: &Server, name: &str, proto: &str) -> reqwest::blocking::Response {
    let module = std::fs::read(built("wapc-rust.wasm")).unwrap();
    let form = reqwest::blocking::multipart::Form::new()
        .part(
            "module",
            reqwest::blocking::multipart::Part::bytes(module).file_name("m.wasm"),
        )
        .text("proto", proto.to_owned());
    server
        .admin(Method::PUT, &format!("functions/{name}"))
        .multipart(form)
        .send()
        .unwrap()
}

#[test]
fn a_function_cannot_claim_the_admin_service_or_grpc_packages() {
    let server = Server::start();
    for (package, service) in [
        ("wafer.v1", "Wafer"),
        ("wafer", "Anything"),
        ("grpc.health.v1", "Health"),
    ] {
        let proto = format!(
            "syntax = \"proto3\";\npackage {package};\nmessage M {{ string s = 1; }}\n\
             service {service} {{ rpc List(M) returns (M); }}\n"
        );
        let response = deploy_with_proto(&server, "claimer", &proto);
        let status = response.status();
        let text = response.text().unwrap();
        assert_eq!(status, 400, "{package}.{service}: {text}");
        assert!(
            text.contains(&format!("`{package}.{service}`")) && text.contains("reserved"),
            "{text}"
        );
    }
    // A package of the function's own, even one starting with the same letters, is fine.
    let proto = "syntax = \"proto3\";\npackage waferish;\nmessage M { string s = 1; }\n\
                 service Own { rpc Hello(M) returns (M); }\n";
    let response = deploy_with_proto(&server, "own", proto);
    assert_eq!(response.status(), 201, "{}", response.text().unwrap());
}

/// The header lines of the echo component's `/headers` answer, lower-cased.
fn seen_headers(text: &str) -> String {
    text.to_ascii_lowercase()
}

#[test]
fn the_admin_token_never_reaches_a_function() {
    let server = Server::start();
    server.deploy("echo", &built("http-echo-rust.wasm"), &[]);
    let token = server.token.to_ascii_lowercase();

    // A client sending the admin token to a function: the header is removed.
    let direct = server
        .client
        .get(format!("{}/echo/headers", server.url))
        .bearer_auth(&server.token)
        .header("x-kept", "yes")
        .send()
        .unwrap()
        .text()
        .unwrap();
    let seen = seen_headers(&direct);
    assert!(seen.contains("x-kept: yes"), "{direct}");
    assert!(
        !seen.contains(&token),
        "the token reached the function: {direct}"
    );
    assert!(!seen.contains("authorization"), "{direct}");
    // In any spelling of the scheme.
    let lower = server
        .client
        .get(format!("{}/echo/headers", server.url))
        .header("authorization", format!("bearer {}", server.token))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!seen_headers(&lower).contains(&token), "{lower}");
    // Other credentials are the function's business, and reach it.
    let other = server
        .client
        .get(format!("{}/echo/headers", server.url))
        .bearer_auth("the-functions-own-token")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        seen_headers(&other).contains("authorization: bearer the-functions-own-token"),
        "{other}"
    );

    // `wafer invoke --async`, which authenticates to the admin plane with the token.
    let out = server.cli(&["invoke", "--async", "echo", "/headers"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let record = server.finished(&id);
    assert_eq!(record["state"], "done", "{record}");
    let body = record["body"].as_str().unwrap();
    assert!(
        !seen_headers(body).contains(&token),
        "the token reached the function: {body}"
    );
    assert!(!seen_headers(body).contains("authorization"), "{body}");

    // The anonymous async endpoint with the token: removed there too.
    let queued = server
        .client
        .post(format!("{}/_wafer/async/echo/headers", server.url))
        .bearer_auth(&server.token)
        .send()
        .unwrap();
    let record = server.finished(&accepted(queued));
    let body = record["body"].as_str().unwrap();
    assert!(!seen_headers(body).contains(&token), "{body}");
}

#[test]
fn clients_cannot_forge_the_headers_only_the_server_sets() {
    let server = Server::start();
    server.deploy("echo", &built("http-echo-rust.wasm"), &[]);
    let direct = server
        .client
        .get(format!("{}/echo/headers", server.url))
        .header("x-wafer-invocation-id", "forged")
        .header("x-wafer-topic", "forged")
        .header("X-Wafer-Anything", "forged")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(!direct.contains("forged"), "{direct}");

    // An asynchronous run gets the real id, and only it.
    let queued = server
        .client
        .post(format!("{}/_wafer/async/echo/headers", server.url))
        .header("x-wafer-invocation-id", "forged")
        .send()
        .unwrap();
    let id = accepted(queued);
    let record = server.finished(&id);
    let body = record["body"].as_str().unwrap();
    assert!(!body.contains("forged"), "{body}");
    assert!(
        body.contains(&format!("x-wafer-invocation-id: {id}")),
        "{body}"
    );

    // A CGI subscriber tells a delivery by its topic (`WAFER_TOPIC`, `HTTP_X_WAFER_TOPIC`):
    // a client's `POST /NAME/_message` carries neither.
    server.deploy("cgi", &built("watenv.wat"), &[]);
    let posed = server
        .client
        .post(format!("{}/cgi/_message", server.url))
        .header("x-wafer-topic", "orders")
        .body("not a delivery")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(posed.contains("REQUEST_METHOD=POST"), "{posed}");
    assert!(
        !posed.contains("orders") && !posed.contains("TOPIC"),
        "{posed}"
    );
}

#[test]
fn an_async_call_over_http2_reaches_a_component_with_its_authority() {
    let server = Server::start();
    server.deploy("echo", &built("http-echo-rust.wasm"), &[]);
    // HTTP/2 with prior knowledge (hyper's client: the request carries its authority in the
    // URI, and no `Host` header).
    let url: http::Uri = format!("{}/_wafer/async/echo/headers", server.url)
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (version, status, body) = runtime.block_on(async {
        use http_body_util::BodyExt;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http2_only(true)
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let request = http::Request::post(url)
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = client.request(request).await.unwrap();
        let (version, status) = (response.version(), response.status());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (version, status, body)
    });
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(status, 202, "{body:?}");
    let answer: Value = serde_json::from_slice(&body).unwrap();
    let id = answer["id"].as_str().unwrap().to_owned();
    let record = server.finished(&id);
    assert_eq!(record["state"], "done", "{record}");
    let authority = server.url.trim_start_matches("http://");
    let body = record["body"].as_str().unwrap();
    assert!(body.contains(&format!("authority: {authority}")), "{body}");
}

#[test]
fn a_quiet_log_follow_outlives_the_idle_timeout() {
    // A followed log sends nothing for longer than the server's idle and header timeouts:
    // the stream is a request running, not an idle connection.
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(
        dir.path(),
        &["serve", "--idle-timeout", "1s", "--header-timeout", "1s"],
    );
    server.keep(dir);
    server.deploy("logger", &guest("logger.wat"), &[]);
    let mut follower = std::process::Command::new(common::WAFER)
        .args(["logs", "logger", "--follow", "--tail", "0"])
        .env("WAFER_SERVER", &server.admin_url)
        .env("WAFER_DATA", &server.data)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Quiet for three idle timeouts (the keep-alive comment comes every 10 s).
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "the follow ended while quiet"
    );
    assert_eq!(server.get("/logger").status(), 200);
    let mut reader = std::io::BufReader::new(follower.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert!(!line.is_empty(), "no line came through the follow");
    let _ = follower.kill();
    let _ = follower.wait();
}

#[test]
fn absurd_server_timeouts_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["--idle-timeout", "--header-timeout", "--body-timeout"] {
        let out = std::process::Command::new(common::WAFER)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .args([flag, "18446744073709551615s", "--data"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(flag) && stderr.contains("maximum of 1 day"),
            "{flag}: {stderr}"
        );
    }
}

#[test]
fn the_async_queue_is_bounded_in_bytes_with_a_clear_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start_with(dir.path(), &["serve", "--async-max-bytes", "1MiB"]);
    server.keep(dir);
    // One asynchronous call at a time, each sleeping until its 10 s timeout.
    let query = [("abi", "cgi"), ("timeout", "10s"), ("max_concurrency", "2")];
    server.deploy("nap", &guest("sleep.wat"), &query);
    let body = vec![b'x'; 400 << 10];
    let enqueue = || {
        server
            .client
            .post(format!("{}/_wafer/async/nap", server.url))
            .body(body.clone())
            .send()
            .unwrap()
    };
    // One running, one waiting: 800 KiB of bodies not finished.
    accepted(enqueue());
    accepted(enqueue());
    let refused = enqueue();
    assert_eq!(refused.status(), 507);
    let text = refused.text().unwrap();
    assert!(text.contains("--async-max-bytes"), "{text}");
    // Once they have run (and failed at their timeout), there is room again.
    let started = Instant::now();
    loop {
        let response = enqueue();
        if response.status() == 202 {
            break;
        }
        assert_eq!(response.status(), 507);
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no room ever came back"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn rm_under_load_leaves_nothing_for_a_new_function_of_the_same_name() {
    let server = Server::start();
    let visits = built("visits-rust.wasm");
    // One asynchronous call at a time, so that most wait in the queue when `rm` comes.
    server.deploy_cli("visits", &visits, &["--kv", "--max-concurrency", "2"]);
    for _ in 0..3 {
        assert_eq!(server.get("/visits").status(), 200);
    }
    let queued: Vec<String> = (0..300)
        .map(|_| {
            accepted(
                server
                    .client
                    .post(format!("{}/_wafer/async/visits", server.url))
                    .send()
                    .unwrap(),
            )
        })
        .collect();
    let out = server.cli(&["rm", "visits"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every queued call has run or been refused before the name is used again.
    for id in &queued {
        server.finished(id);
    }
    server.deploy_cli("visits", &visits, &["--kv", "--max-concurrency", "2"]);
    let text = server.get("/visits").text().unwrap();
    assert!(
        text.contains("visit 1"),
        "the new function inherited data: {text}"
    );
}
