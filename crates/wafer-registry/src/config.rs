//! A function's configuration as the registry stores it: parsed and validated once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wafer_abi::{Abi, Limits};

use crate::error::RegistryError;
use crate::grants::Grants;
use crate::names::{FunctionName, Route};
use crate::schedule::{Schedule, MAX_SCHEDULES};

/// Everything about a function except its module: where it is served, its environment and
/// its limits. Built from a manifest entry or deploy flags, then stored with each version.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FunctionConfig {
    /// Routes the function answers on; empty means the default, `/NAME/...`.
    pub routes: Vec<Route>,
    /// Environment variables given to every call (request-derived variables win).
    pub env: BTreeMap<String, String>,
    /// Resource limits.
    pub limits: Limits,
    /// How the module is called, when not as detected from its exports.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abi: Option<Abi>,
    /// The export a CGI call runs instead of `_start` (WAGI's `entrypoint`): a function of
    /// no parameters and no results.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<String>,
    /// Protobuf types of the function's operations, for JSON transcoding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<Schema>,
    /// What the function may reach: HTTP hosts, directories, config, key-value, topics.
    #[serde(skip_serializing_if = "Grants::is_empty")]
    pub grants: Grants,
    /// The Spin app this function is a component of, for a function made from a
    /// `spin.toml` (docs/spin.md): its requests carry Spin's `spin-*` headers, and its
    /// responses are the guest's alone (no `X-Wafer-Request-Id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spin: Option<SpinComponent>,
    /// Leaves `X-Wafer-Request-Id` out of the function's responses (always, for a Spin
    /// component), for clients that refuse headers they do not expect.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_request_id_header: bool,
    /// When the clock calls the function (docs/operations.md#schedules).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<Schedule>,
}

/// Which component of which Spin app a function is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpinComponent {
    /// The app's name (`[application] name`).
    pub app: String,
    /// The component's id (`[component.ID]`).
    pub component: String,
}

/// The protobuf messages a function's operations take and return: with them, a JSON call is
/// validated and transcoded to protobuf for the guest, and the guest's answer back to JSON.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// An encoded `google.protobuf.FileDescriptorSet` holding every type used (base64 in
    /// the stored record).
    #[serde(with = "wafer_abi::base64_bytes")]
    pub descriptors: Vec<u8>,
    /// Input and output message types (full names, e.g. `complex.Pair`) per operation.
    pub operations: BTreeMap<String, OperationTypes>,
}

/// The message types of one operation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationTypes {
    /// The request message's full name.
    pub input: String,
    /// The response message's full name.
    pub output: String,
}

impl FunctionConfig {
    /// Checks what serde cannot: environment names and values, grants, and every limit
    /// within its documented range ([`Limits::validate`]).
    pub fn validate(&self) -> Result<(), RegistryError> {
        if self.schedules.len() > MAX_SCHEDULES {
            return Err(RegistryError::InvalidConfig(format!(
                "{} schedules; a function has at most {MAX_SCHEDULES}",
                self.schedules.len()
            )));
        }
        for schedule in &self.schedules {
            schedule.validate()?;
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains(['=', '\0']) {
                return Err(RegistryError::InvalidConfig(format!(
                    "environment variable name `{key}` must be non-empty and contain no `=` or NUL"
                )));
            }
            if value.contains('\0') {
                return Err(RegistryError::InvalidConfig(format!(
                    "environment variable `{key}` contains a NUL byte"
                )));
            }
        }
        self.grants.validate()?;
        // Every path to a record (deploy flags, query string, manifest, gRPC) comes through
        // here: an absurd limit (a timeout `Instant` cannot add) is refused before it is stored.
        self.limits
            .validate()
            .map_err(|e| RegistryError::InvalidConfig(e.to_string()))?;
        Ok(())
    }

    /// A copy fit to show: secret values masked.
    pub fn masked(&self) -> Self {
        Self {
            grants: self.grants.masked(),
            ..self.clone()
        }
    }

    /// Whether responses carry `X-Wafer-Request-Id`.
    pub fn request_id_header(&self) -> bool {
        !self.no_request_id_header && self.spin.is_none()
    }

    /// The routes the function is served on: the declared ones, or `/NAME/...`.
    pub fn effective_routes(&self, name: &FunctionName) -> Vec<Route> {
        if self.routes.is_empty() {
            vec![Route::default_for(name)]
        } else {
            self.routes.clone()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every way to a record (deploy flags and query string, manifest, gRPC) validates the
    /// config here, so an absurd limit is refused whichever way it came.
    #[test]
    fn absurd_limits_make_the_config_invalid() {
        let config: FunctionConfig =
            serde_json::from_str(r#"{"limits": {"timeout": "18446744073709551615s"}}"#).unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid configuration: limit `timeout` is 18446744073709551615s, above its maximum \
             of 86400s (1 day)"
        );
        let config: FunctionConfig =
            serde_json::from_str(r#"{"limits": {"max_concurrency": 0}}"#).unwrap();
        assert_eq!(
            config.validate().unwrap_err().to_string(),
            "invalid configuration: limit `max_concurrency` is 0, below its minimum of 1"
        );
        assert!(FunctionConfig::default().validate().is_ok());
    }
}
