//! The function's own key-value store, granted with `kv = true`.
//!
//! Keys are non-empty UTF-8 strings (up to 1024 bytes); values are bytes. A value is durable
//! once [`set`] returns.

use crate::Error;

/// The value of `key`, or `None` if it is absent.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    crate::optional(crate::host_call("kv", "get", key.as_bytes()))
}

/// The value of `key` as text, or `None` if it is absent; a `failed` error if it is not UTF-8.
pub fn get_string(key: &str) -> Result<Option<String>, Error> {
    get(key)?
        .map(|value| {
            String::from_utf8(value)
                .map_err(|_| Error::failed(format_args!("the value of key {key:?} is not UTF-8")))
        })
        .transpose()
}

/// Sets `key` to `value`.
pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
    crate::host_call("kv", "set", &set_payload(key, value.as_ref())).map(drop)
}

/// Deletes `key`; deleting an absent key is not an error.
pub fn delete(key: &str) -> Result<(), Error> {
    crate::host_call("kv", "delete", key.as_bytes()).map(drop)
}

/// The keys starting with `prefix` (all keys for `""`), sorted.
pub fn list(prefix: &str) -> Result<Vec<String>, Error> {
    let answer = crate::host_call("kv", "list", prefix.as_bytes())?;
    serde_json::from_slice(&answer)
        .map_err(|e| Error::failed(format_args!("malformed answer from kv/list: {e}")))
}

fn set_payload(key: &str, value: &[u8]) -> Vec<u8> {
    let mut payload = serde_json::json!({ "key": key });
    crate::put_bytes(&mut payload, "value", value);
    payload.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_payload_text_or_base64() {
        let json = |p: Vec<u8>| serde_json::from_slice::<serde_json::Value>(&p).unwrap();
        let text = serde_json::json!({"key": "n", "value": "41"});
        assert_eq!(json(set_payload("n", b"41")), text);
        let binary = serde_json::json!({"key": "b\"", "value_base64": "AP8="});
        assert_eq!(json(set_payload("b\"", &[0, 255])), binary);
    }
}
