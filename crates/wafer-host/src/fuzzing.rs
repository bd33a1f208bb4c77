//! Entry points for the fuzz targets and their regression tests; not a stable API.
//!
//! Each entry point takes the fuzzer's bytes, runs the real code on them and asserts the
//! invariants that must hold: it panics exactly when the fuzz target should report a crash.
//! The fuzz targets (`fuzz/fuzz_targets/`) and the replay tests (which feed them every file
//! of `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/`) call the same functions, so the
//! two cannot drift apart.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use wafer_registry::{Deployment, FunctionConfig, Grants, Secret};
use wafer_runtime::{ByteSize, HostCall, Limits};

use crate::{bytes_field, Capabilities, GuestError};

/// The only address the stand-in function may reach by HTTP: the discard port on loopback.
/// Requests get no time (their deadline has passed when they start), so none completes.
const HTTP_RULE: &str = "http://127.0.0.1:9";

/// Real [`Capabilities`] over a data directory, and a function with every capability granted,
/// for `host_call_json`.
pub struct HostCalls {
    caps: Arc<Capabilities>,
    function: Deployment,
    tokio: tokio::runtime::Runtime,
}

impl HostCalls {
    /// Opens the key-value store in `dir`. Once this returns, `dir` may be
    /// deleted: the store works on the open file, and no function is ever deployed.
    pub fn new(dir: &Path) -> Self {
        let caps = Capabilities::open(dir).expect("the capabilities");
        let grants = Grants {
            http: vec![HTTP_RULE.parse().expect("a valid rule")],
            config: BTreeMap::from([("greeting".to_owned(), "hi".to_owned())]),
            secrets: BTreeMap::from([("token".to_owned(), Secret::new("s3cret"))]),
            kv: true,
            publish: vec![
                "fuzz.>".parse().expect("a valid pattern"),
                "a.*.c".parse().expect("a valid pattern"),
            ],
            ..Grants::default()
        };
        let limits = Limits {
            kv_keys: 4,
            kv_value: ByteSize::kib(4),
            ..Limits::default()
        };
        let config = FunctionConfig {
            limits,
            grants,
            ..FunctionConfig::default()
        };
        let name = "fuzz".parse().expect("a valid name");
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        Self {
            caps,
            function: Deployment::of(name, config),
            tokio,
        }
    }

    fn call(
        &self,
        namespace: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, GuestError> {
        let call = HostCall {
            binding: "wafer",
            namespace,
            operation,
            payload,
        };
        self.tokio.block_on(self.caps.call(
            &self.function,
            &crate::Session::default(),
            call,
            Instant::now(),
            0,
        ))
    }

    /// `host_call_json`: the input's first line is `NAMESPACE/OPERATION`, the rest the
    /// payload, answered by [`Capabilities::call`] for a function granted every capability,
    /// whose key-value namespace is empty at the start of each input. No call panics; a
    /// `kv/set` that succeeds is read back by `kv/get` and `kv/list`; reads of the empty
    /// namespace find nothing; a `config/get` answers the granted value; a publish that
    /// succeeds is to a valid, granted topic; no HTTP request completes.
    pub fn check(&self, data: &[u8]) {
        let (head, payload) = match data.iter().position(|&b| b == b'\n') {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &[][..]),
        };
        let head = String::from_utf8_lossy(head);
        let (namespace, operation) = head.split_once('/').unwrap_or((&*head, ""));
        let result = self.call(namespace, operation, payload);
        match (namespace, operation) {
            ("kv", "set") if result.is_ok() => self.check_kv_set(payload),
            ("kv", "get") => assert!(result.is_err(), "kv/get found a key in an empty store"),
            ("kv", "list") => {
                if let Ok(keys) = &result {
                    assert_eq!(keys, b"[]", "kv/list found keys in an empty store");
                } else {
                    assert!(
                        std::str::from_utf8(payload).is_err(),
                        "kv/list failed: {result:?}"
                    );
                }
            }
            ("config", "get") => {
                if let Ok(value) = &result {
                    let name = std::str::from_utf8(payload).expect("a config name is UTF-8");
                    let granted = self.function.config.grants.value(name);
                    assert_eq!(granted.map(str::as_bytes), Some(value.as_slice()));
                }
            }
            ("pubsub", "publish") if result.is_ok() => {
                let publish: serde_json::Value =
                    serde_json::from_slice(payload).expect("a published payload is JSON");
                let topic = publish["topic"].as_str().expect("a topic");
                assert!(
                    wafer_registry::check_topic(topic).is_ok(),
                    "topic {topic:?}"
                );
                let grants = &self.function.config.grants;
                assert!(
                    grants.publish.iter().any(|p| p.matches(topic)),
                    "published to {topic:?}, which is not granted"
                );
            }
            ("http", _) => assert!(result.is_err(), "an HTTP request completed: {result:?}"),
            _ => {}
        }
        if namespace == "kv" {
            self.tokio
                .block_on(self.caps.kv.delete_namespace(&self.function.name))
                .expect("the key-value namespace is deleted");
        }
    }

    /// After a successful `kv/set` of `payload`: `get` answers the value and `list` has the key.
    fn check_kv_set(&self, payload: &[u8]) {
        let set: serde_json::Value = serde_json::from_slice(payload).expect("kv/set took JSON");
        let key = set["key"].as_str().expect("kv/set took a key");
        let text = |field: &str| set.get(field).and_then(|v| v.as_str()).map(str::to_owned);
        let value = bytes_field(text("value"), text("value_base64"), "value")
            .expect("kv/set took the value");
        let stored = self
            .call("kv", "get", key.as_bytes())
            .unwrap_or_else(|e| panic!("key {key:?} was set but cannot be read: {e}"));
        assert_eq!(stored, value, "key {key:?} reads back another value");
        let listed = self
            .call("kv", "list", b"")
            .unwrap_or_else(|e| panic!("kv/list failed after a set: {e}"));
        let keys: Vec<String> = serde_json::from_slice(&listed).expect("kv/list answers JSON");
        assert_eq!(keys, [key], "kv/list after setting {key:?}");
    }
}
