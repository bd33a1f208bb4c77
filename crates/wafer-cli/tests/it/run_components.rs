//! `wafer run` with components, as `wasmtime run` runs them: WASI 0.2 and 0.3 command
//! components (`wasi:cli/run`) with their arguments, environment, directories, stdio, exit
//! code and, only when granted, the network; and `wafer run --serve`, which serves an HTTP
//! component from a throwaway Wafer server.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use common::{built, WAFER};

/// Both command examples: the same subcommands, one through each WASI version.
const COMMANDS: [&str; 2] = ["cli-rust.wasm", "cli-p3-rust.wasm"];

fn run(options: &[&str], module: &str, args: &[&str], stdin: &[u8]) -> Output {
    run_with_env(options, module, args, stdin, &[])
}

/// [`run`], with `wafer run` itself given the variables `env` (beside the test's own).
fn run_with_env(
    options: &[&str],
    module: &str,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &str)],
) -> Output {
    let mut child = Command::new(WAFER)
        .envs(env.iter().copied())
        .arg("run")
        .args(options)
        .arg(built(module))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_command_gets_its_arguments_and_its_file_name_as_program_name() {
    for module in COMMANDS {
        let out = run(&[], module, &["echo", "a", "-b", "c d"], b"");
        assert_eq!(out.status.code(), Some(0), "{module}: {out:?}");
        assert_eq!(stdout(&out), "a -b c d\n", "{module}");
        // The bare file name, as `wasmtime run` gives it: no host path reaches the guest.
        let out = run(&[], module, &["name"], b"");
        assert_eq!(stdout(&out), format!("{module}\n"), "{module}");
    }
}

#[test]
fn a_command_gets_only_the_environment_it_is_given() {
    for module in COMMANDS {
        let out = run(
            &["--env", "GREETING=hi there"],
            module,
            &["env", "GREETING"],
            b"",
        );
        assert_eq!(stdout(&out), "hi there\n", "{module}: {out:?}");
        let secret = [("WAFER_TEST_SECRET", "host only")];
        let out = run_with_env(&[], module, &["env", "WAFER_TEST_SECRET"], b"", &secret);
        assert_eq!(out.status.code(), Some(1), "{module}: {out:?}");
        assert!(
            stderr(&out).contains("WAFER_TEST_SECRET is not set"),
            "{module}: {out:?}"
        );
    }
}

#[test]
fn stdin_streams_to_stdout_whole() {
    // Several MiB, more than any pipe or stream buffer holds at once.
    let input: Vec<u8> = (0..5 << 20).map(|i: u32| (i * 31 % 253) as u8).collect();
    for module in COMMANDS {
        let out = run(&[], module, &["cat"], &input);
        assert_eq!(out.status.code(), Some(0), "{module}: {}", stderr(&out));
        assert_eq!(out.stdout.len(), input.len(), "{module}");
        assert!(out.stdout == input, "{module}: the bytes differ");
    }
}

#[test]
fn a_command_sees_the_directories_it_is_given_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("b.txt"), "b").unwrap();
    std::fs::write(dir.path().join("a.txt"), "a").unwrap();
    let grant = format!("{}::/work", dir.path().display());
    let out = run(&["--dir", &grant], "cli-rust.wasm", &["ls", "/work"], b"");
    assert_eq!(stdout(&out), "a.txt\nb.txt\n", "{out:?}");
    let out = run(&["--dir", &grant], "cli-p3-rust.wasm", &["ls"], b"");
    assert_eq!(stdout(&out), "a.txt\nb.txt\n", "{out:?}");

    // Without the grant the host's files are out of reach.
    let out = run(&[], "cli-rust.wasm", &["ls", "/"], b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = run(&[], "cli-p3-rust.wasm", &["ls"], b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("no directory was granted"), "{out:?}");
}

#[test]
fn the_exit_code_is_the_commands() {
    for module in COMMANDS {
        let out = run(&[], module, &["fail"], b"");
        assert_eq!(out.status.code(), Some(1), "{module}: {out:?}");
        assert!(
            stderr(&out).contains("failing, as asked"),
            "{module}: {out:?}"
        );
        let out = run(&[], module, &["echo"], b"");
        assert_eq!(out.status.code(), Some(0), "{module}: {out:?}");
    }
}

#[test]
fn the_network_is_denied_unless_granted() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = std::thread::spawn(move || {
        // Two connections are expected: one per command, with --network.
        for _ in 0..2 {
            listener.accept().unwrap();
        }
    });
    for module in COMMANDS {
        let out = run(&[], module, &["connect", &addr], b"");
        assert_eq!(out.status.code(), Some(1), "{module}: {out:?}");
        assert!(stderr(&out).contains("cannot connect"), "{module}: {out:?}");
        let out = run(&["--network"], module, &["connect", &addr], b"");
        assert_eq!(out.status.code(), Some(0), "{module}: {out:?}");
        assert_eq!(stdout(&out), format!("connected to {addr}\n"), "{module}");
    }
    accepted.join().unwrap();
}

#[test]
fn an_http_component_is_not_a_command() {
    let out = run(&[], "http-p3-rust.wasm", &[], b"");
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(stderr(&out).contains("wafer run --serve"), "{out:?}");
}

/// `wafer run --serve` on a free port; returns the child and the base URL it printed.
fn serve(options: &[&str], module: &str) -> (std::process::Child, String) {
    let mut child = Command::new(WAFER)
        .args(["run", "--serve", "--listen", "127.0.0.1:0"])
        .args(options)
        .arg(built(module))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The first line, in `wasmtime serve`'s words, so tools written for it find the port.
    let url = line
        .strip_prefix("Serving HTTP on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .trim()
        .trim_end_matches('/')
        .to_owned();
    (child, url)
}

/// Stops a served component with SIGINT, as Ctrl-C would; returns its exit status.
fn interrupt(mut child: std::process::Child) -> std::process::ExitStatus {
    // SAFETY: kill only sends a signal to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    let mut rest = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut rest);
    assert!(!rest.contains("panicked"), "{rest}");
    status
}

#[test]
fn serve_answers_on_every_path_and_stops_cleanly_on_ctrl_c() {
    let (child, url) = serve(&[], "http-p3-rust.wasm");
    let client = reqwest::blocking::Client::new();
    let hello = client.get(format!("{url}/any/path")).send().unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().unwrap(), "Hello from a WASI 0.3 component!\n");
    let echo = client
        .post(format!("{url}/echo"))
        .body("streamed back")
        .send()
        .unwrap();
    assert_eq!(echo.text().unwrap(), "streamed back");
    assert_eq!(interrupt(child).code(), Some(0));
}

#[test]
fn serve_denies_outgoing_requests_unless_their_host_is_granted() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = format!("http://{}/", upstream.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in upstream.incoming() {
            let mut stream = stream.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\nconnection: close\r\n\r\nupstream",
            );
        }
    });
    let client = reqwest::blocking::Client::new();

    let (child, url) = serve(&[], "http-p3-rust.wasm");
    let denied = client
        .get(format!("{url}/fetch?url={target}"))
        .send()
        .unwrap();
    assert_eq!(denied.status(), 500, "{:?}", denied.text());
    assert_eq!(interrupt(child).code(), Some(0));

    let (child, url) = serve(&["--http", "127.0.0.1:*"], "http-p3-rust.wasm");
    let allowed = client
        .get(format!("{url}/fetch?url={target}"))
        .send()
        .unwrap();
    assert_eq!(allowed.status(), 200);
    assert_eq!(allowed.text().unwrap(), "upstream");
    assert_eq!(interrupt(child).code(), Some(0));
}

#[test]
fn a_command_wafer_cannot_serve_is_refused_at_deploy_with_the_reason() {
    let server = common::Server::start();
    let out = server.cli(&[
        "deploy",
        "cli",
        built("cli-p3-rust.wasm").to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(said.contains("cannot run as a service"), "{said}");
    assert!(said.contains("wafer run"), "{said}");
    // The WASI 0.2 command is a service as before.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    server.deploy_cli(
        "cli2",
        &built("cli-rust.wasm"),
        &["--listen", &port.to_string()],
    );
}
