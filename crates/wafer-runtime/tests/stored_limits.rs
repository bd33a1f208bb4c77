//! Limits as a record stored before limits were checked may hold them: a call's deadline is
//! `start + timeout`, which must never panic however large the timeout.
//!
//! The guests are the repository's examples, built into `target/wasm` by `examples/build.sh`.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use wafer_runtime::{CallOptions, Limits, Runtime, RuntimeConfig};

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example guests first: bash examples/build.sh",
            path.display()
        )
    })
}

/// Reported: `--timeout 18446744073709551615s` was accepted, and every call then panicked
/// in `Instant + Duration`.
#[tokio::test]
async fn a_timeout_instant_cannot_add_does_not_panic_a_call() {
    let runtime = Runtime::new(&RuntimeConfig::default()).unwrap();
    let exports = runtime
        .compile(&guest("exports-rust.wasm"))
        .unwrap()
        .program;
    for timeout in [Duration::from_secs(u64::MAX), Duration::MAX] {
        let options = CallOptions::new(Limits {
            timeout,
            ..Limits::default()
        });
        // A fresh instance per call.
        let sum: i32 = exports.call(&options, "sum", (3, 2)).await.unwrap();
        assert_eq!(sum, 5);
        // A reused instance starts its clock at each call.
        let mut instance = exports.instantiate(&options).await.unwrap();
        for i in 0..3 {
            let sum: i32 = instance.call("sum", (i, 1)).await.unwrap();
            assert_eq!(sum, i + 1);
        }
    }
}
