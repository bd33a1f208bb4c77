//! What a function record and the engine agree on, in one small crate both depend on: the
//! [`Abi`] a module is called through and the [`Limits`] one call runs within. The registry
//! stores them in records; the runtime, the host and the gateway enforce them; neither the
//! registry nor the runtime imports the other. And what the host and the runtime agree on:
//! the [`postgres`] values host calls carry.
#![warn(missing_docs)]

mod limits;
pub mod postgres;

use serde::{Deserialize, Serialize};

pub use limits::{deadline_after, LimitError, Limits};

/// How the host talks to a module, detected from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Abi {
    /// A WASI preview1 command (`_start`) run CGI-style: request in env and stdin, response
    /// on stdout.
    Cgi,
    /// A waPC module (`__guest_call`): operations called by name with a byte payload.
    Wapc,
    /// Any other module: its exported functions called by name with numbers, strings and
    /// bytes (the runtime's `Instance::call`).
    Exports,
    /// A WASI 0.2 command component (`wasi:cli/run`), run as a long-lived service that
    /// listens on a granted address (the runtime's `Service`).
    Service,
    /// A WASI 0.2 HTTP component (`wasi:http/incoming-handler`), called per request with
    /// streaming bodies (the runtime's `HttpComponent`).
    Http,
}

impl std::fmt::Display for Abi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Abi::Cgi => "cgi",
            Abi::Wapc => "wapc",
            Abi::Exports => "exports",
            Abi::Service => "service",
            Abi::Http => "http",
        })
    }
}

pub mod base64_bytes {
    //! Bytes as base64 text in JSON: `#[serde(with = "wafer_abi::base64_bytes")]`.

    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes `bytes` as base64 text.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// Reads base64 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}
