//! A waPC guest written with the public `wapc-guest` crate, unchanged from how any waPC host
//! would run it. Built for `wasm32-unknown-unknown` and `wasm32-wasip1`.
//!
//! Operations: `ping` (answers `pong`), `echo` (answers its payload), `hello` (greets the
//! payload, logging through the host), `relay` (asks the host `app/math/double` and answers
//! what the host said), `fail` (a guest error), `spin` (never returns), and `on_message` (how
//! a subscribed waPC function receives a published message: it logs the JSON payload).

use wapc_guest::prelude::*;

#[no_mangle]
pub fn wapc_init() {
    register_function("ping", ping);
    register_function("echo", echo);
    register_function("hello", hello);
    register_function("relay", relay);
    register_function("fail", fail);
    register_function("spin", spin);
    register_function("on_message", on_message);
}

fn on_message(payload: &[u8]) -> CallResult {
    let text = std::str::from_utf8(payload)?;
    host_call("wafer", "log", "info", format!("message {text}").as_bytes())?;
    Ok(Vec::new())
}

fn ping(_: &[u8]) -> CallResult {
    Ok(b"pong".to_vec())
}

fn echo(payload: &[u8]) -> CallResult {
    Ok(payload.to_vec())
}

fn hello(payload: &[u8]) -> CallResult {
    let name = std::str::from_utf8(payload)?;
    host_call("wafer", "log", "info", format!("greeting {name}").as_bytes())?;
    console_log("hello from the console");
    Ok(format!("Hello, {name}!").into_bytes())
}

fn relay(payload: &[u8]) -> CallResult {
    host_call("app", "math", "double", payload)
}

fn fail(payload: &[u8]) -> CallResult {
    Err(format!("refusing {} bytes", payload.len()).into())
}

fn spin(_: &[u8]) -> CallResult {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
