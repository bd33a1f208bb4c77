//! The embedding API: typed calls of plain exports, waPC operations with host callbacks,
//! host functions, fresh and reused instances, and faults.
//!
//! The guests are the repository's examples, built into `target/wasm` by `examples/build.sh`
//! (`scripts/test.sh` runs it first).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wafer_runtime::{
    Abi, CallError, CallOptions, Fault, HostCall, Limits, Program, Runtime, RuntimeConfig, Value,
};

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

fn program(runtime: &Runtime, name: &str) -> Program {
    runtime.compile(&guest(name)).unwrap().program
}

fn runtime() -> Runtime {
    Runtime::new(&RuntimeConfig::default()).unwrap()
}

fn quick() -> CallOptions {
    CallOptions::new(Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    })
}

#[tokio::test]
async fn typed_calls_with_numbers_strings_and_bytes() {
    let runtime = runtime();
    let exports = program(&runtime, "exports-rust.wasm");
    assert_eq!(exports.abi(), Abi::Exports);
    let options = CallOptions::default();

    let sum: i32 = exports.call(&options, "sum", (3, 2)).await.unwrap();
    assert_eq!(sum, 5);
    let product: i64 = exports
        .call(&options, "mul64", (3_000_000_000_i64, 3_i64))
        .await
        .unwrap();
    assert_eq!(product, 9_000_000_000);
    let norm: f64 = exports.call(&options, "norm", (3.0, 4.0)).await.unwrap();
    assert_eq!(norm, 5.0);
    let greeting: String = exports.call(&options, "greet", "world").await.unwrap();
    assert_eq!(greeting, "Hello, world!");
    let owned: String = exports
        .call(&options, "greet", String::from("Wafer"))
        .await
        .unwrap();
    assert_eq!(owned, "Hello, Wafer!");
    let reversed: Vec<u8> = exports
        .call(&options, "reverse", &b"\x00\x01\xff"[..])
        .await
        .unwrap();
    assert_eq!(reversed, b"\xff\x01\x00");
    let empty: Vec<u8> = exports.call(&options, "reverse", Vec::new()).await.unwrap();
    assert!(empty.is_empty());
    let mixed: i32 = exports
        .call(&options, "count_plus", ("four", 10))
        .await
        .unwrap();
    assert_eq!(mixed, 14);
}

#[tokio::test]
async fn mismatched_calls_name_the_real_signature() {
    let runtime = runtime();
    let exports = program(&runtime, "exports-rust.wasm");
    let options = CallOptions::default();

    let err = exports
        .call::<_, i32>(&options, "sum", (1, 2, 3))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sum(i32, i32) -> i32: called with (i32, i32, i32)"
    );
    let err = exports
        .call::<_, i32>(&options, "sum", (1_i64, 2_i64))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Signature { signature, .. } if signature == "sum(i32, i32) -> i32")
    );
    let err = exports
        .call::<_, f64>(&options, "sum", (1, 2))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("sum(i32, i32) -> i32"), "{err}");
    let err = exports
        .call::<_, String>(&options, "sum", (1, 2))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("(ptr << 32) | len"), "{err}");

    let err = exports
        .call::<_, ()>(&options, "missing", ())
        .await
        .unwrap_err();
    match err {
        CallError::NoExport { name, exports } => {
            assert_eq!(name, "missing");
            assert!(
                exports.contains("sum") && exports.contains("greet"),
                "{exports}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_reused_instance_keeps_serving_until_a_call_fails() {
    let runtime = runtime();
    let exports = program(&runtime, "exports-rust.wasm");
    let mut instance = exports.instantiate(&quick()).await.unwrap();
    for i in 0..100 {
        let sum: i32 = instance.call("sum", (i, 1)).await.unwrap();
        assert_eq!(sum, i + 1);
        let greeting: String = instance.call("greet", "again").await.unwrap();
        assert_eq!(greeting, "Hello, again!");
    }
    let err = instance.call::<_, i32>("div", (1, 0)).await.unwrap_err();
    assert!(
        matches!(&err, CallError::Fault(Fault::Trap(msg)) if msg.contains("unreachable")),
        "{err:?}"
    );
    let err = instance.call::<_, i32>("sum", (1, 1)).await.unwrap_err();
    assert!(
        matches!(err, CallError::Poisoned(Fault::Trap(_))),
        "{err:?}"
    );

    // A fresh instance per call is unaffected by another call's failure.
    let sum: i32 = exports.call(&quick(), "sum", (1, 1)).await.unwrap();
    assert_eq!(sum, 2);
}

#[tokio::test]
async fn a_looping_export_ends_at_the_time_limit() {
    let runtime = runtime();
    let exports = program(&runtime, "exports-rust.wasm");
    let err = exports
        .call::<_, ()>(&quick(), "spin", ())
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Fault(Fault::Timeout(Duration::from_millis(300)))
    );
}

/// Host callbacks of the tests: `app/math/double` doubles a decimal number; `wafer/log`
/// lines are collected.
fn host(lines: Arc<Mutex<Vec<String>>>) -> CallOptions {
    quick().host(
        move |call: HostCall<'_>| match (call.binding, call.namespace, call.operation) {
            ("app", "math", "double") => {
                let n: i64 = std::str::from_utf8(call.payload)
                    .map_err(|e| e.to_string())?
                    .parse()
                    .map_err(|e| format!("not a number: {e}"))?;
                Ok((n * 2).to_string().into_bytes())
            }
            ("wafer", "log", level) => {
                let text = String::from_utf8_lossy(call.payload);
                lines.lock().unwrap().push(format!("{level}: {text}"));
                Ok(Vec::new())
            }
            (b, n, o) => Err(format!("no such host call {b}/{n}/{o}")),
        },
    )
}

async fn wapc_round_trips(module: &str) {
    let runtime = runtime();
    let wapc = program(&runtime, module);
    assert_eq!(wapc.abi(), Abi::Wapc);
    let lines = Arc::new(Mutex::new(Vec::new()));
    let options = host(lines.clone());

    assert_eq!(
        wapc.call_wapc(&options, "ping", b"").await.unwrap(),
        b"pong"
    );
    let payload: Vec<u8> = (0..=255).collect();
    assert_eq!(
        wapc.call_wapc(&options, "echo", &payload).await.unwrap(),
        payload
    );
    let mut instance = wapc.instantiate(&options).await.unwrap();
    assert_eq!(
        instance.call_wapc("hello", b"Ann").await.unwrap(),
        b"Hello, Ann!"
    );
    assert_eq!(*lines.lock().unwrap(), ["info: greeting Ann"]);
    assert_eq!(&instance.take_log()[..], b"hello from the console\n");
    // The host callback round trip, and a host error reaching the guest and coming back.
    assert_eq!(instance.call_wapc("relay", b"21").await.unwrap(), b"42");
    let err = instance.call_wapc("relay", b"x").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Guest(msg) if msg.contains("not a number")),
        "{err:?}"
    );
    let err = instance.call_wapc("fail", b"abc").await.unwrap_err();
    assert_eq!(err, CallError::Guest("refusing 3 bytes".into()));
    let err = instance.call_wapc("nope", b"").await.unwrap_err();
    assert_eq!(err, CallError::UnknownOperation("nope".into()));
    // Guest errors leave the instance usable.
    assert_eq!(instance.call_wapc("ping", b"").await.unwrap(), b"pong");

    let err = instance.call_wapc("spin", b"").await.unwrap_err();
    assert_eq!(
        err,
        CallError::Fault(Fault::Timeout(Duration::from_millis(300)))
    );

    // Without host callbacks, a host call fails with a message and the guest reports it.
    let err = wapc.call_wapc(&quick(), "relay", b"1").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Guest(msg) if msg.contains("no host calls are available")),
        "{err:?}"
    );
}

#[tokio::test]
async fn wapc_guest_built_for_wasip1() {
    wapc_round_trips("wapc-rust.wasm").await;
}

#[tokio::test]
async fn wapc_guest_built_for_wasm32_unknown_unknown() {
    wapc_round_trips("wapc-rust-unknown.wasm").await;
}

#[tokio::test]
async fn wapc_calls_on_other_modules_are_refused() {
    let runtime = runtime();
    let exports = program(&runtime, "exports-rust.wasm");
    let err = exports.call_wapc(&quick(), "ping", b"").await.unwrap_err();
    assert!(
        matches!(&err, CallError::Unsupported(msg) if msg.contains("not a waPC module")),
        "{err:?}"
    );
}

#[tokio::test]
async fn host_functions_registered_as_closures() {
    let mut runtime = runtime();
    runtime
        .func_wrap("host", "double", |x: i32| x * 2)
        .unwrap()
        .func_wrap("host", "add", |a: i64, b: i64| a + b)
        .unwrap();
    let program = runtime
        .compile(
            br#"(module
                (import "host" "double" (func $double (param i32) (result i32)))
                (import "host" "add" (func $add (param i64 i64) (result i64)))
                (func (export "quadruple") (param i32) (result i32)
                    (call $double (call $double (local.get 0))))
                (func (export "add3") (param i64 i64 i64) (result i64)
                    (call $add (call $add (local.get 0) (local.get 1)) (local.get 2))))"#,
        )
        .unwrap()
        .program;
    let options = CallOptions::default();
    let four: i32 = program.call(&options, "quadruple", 1).await.unwrap();
    assert_eq!(four, 4);
    let six: i64 = program
        .call(&options, "add3", (1_i64, 2_i64, 3_i64))
        .await
        .unwrap();
    assert_eq!(six, 6);
    let values = program
        .instantiate(&options)
        .await
        .unwrap()
        .call_values(
            "quadruple",
            vec![Value::I32(5)],
            &[wafer_runtime::Shape::Number],
        )
        .await
        .unwrap();
    assert_eq!(values, [Value::I32(20)]);
}

#[tokio::test]
async fn c_guest_with_the_same_convention() {
    let runtime = runtime();
    let exports = program(&runtime, "exports-c.wasm");
    assert_eq!(exports.abi(), Abi::Exports);
    let mut instance = exports.instantiate(&quick()).await.unwrap();
    let sum: i32 = instance.call("sum", (40, 2)).await.unwrap();
    assert_eq!(sum, 42);
    for name in ["C", "a longer name, to exercise malloc"] {
        let greeting: String = instance.call("greet", name).await.unwrap();
        assert_eq!(greeting, format!("Hello, {name}!"));
    }
}
