//! Functions' key-value namespaces on JetStream: one KV bucket per function,
//! `wafer_kv_<name>`, created with its first key and deleted with the function.

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::kv::{self, Operation};
use async_trait::async_trait;
use tokio_stream::StreamExt;
use wafer_host::kv::{failed, full, incremented, Kv};
use wafer_host::GuestError;
use wafer_registry::FunctionName;

use crate::Cluster;

/// Compare-and-set attempts of one `increment` before it gives up.
const INCREMENT_TRIES: u32 = 100;

/// A random pause after the `attempt`th lost compare-and-set, up to `attempt` ms (at most
/// 20): writers that keep colliding spread out instead of one node's starving the other's.
async fn back_off(attempt: u32) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let ms = u64::from(nanos) % u64::from(attempt.min(20) + 1);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// The namespaces of every function, in the cluster's JetStream. Limits and errors are those
/// of the embedded store. Guest keys are any UTF-8, NATS keys only `[-/_=.a-zA-Z0-9]`, so
/// each key is stored hex-encoded (which keeps prefixes prefixes, for `list`).
pub struct NatsKv {
    cluster: Cluster,
    buckets: Mutex<HashMap<FunctionName, kv::Store>>,
}

fn bucket_name(namespace: &FunctionName) -> String {
    format!("wafer_kv_{namespace}")
}

impl NatsKv {
    /// The key-value namespaces of `cluster`.
    pub fn new(cluster: &Cluster) -> Self {
        Self {
            cluster: cluster.clone(),
            buckets: Mutex::default(),
        }
    }

    /// The bucket of `namespace`, created if `create` and it does not exist yet.
    async fn bucket(
        &self,
        namespace: &FunctionName,
        create: bool,
    ) -> Result<Option<kv::Store>, GuestError> {
        if let Some(bucket) = self.lock().get(namespace) {
            return Ok(Some(bucket.clone()));
        }
        let name = bucket_name(namespace);
        let bucket = match self.cluster.jetstream.get_key_value(&name).await {
            Ok(bucket) => bucket,
            Err(_) if !create => return Ok(None),
            Err(_) => self.cluster.kv(&name, 1).await.map_err(failed)?,
        };
        self.lock().insert(namespace.clone(), bucket.clone());
        Ok(Some(bucket))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FunctionName, kv::Store>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every key of `bucket`, decoded.
    async fn keys(bucket: &kv::Store) -> Result<Vec<String>, GuestError> {
        let mut keys = Vec::new();
        let mut stored = bucket.keys().await.map_err(failed)?;
        while let Some(key) = stored.next().await {
            let key = key.map_err(failed)?;
            if let Some(key) = hex::decode(&key)
                .ok()
                .and_then(|k| String::from_utf8(k).ok())
            {
                keys.push(key);
            }
        }
        Ok(keys)
    }
}

#[async_trait]
impl Kv for NatsKv {
    async fn get(
        &self,
        namespace: &FunctionName,
        key: &str,
    ) -> Result<Option<Vec<u8>>, GuestError> {
        let Some(bucket) = self.bucket(namespace, false).await? else {
            return Ok(None);
        };
        let entry = bucket.entry(hex::encode(key)).await.map_err(failed)?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| e.value.to_vec()))
    }

    async fn set(
        &self,
        namespace: &FunctionName,
        key: &str,
        value: Vec<u8>,
        max_keys: u64,
    ) -> Result<(), GuestError> {
        let Some(bucket) = self.bucket(namespace, true).await? else {
            return Err(failed("the namespace cannot be created"));
        };
        let stored = hex::encode(key);
        let exists = bucket
            .entry(stored.as_str())
            .await
            .map_err(failed)?
            .is_some_and(|e| e.operation == Operation::Put);
        // Counted before the write, so two nodes adding keys at the same moment may go one
        // over the limit each.
        if !exists && Self::keys(&bucket).await?.len() as u64 >= max_keys {
            return Err(full(max_keys));
        }
        bucket
            .put(stored, value.into())
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn increment(
        &self,
        namespace: &FunctionName,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, GuestError> {
        let Some(bucket) = self.bucket(namespace, true).await? else {
            return Err(failed("the namespace cannot be created"));
        };
        let stored = hex::encode(key);
        // Compare-and-set on the key's revision; a write by another node in between makes
        // the update fail, and it is tried again on the new value.
        for attempt in 0..INCREMENT_TRIES {
            let entry = bucket.entry(stored.as_str()).await.map_err(failed)?;
            let current = entry.as_ref().filter(|e| e.operation == Operation::Put);
            let value = incremented(key, current.map(|e| e.value.as_ref()), delta)?;
            let text = bytes::Bytes::from(value.to_string());
            // `Err(None)`: lost the race, try again.
            let (bucket, stored) = (&bucket, stored.as_str());
            let update = |revision| {
                let text = text.clone();
                async move {
                    match bucket.update(stored, text, revision).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(None),
                        Err(e) => Err(Some(failed(e))),
                    }
                }
            };
            let written = match (current, &entry) {
                (Some(current), _) => update(current.revision).await,
                (None, _) if Self::keys(bucket).await?.len() as u64 >= max_keys => {
                    return Err(full(max_keys));
                }
                (None, Some(deleted)) => update(deleted.revision).await,
                (None, None) => match bucket.create(stored, text).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(None),
                    Err(e) => Err(Some(failed(e))),
                },
            };
            match written {
                Ok(()) => return Ok(value),
                Err(None) => back_off(attempt).await,
                Err(Some(e)) => return Err(e),
            }
        }
        Err(failed(format!(
            "`{key}` kept changing under {INCREMENT_TRIES} tries to increment it"
        )))
    }

    async fn delete(&self, namespace: &FunctionName, key: &str) -> Result<(), GuestError> {
        let Some(bucket) = self.bucket(namespace, false).await? else {
            return Ok(());
        };
        bucket.purge(hex::encode(key)).await.map_err(failed)
    }

    async fn list(
        &self,
        namespace: &FunctionName,
        prefix: &str,
    ) -> Result<Vec<String>, GuestError> {
        let Some(bucket) = self.bucket(namespace, false).await? else {
            return Ok(Vec::new());
        };
        let mut keys: Vec<String> = Self::keys(&bucket)
            .await?
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn delete_namespace(&self, namespace: &FunctionName) -> Result<(), GuestError> {
        self.lock().remove(namespace);
        let name = bucket_name(namespace);
        if self.cluster.jetstream.get_key_value(&name).await.is_err() {
            return Ok(());
        }
        self.cluster
            .jetstream
            .delete_key_value(&name)
            .await
            .map(drop)
            .map_err(failed)
    }
}
