//! Echoes what a guest sees of its request: every environment variable (sorted, one
//! `KEY=value` per line), its argv, and the request body from stdin if there is one.

use std::io::{Read, Write};

fn main() -> std::io::Result<()> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect();
    vars.sort();

    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();

    let mut body = Vec::new();
    std::io::stdin().lock().read_to_end(&mut body)?;

    let mut out = Vec::with_capacity(4096 + body.len());
    out.extend_from_slice(b"Content-Type: text/plain\n\n");
    for (k, v) in &vars {
        writeln!(out, "{k}={v}")?;
    }
    writeln!(out, "args: {}", args.join(" "))?;
    if !body.is_empty() {
        out.extend_from_slice(b"body: ");
        out.extend_from_slice(&body);
        if !body.ends_with(b"\n") {
            out.push(b'\n');
        }
    }

    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&out)?;
    stdout.flush()
}
