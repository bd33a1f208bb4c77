//! `kv`: one key-value namespace per function, behind the [`Kv`] trait: [`RedbKv`], an
//! embedded redb database (`DATA/kv.redb`, the default), or a cluster backend (a JetStream
//! KV bucket per function, in `wafer-nats`). [`call`] answers the guest's host calls the same
//! over either: the payloads, the key and value limits, the errors.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use wafer_registry::{Deployment, FunctionName};
use wafer_runtime::Limits;

use crate::{bytes_field, json, text, unknown_operation, GuestError};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;

/// Where functions' key-value namespaces live. Every method works on the namespace of one
/// function; a namespace springs into being with its first key.
#[async_trait]
pub trait Kv: Send + Sync + 'static {
    /// The value of `key`, if set.
    async fn get(&self, namespace: &FunctionName, key: &str)
        -> Result<Option<Vec<u8>>, GuestError>;
    /// Sets `key` to `value`. A key that is not set yet is refused (`too_large`) when the
    /// namespace holds `max_keys` keys already.
    async fn set(
        &self,
        namespace: &FunctionName,
        key: &str,
        value: Vec<u8>,
        max_keys: u64,
    ) -> Result<(), GuestError>;
    /// Adds `delta` to the counter `key` (decimal text; a key not set counts as 0) in one
    /// atomic step, and returns the new value; a new key counts against `max_keys` as in
    /// `set`.
    async fn increment(
        &self,
        namespace: &FunctionName,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, GuestError>;
    /// Unsets `key` (nothing happens if it is not set).
    async fn delete(&self, namespace: &FunctionName, key: &str) -> Result<(), GuestError>;
    /// The keys that start with `prefix`, in byte order.
    async fn list(&self, namespace: &FunctionName, prefix: &str)
        -> Result<Vec<String>, GuestError>;
    /// Deletes a whole namespace.
    async fn delete_namespace(&self, namespace: &FunctionName) -> Result<(), GuestError>;
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Increment {
    key: String,
    delta: u64,
}

/// The counter `key` holding `current`, after adding `delta`: what `increment` stores.
pub fn incremented(key: &str, current: Option<&[u8]>, delta: u64) -> Result<u64, GuestError> {
    let current = match current {
        None => 0,
        Some(bytes) => std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .ok_or_else(|| {
                GuestError::Invalid(format!(
                    "`{key}` does not hold a counter (a number in decimal text), so it cannot be incremented"
                ))
            })?,
    };
    current.checked_add(delta).ok_or_else(|| {
        GuestError::Invalid(format!(
            "incrementing `{key}` by {delta} would overflow a u64"
        ))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Set {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
}

/// A store failure, as the guest reads it.
pub fn failed(e: impl std::fmt::Display) -> GuestError {
    GuestError::Failed(format!("key-value store: {e}"))
}

/// The answer to a `set` of a new key in a namespace that is full.
pub fn full(max_keys: u64) -> GuestError {
    GuestError::TooLarge(format!(
        "the store already holds {max_keys} keys, its kv_keys limit"
    ))
}

fn check_key(key: &str) -> Result<(), GuestError> {
    if key.is_empty() {
        return Err(GuestError::Invalid("the key is empty".into()));
    }
    if key.len() > MAX_KEY {
        return Err(GuestError::TooLarge(format!(
            "the key is {} bytes; keys are at most {MAX_KEY}",
            key.len()
        )));
    }
    Ok(())
}

/// The namespace of the store `label` of `function` (namespace `kv:LABEL`; plain `kv` is
/// `default`): a store granted by label (`kv_stores`), or the function's own for `default`
/// with `kv = true`; denied otherwise.
pub(crate) fn namespace<'a>(
    function: &'a Deployment,
    label: &str,
) -> Result<&'a FunctionName, GuestError> {
    let grants = &function.config.grants;
    if let Some(namespace) = grants.kv_stores.get(label) {
        return Ok(namespace);
    }
    match label {
        "default" if grants.kv => Ok(&function.name),
        "default" => Err(GuestError::Denied(
            "this function has no key-value store (grant it with `kv = true`)".into(),
        )),
        label => Err(GuestError::Denied(format!(
            "this function may not open the key-value store `{label}` (not in its `key_value_stores`)"
        ))),
    }
}

/// Answers one `kv` host call of the function `name` from `kv`.
pub(crate) async fn call(
    kv: &dyn Kv,
    name: &FunctionName,
    limits: &Limits,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, GuestError> {
    match operation {
        "get" => {
            let key = text(payload, "key")?;
            check_key(key)?;
            kv.get(name, key)
                .await?
                .ok_or_else(|| GuestError::NotFound(format!("no key `{key}`")))
        }
        "set" => {
            let set: Set = json(payload, "kv/set")?;
            check_key(&set.key)?;
            let value = bytes_field(set.value, set.value_base64, "value")?;
            let limit = limits.kv_value;
            if value.len() as u64 > limit.as_u64() {
                return Err(GuestError::TooLarge(format!(
                    "the value is {} bytes, over the kv_value limit of {limit}",
                    value.len()
                )));
            }
            kv.set(name, &set.key, value, limits.kv_keys).await?;
            Ok(Vec::new())
        }
        "increment" => {
            let increment: Increment = json(payload, "kv/increment")?;
            check_key(&increment.key)?;
            let value = kv
                .increment(name, &increment.key, increment.delta, limits.kv_keys)
                .await?;
            Ok(value.to_string().into_bytes())
        }
        "delete" => {
            let key = text(payload, "key")?;
            check_key(key)?;
            kv.delete(name, key).await?;
            Ok(Vec::new())
        }
        "list" => {
            let prefix = text(payload, "prefix")?;
            let keys = kv.list(name, prefix).await?;
            serde_json::to_vec(&keys).map_err(failed)
        }
        other => Err(unknown_operation(
            "kv",
            other,
            "get, set, increment, delete, list",
        )),
    }
}

/// The embedded backend: one redb table per function; every write is a durable
/// transaction, so a value is on disk when `set` answers.
pub struct RedbKv {
    db: Arc<Database>,
}

fn table(name: &FunctionName) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name.as_str())
}

impl RedbKv {
    /// Opens (creating) the database at `path`, readable by its owner only.
    pub fn open(path: &Path) -> Result<Self, redb::DatabaseError> {
        let storage = |e: std::io::Error| redb::DatabaseError::Storage(e.into());
        // Like every file in the data directory: the owner's only. The file is created 0600
        // and handed to redb, so it is never readable by others, not even for a
        // moment; one made by an older version is tightened.
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(storage)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(storage)?;
        }
        let db = Database::builder().create_file(file)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// Runs a store operation on the blocking pool: redb reads and fsyncs synchronously.
    async fn blocking<T: Send + 'static>(
        &self,
        name: &FunctionName,
        f: impl FnOnce(&Database, &FunctionName) -> Result<T, GuestError> + Send + 'static,
    ) -> Result<T, GuestError> {
        let (db, name) = (self.db.clone(), name.clone());
        tokio::task::spawn_blocking(move || f(&db, &name))
            .await
            .map_err(failed)?
    }
}

#[async_trait]
impl Kv for RedbKv {
    async fn get(
        &self,
        namespace: &FunctionName,
        key: &str,
    ) -> Result<Option<Vec<u8>>, GuestError> {
        let key = key.to_owned();
        self.blocking(namespace, move |db, name| {
            let tx = db.begin_read().map_err(failed)?;
            let table = match tx.open_table(table(name)) {
                Ok(table) => table,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(failed(e)),
            };
            let value = table.get(key.as_str()).map_err(failed)?;
            Ok(value.map(|v| v.value().to_vec()))
        })
        .await
    }

    async fn set(
        &self,
        namespace: &FunctionName,
        key: &str,
        value: Vec<u8>,
        max_keys: u64,
    ) -> Result<(), GuestError> {
        let key = key.to_owned();
        self.blocking(namespace, move |db, name| {
            let tx = db.begin_write().map_err(failed)?;
            {
                let mut table = tx.open_table(table(name)).map_err(failed)?;
                let exists = table.get(key.as_str()).map_err(failed)?.is_some();
                if !exists && table.len().map_err(failed)? >= max_keys {
                    return Err(full(max_keys));
                }
                table
                    .insert(key.as_str(), value.as_slice())
                    .map_err(failed)?;
            }
            tx.commit().map_err(failed)
        })
        .await
    }

    async fn increment(
        &self,
        namespace: &FunctionName,
        key: &str,
        delta: u64,
        max_keys: u64,
    ) -> Result<u64, GuestError> {
        let key = key.to_owned();
        self.blocking(namespace, move |db, name| {
            let tx = db.begin_write().map_err(failed)?;
            let value = {
                let mut table = tx.open_table(table(name)).map_err(failed)?;
                let current = table.get(key.as_str()).map_err(failed)?;
                let exists = current.is_some();
                let value = incremented(&key, current.as_ref().map(|v| v.value()), delta)?;
                drop(current);
                if !exists && table.len().map_err(failed)? >= max_keys {
                    return Err(full(max_keys));
                }
                table
                    .insert(key.as_str(), value.to_string().as_bytes())
                    .map_err(failed)?;
                value
            };
            tx.commit().map_err(failed)?;
            Ok(value)
        })
        .await
    }

    async fn delete(&self, namespace: &FunctionName, key: &str) -> Result<(), GuestError> {
        let key = key.to_owned();
        self.blocking(namespace, move |db, name| {
            let tx = db.begin_write().map_err(failed)?;
            {
                let mut table = tx.open_table(table(name)).map_err(failed)?;
                table.remove(key.as_str()).map_err(failed)?;
            }
            tx.commit().map_err(failed)
        })
        .await
    }

    async fn list(
        &self,
        namespace: &FunctionName,
        prefix: &str,
    ) -> Result<Vec<String>, GuestError> {
        let prefix = prefix.to_owned();
        self.blocking(namespace, move |db, name| {
            let tx = db.begin_read().map_err(failed)?;
            let mut keys = Vec::new();
            match tx.open_table(table(name)) {
                Ok(table) => {
                    for entry in table.range(prefix.as_str()..).map_err(failed)? {
                        let (key, _) = entry.map_err(failed)?;
                        let key = key.value();
                        if !key.starts_with(prefix.as_str()) {
                            break;
                        }
                        keys.push(key.to_owned());
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(failed(e)),
            }
            Ok(keys)
        })
        .await
    }

    async fn delete_namespace(&self, namespace: &FunctionName) -> Result<(), GuestError> {
        self.blocking(namespace, |db, name| {
            let tx = db.begin_write().map_err(failed)?;
            tx.delete_table(table(name)).map_err(failed)?;
            tx.commit().map_err(failed)
        })
        .await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The guest-facing protocol over the redb backend in `dir`.
    struct Calls(RedbKv);

    impl Calls {
        async fn call(
            &self,
            name: &FunctionName,
            limits: &Limits,
            operation: &str,
            payload: &[u8],
        ) -> Result<Vec<u8>, GuestError> {
            call(&self.0, name, limits, operation, payload).await
        }

        async fn delete_namespace(&self, name: &FunctionName) -> Result<(), GuestError> {
            self.0.delete_namespace(name).await
        }
    }

    fn kv(dir: &Path) -> Calls {
        Calls(RedbKv::open(&dir.join("kv.redb")).unwrap())
    }

    #[tokio::test]
    async fn namespaces_are_separate_durable_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b): (FunctionName, FunctionName) = ("a".parse().unwrap(), "b".parse().unwrap());
        let limits = Limits {
            kv_keys: 2,
            kv_value: wafer_runtime::ByteSize::b(8),
            ..Limits::default()
        };
        {
            let kv = kv(dir.path());
            let set = |k: &str, v: &str| format!(r#"{{"key":"{k}","value":"{v}"}}"#);
            kv.call(&a, &limits, "set", set("x1", "one").as_bytes())
                .await
                .unwrap();
            kv.call(&a, &limits, "set", br#"{"key":"x2","value_base64":"AP8="}"#)
                .await
                .unwrap();
            // A third key is over kv_keys; overwriting an existing one is not.
            let err = kv
                .call(&a, &limits, "set", set("x3", "3").as_bytes())
                .await
                .unwrap_err();
            assert!(err.to_string().starts_with("too_large: "), "{err}");
            kv.call(&a, &limits, "set", set("x1", "uno").as_bytes())
                .await
                .unwrap();
            let err = kv
                .call(&a, &limits, "set", set("y", "123456789").as_bytes())
                .await
                .unwrap_err();
            assert!(err.to_string().contains("kv_value"), "{err}");
            // b sees nothing of a's.
            let err = kv.call(&b, &limits, "get", b"x1").await.unwrap_err();
            assert_eq!(err, GuestError::NotFound("no key `x1`".into()));
            assert_eq!(kv.call(&b, &limits, "list", b"").await.unwrap(), b"[]");
        }
        // Reopened: still there.
        let kv = kv(dir.path());
        assert_eq!(kv.call(&a, &limits, "get", b"x1").await.unwrap(), b"uno");
        assert_eq!(kv.call(&a, &limits, "get", b"x2").await.unwrap(), [0, 255]);
        assert_eq!(
            kv.call(&a, &limits, "list", b"x").await.unwrap(),
            br#"["x1","x2"]"#
        );
        kv.call(&a, &limits, "delete", b"x1").await.unwrap();
        assert_eq!(
            kv.call(&a, &limits, "list", b"").await.unwrap(),
            br#"["x2"]"#
        );
        kv.delete_namespace(&a).await.unwrap();
        assert!(kv.call(&a, &limits, "get", b"x2").await.is_err());
        let err = kv.call(&a, &limits, "get", b"").await.unwrap_err();
        assert!(err.to_string().starts_with("invalid: "), "{err}");
        let err = kv.call(&a, &limits, "set", b"{").await.unwrap_err();
        assert!(
            err.to_string().starts_with("invalid: the `kv/set` payload"),
            "{err}"
        );
    }
}
