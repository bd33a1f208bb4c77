//! Per-call cost of the embedding API: a trivial export (`sum`) and a string round trip
//! (`greet`), in a fresh instance per call and in one reused instance.
//!
//! `cargo bench -p wafer-runtime` (the guests come from `bash examples/build.sh`).
#![allow(clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use wafer_runtime::{CallOptions, Runtime, RuntimeConfig};

/// The allocator the `wafer` server uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUM: &str = r#"(module
    (func (export "sum") (param i32 i32) (result i32)
        (i32.add (local.get 0) (local.get 1))))"#;

fn calls(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
    let sum = runtime.compile(SUM.as_bytes()).unwrap().program;
    let exports_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../target/wasm/exports-rust.wasm"
    );
    let exports = std::fs::read(exports_path)
        .unwrap_or_else(|e| panic!("{exports_path}: {e}; run bash examples/build.sh"));
    let exports = runtime.compile(&exports).unwrap().program;
    let options = CallOptions::default();

    let mut group = c.benchmark_group("call");
    group.bench_function("sum, fresh instance (WAT)", |b| {
        b.to_async(&tokio).iter(|| async {
            let n: i32 = sum.call(&options, "sum", (3, 2)).await.unwrap();
            n
        })
    });
    group.bench_function("sum, fresh instance (Rust)", |b| {
        b.to_async(&tokio).iter(|| async {
            let n: i32 = exports.call(&options, "sum", (3, 2)).await.unwrap();
            n
        })
    });
    group.bench_function("greet, fresh instance (Rust)", |b| {
        b.to_async(&tokio).iter(|| async {
            let s: String = exports.call(&options, "greet", "world").await.unwrap();
            s
        })
    });
    let mut instance = tokio.block_on(exports.instantiate(&options)).unwrap();
    group.bench_function("sum, reused instance (Rust)", |b| {
        b.iter(|| {
            let n: i32 = tokio.block_on(instance.call("sum", (3, 2))).unwrap();
            n
        })
    });
    group.bench_function("greet, reused instance (Rust)", |b| {
        b.iter(|| {
            let s: String = tokio.block_on(instance.call("greet", "world")).unwrap();
            s
        })
    });
    group.finish();
}

criterion_group!(benches, calls);
criterion_main!(benches);
