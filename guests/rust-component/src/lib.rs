//! Wafer's SDK for components written in Rust: the WIT interfaces through which Wafer gives a
//! component its capabilities, as `wit-bindgen` bindings, with small helpers over them.
//!
//! | module | interface | grant |
//! |---|---|---|
//! | [`kv`] | `wasi:keyvalue/{store, atomics, batch}@0.2.0-draft` | `kv = true` |
//! | [`config`] | `wasi:config/store@0.2.0-draft` | `config = {...}` / `secrets = {...}` |
//! | [`log`] | `wasi:logging/logging@0.1.0-draft` | always |
//! | [`pubsub`] | `wafer:pubsub/publisher@0.1.0` | `publish = ["PATTERN"]` |
//!
//! With the `subscriber` feature, [`export_subscriber!`] exports `wafer:pubsub/subscriber`, so
//! that the component receives the messages of the topics it subscribes to.
//!
//! Only the interfaces a component calls end up among its imports, and Wafer checks them
//! against the function's grants when it is deployed. HTTP itself (`wasi:http`) comes from the
//! `wasip2` crate, as for any WASI 0.2 component.
//!
//! ```ignore
//! let bucket = wafer_component::kv::open()?;
//! let visits = wafer_component::kv::increment(&bucket, "visits", 1)?;
//! let greeting = wafer_component::config::get("greeting")?.unwrap_or_else(|| "hello".into());
//! wafer_component::log::info(&format!("visit {visits}"));
//! ```

#[cfg(not(feature = "subscriber"))]
wit_bindgen::generate!({
    path: "../../wit",
    world: "wafer:platform/sdk",
    generate_all,
});

#[cfg(feature = "subscriber")]
wit_bindgen::generate!({
    path: "../../wit",
    world: "wafer:platform/sdk-subscriber",
    generate_all,
    pub_export_macro: true,
    export_macro_name: "export_subscriber",
    default_bindings_module: "wafer_component",
});

/// The raw bindings, for what the helpers do not cover.
pub mod wit {
    pub use crate::wafer::pubsub::publisher;
    #[cfg(feature = "subscriber")]
    pub use crate::exports::wafer::pubsub::subscriber;
    pub use crate::wasi::config0_2_0_draft::store as config;
    pub use crate::wasi::keyvalue::{atomics, batch, store};
    pub use crate::wasi::logging::logging;
}

/// The function's key-value store (`wasi:keyvalue`); the one bucket is the function's own.
pub mod kv {
    pub use crate::wasi::keyvalue::store::{Bucket, Error, KeyResponse};

    /// Opens the function's bucket.
    pub fn open() -> Result<Bucket, Error> {
        crate::wasi::keyvalue::store::open("default")
    }

    /// Adds `delta` to the counter `key` atomically (a key not set counts as 0) and returns the
    /// new value. Wafer stores counters as decimal text, so `get` reads `b"42"`.
    pub fn increment(bucket: &Bucket, key: &str, delta: u64) -> Result<u64, Error> {
        crate::wasi::keyvalue::atomics::increment(bucket, key, delta)
    }
}

/// The function's config values and secrets (`wasi:config/store`).
pub mod config {
    pub use crate::wasi::config0_2_0_draft::store::Error;

    /// The value of `key`, if the function has one (a config value or a secret).
    pub fn get(key: &str) -> Result<Option<String>, Error> {
        crate::wasi::config0_2_0_draft::store::get(key)
    }

    /// Every config value and secret.
    pub fn get_all() -> Result<Vec<(String, String)>, Error> {
        crate::wasi::config0_2_0_draft::store::get_all()
    }
}

/// The function's log (`wasi:logging`), shown by `wafer logs NAME` with the request id.
pub mod log {
    use crate::wasi::logging::logging::{log, Level};

    /// Logs a debug line.
    pub fn debug(message: &str) {
        log(Level::Debug, "", message)
    }
    /// Logs an info line.
    pub fn info(message: &str) {
        log(Level::Info, "", message)
    }
    /// Logs a warning.
    pub fn warn(message: &str) {
        log(Level::Warn, "", message)
    }
    /// Logs an error.
    pub fn error(message: &str) {
        log(Level::Error, "", message)
    }
}

/// Publishing to topics (`wafer:pubsub/publisher`).
pub mod pubsub {
    /// Publishes `message` on `topic`; the error is Wafer's message (`denied: ...`).
    pub fn publish(topic: &str, message: &[u8]) -> Result<(), String> {
        crate::wafer::pubsub::publisher::publish(topic, message)
    }
}
