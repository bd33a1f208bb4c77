//! The `wafer` command: parses arguments, starts logging, and hands over to a subcommand.

mod client;
mod manifest;
mod new;
mod oci;
mod run;
mod serve;
mod spin;
mod telemetry;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Wafer: serve WebAssembly functions over HTTP.
#[derive(Parser)]
#[command(name = "wafer", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// How the server writes its own log lines to stderr: `text` (for people) or `json` (one
    /// object per line, for log collectors).
    #[arg(long, global = true, env = "WAFER_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
}

/// The format of Wafer's own log lines.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Start the server with the registry in the data directory.
    Serve(serve::ServeArgs),
    /// Serve the functions a manifest declares (no deploy step); `--watch` reloads on change.
    Up(serve::UpArgs),
    /// Create a new function's project from a template (`wafer new --list`).
    New(new::NewArgs),
    /// Run the `build` command of every function in a manifest (or of those named).
    Build(manifest::BuildArgs),
    /// Upload a module (.wasm or .wat, or `oci://REF` from a registry) to a running server as a
    /// new version of a function.
    Deploy(Box<client::DeployArgs>),
    /// Publish a deployed function's module (and its configuration) to an OCI registry as a
    /// Wasm artifact; `wafer deploy NAME oci://REF` deploys it again.
    Push(client::PushArgs),
    /// Deploy every function a manifest declares (a `wafer.toml`, or a Spin app's
    /// `spin.toml`) to a running server.
    Apply(client::ApplyArgs),
    /// Call a waPC operation or an exported function of a deployed function (`--async`:
    /// queue any function's call and print its id).
    Invoke(client::InvokeArgs),
    /// List the newest asynchronous invocations, or show one with its result.
    Invocations(client::InvocationsArgs),
    /// List the functions of a running server.
    Ls(client::ServerArgs),
    /// Remove a function.
    Rm(client::NameArgs),
    /// Make the version before the active one active again; during a traffic split, give
    /// every request back to the active (older) version.
    Rollback(client::NameArgs),
    /// Share a function's requests among its versions: `wafer traffic NAME v7=25 v6=75`.
    Traffic(client::TrafficArgs),
    /// End a traffic split: its newest version takes every request.
    Promote(client::NameArgs),
    /// Show a function's versions.
    Versions(client::NameArgs),
    /// Show a function's recent log lines (stderr and log imports, with request ids).
    Logs(client::LogsArgs),
    /// Run a WASI command module once, with this terminal's stdio, and exit with its code.
    Run(run::RunArgs),
    /// Print a shell completion script: `wafer completions bash > /etc/bash_completion.d/wafer`,
    /// `wafer completions zsh > ~/.zfunc/_wafer`, `wafer completions fish >
    /// ~/.config/fish/completions/wafer.fish`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

/// The data directory option shared by commands that use one.
#[derive(clap::Args, Clone)]
pub(crate) struct DataArgs {
    /// Directory holding the registry (modules, function records, compiled artifacts) and the
    /// admin token.
    #[arg(long, env = "WAFER_DATA", default_value = ".wafer")]
    data: PathBuf,
}

/// mimalloc: the request path allocates small, short-lived objects on every call (the CGI
/// environment, the WASI context, the store), and glibc malloc spent a quarter of the
/// server's time on them under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The log filter of `wafer run` when `RUST_LOG` is unset.
const RUN_LOG_FILTER: &str = "warn";
/// The log filter when `RUST_LOG` is unset. wasmtime-wasi opens an info-level span for every
/// WASI call a guest makes; recording those on the request path is pure overhead.
const DEFAULT_LOG_FILTER: &str = "info,wasmtime=warn,wasmtime_wasi=warn,wiggle=warn,cranelift=warn";

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that need neither logging nor the async runtime.
    match cli.command {
        Command::New(args) => return finish(new::new(args).map(|()| ExitCode::SUCCESS)),
        Command::Build(args) => return finish(manifest::build(args).map(|()| ExitCode::SUCCESS)),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "wafer", &mut std::io::stdout());
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `wafer run` prints what the program prints, and server warnings only.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| {
        match &cli.command {
            Command::Run(_) => RUN_LOG_FILTER,
            _ => DEFAULT_LOG_FILTER,
        }
        .to_owned()
    });
    let format = match cli.log_format {
        LogFormat::Text => telemetry::Format::Text,
        LogFormat::Json => telemetry::Format::Json,
    };
    // Traces are the server's: `serve` and `up`.
    let server = matches!(cli.command, Command::Serve(_) | Command::Up(_));
    let telemetry = {
        // The gRPC exporter's channel runs on this runtime.
        let _runtime = runtime.enter();
        match telemetry::start(&filter, format, server) {
            Ok(telemetry) => telemetry,
            Err(e) => return finish(Err(e)),
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::serve(args).await.map(|()| ExitCode::SUCCESS),
            Command::Up(args) => serve::up(args).await.map(|()| ExitCode::SUCCESS),
            Command::Deploy(args) => client::deploy(*args).await.map(|()| ExitCode::SUCCESS),
            Command::Apply(args) => client::apply(args).await.map(|()| ExitCode::SUCCESS),
            Command::Push(args) => client::push(args).await.map(|()| ExitCode::SUCCESS),
            Command::Invoke(args) => client::invoke(args).await.map(|()| ExitCode::SUCCESS),
            Command::Invocations(args) => {
                client::invocations(args).await.map(|()| ExitCode::SUCCESS)
            }
            Command::Ls(args) => client::ls(args).await.map(|()| ExitCode::SUCCESS),
            Command::Rm(args) => client::rm(args).await.map(|()| ExitCode::SUCCESS),
            Command::Rollback(args) => client::rollback(args).await.map(|()| ExitCode::SUCCESS),
            Command::Traffic(args) => client::traffic(args).await.map(|()| ExitCode::SUCCESS),
            Command::Promote(args) => client::promote(args).await.map(|()| ExitCode::SUCCESS),
            Command::Versions(args) => client::versions(args).await.map(|()| ExitCode::SUCCESS),
            Command::Logs(args) => client::logs(args).await.map(|()| ExitCode::SUCCESS),
            Command::Run(args) => run::run(args).await,
            Command::Completions { .. } | Command::New(_) | Command::Build(_) => {
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    // While the runtime still runs the exporter's connection.
    telemetry.shutdown();
    finish(result)
}

/// The exit code of a command's result, with the error said on stderr.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
