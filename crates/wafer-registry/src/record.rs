//! Function records: a name, its versions, and which one is active.

use serde::{Deserialize, Serialize};
use wafer_abi::Abi;

use crate::config::FunctionConfig;
use crate::declared::ModuleRoute;
use crate::error::RegistryError;
use crate::names::{Digest, FunctionName, Route};
use crate::traffic::Traffic;

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

/// Versions a function's record keeps: the 100 newest (and the active one, always). A deploy
/// past it forgets the oldest, so a record stays well under the 1 MiB a NATS message may
/// carry, and rollback reaches back 99 versions.
pub const MAX_VERSIONS: usize = 100;

/// Largest record kept, as compact JSON: 512 KiB. A deploy that would make it larger
/// forgets more of the oldest versions (functions with large configurations keep fewer
/// than [`MAX_VERSIONS`]), never the active one.
pub const MAX_RECORD_BYTES: usize = 512 << 10;

/// A function's history (its [`MAX_VERSIONS`] newest versions), stored as one document so
/// that switching versions is a single atomic write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionRecord {
    /// The function's name.
    pub name: FunctionName,
    /// The version requests are served by.
    pub active: u32,
    /// The versions kept (at most [`MAX_VERSIONS`]), oldest first.
    pub versions: Vec<Version>,
    /// A traffic split among versions, if one stands (`active` is then its oldest member).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
}

impl FunctionRecord {
    /// An empty record for `name`, for its first version.
    pub fn new(name: &FunctionName) -> Self {
        Self {
            name: name.clone(),
            active: 0,
            versions: Vec::new(),
            traffic: None,
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

    /// The digests of every version kept.
    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.versions.iter().map(|v| &v.digest)
    }

    /// Forgets the oldest versions (never the active one or a member of the traffic split)
    /// past [`MAX_VERSIONS`], and past [`MAX_RECORD_BYTES`] of JSON.
    pub fn prune(&mut self) {
        let mut excess = self.versions.len().saturating_sub(MAX_VERSIONS);
        loop {
            if excess == 0 {
                let size = serde_json::to_vec(self).map_or(0, |json| json.len());
                if size <= MAX_RECORD_BYTES {
                    return;
                }
            }
            let serving = self.shares();
            let Some(oldest) =
                (self.versions.iter()).position(|v| serving.iter().all(|s| s.version != v.version))
            else {
                return;
            };
            self.versions.remove(oldest);
            excess = excess.saturating_sub(1);
        }
    }

    /// Appends a version running `digest` with `config`, made active (ending a traffic
    /// split), and returns it. The oldest versions past [`MAX_VERSIONS`] (or
    /// [`MAX_RECORD_BYTES`]) are forgotten.
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
        self.traffic = None;
        self.versions.push(version);
        self.prune();
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
        self.deployment_of(self.active)
    }

    /// Version `version` as a [`Deployment`].
    pub fn deployment_of(&self, version: u32) -> Option<Deployment> {
        let version = self.versions.iter().find(|v| v.version == version)?;
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
