//! In-process timings: instantiate + run per request for each example (no HTTP), the first
//! request after a restart (registry reopened from disk) for the Go example, and the cost of
//! one deploy as the number of functions grows.
//!
//! Usage: `wafer-bench [GUEST_DIR]` (default `target/wasm`), or `wafer-bench propagation
//! ...` for the deploy-to-served latency between two cluster nodes (see [`propagation`]), or
//! `wafer-bench otlp-sink PORT COUNT_FILE` for a trace receiver counting spans (see
//! [`otlp_sink`]).
//! Part of `scripts/bench.sh`.

mod otlp_sink;
mod propagation;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use wafer_gateway::Functions;
use wafer_registry::{FunctionConfig, Registry};
use wafer_runtime::{CallOptions, CgiRequest, Limits, Program, Runtime, RuntimeConfig};

/// The allocator `wafer` uses, so that in-process figures match the server's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A request environment the size of a typical CGI call (~30 variables).
fn request(program: &Program) -> CgiRequest {
    // As the gateway does: no environment for a guest that cannot read one.
    if !program.inputs().env {
        return CgiRequest {
            args: Vec::new(),
            env: Vec::new(),
            stdin: Default::default(),
        };
    }
    let mut env: Vec<(String, String)> = [
        "AUTH_TYPE",
        "CONTENT_LENGTH",
        "CONTENT_TYPE",
        "GATEWAY_INTERFACE",
        "PATH_INFO",
        "PATH_TRANSLATED",
        "QUERY_STRING",
        "REMOTE_ADDR",
        "REMOTE_HOST",
        "REMOTE_USER",
        "REQUEST_METHOD",
        "SCRIPT_NAME",
        "SERVER_NAME",
        "SERVER_PORT",
        "SERVER_PROTOCOL",
        "SERVER_SOFTWARE",
        "X_FULL_URL",
        "X_MATCHED_ROUTE",
        "X_RAW_PATH_INFO",
        "http_path",
        "http_method",
        "http_host",
        "http_query",
        "remote_addr",
        "HTTP_HOST",
        "HTTP_USER_AGENT",
        "HTTP_ACCEPT",
    ]
    .iter()
    .map(|k| (k.to_string(), "value".to_string()))
    .collect();
    env.push(("HTTP_X_BENCH".into(), "1".into()));
    CgiRequest {
        args: vec!["/hello".into()],
        env,
        stdin: Default::default(),
    }
}

async fn time_calls(program: &Program, limits: &Limits, n: usize) -> anyhow::Result<Vec<Duration>> {
    let options = CallOptions::new(*limits);
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let out = program.run_cgi(request(program), &options).await;
        times.push(start.elapsed());
        anyhow::ensure!(out.exit == Ok(0), "guest failed: {:?}", out.exit);
    }
    times.sort();
    Ok(times)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("propagation") {
        return propagation::run(&args[1..]).await;
    }
    if args.first().map(String::as_str) == Some("otlp-sink") {
        return otlp_sink::run(&args[1..]).await;
    }
    // `wafer-bench deploys [DIR]`: only the deploy-cost figures.
    if args.first().map(String::as_str) == Some("deploys") {
        let dir = PathBuf::from(args.get(1).map_or("target/wasm", String::as_str));
        let runtime = Arc::new(Runtime::new(&RuntimeConfig::default())?);
        return deploys_as_functions_grow(&runtime, &dir.join("hello-wat.wat")).await;
    }
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/wasm".into()),
    );
    // WAFER_BENCH_ONLY=hello-wat times one example (and skips the restart), for profiling.
    let only = std::env::var("WAFER_BENCH_ONLY").ok();
    let runtime = Arc::new(Runtime::new(&RuntimeConfig::default())?);
    let limits = Limits::default();
    println!("in-process instantiate + run per request (fresh instance each, no HTTP):");
    println!(
        "{:<12} {:>10} {:>10} {:>10}",
        "example", "mean us", "p50 us", "p99 us"
    );
    for name in [
        "hello-wat.wat",
        "hello-c.wasm",
        "hello-rust.wasm",
        "hello-go.wasm",
    ] {
        if only
            .as_ref()
            .is_some_and(|only| !name.starts_with(only.as_str()))
        {
            continue;
        }
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("{}", dir.join(name).display()))?;
        let program = runtime.compile(&bytes)?.program;
        let n = if name.contains("go") { 500 } else { 5000 };
        let n = if only.is_some() { n * 40 } else { n };
        time_calls(&program, &limits, n / 10).await?;
        let times = time_calls(&program, &limits, n).await?;
        let mean = times.iter().sum::<Duration>() / times.len() as u32;
        println!(
            "{:<12} {:>10.1} {:>10.1} {:>10.1}",
            name.split('.').next().unwrap_or(name),
            us(mean),
            us(times[times.len() / 2]),
            us(times[times.len() * 99 / 100])
        );
    }

    if only.is_some() {
        return Ok(());
    }
    // Restart: deploy Go into a data directory, drop everything, reopen, time the first call.
    let data = tempfile::tempdir()?;
    let go = std::fs::read(dir.join("hello-go.wasm"))?;
    let open = |runtime: &Arc<Runtime>| {
        let runtime = runtime.clone();
        let data = data.path().to_owned();
        async move {
            let registry = Registry::open(&data)?;
            anyhow::Ok(Functions::start(registry, runtime, &data).await?)
        }
    };
    {
        let functions = open(&runtime).await?;
        let name = "hello-go".parse()?;
        functions
            .deploy(name, go, FunctionConfig::default())
            .await?;
    }
    let opened = Instant::now();
    let functions = open(&runtime).await?;
    let open_time = opened.elapsed();
    let first = Instant::now();
    let resolved = functions
        .resolve("/hello-go")
        .context("hello-go not served after reopen")?;
    let function = resolved.function;
    let program = function.program().map_err(|e| anyhow::anyhow!("{e}"))?;
    let out = program
        .run_cgi(request(program), &CallOptions::new(limits))
        .await;
    let first_time = first.elapsed();
    anyhow::ensure!(out.exit == Ok(0), "go guest failed: {:?}", out.exit);
    println!(
        "go example after restart: registry reopen (verify module + map artifact) {:.2} ms, first request {:.2} ms",
        open_time.as_secs_f64() * 1e3,
        first_time.as_secs_f64() * 1e3
    );
    deploys_as_functions_grow(&runtime, &dir.join("hello-wat.wat")).await
}

/// The time of one deploy (write the record, wait until it is served) with 10, 1,000 and
/// 10,000 functions deployed: it should not grow with their number. The module is the same
/// each time, so its artifact is cached and the figure is the record write (with its fsync)
/// and the table update.
async fn deploys_as_functions_grow(
    runtime: &Arc<Runtime>,
    module: &std::path::Path,
) -> anyhow::Result<()> {
    let module = std::fs::read(module)?;
    let data = tempfile::tempdir()?;
    let functions =
        Functions::start(Registry::open(data.path())?, runtime.clone(), data.path()).await?;
    println!("one deploy with N functions deployed (mean of the next 50 deploys):");
    let mut deployed = 0;
    for target in [10, 1000, 10_000] {
        while deployed < target {
            let name = format!("f{deployed}").parse()?;
            functions
                .deploy(name, module.clone(), FunctionConfig::default())
                .await?;
            deployed += 1;
        }
        let started = Instant::now();
        for i in 0..50 {
            let name = format!("probe{target}-{i}").parse()?;
            functions
                .deploy(name, module.clone(), FunctionConfig::default())
                .await?;
        }
        deployed += 50;
        let mean = started.elapsed() / 50;
        println!("  N = {target:>5}: {:.2} ms", mean.as_secs_f64() * 1e3);
    }
    Ok(())
}
