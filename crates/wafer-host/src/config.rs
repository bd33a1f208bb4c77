//! `config`: the function's config values and secrets, read by name.

use wafer_registry::Grants;

use crate::{text, unknown_operation, GuestError};

/// Answers `config/get NAME` with the value, raw, and `config/all` with every value and
/// secret as a JSON object (a config value wins over a secret of the same name, as in `get`).
pub(crate) fn call(
    grants: &Grants,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, GuestError> {
    if operation == "all" {
        let mut all: std::collections::BTreeMap<&str, &str> = grants
            .secrets
            .iter()
            .map(|(name, secret)| (name.as_str(), secret.expose()))
            .collect();
        all.extend(grants.config.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        return serde_json::to_vec(&all).map_err(|e| GuestError::Failed(e.to_string()));
    }
    if operation != "get" {
        return Err(unknown_operation("config", operation, "get, all"));
    }
    let name = text(payload, "config name")?;
    grants
        .value(name)
        .map(|value| value.as_bytes().to_vec())
        .ok_or_else(|| GuestError::NotFound(format!("no config value or secret named `{name}`")))
}
