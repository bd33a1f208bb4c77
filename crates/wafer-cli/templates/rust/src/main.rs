//! A CGI function (WAGI): Wafer runs `main` once per request, in a fresh instance, with the
//! request in the environment (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`, `HTTP_*`) and
//! its body on stdin. What it prints is the response: headers, a blank line, the body.

use std::io::Read;

fn main() {
    let method = std::env::var("REQUEST_METHOD").unwrap_or_default();
    let path = std::env::var("PATH_INFO").unwrap_or_default();
    let mut body = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut body);

    println!("Content-Type: text/plain; charset=utf-8");
    println!();
    println!("Hello from {{name}}! ({method} {path}, {} bytes in)", body.len());
}
