//! Guest SDK for Wafer functions written in Rust.
//!
//! A function reaches the capabilities it was granted (its log, config values and secrets, a
//! key-value store, pub/sub, outbound HTTP) through one waPC import, `wapc.__host_call`, with
//! binding `wafer`. This crate wraps that channel in one module per capability, and adds
//! [`cgi`] helpers for functions served as CGI programs (WASI preview1 commands).
//!
//! Every call returns an [`Error`] when the host refuses or fails it; the error's
//! [`kind`](Error::kind) is the code word that starts the host's message (`denied`,
//! `not_found`, ...) and its `Display` is that message, verbatim. Outside WebAssembly (for
//! example in native unit tests) every call fails with `failed: not running inside Wafer`.
//!
//! ```no_run
//! use wafer_guest::{cgi, config, kv, log};
//!
//! fn main() -> std::io::Result<()> {
//!     let request = cgi::Request::from_env();
//!     let greeting = config::get_opt("greeting")?.unwrap_or_else(|| "hello".into());
//!     let visits: u64 = kv::get_string("visits")?.and_then(|v| v.parse().ok()).unwrap_or(0) + 1;
//!     kv::set("visits", visits.to_string())?;
//!     log::info(&format!("visit {visits} from {}", request.path_info));
//!     cgi::Response::new(200)
//!         .header("Content-Type", "text/plain")
//!         .body(format!("{greeting}, visit {visits}\n"))
//!         .send()
//! }
//! ```
//!
//! Build for `wasm32-wasip1` (CGI programs) or `wasm32-unknown-unknown`; the wire contract is
//! in Wafer's `docs/host-calls.md`.

#![warn(missing_docs)]

use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde_json::Value;

pub mod cgi;
pub mod config;
mod error;
pub mod http;
pub mod kv;
pub mod log;
pub mod pubsub;

pub use error::{Error, ErrorKind};

/// The waPC binding every Wafer host call uses.
pub const BINDING: &str = "wafer";

/// Calls operation `operation` of capability `namespace` with a raw payload, and returns the
/// host's raw answer. The capability modules are built on this; use it for operations they do
/// not cover.
pub fn host_call(namespace: &str, operation: &str, payload: &[u8]) -> Result<Vec<u8>, Error> {
    sys::host_call(namespace, operation, payload).map_err(Error::from_message)
}

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "wapc")]
    extern "C" {
        fn __host_call(
            bd_ptr: *const u8,
            bd_len: usize,
            ns_ptr: *const u8,
            ns_len: usize,
            op_ptr: *const u8,
            op_len: usize,
            ptr: *const u8,
            len: usize,
        ) -> usize;
        fn __host_response_len() -> usize;
        fn __host_response(ptr: *mut u8);
        fn __host_error_len() -> usize;
        fn __host_error(ptr: *mut u8);
    }

    /// Makes the call; `Err` holds the host's error message.
    pub fn host_call(ns: &str, op: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
        let bd = super::BINDING;
        // SAFETY: every pointer/length pair describes a live slice for the whole call, and the
        // host only reads them.
        let ok = unsafe {
            __host_call(
                bd.as_ptr(),
                bd.len(),
                ns.as_ptr(),
                ns.len(),
                op.as_ptr(),
                op.len(),
                payload.as_ptr(),
                payload.len(),
            )
        };
        if ok == 1 {
            // SAFETY: the buffer is exactly as long as the host said the answer is.
            let mut answer = vec![0; unsafe { __host_response_len() }];
            unsafe { __host_response(answer.as_mut_ptr()) };
            Ok(answer)
        } else {
            // SAFETY: as above, for the error message.
            let mut message = vec![0; unsafe { __host_error_len() }];
            unsafe { __host_error(message.as_mut_ptr()) };
            Err(String::from_utf8_lossy(&message).into_owned())
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod sys {
    /// There is no host outside WebAssembly: every call fails.
    pub fn host_call(_ns: &str, _op: &str, _payload: &[u8]) -> Result<Vec<u8>, String> {
        Err("failed: not running inside Wafer".to_owned())
    }
}

/// Turns a `not_found` error into `Ok(None)`.
fn optional<T>(result: Result<T, Error>) -> Result<Option<T>, Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Sets a bytes field of a JSON payload in the host's two spellings: `field` as a string when
/// `bytes` is UTF-8, otherwise `field_base64`.
fn put_bytes(object: &mut Value, field: &str, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => object[field] = text.into(),
        Err(_) => object[format!("{field}_base64")] = STANDARD.encode(bytes).into(),
    }
}

/// Reads a bytes field of a JSON answer given as `text` or `base64` (neither means empty).
fn take_bytes(
    text: Option<String>,
    base64: Option<String>,
) -> Result<Vec<u8>, base64::DecodeError> {
    match (text, base64) {
        (Some(text), _) => Ok(text.into_bytes()),
        (None, Some(encoded)) => STANDARD.decode(encoded),
        (None, None) => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_wasm_every_call_fails() {
        let e = host_call("kv", "get", b"k").unwrap_err();
        assert_eq!(e.kind, ErrorKind::Failed);
        assert_eq!(e.to_string(), "failed: not running inside Wafer");
    }

    #[test]
    fn bytes_fields_use_text_or_base64() {
        let mut v = serde_json::json!({});
        put_bytes(&mut v, "value", b"hi");
        put_bytes(&mut v, "body", &[0xff, 0]);
        assert_eq!(v, serde_json::json!({"value": "hi", "body_base64": "/wA="}));
        assert_eq!(take_bytes(None, Some("/wA=".into())).unwrap(), [0xff, 0]);
        assert_eq!(take_bytes(Some("x".into()), None).unwrap(), b"x");
        assert!(take_bytes(None, None).unwrap().is_empty());
    }
}
