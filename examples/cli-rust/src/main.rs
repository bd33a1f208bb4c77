//! A WASI 0.2 command: a few subcommands showing what a command gets from `wafer run`.
//!
//! ```text
//! wafer run cli-rust.wasm echo hello world     # its arguments
//! wafer run cli-rust.wasm name                 # its program name (the file name)
//! wafer run --env GREETING=hi cli-rust.wasm env GREETING
//! echo text | wafer run cli-rust.wasm cat      # stdin to stdout
//! wafer run --dir .::/work cli-rust.wasm ls /work
//! wafer run cli-rust.wasm fail                 # exit code 1 (WASI 0.2's `exit` says only
//!                                              # success or failure)
//! wafer run --network cli-rust.wasm connect 127.0.0.1:8080
//! ```

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let written = match arg(1) {
        "name" => writeln!(out, "{}", arg(0)),
        "echo" => writeln!(out, "{}", args[2..].join(" ")),
        "env" => match std::env::var(arg(2)) {
            Ok(value) => writeln!(out, "{value}"),
            Err(_) => return fail(&format!("{} is not set", arg(2))),
        },
        "cat" => std::io::copy(&mut std::io::stdin().lock(), &mut out).map(|_| ()),
        "ls" => match std::fs::read_dir(arg(2)) {
            Ok(entries) => {
                let mut names: Vec<String> = entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                writeln!(out, "{}", names.join("\n"))
            }
            Err(e) => return fail(&format!("cannot list {}: {e}", arg(2))),
        },
        "fail" => return fail("failing, as asked"),
        "connect" => match std::net::TcpStream::connect(arg(2)) {
            Ok(_) => writeln!(out, "connected to {}", arg(2)),
            Err(e) => return fail(&format!("cannot connect to {}: {e}", arg(2))),
        },
        _ => return fail("usage: cli-rust name|echo ARGS|env NAME|cat|ls DIR|fail|connect ADDR"),
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write: {e}")),
    }
}

fn fail(why: &str) -> ExitCode {
    eprintln!("{why}");
    ExitCode::FAILURE
}
