//! A function's configuration as the registry stores it: parsed and validated once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use wafer_runtime::Limits;

use crate::error::RegistryError;
use crate::names::{FunctionName, Route};

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
}

impl FunctionConfig {
    /// Checks what serde cannot: environment names and values, and limits that make sense.
    pub fn validate(&self) -> Result<(), RegistryError> {
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
        let limits = &self.limits;
        if limits.max_concurrency == 0 {
            return Err(RegistryError::InvalidConfig(
                "max_concurrency must be at least 1".into(),
            ));
        }
        if limits.timeout.is_zero() {
            return Err(RegistryError::InvalidConfig(
                "timeout must be above zero".into(),
            ));
        }
        if limits.memory.as_u64() < 64 * 1024 {
            return Err(RegistryError::InvalidConfig(format!(
                "memory limit {} is below one 64 KiB wasm page",
                limits.memory
            )));
        }
        Ok(())
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
