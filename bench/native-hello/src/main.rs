//! Native reference server for Wafer's benchmark.
//!
//! A minimal hyper 1.x HTTP/1.1 server that answers every request with
//! `200 OK`, `Content-Type: text/plain` and the body `Hello from native!\n`.
//! It runs on a current-thread runtime because the benchmark pins it to a
//! single core, which is the same budget Wafer gets.
//!
//! Usage: `native-hello [ADDR]` (default `127.0.0.1:8090`).

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const DEFAULT_ADDR: &str = "127.0.0.1:8090";
const BODY: &[u8] = b"Hello from native!\n";

async fn hello(_req: Request<hyper::body::Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut resp = Response::new(Full::new(Bytes::from_static(BODY)));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("native-hello: building runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("native-hello: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr_arg = args.next().unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    if addr_arg == "-h" || addr_arg == "--help" || args.next().is_some() {
        eprintln!("usage: native-hello [ADDR]   (default {DEFAULT_ADDR})");
        std::process::exit(2);
    }
    let addr: SocketAddr = addr_arg
        .parse()
        .with_context(|| format!("invalid listen address {addr_arg:?}"))?;

    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr().context("reading bound address")?;
    println!("listening on http://{local}");

    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(err) => {
                // Transient accept errors (e.g. EMFILE) must not kill the server.
                eprintln!("accept error: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service_fn(hello));
            if let Err(err) = conn.await {
                // Clients resetting keep-alive connections is routine under wrk.
                if !err.is_incomplete_message() {
                    eprintln!("connection error: {err}");
                }
            }
        });
    }
}
