//! The registry's errors. Messages name the offending value and are meant for the client.

use std::io;
use std::path::PathBuf;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A function name does not follow `[a-z0-9][a-z0-9_-]{0,62}`.
    #[error("invalid function name `{name}`: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A route is malformed.
    #[error("invalid route `{route}`: {reason}")]
    InvalidRoute {
        /// The route given.
        route: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A digest is not `sha256:` and 64 lower-case hex digits.
    #[error("invalid module digest `{0}`: expected `sha256:` and 64 lower-case hex digits")]
    InvalidDigest(String),
    /// A function's configuration is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The module's `_routes` export failed, or printed something that is not a route list.
    #[error("the module's `_routes` export: {0}")]
    ModuleRoutes(String),
    /// No function has that name.
    #[error("no function named `{0}`")]
    NotFound(String),
    /// No module has that digest.
    #[error("no module with digest `{0}`")]
    ModuleNotFound(String),
    /// Another function already answers on a route.
    #[error("route `{route}` is already served by function `{owner}`")]
    RouteTaken {
        /// The contested route.
        route: String,
        /// The function that has it.
        owner: String,
    },
    /// Another function already serves a gRPC service its schema declares.
    #[error("the gRPC service `{service}` is served by function `{owner}` already; a service belongs to one function")]
    ServiceTaken {
        /// The contested service (`pkg.Service`).
        service: String,
        /// The function that has it.
        owner: String,
    },
    /// Another writer changed the record between our read and our write, again and again.
    #[error("function `{0}` is being changed by another writer; try again")]
    Conflict(String),
    /// Rollback asked of a function at its first version.
    #[error("function `{0}` has no version before the active one")]
    NoEarlierVersion(String),
    /// A stored module no longer matches its digest: it is reported, never executed.
    #[error("module `{digest}` is corrupt: its contents hash to `{actual}`")]
    Corrupt {
        /// The digest it is stored under.
        digest: String,
        /// What its bytes hash to now.
        actual: String,
    },
    /// A stored record cannot be read.
    #[error("cannot read function record {path}: {reason}")]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        reason: String,
    },
    /// The storage below failed.
    #[error("{context}: {source}")]
    Io {
        /// What the registry was doing.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl RegistryError {
    /// Wraps an OS error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}
