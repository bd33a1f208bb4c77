//! Services: a WASI 0.2 command component granted `listen = ADDR` runs as a long-lived
//! instance serving TCP there, is restarted after a trap, may not use the network otherwise,
//! and stops when removed.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{built, Server};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects, retrying while the service (re)starts.
fn connect(addr: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(20)))
                    .unwrap();
                return stream;
            }
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(30), "{addr}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Sends one line and reads the answer line.
fn ask(stream: &mut TcpStream, line: &str) -> String {
    writeln!(stream, "{line}").unwrap();
    let mut answer = String::new();
    BufReader::new(&*stream).read_line(&mut answer).unwrap();
    answer
}

#[test]
fn a_service_echoes_over_tcp_comes_back_after_a_trap_and_stops_on_rm() {
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("wafer.toml");
    std::fs::write(
        &manifest,
        format!(
            "[[function]]\nname = \"echo\"\nmodule = {:?}\nlisten = \"{addr}\"\nlimits = {{ memory = \"32MiB\" }}\n",
            built("echo-service.wasm")
        ),
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["up", manifest.to_str().unwrap()],
    );

    let mut stream = connect(addr);
    assert_eq!(ask(&mut stream, "hello"), "echo: hello\n");
    assert_eq!(ask(&mut stream, "again"), "echo: again\n");
    // Connecting anywhere else is refused by WASI.
    let other = format!(
        "connect 127.0.0.1:{}",
        server.url.rsplit(':').next().unwrap()
    );
    let answer = ask(&mut stream, &other);
    assert!(answer.starts_with("connect error: "), "{answer}");

    // A trap ends the instance (and this connection); the server starts a new one.
    writeln!(stream, "crash").unwrap();
    let mut rest = String::new();
    let _ = BufReader::new(&stream).read_line(&mut rest);
    assert_eq!(rest, "", "the connection closes with the instance");
    let mut stream = connect(addr);
    assert_eq!(ask(&mut stream, "back"), "echo: back\n");
    drop(stream);
    let logs = String::from_utf8_lossy(&server.cli(&["logs", "echo"]).stdout).into_owned();
    assert!(logs.contains("asked to crash"), "{logs}");
    assert!(logs.contains("[service] trapped: wasm trap"), "{logs}");
    assert!(
        logs.matches("[service] v1 starting on").count() >= 2,
        "{logs}"
    );

    // Not an HTTP function.
    let response = server.get("/echo");
    assert_eq!(response.status(), 404);
    assert!(response
        .text()
        .unwrap()
        .contains("is a service listening on"));

    // Removed: the socket closes.
    assert!(server.cli(&["rm", "echo"]).status.success());
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still listening after rm"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn only_components_are_services_and_every_service_needs_an_address() {
    let server = Server::start();
    let port = free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let module = built("echo-service.wasm");
    let out = server.cli(&["deploy", "svc", module.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("grant it an address with `listen"), "{err}");
    let hello = built("hello-rust.wasm");
    let out = server.cli(&["deploy", "svc", hello.to_str().unwrap(), "--listen", &addr]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is for services"), "{err}");
}
