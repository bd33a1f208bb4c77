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

use crate::{as_i64, Cluster, KvSpec};

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
///
/// A bucket keeps one message per live key (history 1, and a delete removes the key's
/// messages rather than leaving a marker), so the stream's message count is the key count:
/// a `set` or `increment` costs a constant number of JetStream calls, however many keys
/// there are. Each bucket holds at most [`ClusterConfig::kv_max_bytes`](crate::ClusterConfig)
/// bytes; past it, writes fail with the store's error.
///
/// Bucket handles are cached per node; a call that fails on a cached handle (another node
/// deleted the bucket with `wafer rm`, say) opens the bucket again and tries once more.
pub struct NatsKv {
    cluster: Cluster,
    buckets: Mutex<HashMap<FunctionName, kv::Store>>,
}

/// Whether `error` says the bucket's stream is not there (any more).
fn gone(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    error.contains("no responders") || error.contains("not found")
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
        let spec = KvSpec {
            max_bytes: self.cluster.limits.kv,
            // Reads through the stream's leader: a node reads what another just wrote, and
            // a read of a bucket deleted meanwhile fails at once (a direct read would wait
            // for its timeout), so a stale handle is noticed.
            direct: false,
            ..KvSpec::new(&name)
        };
        let bucket = match self.cluster.jetstream.get_key_value(&name).await {
            Ok(bucket) => {
                let config = &bucket.stream.cached_info().config;
                if config.max_bytes == as_i64(spec.max_bytes) && !config.allow_direct {
                    bucket
                } else {
                    // Made by an earlier version: brought to these settings.
                    self.cluster.kv_with(spec).await.map_err(failed)?
                }
            }
            Err(_) if !create => return Ok(None),
            Err(_) => self.cluster.kv_with(spec).await.map_err(failed)?,
        };
        self.lock().insert(namespace.clone(), bucket.clone());
        Ok(Some(bucket))
    }

    /// Runs `op` on the bucket of `namespace` (created if `create`; `None` if there is none
    /// and `create` is false), and once more on a freshly opened bucket if it fails as on a
    /// bucket that is gone: the cached handle may be stale (another node ran `wafer rm`,
    /// and the function was deployed again).
    async fn with_bucket<T, Fut>(
        &self,
        namespace: &FunctionName,
        create: bool,
        op: impl Fn(kv::Store) -> Fut,
    ) -> Result<Option<T>, GuestError>
    where
        Fut: std::future::Future<Output = Result<T, GuestError>>,
    {
        let mut fresh = false;
        loop {
            let Some(bucket) = self.bucket(namespace, create).await? else {
                return Ok(None);
            };
            match op(bucket).await {
                Err(GuestError::Failed(e)) if !fresh && gone(&e) => {
                    tracing::debug!(%namespace, "key-value: opening the bucket again after: {e}");
                    self.forget(namespace);
                    fresh = true;
                }
                other => return other.map(Some),
            }
        }
    }

    /// Forgets the cached handle of `namespace`'s bucket.
    fn forget(&self, namespace: &FunctionName) {
        self.lock().remove(namespace);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<FunctionName, kv::Store>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many keys `bucket` holds: its stream's message count (see the type's docs).
    async fn count(bucket: &kv::Store) -> Result<u64, GuestError> {
        let info = bucket.stream.get_info().await.map_err(failed)?;
        Ok(info.state.messages)
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

    async fn try_get(bucket: &kv::Store, key: &str) -> Result<Option<Vec<u8>>, GuestError> {
        let entry = bucket.entry(hex::encode(key)).await.map_err(failed)?;
        Ok(entry
            .filter(|e| e.operation == Operation::Put)
            .map(|e| e.value.to_vec()))
    }

    async fn try_set(
        bucket: &kv::Store,
        key: &str,
        value: &[u8],
        max_keys: u64,
    ) -> Result<(), GuestError> {
        let stored = hex::encode(key);
        let exists = bucket
            .entry(stored.as_str())
            .await
            .map_err(failed)?
            .is_some_and(|e| e.operation == Operation::Put);
        // Counted before the write, so two nodes adding keys at the same moment may go one
        // over the limit each.
        if !exists && Self::count(bucket).await? >= max_keys {
            return Err(full(max_keys));
        }
        bucket
            .put(stored, value.to_vec().into())
            .await
            .map(drop)
            .map_err(failed)
    }

    async fn try_increment(
        bucket: &kv::Store,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, GuestError> {
        let stored = hex::encode(key);
        // Compare-and-set on the key's revision; a write by another node in between makes
        // the update fail, and it is tried again on the new value.
        for attempt in 0..INCREMENT_TRIES {
            let entry = bucket.entry(stored.as_str()).await.map_err(failed)?;
            let current = entry.as_ref().filter(|e| e.operation == Operation::Put);
            let value = incremented(key, current.map(|e| e.value.as_ref()), delta)?;
            let text = bytes::Bytes::from(value.to_string());
            // `Err(None)`: lost the race, try again.
            let stored = stored.as_str();
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
                (None, _) if Self::count(bucket).await? >= max_keys => {
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

    async fn try_delete(bucket: &kv::Store, key: &str) -> Result<(), GuestError> {
        // The key's messages go, the delete marker a KV purge would leave included, so
        // the stream's message count stays the key count.
        let subject = format!("{}{}", bucket.prefix, hex::encode(key));
        bucket
            .stream
            .purge()
            .filter(subject)
            .await
            .map(drop)
            .map_err(failed)
    }
}

#[async_trait]
impl Kv for NatsKv {
    async fn get(
        &self,
        namespace: &FunctionName,
        key: &str,
    ) -> Result<Option<Vec<u8>>, GuestError> {
        let got = self
            .with_bucket(namespace, false, |bucket| async move {
                Self::try_get(&bucket, key).await
            })
            .await?;
        Ok(got.flatten())
    }

    async fn set(
        &self,
        namespace: &FunctionName,
        key: &str,
        value: Vec<u8>,
        max_keys: u64,
    ) -> Result<(), GuestError> {
        let value = &value;
        self.with_bucket(namespace, true, |bucket| async move {
            Self::try_set(&bucket, key, value, max_keys).await
        })
        .await?
        .ok_or_else(|| failed("the namespace cannot be created"))
    }

    async fn increment(
        &self,
        namespace: &FunctionName,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, GuestError> {
        self.with_bucket(namespace, true, |bucket| async move {
            Self::try_increment(&bucket, key, delta, max_keys).await
        })
        .await?
        .ok_or_else(|| failed("the namespace cannot be created"))
    }

    async fn delete(&self, namespace: &FunctionName, key: &str) -> Result<(), GuestError> {
        self.with_bucket(namespace, false, |bucket| async move {
            Self::try_delete(&bucket, key).await
        })
        .await
        .map(drop)
    }

    async fn list(
        &self,
        namespace: &FunctionName,
        prefix: &str,
    ) -> Result<Vec<String>, GuestError> {
        let keys = self
            .with_bucket(namespace, false, |bucket| async move {
                Self::keys(&bucket).await
            })
            .await?
            .unwrap_or_default();
        let mut keys: Vec<String> = keys.into_iter().filter(|k| k.starts_with(prefix)).collect();
        keys.sort_unstable();
        Ok(keys)
    }

    async fn delete_namespace(&self, namespace: &FunctionName) -> Result<(), GuestError> {
        self.forget(namespace);
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
