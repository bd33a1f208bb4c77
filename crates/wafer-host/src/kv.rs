//! `kv`: one key-value namespace per function, in an embedded redb database
//! (`DATA/kv.redb`). Each namespace is a redb table named after the function; every write is a
//! durable transaction, so a value is on disk when `set` answers.

use std::path::Path;
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::Deserialize;
use wafer_registry::FunctionName;
use wafer_runtime::Limits;

use crate::{bytes_field, json, text, unknown_operation, GuestError};

/// Longest key, in bytes.
pub const MAX_KEY: usize = 1024;

/// The store.
pub(crate) struct Kv {
    db: Arc<Database>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Set {
    key: String,
    value: Option<String>,
    value_base64: Option<String>,
}

fn table(name: &FunctionName) -> TableDefinition<'_, &'static str, &'static [u8]> {
    TableDefinition::new(name.as_str())
}

fn failed(e: impl std::fmt::Display) -> GuestError {
    GuestError::Failed(format!("key-value store: {e}"))
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

impl Kv {
    pub(crate) fn open(path: &Path) -> Result<Self, redb::DatabaseError> {
        let db = Database::create(path)?;
        // Like every file in the data directory: the owner's only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| redb::DatabaseError::Storage(e.into()))?;
        }
        Ok(Self { db: Arc::new(db) })
    }

    pub(crate) async fn call(
        &self,
        name: &FunctionName,
        limits: &Limits,
        operation: &str,
        payload: &[u8],
    ) -> Result<Vec<u8>, GuestError> {
        match operation {
            "get" => {
                let key = text(payload, "key")?.to_owned();
                check_key(&key)?;
                self.blocking(name, move |db, name| get(db, name, &key))
                    .await
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
                let max_keys = limits.kv_keys;
                self.blocking(name, move |db, name| {
                    put(db, name, &set.key, &value, max_keys)
                })
                .await
            }
            "delete" => {
                let key = text(payload, "key")?.to_owned();
                check_key(&key)?;
                self.blocking(name, move |db, name| delete(db, name, &key))
                    .await
            }
            "list" => {
                let prefix = text(payload, "prefix")?.to_owned();
                self.blocking(name, move |db, name| list(db, name, &prefix))
                    .await
            }
            other => Err(unknown_operation("kv", other, "get, set, delete, list")),
        }
    }

    /// Deletes a function's namespace.
    pub(crate) async fn delete_namespace(&self, name: &FunctionName) -> Result<(), GuestError> {
        self.blocking(name, |db, name| {
            let tx = db.begin_write().map_err(failed)?;
            tx.delete_table(table(name)).map_err(failed)?;
            tx.commit().map_err(failed)?;
            Ok(Vec::new())
        })
        .await
        .map(drop)
    }

    /// Runs a store operation on the blocking pool: redb reads and fsyncs synchronously.
    async fn blocking(
        &self,
        name: &FunctionName,
        f: impl FnOnce(&Database, &FunctionName) -> Result<Vec<u8>, GuestError> + Send + 'static,
    ) -> Result<Vec<u8>, GuestError> {
        let (db, name) = (self.db.clone(), name.clone());
        tokio::task::spawn_blocking(move || f(&db, &name))
            .await
            .map_err(failed)?
    }
}

fn get(db: &Database, name: &FunctionName, key: &str) -> Result<Vec<u8>, GuestError> {
    let tx = db.begin_read().map_err(failed)?;
    let not_found = || GuestError::NotFound(format!("no key `{key}`"));
    let table = match tx.open_table(table(name)) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Err(not_found()),
        Err(e) => return Err(failed(e)),
    };
    let value = table.get(key).map_err(failed)?.ok_or_else(not_found)?;
    Ok(value.value().to_vec())
}

fn put(
    db: &Database,
    name: &FunctionName,
    key: &str,
    value: &[u8],
    max_keys: u64,
) -> Result<Vec<u8>, GuestError> {
    let tx = db.begin_write().map_err(failed)?;
    {
        let mut table = tx.open_table(table(name)).map_err(failed)?;
        let exists = table.get(key).map_err(failed)?.is_some();
        if !exists && table.len().map_err(failed)? >= max_keys {
            return Err(GuestError::TooLarge(format!(
                "the store already holds {max_keys} keys, its kv_keys limit"
            )));
        }
        table.insert(key, value).map_err(failed)?;
    }
    tx.commit().map_err(failed)?;
    Ok(Vec::new())
}

fn delete(db: &Database, name: &FunctionName, key: &str) -> Result<Vec<u8>, GuestError> {
    let tx = db.begin_write().map_err(failed)?;
    {
        let mut table = tx.open_table(table(name)).map_err(failed)?;
        table.remove(key).map_err(failed)?;
    }
    tx.commit().map_err(failed)?;
    Ok(Vec::new())
}

fn list(db: &Database, name: &FunctionName, prefix: &str) -> Result<Vec<u8>, GuestError> {
    let tx = db.begin_read().map_err(failed)?;
    let mut keys = Vec::new();
    match tx.open_table(table(name)) {
        Ok(table) => {
            for entry in table.range(prefix..).map_err(failed)? {
                let (key, _) = entry.map_err(failed)?;
                let key = key.value();
                if !key.starts_with(prefix) {
                    break;
                }
                keys.push(key.to_owned());
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(failed(e)),
    }
    serde_json::to_vec(&keys).map_err(failed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn kv(dir: &Path) -> Kv {
        Kv::open(&dir.join("kv.redb")).unwrap()
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
