//! `wafer run`: one WASI command, stdio passed through, exiting with the module's code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use wafer_runtime::{CommandOptions, Runtime, RuntimeConfig};

/// Exit status when the module traps, as `wasmtime run` reports it: 128 + SIGABRT.
const TRAP_EXIT: u8 = 134;

/// Options of `wafer run`. As with `wasmtime run`, options come before the module and
/// everything after it is the module's arguments (`--` is optional), so
/// `go test -exec "wafer run --dir=/"` runs Go's wasip1 test binaries (the guest's `PWD` is
/// the current directory when a granted directory holds it).
#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// An environment variable for the module (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A host directory to give the module, read-write, at a guest path (repeatable).
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    dirs: Vec<String>,
    /// The module: a `.wasm` binary or `.wat` text exporting `_start`.
    path: PathBuf,
    /// Arguments for the module: everything after its path.
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
    let mut options = CommandOptions::default();
    for e in &args.env {
        let Some((k, v)) = e.split_once('=') else {
            bail!("--env `{e}` must be KEY=VALUE");
        };
        options.env.push((k.to_owned(), v.to_owned()));
    }
    for d in &args.dirs {
        let (host, guest) = d.split_once("::").unwrap_or((d, d));
        options.dirs.push((PathBuf::from(host), guest.to_owned()));
    }
    if !options.env.iter().any(|(k, _)| k == "PWD") {
        if let Some(pwd) = guest_cwd(&options.dirs) {
            options.env.push(("PWD".to_owned(), pwd));
        }
    }
    options.args.push(args.path.display().to_string());
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
