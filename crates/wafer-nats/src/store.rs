//! The registry's [`Store`] on JetStream: records in a KV bucket, modules in an Object Store.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use async_trait::async_trait;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use wafer_registry::{
    Digest, Event, FunctionName, FunctionRecord, RegistryError, Revision, Store, Watch,
};

use crate::{Cluster, ClusterError};

/// The KV bucket of function records.
const RECORDS: &str = "wafer_functions";
/// The Object Store bucket of modules.
const MODULES: &str = "wafer_modules";
/// Revisions JetStream keeps per record key. The record holds the whole history itself; the
/// bucket's own history is for operators (`nats kv history`).
const HISTORY: i64 = 16;
/// How long one attempt at reading a module may take before it is given up on.
const MODULE_READ: Duration = Duration::from_secs(10);
/// Attempts at reading a module before the read fails (and is tried again later).
const MODULE_READ_ATTEMPTS: u32 = 3;

/// The registry's records and modules in JetStream (see the crate docs).
#[derive(Clone)]
pub struct NatsStore {
    records: kv::Store,
    modules: ObjectStore,
}

impl NatsStore {
    /// Opens the buckets, creating them if this is the cluster's first node.
    pub async fn open(cluster: &Cluster) -> Result<Self, ClusterError> {
        let records = cluster.kv(RECORDS, HISTORY, cluster.limits.records).await?;
        let modules = cluster
            .object_store(MODULES, Duration::ZERO, cluster.limits.modules)
            .await?;
        Ok(Self { records, modules })
    }

    /// Reads module `digest` and checks its bytes against it.
    async fn read_module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        let mut object = match self.modules.get(digest.hex()).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => {
                return Err(RegistryError::ModuleNotFound(digest.to_string()))
            }
            Err(e) => {
                return Err(failed(format!("cannot read module {digest}"))(format!(
                    "reading its description: {e}"
                )))
            }
        };
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| failed(format!("cannot read module {digest}"))(e.to_string()))?;
        let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        if actual != digest.as_str() {
            return Err(RegistryError::Corrupt {
                digest: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }
}

/// A storage failure, with what was being done.
fn failed(context: impl Into<String>) -> impl FnOnce(String) -> RegistryError {
    let context = context.into();
    move |reason| RegistryError::io(context)(std::io::Error::other(reason))
}

fn decode(key: &str, value: &[u8]) -> Result<FunctionRecord, RegistryError> {
    serde_json::from_slice(value).map_err(|e| RegistryError::BadRecord {
        path: format!("{RECORDS}/{key}").into(),
        reason: e.to_string(),
    })
}

fn encode(record: &FunctionRecord) -> Result<bytes::Bytes, RegistryError> {
    serde_json::to_vec(record)
        .map(Into::into)
        .map_err(|e| failed("cannot encode record")(e.to_string()))
}

/// The watch event of one KV entry; `None` for one that names no function.
fn event(entry: kv::Entry) -> Option<Event> {
    let name: FunctionName = match entry.key.parse() {
        Ok(name) => name,
        Err(e) => {
            tracing::error!(
                key = entry.key,
                "a record key that is not a function name: {e}"
            );
            return None;
        }
    };
    match entry.operation {
        Operation::Put => match decode(&entry.key, &entry.value) {
            Ok(record) => Some(Event::Put {
                record: Arc::new(record),
                revision: entry.revision,
            }),
            Err(e) => {
                tracing::error!("{e}; the function is not served");
                None
            }
        },
        Operation::Delete | Operation::Purge => Some(Event::Removed {
            name,
            revision: entry.revision,
        }),
    }
}

#[async_trait]
impl Store for NatsStore {
    async fn put_module(&self, digest: &Digest, wasm: Vec<u8>) -> Result<(), RegistryError> {
        let name = digest.hex();
        if self
            .modules
            .info(name)
            .await
            .is_ok_and(|info| !info.deleted)
        {
            return Ok(());
        }
        self.modules
            .put(name, &mut wasm.as_slice())
            .await
            .map(drop)
            .map_err(|e| {
                failed(format!("cannot store module {digest} in the cluster"))(e.to_string())
            })
    }

    async fn module(&self, digest: &Digest) -> Result<Vec<u8>, RegistryError> {
        // A read that stalls (its consumer stops delivering: JetStream failing over, or a
        // message lost on a loaded machine) is cut off and made again with a new consumer;
        // after the last attempt the read fails, so whoever waits for it (the live table's
        // watch) goes on, and it is tried again later.
        for attempt in 1..=MODULE_READ_ATTEMPTS {
            match tokio::time::timeout(MODULE_READ, self.read_module(digest)).await {
                Ok(read) => return read,
                Err(_) => tracing::warn!(
                    "reading module {digest} from the cluster: no answer within \
                     {MODULE_READ:?} (attempt {attempt} of {MODULE_READ_ATTEMPTS})"
                ),
            }
        }
        Err(failed(format!("cannot read module {digest}"))(format!(
            "no answer within {MODULE_READ:?}, {MODULE_READ_ATTEMPTS} times"
        )))
    }

    async fn record(
        &self,
        name: &FunctionName,
    ) -> Result<Option<(Arc<FunctionRecord>, Revision)>, RegistryError> {
        let entry =
            self.records.entry(name.as_str()).await.map_err(|e| {
                failed(format!("cannot read the record of `{name}`"))(e.to_string())
            })?;
        match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let record = decode(&entry.key, &entry.value)?;
                Ok(Some((Arc::new(record), entry.revision)))
            }
            _ => Ok(None),
        }
    }

    async fn put_record(
        &self,
        record: FunctionRecord,
        expected: Option<Revision>,
    ) -> Result<Revision, RegistryError> {
        let name = record.name.to_string();
        let value = encode(&record)?;
        let conflict = || RegistryError::Conflict(name.clone());
        let written = match expected {
            None => self
                .records
                .create(&name, value)
                .await
                .map_err(|e| match e.kind() {
                    CreateErrorKind::AlreadyExists => conflict(),
                    _ => failed(format!("cannot write the record of `{name}`"))(e.to_string()),
                }),
            Some(revision) => {
                self.records
                    .update(&name, value, revision)
                    .await
                    .map_err(|e| match e.kind() {
                        UpdateErrorKind::WrongLastRevision => conflict(),
                        _ => failed(format!("cannot write the record of `{name}`"))(e.to_string()),
                    })
            }
        };
        written
    }

    async fn remove_record(
        &self,
        name: &FunctionName,
        expected: Revision,
    ) -> Result<Revision, RegistryError> {
        if let Err(e) = self
            .records
            .delete_expect_revision(name.as_str(), Some(expected))
            .await
        {
            return match self.record(name).await? {
                None => Err(RegistryError::NotFound(name.to_string())),
                Some((_, revision)) if revision != expected => {
                    Err(RegistryError::Conflict(name.to_string()))
                }
                Some(_) => Err(failed(format!("cannot remove the record of `{name}`"))(
                    e.to_string(),
                )),
            };
        }
        // The deletion is an entry of its own; its revision is what watchers will see.
        let entry =
            self.records.entry(name.as_str()).await.map_err(|e| {
                failed(format!("cannot read the record of `{name}`"))(e.to_string())
            })?;
        Ok(entry.map_or(expected + 1, |e| e.revision))
    }

    async fn records(&self) -> Result<Vec<Arc<FunctionRecord>>, RegistryError> {
        let listing = || failed("cannot list the cluster's records");
        let mut keys = self
            .records
            .keys()
            .await
            .map_err(|e| listing()(e.to_string()))?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            names.push(key.map_err(|e| listing()(e.to_string()))?);
        }
        let mut records = Vec::with_capacity(names.len());
        for key in names {
            let Ok(name) = key.parse::<FunctionName>() else {
                continue;
            };
            if let Some((record, _)) = self.record(&name).await? {
                records.push(record);
            }
        }
        Ok(records)
    }

    async fn remove_module(&self, digest: &Digest) -> Result<(), RegistryError> {
        match self.modules.delete(digest.hex()).await {
            Ok(()) => Ok(()),
            Err(e)
                if e.kind() == async_nats::jetstream::object_store::DeleteErrorKind::NotFound =>
            {
                Ok(())
            }
            Err(e) => Err(failed(format!("cannot delete module {digest}"))(
                e.to_string(),
            )),
        }
    }

    async fn watch(&self) -> Result<Watch, RegistryError> {
        let watching = || failed("cannot watch the cluster's records");
        let status = self
            .records
            .status()
            .await
            .map_err(|e| watching()(e.to_string()))?;
        let mut entries = self
            .records
            .watch_with_history(">")
            .await
            .map_err(|e| watching()(e.to_string()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let mut ready = status.values() == 0;
        if ready {
            let _ = tx.send(Ok(Event::Ready));
        }
        tokio::spawn(async move {
            while let Some(entry) = entries.next().await {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        let _ = tx.send(Err(failed("the cluster's record watch failed")(
                            e.to_string(),
                        )));
                        return;
                    }
                };
                // The entries that stood when the watch began come first; the last of them
                // has nothing pending behind it.
                let caught_up = !ready && entry.delta == 0;
                if let Some(event) = event(entry) {
                    if tx.send(Ok(event)).is_err() {
                        return;
                    }
                }
                if caught_up {
                    ready = true;
                    if tx.send(Ok(Event::Ready)).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Box::pin(UnboundedReceiverStream::new(rx)))
    }
}
