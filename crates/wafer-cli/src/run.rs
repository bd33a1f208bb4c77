//! `wafer run`: one WASI command (a WASI 0.1 module, or a WASI 0.2 or 0.3 command component),
//! stdio passed through, exiting with the program's code; or, with `--serve`, one function
//! served over HTTP for a quick try.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use wafer_registry::{DirGrant, FunctionConfig, FunctionName, HttpRule, Route};
use wafer_runtime::{CommandOptions, Runtime, RuntimeConfig};

/// Exit status when the module traps, as `wasmtime run` reports it: 128 + SIGABRT.
const TRAP_EXIT: u8 = 134;

/// Options of `wafer run`. As with `wasmtime run`, options come before the module and
/// everything after it is the module's arguments (`--` is optional), so
/// `go test -exec "wafer run --dir=/"` runs Go's wasip1 test binaries (the guest's `PWD` is
/// the current directory when a granted directory holds it).
#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// An environment variable for the program (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A host directory to give the program, read-write, at a guest path (repeatable).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// Give a component command the host's network, as `wasmtime run -S inherit-network`
    /// does: TCP and UDP sockets to and from any address, name lookups, and outgoing HTTP to
    /// anywhere. Without it all of these are denied.
    #[arg(long, conflicts_with = "serve")]
    network: bool,
    /// Serve the module over HTTP instead of running it once: a function answering every
    /// path (`/...`) on `--listen`, with the usual limits, from a throwaway data directory.
    /// Prints `Serving HTTP on http://ADDR/` on stderr; stops on Ctrl-C.
    #[arg(long)]
    serve: bool,
    /// With `--serve`: the address to listen on (`127.0.0.1:0` picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080", requires = "serve")]
    listen: SocketAddr,
    /// With `--serve`: a host the function may send HTTP requests to, as a manifest's `http`
    /// grant (`[scheme://]host[:port]`, `*.example.com`, port `*`); repeatable. None by
    /// default.
    #[arg(long = "http", value_name = "RULE", requires = "serve")]
    http: Vec<HttpRule>,
    /// The program: a `.wasm` binary or `.wat` text; a core module exporting `_start` or a
    /// component exporting `wasi:cli/run` (with `--serve`, any function).
    path: PathBuf,
    /// Arguments for the program: everything after its path.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// The current directory as the guest sees it, when a granted directory contains it: Go's
/// wasip1 runtime takes its working directory from `PWD`, and `go test` runs a package's
/// tests in the package's directory. Nothing is set when no granted directory holds it (the
/// guest learns nothing it could not read anyway).
fn guest_cwd(dirs: &[(PathBuf, String)]) -> Option<String> {
    let cwd = std::env::current_dir().ok()?;
    dirs.iter()
        .filter_map(|(host, guest)| {
            let host = host.canonicalize().ok()?;
            let rest = cwd.strip_prefix(&host).ok()?;
            Some((
                host.components().count(),
                std::path::Path::new(guest).join(rest),
            ))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, path)| path.display().to_string())
}

pub(crate) async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let env = args
        .env
        .iter()
        .map(|e| match e.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => bail!("--env `{e}` must be KEY=VALUE"),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    if args.serve {
        return serve(&args, env).await.map(|()| ExitCode::SUCCESS);
    }
    let mut options = CommandOptions {
        env,
        network: args.network,
        ..CommandOptions::default()
    };
    for d in &args.dirs {
        let (host, guest) = d.split_once("::").unwrap_or((d, d));
        options.dirs.push((PathBuf::from(host), guest.to_owned()));
    }
    if !options.env.iter().any(|(k, _)| k == "PWD") {
        if let Some(pwd) = guest_cwd(&options.dirs) {
            options.env.push(("PWD".to_owned(), pwd));
        }
    }
    // The program's name is its file name, as `wasmtime run` gives it: no host path leaks.
    options.args.push(program_name(&args.path));
    options.args.extend(args.args.iter().cloned());

    let bytes = tokio::fs::read(&args.path)
        .await
        .with_context(|| format!("cannot read {}", args.path.display()))?;
    let runtime = Runtime::new(&RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })?;
    let program = runtime
        .compile(&bytes)
        .with_context(|| args.path.display().to_string())?
        .program;
    match program.run_command(&options).await {
        // Exit codes are 8 bits on Unix; a WASI exit code is truncated as a process's would be.
        Ok(code) => Ok(ExitCode::from(code as u8)),
        Err(e) => {
            eprintln!("error: {} {e:#}", args.path.display());
            Ok(ExitCode::from(TRAP_EXIT))
        }
    }
}

/// The last component of `path`.
fn program_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// `wafer run --serve`: the module as a function named after its file, on every path.
async fn serve(args: &RunArgs, env: Vec<(String, String)>) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.args.is_empty(),
        "a served function takes no arguments (got `{}`)",
        args.args.join(" ")
    );
    let dirs = args
        .dirs
        .iter()
        .map(|d| {
            let grant = if d.contains("::") {
                d.clone()
            } else {
                format!("{d}::{d}")
            };
            grant
                .parse::<DirGrant>()
                .map_err(|e| anyhow::anyhow!("--dir `{d}`: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut config = FunctionConfig {
        routes: vec!["/...".parse::<Route>()?],
        env: env.into_iter().collect(),
        ..FunctionConfig::default()
    };
    config.grants.http = args.http.clone();
    config.grants.dirs = dirs;
    let module = tokio::fs::read(&args.path)
        .await
        .with_context(|| format!("cannot read {}", args.path.display()))?;
    crate::serve::serve_one(function_name(&args.path)?, module, config, args.listen).await
}

/// A function name made of the module's file stem: lower case, other characters `-`.
fn function_name(path: &Path) -> anyhow::Result<FunctionName> {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = stem
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '_' => c,
            _ => '-',
        })
        .collect();
    let name = name.trim_matches('-').parse().or_else(|_| "app".parse())?;
    Ok(name)
}
