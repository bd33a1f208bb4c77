//! Function records: a name, its versions, and which one is active.

use serde::{Deserialize, Serialize};
use wafer_abi::Abi;

use crate::config::FunctionConfig;
use crate::declared::ModuleRoute;
use crate::names::{Digest, FunctionName, Route};

/// One deploy of a function: a module plus the configuration it runs with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    /// 1 for the first deploy, then counting up; never reused.
    pub version: u32,
    /// The module this version runs.
    pub digest: Digest,
    /// How the module is called.
    pub abi: Abi,
    /// Routes, environment and limits.
    pub config: FunctionConfig,
    /// The routes the module declared (WAGI's `_routes` export), found at deploy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub module_routes: Vec<ModuleRoute>,
    /// When it was deployed (RFC 3339, UTC).
    pub created: String,
}

impl Version {
    /// Every route this version answers on: its configured routes, then the routes its
    /// module declared, under each configured one.
    pub fn routes(&self) -> Vec<Route> {
        let bases = &self.config.routes;
        let declared = self
            .module_routes
            .iter()
            .flat_map(|m| bases.iter().filter_map(move |base| m.under(base).ok()));
        bases.iter().cloned().chain(declared).collect()
    }
}

/// A function's whole history, stored as one document so that switching versions is a
/// single atomic write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionRecord {
    /// The function's name.
    pub name: FunctionName,
    /// The version requests are served by.
    pub active: u32,
    /// Every version, oldest first.
    pub versions: Vec<Version>,
}

impl FunctionRecord {
    /// The version requests are served by.
    pub fn active_version(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == self.active)
    }

    /// A copy fit to show: secret values masked in every version.
    pub fn masked(&self) -> Self {
        let mut record = self.clone();
        for version in &mut record.versions {
            version.config = version.config.masked();
        }
        record
    }

    /// The number the next deploy gets.
    pub(crate) fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }
}
