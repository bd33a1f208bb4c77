//! `config`: the function's config values and secrets, read by name.

use wafer_registry::Grants;

use crate::{text, unknown_operation, GuestError};

/// Answers `config/get NAME` with the value, raw.
pub(crate) fn call(
    grants: &Grants,
    operation: &str,
    payload: &[u8],
) -> Result<Vec<u8>, GuestError> {
    if operation != "get" {
        return Err(unknown_operation("config", operation, "get"));
    }
    let name = text(payload, "config name")?;
    grants
        .value(name)
        .map(|value| value.as_bytes().to_vec())
        .ok_or_else(|| GuestError::NotFound(format!("no config value or secret named `{name}`")))
}
