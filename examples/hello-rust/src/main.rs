//! Minimal Rust guest: a CGI header and a greeting on stdout.

use std::io::Write;

fn main() {
    let mut out = std::io::stdout().lock();
    out.write_all(b"Content-Type: text/plain\n\nHello from Rust!\n")
        .expect("write to stdout");
}
