//! The hostile pack: clients and guests that try to exhaust the server. Each test runs a real
//! server over real sockets, its loops end by themselves, and afterwards the server is up and
//! other functions answer.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{built, guest, Server};
use reqwest::Method;

/// A server with short connection timeouts (1 s for a head, 2 s idle, 2 s for a body), so
/// that the tests that wait for them are quick.
fn quick_server(extra: &[&str]) -> Server {
    let dir = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let mut args = vec![
        "serve", "--header-timeout", "1s", "--idle-timeout", "2s", "--body-timeout", "2s",
    ];
    args.extend_from_slice(extra);
    let mut server = Server::start_with(dir.path(), &args);
    server.keep(dir);
    server
}

fn deploy_hello(server: &Server) {
    server.deploy("hello", &built("hello-wat.wat"), &[]);
}

/// The other function still answers.
fn assert_hello(server: &Server) {
    let response = server.get("/hello/");
    assert_eq!(response.status(), 200);
    assert!(response.text().unwrap().contains("Hello from WAT!"));
}

/// The server's resident memory, from /proc.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// File descriptors the server has open, from /proc.
fn open_fds(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .count()
}

/// Polls `check` every 50 ms for up to `limit`; whether it came true.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Sends raw bytes and returns what the server answers until it closes (or 10 s pass).
fn raw_exchange(server: &Server, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

type Http2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>;

/// An HTTP/2 (prior knowledge) connection to `address`: its sender, and the task driving it,
/// which ends when the connection does.
async fn http2(address: &str) -> (Http2Sender, tokio::task::JoinHandle<hyper::Result<()>>) {
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}

/// The text of a function's last log lines.
fn logs(server: &Server, name: &str) -> String {
    let lines: serde_json::Value = server
        .admin(Method::GET, &format!("functions/{name}/logs?tail=50"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_sleeping_guest_ends_at_its_timeout_in_every_abi_and_frees_its_slot() {
    let server = Server::start();
    deploy_hello(&server);
    let sleep = guest("sleep.wat");
    let limits = [("timeout", "500ms"), ("max_concurrency", "1")];
    for abi in ["cgi", "wapc", "exports"] {
        let mut query = vec![("abi", abi)];
        query.extend_from_slice(&limits);
        server.deploy(&format!("sleep-{abi}"), &sleep, &query);
    }
    let calls = [
        ("sleep-cgi", Method::GET, "/sleep-cgi/"),
        ("sleep-wapc", Method::POST, "/sleep-wapc/op"),
        ("sleep-exports", Method::POST, "/sleep-exports/nap"),
    ];
    for (name, method, path) in calls {
        // Twice: the second call is admitted (504, not 503), so the first freed its slot.
        for round in 0..2 {
            let response = server
                .client
                .request(method.clone(), format!("{}{path}", server.url))
                .body("[]")
                .send()
                .unwrap();
            let status = response.status();
            let text = response.text().unwrap();
            assert_eq!(status, 504, "{name} round {round}: {text}");
            assert!(text.contains("time limit"), "{name}: {text}");
        }
        assert!(
            eventually(Duration::from_secs(5), || logs(&server, name)
                .contains("time limit")),
            "{name} logged no time-out: {}",
            logs(&server, name)
        );
    }
    // The admin API's invoke too.
    let response = server
        .admin(Method::POST, "functions/sleep-exports/invoke/nap")
        .body("[]")
        .send()
        .unwrap();
    assert_eq!(response.status(), 504);
    assert_hello(&server);
}

#[test]
fn a_sleeping_subscriber_does_not_stall_its_topic() {
    let server = Server::start();
    server.deploy_cli(
        "publisher",
        &built("visits-rust.wasm"),
        &["--publish", "naps"],
    );
    #[rustfmt::skip]
    server.deploy_cli("sleeper", &guest("sleep.wat"), &[
        "--subscribe", "naps", "--timeout", "300ms", "--max-concurrency", "1",
    ]);
    for _ in 0..3 {
        let text = server.post("/publisher?publish=naps", "wake up");
        assert!(text.ends_with("published\n"), "{text}");
    }
    let failed = || {
        server.pubsub()["subscribers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["function"] == "sleeper")
            .map_or(0, |s| s["failed"].as_u64().unwrap())
    };
    assert!(
        eventually(Duration::from_secs(20), || failed() == 3),
        "the deliveries did not all end: {} failed",
        failed()
    );
    assert!(logs(&server, "sleeper").contains("time limit"));
}

#[test]
fn idle_connections_are_closed_and_the_server_keeps_serving() {
    // 3,000 peers connect and send nothing (the test needs that many descriptors).
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let server = quick_server(&[]);
    deploy_hello(&server);
    let before = open_fds(&server);
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut idle: Vec<TcpStream> = (0..3000)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // Every one of them is closed by the server: a read sees the end of the stream.
    let mut closed = 0;
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut byte = [0u8; 1];
        if matches!(stream.read(&mut byte), Ok(0)) {
            closed += 1;
        }
    }
    assert_eq!(closed, 3000, "connections left open by the server");
    drop(idle);
    assert!(
        eventually(Duration::from_secs(10), || open_fds(&server) <= before + 5),
        "descriptors before: {before}, now: {}",
        open_fds(&server)
    );
    assert_hello(&server);
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let server = quick_server(&[]);
    deploy_hello(&server);
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .write_all(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The answer, then the end of the stream once the connection has been idle a while.
    let mut answer = Vec::new();
    let end = stream.read_to_end(&mut answer);
    assert!(end.is_ok(), "the idle connection was not closed: {end:?}");
    assert!(String::from_utf8_lossy(&answer).contains("Hello from WAT!"));
}

#[test]
fn an_idle_http2_connection_is_closed() {
    let server = quick_server(&[]);
    deploy_hello(&server);
    let address = server.url.trim_start_matches("http://").to_owned();
    runtime().block_on(async {
        let (mut sender, connection) = http2(&address).await;
        let request = http::Request::get(format!("http://{address}/hello/"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        drop(response);
        // Kept open by the client, idle: the server ends it (GOAWAY, then close).
        let ended = tokio::time::timeout(Duration::from_secs(20), connection).await;
        assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
    });
}

#[test]
fn slowloris_is_cut_off() {
    let server = quick_server(&[]);
    deploy_hello(&server);
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream.write_all(b"GET /hello/ HTTP/1.1\r\n").unwrap();
    // One header byte every 100 ms, for at most 30 s: the server hangs up long before.
    let header = b"X-Slow: ".iter().chain(std::iter::repeat(&b'a'));
    let mut cut_off = false;
    for &byte in header.take(300) {
        if stream.write_all(&[byte]).is_err() {
            cut_off = true;
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    if !cut_off {
        // The writes may all have landed in the socket buffer; the read says.
        stream
            .set_read_timeout(Some(Duration::from_secs(1)))
            .unwrap();
        let mut rest = Vec::new();
        cut_off = stream.read_to_end(&mut rest).is_ok();
    }
    assert!(cut_off, "a header trickling for 30 s was still being read");
    assert_hello(&server);
}

#[test]
fn the_connection_cap_holds_new_connections_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let server = Server::start_with(dir.path(), &[
        "serve", "--max-connections", "4", "--header-timeout", "60s", "--idle-timeout", "60s",
    ]);
    // Deployed by a CLI process, whose connection closes when it exits.
    server.deploy_cli("hello", &built("hello-wat.wat"), &[]);
    let address = server.url.trim_start_matches("http://").to_owned();
    // Four kept-alive connections that have each made a request hold every slot.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(&address).unwrap();
            s.write_all(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
            s
        })
        .collect();
    // A fifth is accepted by the kernel, but not served while the four stay.
    let mut fifth = TcpStream::connect(&address).unwrap();
    fifth
        .write_all(b"GET /hello/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    fifth
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut answer = Vec::new();
    assert!(
        fifth.read_to_end(&mut answer).is_err() && answer.is_empty(),
        "a connection past the cap was served: {}",
        String::from_utf8_lossy(&answer)
    );
    // One closes: the fifth is served.
    held.pop();
    fifth
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    fifth.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.contains("Hello from WAT!"), "{answer}");
}

#[test]
fn request_smuggling_and_oversized_heads_are_refused() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy("echo", &guest("echo.wat"), &[]);
    // Two different Content-Lengths.
    let answer = raw_exchange(
        &server,
        b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // Content-Length with Transfer-Encoding: the body is read as chunked (the length is
    // ignored), so the bytes after the last chunk are not a second, smuggled request.
    let answer = raw_exchange(
        &server,
        b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(
        !answer.contains("Hello from WAT!"),
        "a request was smuggled past the first: {answer}"
    );
    // A 70 KB header is past the 64 KiB head limit.
    let big = format!(
        "GET /hello/ HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70_000)
    );
    let answer = raw_exchange(&server, big.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert_hello(&server);
}

#[test]
fn parallel_large_bodies_to_a_busy_function_keep_memory_bounded() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "busy",
        &guest("sleep.wat"),
        &[("abi", "cgi"), ("max_concurrency", "1"), ("timeout", "3s")],
    );
    let body = Arc::new(vec![b'x'; 16 << 20]);
    let before = rss_kib(&server);
    let peak = Arc::new(AtomicU64::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        let pid = server.child.id();
        thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                    if let Some(kib) = status
                        .lines()
                        .find_map(|l| l.strip_prefix("VmRSS:"))
                        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    {
                        peak.fetch_max(kib, Ordering::Relaxed);
                    }
                }
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    let clients: Vec<_> = (0..40)
        .map(|_| {
            let (client, body) = (server.client.clone(), body.clone());
            let url = format!("{}/busy/", server.url);
            thread::spawn(move || {
                client
                    .post(url)
                    .body(body.to_vec())
                    .send()
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    done.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let grew_mib = peak.load(Ordering::Relaxed).saturating_sub(before) / 1024;
    eprintln!("40 x 16 MiB bodies to max_concurrency = 1: RSS {before} KiB -> peak +{grew_mib} MiB; statuses {statuses:?}");
    // One call runs (504 after sleeping), one may wait; the rest are refused unread. Two
    // bodies in memory, and room for the allocator: far below 40 x 16 MiB.
    assert!(grew_mib < 100, "RSS grew by {grew_mib} MiB");
    assert!(statuses.contains(&504), "{statuses:?}");
    assert_hello(&server);
}

#[test]
fn a_body_that_trickles_is_timed_out_and_frees_the_slot() {
    let server = quick_server(&[]);
    deploy_hello(&server);
    server.deploy("echo", &guest("echo.wat"), &[("max_concurrency", "1")]);
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .write_all(b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
        .unwrap();
    // A byte every 200 ms: 1,000 bytes would take 200 s; the body timeout is 2 s.
    let mut answer = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    for _ in 0..100 {
        if stream.write_all(b"x").is_err() {
            break;
        }
        let mut buf = [0u8; 1024];
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // The slot is free again.
    assert_eq!(server.post("/echo/", "ping"), "ping");
    assert_hello(&server);
}

#[test]
fn http2_callers_that_give_up_while_queued_leave_the_queue() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "busy",
        &guest("sleep.wat"),
        &[
            ("abi", "cgi"),
            ("max_concurrency", "1"),
            ("timeout", "600ms"),
        ],
    );
    let address = server.url.trim_start_matches("http://").to_owned();
    runtime().block_on(async {
        let (mut sender, _connection) = http2(&address).await;
        let request = || {
            http::Request::get(format!("http://{address}/busy/"))
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap()
        };
        // Each round: one call takes the slot; a second queues and is reset (its stream
        // dropped) while it waits. Without the queue place being given back, the second
        // round's queued call would be refused at once.
        for round in 0..4 {
            let running = sender.send_request(request());
            let running = tokio::spawn(running);
            tokio::time::sleep(Duration::from_millis(100)).await;
            let queued = sender.send_request(request());
            let _ = tokio::time::timeout(Duration::from_millis(200), queued).await;
            let status = running.await.unwrap().unwrap().status();
            assert_eq!(status, 504, "round {round}");
        }
        // One at a time again: admitted and timed out, never refused as busy.
        let running = tokio::spawn(sender.send_request(request()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let queued = sender.send_request(request()).await.unwrap();
        assert_ne!(queued.status(), 503, "the queue leaked places");
        let _ = running.await;
    });
    assert_hello(&server);
}

#[test]
fn spinning_guests_do_not_stop_another_function() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "spin",
        &guest("spin.wat"),
        &[("max_concurrency", "100"), ("timeout", "3s")],
    );
    let spinners: Vec<_> = (0..100)
        .map(|_| {
            let client = server.client.clone();
            let url = format!("{}/spin/", server.url);
            thread::spawn(move || client.get(url).send().map(|r| r.status().as_u16()))
        })
        .collect();
    thread::sleep(Duration::from_millis(200));
    let mut latencies = Vec::new();
    for _ in 0..100 {
        let start = Instant::now();
        assert_hello(&server);
        latencies.push(start.elapsed());
    }
    latencies.sort();
    eprintln!(
        "hello while 100 guests spin: p50 {:?}, p99 {:?}",
        latencies[49], latencies[98]
    );
    for spinner in spinners {
        assert_eq!(spinner.join().unwrap().unwrap(), 504);
    }
}

#[test]
fn hostile_guests_cost_only_their_own_request() {
    let server = Server::start();
    deploy_hello(&server);
    // Endless stdout (cut at the 16 MiB limit); a stack overflow; a memory bomb; a huge table.
    server.deploy("flood", &guest("flood.wat"), &[]);
    server.deploy("deep", &guest("recurse.wat"), &[]);
    server.deploy("bomb", &guest("memhog.wat"), &[]);
    server.deploy("table", &guest("bigtable.wat"), &[]);
    server.deploy("nomem", &guest("nomem.wat"), &[]);
    for (name, status, says) in [
        ("nomem", 500, "the module does not export its memory"),
        ("flood", 502, "output limit"),
        ("deep", 500, "stack"),
        ("bomb", 500, "memory"),
        ("table", 500, "trap"),
    ] {
        let response = server.get(&format!("/{name}/"));
        let got = response.status();
        let text = response.text().unwrap();
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.to_lowercase().contains(says), "{name}: {text}");
        assert_hello(&server);
    }
}

#[test]
fn redeploying_under_load_fails_no_request() {
    let server = Server::start();
    server.deploy("f", &built("hello-wat.wat"), &[]);
    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
            let client = server.client.clone();
            let url = format!("{}/f/", server.url);
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = client.get(&url).send().is_ok_and(|r| {
                        r.status() == 200
                            && r.text().is_ok_and(|t| {
                                t.contains("Hello from WAT!") || t.contains("Hello from C!")
                            })
                    });
                    if ok { &served } else { &failed }.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let modules = [built("hello-c.wasm"), built("hello-wat.wat")];
    for i in 0..50 {
        server.deploy("f", &modules[i % 2], &[]);
    }
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.join().unwrap();
    }
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("50 redeploys under load: {served} requests served, {failed} failed");
    assert!(served > 0);
    assert_eq!(failed, 0);
}

#[test]
fn http1_callers_that_hang_up_while_queued_leave_the_queue() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "busy",
        &guest("sleep.wat"),
        &[
            ("abi", "cgi"),
            ("max_concurrency", "1"),
            ("timeout", "600ms"),
        ],
    );
    let address = server.url.trim_start_matches("http://").to_owned();
    let call = || {
        let mut s = TcpStream::connect(&address).unwrap();
        s.write_all(b"GET /busy/ HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        s
    };
    for _ in 0..4 {
        let mut running = call();
        thread::sleep(Duration::from_millis(100));
        // A second caller queues, then hangs up while it waits.
        drop(call());
        running
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = [0u8; 12];
        running.read_exact(&mut answer).unwrap();
        assert_eq!(&answer, b"HTTP/1.1 504");
    }
    // Queued behind a running call, a caller is admitted (504 after its sleep), not refused.
    let running = call();
    thread::sleep(Duration::from_millis(100));
    let response = server.get("/busy/");
    assert_eq!(response.status(), 504, "the queue leaked places");
    drop(running);
    assert_hello(&server);
}

#[test]
fn a_component_blocked_on_a_slow_request_body_ends_at_its_timeout() {
    let server = Server::start();
    deploy_hello(&server);
    server.deploy(
        "echo",
        &built("http-echo-rust.wasm"),
        &[("timeout", "1s"), ("max_concurrency", "1")],
    );
    let mut stream = TcpStream::connect(server.url.trim_start_matches("http://")).unwrap();
    stream
        .write_all(b"POST /echo/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nfirst bytes ")
        .unwrap();
    // The rest never comes: the guest waits for it in a host call until its time is up.
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    // The component answers at once and streams its echo; when its time is up, waiting for
    // the rest of the body, the response is cut short and the connection ends.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break true,
            Ok(_) => {}
            Err(e) => break e.kind() != std::io::ErrorKind::WouldBlock,
        }
    };
    assert!(ended, "the stalled call was still running after 20 s");
    assert!(
        eventually(Duration::from_secs(5), || logs(&server, "echo")
            .contains("time limit")),
        "{}",
        logs(&server, "echo")
    );
    drop(stream);
    let response = server
        .client
        .post(format!("{}/echo/", server.url))
        .body("again")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "again");
    assert_hello(&server);
}

#[test]
fn more_peers_than_descriptors_wait_instead_of_breaking_the_server() {
    rlimit::increase_nofile_limit(u64::MAX).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 320 descriptors: the server keeps 256 for itself and serves at most 64 connections.
    #[rustfmt::skip]
    let server = Server::start_with_fd_limit(dir.path(), &[
        "serve", "--header-timeout", "1s",
    ], 320);
    server.deploy_cli("hello", &built("hello-wat.wat"), &[]);
    let address = server.url.trim_start_matches("http://").to_owned();
    // 400 peers that say nothing: more than the process has descriptors for.
    let idle: Vec<TcpStream> = (0..400)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    // Served once the idle ones have been cut off, a slot at a time.
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let response = client.get(format!("{}/hello/", server.url)).send().unwrap();
    assert_eq!(response.status(), 200);
    drop(idle);
    let log = server.stderr();
    assert!(
        log.contains("the file descriptor limit is 320: serving at most 64 connections at once"),
        "{log}"
    );
    assert!(!log.contains("accept failed"), "{log}");
}
