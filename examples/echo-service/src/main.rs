//! A line-echo TCP service, run by Wafer as a long-lived instance (`listen = "ADDR"`).
//!
//! Built for `wasm32-wasip2`: a WASI 0.2 command component whose sockets are `wasi:sockets`.
//! Wafer lets it listen on exactly the granted address, which it reads from `WAFER_LISTEN`.
//! Every line a client sends comes back prefixed with `echo: `; the line `crash` makes it
//! panic (a trap), to show that Wafer restarts it; `connect ADDR` tries to open a connection
//! elsewhere, which Wafer refuses (a service may only listen on its own address).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn main() {
    let addr = std::env::var("WAFER_LISTEN").expect("Wafer sets WAFER_LISTEN");
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| panic!("cannot listen on {addr}: {e}"));
    eprintln!("echo service listening on {addr}");
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                if let Err(e) = serve(stream) {
                    eprintln!("connection ended: {e}");
                }
            }
            Err(e) => eprintln!("accept failed: {e}"),
        }
    }
}

/// Echoes one client's lines until it hangs up.
fn serve(stream: TcpStream) -> std::io::Result<()> {
    // Reads and writes both go through `&TcpStream` (WASI 0.2 has no `try_clone`).
    for line in BufReader::new(&stream).lines() {
        let line = line?;
        if line == "crash" {
            panic!("asked to crash");
        }
        if let Some(addr) = line.strip_prefix("connect ") {
            match TcpStream::connect(addr) {
                Ok(_) => writeln!(&stream, "connected to {addr}")?,
                Err(e) => writeln!(&stream, "connect error: {e}")?,
            }
            continue;
        }
        writeln!(&stream, "echo: {line}")?;
    }
    Ok(())
}
