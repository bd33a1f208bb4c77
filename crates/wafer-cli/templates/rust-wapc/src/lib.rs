//! A waPC function: it registers operations, and Wafer calls them by name with a payload,
//! over HTTP (`POST /{{name}}/OPERATION`), gRPC or `wafer invoke`.

use wapc_guest::prelude::*;

#[no_mangle]
pub fn wapc_init() {
    register_function("hello", hello);
}

/// `hello`: greets the payload.
fn hello(payload: &[u8]) -> CallResult {
    let who = std::str::from_utf8(payload)?;
    Ok(format!("Hello from {{name}}, {who}!").into_bytes())
}
