//! `wafer.toml`: the functions `wafer up` serves.
//!
//! ```toml
//! [[function]]
//! name = "hello"
//! module = "hello.wasm"          # relative to this file, or "oci://HOST/REPO:TAG" (docs/oci.md)
//! routes = ["/hello/..."]        # default: /NAME/...
//! env = { GREETING = "hi" }
//! limits = { memory = "64MiB", timeout = "5s", max_concurrency = 16 }
//! proto = "complex.proto"        # protobuf types of the operations (relative to this file)
//! operations = { mul = "complex.Pair:complex.Complex" }
//! # capabilities (docs/capabilities.md); all denied unless granted
//! http = ["https://api.example.com", "http://127.0.0.1:9000"]
//! dirs = ["data::/data", "static::/static:ro"]   # host paths relative to this file
//! config = { greeting = "hi" }
//! secrets = { token = { env = "API_TOKEN" } }    # or a literal string
//! kv = true
//! publish = ["telemetry.*"]
//! subscribe = ["telemetry.>"]
//! listen = "127.0.0.1:7000"   # a service: a WASI 0.2 command component serving TCP there
//! build = "cargo build --release --target wasm32-wasip1"   # run by `wafer build`, here
//! watch = ["src/**/*.rs"]        # `wafer up --watch`: rebuild and redeploy when these change
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;
use wafer_registry::{
    DirGrant, FunctionConfig, FunctionName, Grants, HttpRule, OutboundRule, Route, Secret,
    TopicPattern,
};
use wafer_runtime::Limits;

/// A parsed manifest, module paths resolved against its directory: a `wafer.toml`, or a
/// Spin app's `spin.toml` ([`crate::spin`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    #[serde(default, rename = "function")]
    pub functions: Vec<ManifestFunction>,
    /// What the functions' files live in while they are served (a Spin app's `files`):
    /// held so that the directory lasts as long as the manifest.
    #[serde(skip)]
    pub staged: Option<std::sync::Arc<tempfile::TempDir>>,
}

/// One `[[function]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ManifestFunction {
    pub name: FunctionName,
    pub module: ModuleSource,
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub limits: Limits,
    /// How to call the module, when not as its exports suggest.
    #[serde(default)]
    pub abi: Option<wafer_runtime::Abi>,
    /// The export a CGI call runs instead of `_start` (WAGI's `entrypoint`).
    #[serde(default)]
    pub entrypoint: Option<String>,
    /// A `.proto` file with the operations' message types.
    #[serde(default)]
    pub proto: Option<PathBuf>,
    /// `OPERATION = "INPUT_TYPE:OUTPUT_TYPE"`.
    #[serde(default)]
    pub operations: BTreeMap<String, String>,
    /// Outbound HTTP allow-list.
    #[serde(default)]
    pub http: Vec<HttpRule>,
    /// Allow-list of other outbound connections: TCP sockets (`tcp://10.0.0.0/8:5432`),
    /// PostgreSQL (`postgres://db.example.com`).
    #[serde(default)]
    pub outbound: Vec<OutboundRule>,
    /// Pre-opened directories, `HOST::GUEST[:ro]`, HOST relative to the manifest.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Config values.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Secrets: a value, or `{ env = "VAR" }` to read it from `wafer up`'s environment.
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretSource>,
    /// A key-value namespace.
    #[serde(default)]
    pub kv: bool,
    /// Topics the function may publish to.
    #[serde(default)]
    pub publish: Vec<TopicPattern>,
    /// Topics whose messages invoke the function.
    #[serde(default)]
    pub subscribe: Vec<TopicPattern>,
    /// For a service (a WASI 0.2 command component): the address it listens on.
    #[serde(default)]
    pub listen: Option<std::net::SocketAddr>,
    /// A shell command that builds the module, run by `wafer build` in the manifest's
    /// directory.
    #[serde(default)]
    pub build: Option<String>,
    /// Sources (globs relative to the manifest: `src/**/*.rs`) whose change makes `wafer up
    /// --watch` run `build` and redeploy.
    #[serde(default)]
    pub watch: Vec<String>,
    /// `watch`, compiled.
    #[serde(skip)]
    pub watch_set: Option<globset::GlobSet>,
    /// Leave `X-Wafer-Request-Id` out of the responses.
    #[serde(default = "yes")]
    pub request_id_header: bool,
    /// When the clock calls the function: cron expressions (`"0 */5 * * * *"`), or tables
    /// `{ cron, path, body }`.
    #[serde(default)]
    pub schedule: Vec<wafer_registry::Schedule>,
    /// Key-value stores by label (from a `spin.toml`).
    #[serde(skip)]
    pub kv_stores: BTreeMap<String, FunctionName>,
    /// SQLite databases by label (from a `spin.toml`).
    #[serde(skip)]
    pub sqlite_databases: BTreeMap<String, FunctionName>,
    /// The Spin app and component (from a `spin.toml`).
    #[serde(skip)]
    pub spin: Option<wafer_registry::SpinComponent>,
    /// The entry as written, to tell whether a reloaded manifest changed it.
    #[serde(skip)]
    pub entry: Option<toml::Value>,
    /// The manifest's directory, where `build` runs.
    #[serde(skip)]
    pub dir: PathBuf,
    /// The secrets' values, read when the manifest is parsed.
    #[serde(skip)]
    pub(crate) secret_values: BTreeMap<String, Secret>,
}

fn yes() -> bool {
    true
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged, deny_unknown_fields)]
pub(crate) enum SecretSource {
    /// The value itself.
    Value(String),
    /// An environment variable of `wafer up`.
    Env {
        /// The variable's name.
        env: String,
    },
}

impl ManifestFunction {
    pub(crate) fn config(&self) -> FunctionConfig {
        FunctionConfig {
            routes: self.routes.clone(),
            env: self.env.clone(),
            limits: self.limits,
            abi: self.abi,
            entrypoint: self.entrypoint.clone(),
            schema: None,
            grants: Grants {
                http: self.http.clone(),
                outbound: self.outbound.clone(),
                dirs: self.dirs.clone(),
                config: self.config.clone(),
                secrets: self.secret_values.clone(),
                kv: self.kv,
                publish: self.publish.clone(),
                subscribe: self.subscribe.clone(),
                listen: self.listen,
                kv_stores: self.kv_stores.clone(),
                sqlite_databases: self.sqlite_databases.clone(),
            },
            spin: self.spin.clone(),
            no_request_id_header: !self.request_id_header,
            schedules: self.schedule.clone(),
        }
    }

    /// Reads the secrets' values and anchors relative paths at `base`, the manifest's
    /// directory.
    pub(crate) fn resolve(&mut self, base: &Path) -> anyhow::Result<()> {
        self.dir = base.to_owned();
        if let ModuleSource::File(path) = &mut self.module {
            *path = base.join(&*path);
        }
        if !self.watch.is_empty() {
            anyhow::ensure!(
                self.build.is_some(),
                "`watch` needs a `build` command to run when the sources change"
            );
            let mut set = globset::GlobSetBuilder::new();
            for pattern in &self.watch {
                let glob = globset::Glob::new(pattern)
                    .with_context(|| format!("watch pattern `{pattern}`"))?;
                set.add(glob);
            }
            self.watch_set = Some(set.build().context("watch patterns")?);
        }
        self.proto = self.proto.as_ref().map(|p| base.join(p));
        for dir in &mut self.dirs {
            let host = base.join(&dir.host);
            dir.host = std::fs::canonicalize(&host).with_context(|| {
                format!("directory grant `{dir}`: cannot open {}", host.display())
            })?;
        }
        for (name, source) in &self.secrets {
            let value = match source {
                SecretSource::Value(value) => value.clone(),
                SecretSource::Env { env } => std::env::var(env).with_context(|| {
                    format!("secret `{name}` comes from ${env}, which is not set")
                })?,
            };
            self.secret_values.insert(name.clone(), Secret::new(value));
        }
        Ok(())
    }
}

/// Where a function's module comes from: a file (`.wasm` or `.wat`), or an artifact in an
/// OCI registry (`oci://HOST[:PORT]/REPOSITORY[:TAG][@sha256:HEX]`, docs/oci.md).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub(crate) enum ModuleSource {
    /// A file on this machine.
    File(PathBuf),
    /// An artifact in a registry, pulled by the CLI with the user's credentials.
    Oci(super::oci::OciSource),
}

impl TryFrom<String> for ModuleSource {
    type Error = anyhow::Error;

    fn try_from(text: String) -> anyhow::Result<Self> {
        Self::parse(&text)
    }
}

impl std::fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Oci(source) => write!(f, "{source}"),
        }
    }
}

/// A module as loaded: its bytes, and the configuration `wafer push` stored with it.
pub(crate) struct LoadedModule {
    pub bytes: Vec<u8>,
    /// The pushed function's configuration (an `oci://` module pushed by `wafer push`).
    pub config: Option<serde_json::Value>,
}

impl ModuleSource {
    /// `oci://...` names an artifact in a registry; anything else a file.
    pub(crate) fn parse(text: &str) -> anyhow::Result<Self> {
        match text.starts_with(super::oci::SCHEME) {
            true => Ok(Self::Oci(super::oci::OciSource::parse(text)?)),
            false => Ok(Self::File(PathBuf::from(text))),
        }
    }

    /// The module's file, if it is one.
    pub(crate) fn file(&self) -> Option<&Path> {
        match self {
            Self::File(path) => Some(path),
            Self::Oci(_) => None,
        }
    }

    /// Reads the file, or pulls the artifact (verified against its digests).
    pub(crate) async fn load(
        &self,
        registry: &super::oci::RegistryArgs,
    ) -> anyhow::Result<LoadedModule> {
        match self {
            Self::File(path) => Ok(LoadedModule {
                bytes: tokio::fs::read(path)
                    .await
                    .with_context(|| format!("cannot read {}", path.display()))?,
                config: None,
            }),
            Self::Oci(source) => {
                let pulled = super::oci::pull(source, registry).await?;
                tracing::info!("pulled {source} ({})", pulled.manifest_digest);
                Ok(LoadedModule {
                    bytes: pulled.module,
                    config: pulled.config,
                })
            }
        }
    }
}

impl Manifest {
    /// The manifest a command was given, or, given none, `wafer.toml` in the current
    /// directory, else a Spin app's `spin.toml` there.
    pub(crate) fn path(given: Option<PathBuf>) -> PathBuf {
        given.unwrap_or_else(|| {
            let spin = PathBuf::from("spin.toml");
            match !Path::new(DEFAULT).exists() && spin.exists() {
                true => spin,
                false => PathBuf::from(DEFAULT),
            }
        })
    }

    pub(crate) fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new(""));
        let manifest = match super::spin::is_spin(&text) {
            true => super::spin::parse(&text, base),
            false => Self::parse(&text, base),
        };
        manifest.with_context(|| format!("invalid manifest {}", path.display()))
    }

    pub(crate) fn parse(text: &str, base: &Path) -> anyhow::Result<Self> {
        let mut manifest: Manifest = toml::from_str(text)?;
        let raw: toml::Table = toml::from_str(text)?;
        let entries = raw.get("function").and_then(toml::Value::as_array);
        for (i, f) in manifest.functions.iter_mut().enumerate() {
            f.entry = entries.and_then(|e| e.get(i)).cloned();
        }
        let mut seen = HashSet::new();
        for f in &mut manifest.functions {
            if !seen.insert(f.name.clone()) {
                anyhow::bail!("function `{}` is declared twice", f.name);
            }
            let name = f.name.clone();
            let context = || format!("function `{name}`");
            f.resolve(base).with_context(context)?;
            f.config().validate().with_context(context)?;
        }
        Ok(manifest)
    }
}

/// The manifest commands read when given none.
const DEFAULT: &str = "wafer.toml";

/// Options of `wafer build`.
#[derive(clap::Args)]
pub(crate) struct BuildArgs {
    /// The manifest (default `wafer.toml`, else `spin.toml`).
    manifest: Option<PathBuf>,
    /// Build only these functions (default: every one with a `build` command).
    functions: Vec<FunctionName>,
}

/// `wafer build`: runs each function's `build` command with `sh -c` in the manifest's
/// directory, in manifest order, stopping at the first that fails.
pub(crate) fn build(args: BuildArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&Manifest::path(args.manifest))?;
    for name in &args.functions {
        anyhow::ensure!(
            manifest.functions.iter().any(|f| &f.name == name),
            "the manifest declares no function `{name}`"
        );
    }
    let mut built = 0;
    for f in &manifest.functions {
        if !args.functions.is_empty() && !args.functions.contains(&f.name) {
            continue;
        }
        let Some(command) = &f.build else { continue };
        eprintln!("building {}: {command}", f.name);
        let dir = if f.dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &f.dir
        };
        let status = std::process::Command::new("sh")
            .args(["-c", command])
            .current_dir(dir)
            .status()
            .with_context(|| format!("function `{}`: cannot run `sh -c {command}`", f.name))?;
        anyhow::ensure!(
            status.success(),
            "function `{}`: `{command}` failed ({status})",
            f.name
        );
        if let Some(module) = f.module.file() {
            anyhow::ensure!(
                module.exists(),
                "function `{}`: `{command}` succeeded but did not make {}",
                f.name,
                module.display()
            );
        }
        built += 1;
    }
    if built == 0 {
        eprintln!("nothing to build: no function in the manifest has a `build` command");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        format!("{:#}", Manifest::parse(text, Path::new("")).unwrap_err())
    }

    #[test]
    fn unknown_fields_name_the_field_and_line() {
        let e = error("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nrutes = [\"/a\"]\n");
        assert!(e.contains("unknown field `rutes`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
        let e = error(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = { memroy = \"1MiB\" }\n",
        );
        assert!(
            e.contains("unknown field `memroy`") && e.contains("line 4"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_errors() {
        let e = error("[[function]]\nname = \"A\"\nmodule = \"a.wasm\"\n");
        assert!(e.contains("invalid function name `A`"), "{e}");
        let e = error("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"a\"]\n");
        assert!(e.contains("invalid route `a`"), "{e}");
        let e = error(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = { timeout = \"soon\" }\n",
        );
        assert!(e.contains("line 4"), "{e}");
        let e = error("[[function]]\nname = \"a\"\nmodule = \"x\"\n[[function]]\nname = \"a\"\nmodule = \"y\"\n");
        assert!(e.contains("declared twice"), "{e}");
    }

    #[test]
    fn modules_come_from_files_or_oci_registries() {
        let m = Manifest::parse(
            "[[function]]\nname = \"a\"\nmodule = \"oci://127.0.0.1:5000/fns/a:v1\"\n",
            Path::new("base"),
        )
        .unwrap();
        let module = &m.functions[0].module;
        assert!(matches!(module, ModuleSource::Oci(_)), "{module:?}");
        assert_eq!(module.to_string(), "oci://127.0.0.1:5000/fns/a:v1");
        assert_eq!(module.file(), None);
        let e = error("[[function]]\nname = \"a\"\nmodule = \"oci://Bad/UPPER\"\n");
        assert!(e.contains("invalid OCI reference `oci://Bad/UPPER`"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn limits_parse_human_units() {
        let m = Manifest::parse(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nlimits = { memory = \"64MiB\", timeout = \"500ms\", max_concurrency = 2 }\n",
            Path::new("base"),
        )
        .unwrap();
        let f = &m.functions[0];
        assert_eq!(f.limits.memory.as_u64(), 64 << 20);
        assert_eq!(f.limits.timeout, std::time::Duration::from_millis(500));
        assert_eq!(f.limits.max_concurrency, 2);
        assert_eq!(f.module.file(), Some(Path::new("base/a.wasm")));
    }
}
