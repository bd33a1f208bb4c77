//! `wafer run`: one WASI command, stdio passed through, exiting with the module's code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use wafer_runtime::{CommandOptions, Runtime, RuntimeConfig};

/// Exit status when the module traps, as `wasmtime run` reports it: 128 + SIGABRT.
const TRAP_EXIT: u8 = 134;

/// Options of `wafer run`.
#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The module: a `.wasm` binary or `.wat` text exporting `_start`.
    path: PathBuf,
    /// An environment variable for the module (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// A host directory to give the module, read-write, at a guest path (repeatable).
    #[arg(long = "dir", value_name = "HOST::GUEST")]
    dirs: Vec<String>,
    /// Arguments for the module (after `--`).
    #[arg(last = true)]
    args: Vec<String>,
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
