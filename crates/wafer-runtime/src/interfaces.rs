//! The WIT interfaces through which components reach the host's capabilities (the `.wit`
//! files are in the repository's `wit/`):
//!
//! - `wasi:keyvalue/{store, atomics, batch}@0.2.0-draft`: the function's key-value store;
//!   the only bucket is the function's own, opened as `""` or `"default"`.
//! - `wasi:config/store`, in both versions components import (`@0.2.0-rc.1`, `@0.2.0-draft`):
//!   the function's config values and secrets.
//! - `wasi:logging/logging@0.1.0-draft`: the function's log.
//! - `wafer:pubsub/publisher@0.1.0`: publishing (a component subscribes by exporting
//!   `wafer:pubsub/subscriber`, see [`HttpComponent::deliver`](crate::HttpComponent::deliver)).
//!
//! Each call becomes the host call a core module would make for the same thing (`kv/get`,
//! `config/get`, `pubsub/publish`, ...) on the call's [`HostCalls`], so a component's grants,
//! limits, errors and storage are exactly a core module's.

use std::sync::Arc;

use base64::Engine as _;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::host_call::{HostCall, HostCalls};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "wafer:platform/capabilities",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": super::Bucket,
        },
    });
}

use bindings::wafer::pubsub::publisher;
use bindings::wasi::config0_2_0_draft::store as config_draft;
use bindings::wasi::config0_2_0_rc_1::store as config_rc1;
use bindings::wasi::keyvalue::{atomics, batch, store};
use bindings::wasi::logging::logging;

/// An open key-value store (a `wasi:keyvalue` bucket, a Spin store): the host-call
/// namespace of its label (`kv` for `default`, `kv:LABEL` for another).
pub struct Bucket {
    pub(crate) namespace: String,
}

impl Bucket {
    /// The store `label` (`""` and `"default"` are the function's own).
    pub(crate) fn labelled(label: &str) -> Self {
        let namespace = match label {
            "" | "default" => "kv".to_owned(),
            label => format!("kv:{label}"),
        };
        Self { namespace }
    }
}

/// The WIT packages a component may import beyond WASI 0.2, with the grant each needs;
/// anything else it imports fails to link.
pub(crate) const CAPABILITY_PACKAGES: &[&str] = &[
    "wasi:keyvalue/",
    "wasi:config/",
    "wasi:logging/",
    "wafer:pubsub/",
    "fermyon:spin/",
    "spin:",
];

/// The interface a component exports to receive pub/sub messages.
pub const SUBSCRIBER: &str = "wafer:pubsub/subscriber@0.1.0";

/// What a component's capability calls need from its store's state.
pub(crate) struct Capabilities<'a> {
    pub(crate) table: &'a mut ResourceTable,
    pub(crate) host: Option<&'a Arc<dyn HostCalls>>,
}

/// Marks the state types whose capability calls go through [`Capabilities`].
pub(crate) trait HasCapabilities: Send + 'static {
    fn capabilities(&mut self) -> Capabilities<'_>;
}

struct View;

impl HasData for View {
    type Data<'a> = Capabilities<'a>;
}

/// Adds every capability interface to a component linker.
pub(crate) fn add_to_linker<T: HasCapabilities>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    fn get<T: HasCapabilities>(state: &mut T) -> Capabilities<'_> {
        state.capabilities()
    }
    store::add_to_linker::<T, View>(linker, get::<T>)?;
    atomics::add_to_linker::<T, View>(linker, get::<T>)?;
    batch::add_to_linker::<T, View>(linker, get::<T>)?;
    config_draft::add_to_linker::<T, View>(linker, get::<T>)?;
    config_rc1::add_to_linker::<T, View>(linker, get::<T>)?;
    logging::add_to_linker::<T, View>(linker, get::<T>)?;
    publisher::add_to_linker::<T, View>(linker, get::<T>)?;
    Ok(())
}

/// A failed host call: the error's code (`denied`, `not_found`, ...) and its whole text.
pub(crate) struct Refused(pub(crate) String);

impl Refused {
    pub(crate) fn code(&self) -> &str {
        self.0.split_once(':').map_or("", |(code, _)| code)
    }
}

/// Who answers a component's capability calls (a copy of the store's, so that no borrow of
/// the resource table is held across a call).
#[derive(Clone, Copy)]
pub(crate) struct Host<'a>(pub(crate) Option<&'a Arc<dyn HostCalls>>);

impl Capabilities<'_> {
    pub(crate) fn host(&self) -> Host<'_> {
        Host(self.host)
    }
}

impl Host<'_> {
    /// One host call, as a core module's `__host_call` makes it.
    pub(crate) async fn call(
        &self,
        namespace: &str,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, Refused> {
        let Some(host) = self.0 else {
            return Err(Refused(format!(
                "denied: no capabilities are available to this component (called {namespace}/{operation})"
            )));
        };
        let call = HostCall {
            binding: "wafer",
            namespace,
            operation,
            payload,
        };
        host.call(call).await.map_err(Refused)
    }

    pub(crate) async fn kv_get(&self, store: &str, key: &str) -> Result<Option<Vec<u8>>, Refused> {
        match self.call(store, "get", key.as_bytes()).await {
            Ok(value) => Ok(Some(value)),
            Err(refused) if refused.code() == "not_found" => Ok(None),
            Err(refused) => Err(refused),
        }
    }

    pub(crate) async fn kv_set(&self, store: &str, key: &str, value: &[u8]) -> Result<(), Refused> {
        let payload = serde_json::json!({
            "key": key,
            "value_base64": base64::engine::general_purpose::STANDARD.encode(value),
        });
        self.call(store, "set", payload.to_string().as_bytes())
            .await?;
        Ok(())
    }

    pub(crate) async fn kv_delete(&self, store: &str, key: &str) -> Result<(), Refused> {
        self.call(store, "delete", key.as_bytes()).await?;
        Ok(())
    }

    /// Every key of `store`.
    pub(crate) async fn kv_keys(&self, store: &str) -> Result<Vec<String>, Refused> {
        let json = self.call(store, "list", b"").await?;
        serde_json::from_slice(&json)
            .map_err(|e| Refused(format!("failed: bad key list from the host: {e}")))
    }

    pub(crate) async fn config_get(&self, key: &str) -> Result<Option<String>, String> {
        match self.call("config", "get", key.as_bytes()).await {
            Ok(value) => String::from_utf8(value)
                .map(Some)
                .map_err(|_| format!("the config value `{key}` is not UTF-8")),
            Err(refused) if refused.code() == "not_found" => Ok(None),
            Err(Refused(text)) => Err(text),
        }
    }

    async fn config_all(&self) -> Result<Vec<(String, String)>, String> {
        let all = self.call("config", "all", b"").await.map_err(|r| r.0)?;
        let all: std::collections::BTreeMap<String, String> = serde_json::from_slice(&all)
            .map_err(|e| format!("the host answered config/all with bad JSON: {e}"))?;
        Ok(all.into_iter().collect())
    }
}

impl From<Refused> for store::Error {
    fn from(refused: Refused) -> Self {
        match refused.code() {
            "denied" => store::Error::AccessDenied,
            _ => store::Error::Other(refused.0),
        }
    }
}

impl store::Host for Capabilities<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, store::Error>> {
        let bucket = Bucket::labelled(&identifier);
        match self.host().call(&bucket.namespace, "open", b"").await {
            Ok(_) => Ok(Ok(self.table.push(bucket)?)),
            Err(refused) => Ok(Err(refused.into())),
        }
    }
}

impl Capabilities<'_> {
    /// The host-call namespace of an open store.
    pub(crate) fn store(&self, bucket: &Resource<Bucket>) -> wasmtime::Result<String> {
        Ok(self.table.get(bucket)?.namespace.clone())
    }
}

impl store::HostBucket for Capabilities<'_> {
    async fn get(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, store::Error>> {
        let store = self.store(&bucket)?;
        Ok(self.host().kv_get(&store, &key).await.map_err(Into::into))
    }

    async fn set(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store(&bucket)?;
        Ok(self
            .host()
            .kv_set(&store, &key, &value)
            .await
            .map_err(Into::into))
    }

    async fn delete(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store(&bucket)?;
        Ok(self
            .host()
            .kv_delete(&store, &key)
            .await
            .map_err(Into::into))
    }

    async fn exists(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, store::Error>> {
        let store = self.store(&bucket)?;
        let value = self.host().kv_get(&store, &key).await;
        Ok(value.map(|value| value.is_some()).map_err(Into::into))
    }

    async fn list_keys(
        &mut self,
        bucket: Resource<Bucket>,
        cursor: Option<u64>,
    ) -> wasmtime::Result<Result<store::KeyResponse, store::Error>> {
        // Keys come a page at a time; the cursor is the number already listed.
        const PAGE: usize = 1000;
        let store = self.store(&bucket)?;
        let listed = self
            .host()
            .kv_keys(&store)
            .await
            .map_err(store::Error::from);
        Ok(listed.map(|keys| {
            let start = usize::try_from(cursor.unwrap_or(0)).unwrap_or(usize::MAX);
            let page: Vec<String> = keys.iter().skip(start).take(PAGE).cloned().collect();
            let next = start.saturating_add(page.len());
            store::KeyResponse {
                keys: page,
                cursor: (next < keys.len()).then_some(next as u64),
            }
        }))
    }

    async fn drop(&mut self, bucket: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for Capabilities<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<Bucket>,
        key: String,
        delta: u64,
    ) -> wasmtime::Result<Result<u64, store::Error>> {
        let store = self.store(&bucket)?;
        let payload = serde_json::json!({ "key": key, "delta": delta });
        let answer = match self
            .host()
            .call(&store, "increment", payload.to_string().as_bytes())
            .await
        {
            Ok(answer) => answer,
            Err(refused) => return Ok(Err(refused.into())),
        };
        Ok(std::str::from_utf8(&answer)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| store::Error::Other("the host answered kv/increment oddly".into())))
    }
}

impl batch::Host for Capabilities<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<(String, Vec<u8>)>>, store::Error>> {
        let store = self.store(&bucket)?;
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            match self.host().kv_get(&store, &key).await {
                Ok(value) => values.push(value.map(|value| (key, value))),
                Err(e) => return Ok(Err(e.into())),
            }
        }
        Ok(Ok(values))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<Bucket>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store(&bucket)?;
        for (key, value) in key_values {
            if let Err(e) = self.host().kv_set(&store, &key, &value).await {
                return Ok(Err(e.into()));
            }
        }
        Ok(Ok(()))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<Bucket>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), store::Error>> {
        let store = self.store(&bucket)?;
        for key in keys {
            if let Err(e) = self.host().kv_delete(&store, &key).await {
                return Ok(Err(e.into()));
            }
        }
        Ok(Ok(()))
    }
}

/// Both versions of `wasi:config/store` have the same shape; one body serves each.
macro_rules! config_store {
    ($store:ident) => {
        impl $store::Host for Capabilities<'_> {
            async fn get(
                &mut self,
                key: String,
            ) -> wasmtime::Result<Result<Option<String>, $store::Error>> {
                Ok(self
                    .host()
                    .config_get(&key)
                    .await
                    .map_err($store::Error::Upstream))
            }

            async fn get_all(
                &mut self,
            ) -> wasmtime::Result<Result<Vec<(String, String)>, $store::Error>> {
                Ok(self
                    .host()
                    .config_all()
                    .await
                    .map_err($store::Error::Upstream))
            }
        }
    };
}
config_store!(config_draft);
config_store!(config_rc1);

impl logging::Host for Capabilities<'_> {
    async fn log(
        &mut self,
        level: logging::Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let operation = match level {
            logging::Level::Trace | logging::Level::Debug => "debug",
            logging::Level::Info => "info",
            logging::Level::Warn => "warn",
            logging::Level::Error | logging::Level::Critical => "error",
        };
        let line = match context.is_empty() {
            true => message,
            false => format!("{context}: {message}"),
        };
        // A line the log refuses (over the function's log limit) is dropped, as for stderr.
        let _ = self.host().call("log", operation, line.as_bytes()).await;
        Ok(())
    }
}

impl publisher::Host for Capabilities<'_> {
    async fn publish(
        &mut self,
        topic: String,
        message: Vec<u8>,
    ) -> wasmtime::Result<Result<(), String>> {
        let payload = serde_json::json!({
            "topic": topic,
            "message_base64": base64::engine::general_purpose::STANDARD.encode(&message),
        });
        Ok(self
            .host()
            .call("pubsub", "publish", payload.to_string().as_bytes())
            .await
            .map(drop)
            .map_err(|refused| refused.0))
    }
}
