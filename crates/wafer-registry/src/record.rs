//! Function records: a name, its versions, and which one is active.

use serde::{Deserialize, Serialize};
use wafer_abi::Abi;

use crate::config::FunctionConfig;
use crate::declared::ModuleRoute;
use crate::error::RegistryError;
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
    /// An empty record for `name`, for its first version.
    pub fn new(name: &FunctionName) -> Self {
        Self {
            name: name.clone(),
            active: 0,
            versions: Vec::new(),
        }
    }

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
    fn next_version(&self) -> u32 {
        self.versions.iter().map(|v| v.version).max().unwrap_or(0) + 1
    }

    /// The active version, if it runs `digest` with `config` (a deploy of them changes
    /// nothing).
    pub fn unchanged(&self, digest: &Digest, config: &FunctionConfig) -> Option<&Version> {
        self.active_version()
            .filter(|v| v.digest == *digest && v.config == *config)
    }

    /// Appends a version running `digest` with `config`, made active, and returns it.
    pub fn push(
        &mut self,
        digest: Digest,
        abi: Abi,
        config: FunctionConfig,
        module_routes: Vec<ModuleRoute>,
    ) -> &Version {
        let version = Version {
            version: self.next_version(),
            digest,
            abi,
            config,
            module_routes,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        };
        self.active = version.version;
        self.versions.push(version);
        &self.versions[self.versions.len() - 1]
    }

    /// The version before the active one, which `rollback` makes active.
    pub fn previous(&self) -> Result<&Version, RegistryError> {
        self.versions
            .iter()
            .filter(|v| v.version < self.active)
            .max_by_key(|v| v.version)
            .ok_or_else(|| RegistryError::NoEarlierVersion(self.name.to_string()))
    }

    /// The active version as a [`Deployment`].
    pub fn deployment(&self) -> Option<Deployment> {
        let version = self.active_version()?;
        Some(Deployment {
            name: self.name.clone(),
            version: version.version,
            digest: version.digest.clone(),
            abi: version.abi,
            config: version.config.clone(),
            module_routes: version.module_routes.clone(),
        })
    }
}

/// A function's active version as the gateway and the host read it: the function's name and
/// what that version was deployed with. Data only; the gateway pairs it with the compiled
/// program.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    /// The function's name.
    pub name: FunctionName,
    /// The version this is.
    pub version: u32,
    /// The module it runs.
    pub digest: Digest,
    /// How the module is called.
    pub abi: Abi,
    /// Its routes, environment, grants and limits.
    pub config: FunctionConfig,
    /// The routes its module declared (WAGI `_routes`).
    pub module_routes: Vec<ModuleRoute>,
}

impl Deployment {
    /// A deployment of `name` with `config`, for code that only reads names and configs
    /// (tests, fuzzing): version 1 of a module named by the name's digest.
    pub fn of(name: FunctionName, config: FunctionConfig) -> Self {
        Self {
            digest: Digest::of(name.as_str().as_bytes()),
            name,
            version: 1,
            abi: Abi::Cgi,
            config,
            module_routes: Vec::new(),
        }
    }
}
