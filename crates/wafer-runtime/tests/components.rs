//! The embedding library's typed calls of component functions, with host functions given as
//! closures for the WIT the component imports.

#![allow(clippy::unwrap_used)]

use serde_json::json;
use wafer_runtime::{HttpOptions, Runtime, RuntimeConfig};

/// A component importing `example:host/math` (`double`, `greet`) and exporting
/// `example:guest/calc` (`quadruple` calls `double` twice) and a world-level `add`.
const CALC: &str = r#"(component
  (import "example:host/math" (instance $math
    (export "double" (func (param "x" u32) (result u32)))))
  (core module $m
    (import "host" "double" (func $double (param i32) (result i32)))
    (func (export "quadruple") (param i32) (result i32)
      (call $double (call $double (local.get 0))))
    (func (export "add") (param i32 i32) (result i32)
      (i32.add (local.get 0) (local.get 1))))
  (core func $double (canon lower (func $math "double")))
  (core instance $host (export "double" (func $double)))
  (core instance $i (instantiate $m (with "host" (instance $host))))
  (func $quadruple (param "x" u32) (result u32) (canon lift (core func $i "quadruple")))
  (func $add (param "a" u32) (param "b" u32) (result u32) (canon lift (core func $i "add")))
  (instance $calc (export "quadruple" (func $quadruple)))
  (export "example:guest/calc" (instance $calc))
  (export "add" (func $add)))"#;

#[tokio::test]
async fn a_component_calls_a_host_closure_and_is_called_with_json() {
    let mut runtime = Runtime::new(&RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    runtime
        .component_func("example:host/math", "double", |args| {
            let x = args[0].as_u64().ok_or("not a number")?;
            if x == 13 {
                return Err("unlucky".into());
            }
            Ok(json!(x * 2))
        })
        .unwrap();
    let program = runtime.compile(CALC.as_bytes()).unwrap().program;
    let functions = program.component_functions().unwrap();
    let names: Vec<String> = functions.functions().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["example:guest/calc#quadruple", "add"]);
    assert_eq!(
        functions.signature("example:guest/calc#quadruple").unwrap(),
        "func(x: u32) -> u32"
    );

    let options = HttpOptions::default();
    let called = functions
        .call(&options, "example:guest/calc#quadruple", &json!([5]))
        .await;
    assert_eq!(called.result.unwrap(), json!(20));
    let called = functions
        .call(&options, "add", &json!({"a": 2, "b": 3}))
        .await;
    assert_eq!(called.result.unwrap(), json!(5));

    // The closure's error traps the guest, naming the host function.
    let called = functions
        .call(&options, "example:guest/calc#quadruple", &json!([13]))
        .await;
    let error = called.result.unwrap_err().to_string();
    assert!(
        error.contains("example:host/math#double: unlucky"),
        "{error}"
    );
    // A wrong argument is refused before the guest runs.
    let called = functions.call(&options, "add", &json!([2, "three"])).await;
    let error = called.result.unwrap_err().to_string();
    assert_eq!(
        error,
        "add: func(a: u32, b: u32) -> u32: argument `b`: expected u32, got \"three\""
    );
}

#[tokio::test]
async fn a_component_importing_what_the_host_lacks_fails_to_compile() {
    let runtime = Runtime::new(&RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let error = runtime.compile(CALC.as_bytes()).err().unwrap().to_string();
    assert!(error.contains("example:host/math"), "{error}");
}
