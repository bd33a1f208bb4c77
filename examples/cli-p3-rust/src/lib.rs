//! A WASI 0.3 command: the subcommands of `cli-rust`, through the WASI 0.3 interfaces (stdio
//! as streams, an async `run`, sockets whose `connect` is an async function).
//!
//! ```text
//! wafer run cli-p3-rust.wasm echo hello world
//! echo text | wafer run cli-p3-rust.wasm cat
//! wafer run --dir .::/work cli-p3-rust.wasm ls       # the entries of the first directory
//! wafer run --network cli-p3-rust.wasm connect 127.0.0.1:8080
//! ```

use wasip3::cli::{environment, stdin, stdout};
use wasip3::filesystem::preopens;
use wasip3::sockets::types::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress, TcpSocket};
use wasip3::wit_bindgen::StreamResult;
use wasip3::wit_stream;

struct Command;

wasip3::cli::command::export!(Command);

impl wasip3::exports::cli::run::Guest for Command {
    async fn run() -> Result<(), ()> {
        let args = environment::get_arguments();
        let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
        let (mut out, reader) = wit_stream::new();
        let written = stdout::write_via_stream(reader);
        let (result, done) = futures::join!(
            async {
                let result = match arg(1).as_str() {
                    "name" => Ok(format!("{}\n", arg(0))),
                    "echo" => Ok(format!("{}\n", args[2..].join(" "))),
                    "env" => environment::get_environment()
                        .into_iter()
                        .find(|(name, _)| *name == arg(2))
                        .map(|(_, value)| format!("{value}\n"))
                        .ok_or(format!("{} is not set", arg(2))),
                    "cat" => {
                        // Bytes go to stdout as they come, never held whole.
                        let (mut input, _done) = stdin::read_via_stream();
                        loop {
                            let (status, data) = input.read(Vec::with_capacity(64 << 10)).await;
                            if !matches!(status, StreamResult::Complete(_)) {
                                break;
                            }
                            if !out.write_all(data).await.is_empty() {
                                break; // stdout is closed
                            }
                        }
                        Ok(String::new())
                    }
                    "ls" => list().await,
                    "fail" => Err("failing, as asked".to_string()),
                    "connect" => connect(&arg(2)).await,
                    _ => Err("usage: cli-p3-rust name|echo ARGS|env NAME|cat|ls|fail|connect ADDR".into()),
                };
                let result = match result {
                    Ok(text) => {
                        out.write_all(text.into_bytes()).await;
                        Ok(())
                    }
                    Err(why) => {
                        eprint(&why).await;
                        Err(())
                    }
                };
                drop(out);
                result
            },
            async { written.await }
        );
        let _ = done;
        result
    }
}


/// The names in the first directory granted, sorted, one per line.
async fn list() -> Result<String, String> {
    let Some((dir, _)) = preopens::get_directories().into_iter().next() else {
        return Err("no directory was granted (--dir HOST::GUEST)".into());
    };
    let (entries, done) = dir.read_directory();
    let mut names: Vec<String> = entries.collect().await.into_iter().map(|e| e.name).collect();
    done.await.map_err(|e| format!("cannot list the directory: {e:?}"))?;
    names.sort();
    Ok(names.into_iter().map(|n| n + "\n").collect())
}

/// Opens a TCP connection to `IPV4:PORT` and closes it.
async fn connect(addr: &str) -> Result<String, String> {
    let parsed: std::net::SocketAddrV4 =
        addr.parse().map_err(|e| format!("`{addr}` is not IPV4:PORT: {e}"))?;
    let [a, b, c, d] = parsed.ip().octets();
    let refused = |e| format!("cannot connect to {addr}: {e:?}");
    let socket = TcpSocket::create(IpAddressFamily::Ipv4).map_err(refused)?;
    socket
        .connect(IpSocketAddress::Ipv4(Ipv4SocketAddress {
            port: parsed.port(),
            address: (a, b, c, d),
        }))
        .await
        .map_err(refused)?;
    Ok(format!("connected to {addr}\n"))
}

/// Writes a line to stderr.
async fn eprint(text: &str) {
    let (mut err, reader) = wit_stream::new();
    let line = format!("{text}\n").into_bytes();
    let ((), _) = futures::join!(
        async {
            err.write_all(line).await;
            drop(err);
        },
        async { wasip3::cli::stderr::write_via_stream(reader).await }
    );
}
