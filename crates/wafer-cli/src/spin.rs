//! `spin.toml`: a Spin application (manifest version 2) as Wafer functions, one per
//! component (docs/spin.md).
//!
//! Each component becomes a function named by its id, served on the routes of the HTTP
//! triggers that name it, with the grants its entry gives: `allowed_outbound_hosts` (Spin's
//! syntax and `{{ variable }}` templates: `http`/`https` entries for outbound HTTP, the
//! others for TCP sockets and the Redis and MQTT clients), `key_value_stores` (shared by the app's
//! components: label `L` of app `A` is the namespace `A--L`), `sqlite_databases` (the same,
//! as files `DATA/sqlite/A--L.db`), `variables` (rendered from the
//! app's `[variables]`: the environment's `SPIN_VARIABLE_NAME`, else the default),
//! `environment`, `files` (copied, as Spin does, into a directory the component sees at
//! `/`), and `build`. A key Wafer cannot honour is refused by name, never ignored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use serde::Deserialize;
use wafer_registry::{
    DirGrant, FunctionName, HttpRule, OutboundRule, Route, Secret, SpinComponent,
};

use super::manifest::{Manifest, ManifestFunction};

/// Whether `text` is a Spin manifest (it has `spin_manifest_version`).
pub(crate) fn is_spin(text: &str) -> bool {
    toml::from_str::<toml::Table>(text).is_ok_and(|t| t.contains_key("spin_manifest_version"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpinManifest {
    spin_manifest_version: toml::Value,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
    #[serde(default)]
    trigger: BTreeMap<String, Vec<toml::Table>>,
    #[serde(default)]
    component: BTreeMap<String, Component>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Application {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    version: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    authors: Vec<String>,
    /// Settings of each trigger type for the whole app.
    #[serde(default)]
    trigger: Option<toml::Table>,
    /// Settings for other tools, which Spin ignores too.
    #[serde(default)]
    #[allow(dead_code)]
    tool: Option<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Variable {
    #[serde(default)]
    default: Option<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpTrigger {
    #[serde(default)]
    id: Option<String>,
    route: RouteSpec,
    component: ComponentRef,
    #[serde(default)]
    executor: Option<Executor>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RouteSpec {
    Path(String),
    Private {
        #[allow(dead_code)]
        private: bool,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ComponentRef {
    Id(String),
    Inline(Box<Component>),
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum Executor {
    Spin,
    Wagi {
        #[serde(default)]
        argv: Option<String>,
        #[serde(default)]
        entrypoint: Option<String>,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Component {
    source: Source,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default)]
    files: Vec<FileSpec>,
    #[serde(default)]
    exclude_files: Vec<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    /// Spin 1's name for outbound HTTP hosts; Spin 2 refuses it too.
    #[serde(default)]
    allowed_http_hosts: Option<toml::Value>,
    #[serde(default)]
    key_value_stores: Vec<String>,
    #[serde(default)]
    environment: BTreeMap<String, String>,
    #[serde(default)]
    sqlite_databases: Vec<String>,
    #[serde(default)]
    ai_models: Vec<String>,
    #[serde(default)]
    variables: BTreeMap<String, String>,
    #[serde(default)]
    build: Option<Build>,
    #[serde(default)]
    dependencies: Option<toml::Table>,
    #[serde(default)]
    #[allow(dead_code)]
    dependencies_inherit_configuration: bool,
    #[serde(default)]
    #[allow(dead_code)]
    tool: Option<toml::Table>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Source {
    Path(PathBuf),
    Url {
        url: String,
        digest: String,
    },
    Registry {
        #[allow(dead_code)]
        registry: Option<String>,
        package: String,
        version: String,
    },
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum FileSpec {
    Pattern(String),
    Mapping {
        source: PathBuf,
        destination: String,
    },
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Build {
    command: Commands,
    #[serde(default)]
    workdir: Option<PathBuf>,
    #[serde(default)]
    watch: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum Commands {
    One(String),
    Many(Vec<String>),
}

/// The app's variables, resolved: value and whether it is secret.
struct Variables(BTreeMap<String, (String, bool)>);

impl Variables {
    /// From `[variables]` and the environment (`SPIN_VARIABLE_NAME`, as Spin's environment
    /// provider reads them), refusing a required variable with no value.
    fn resolve(declared: &BTreeMap<String, Variable>) -> anyhow::Result<Self> {
        let mut values = BTreeMap::new();
        for (name, variable) in declared {
            ensure!(
                valid_name(name),
                "variable `{name}`: a name has lower-case letters, digits and single `_` \
                 between them, and starts with a letter"
            );
            ensure!(
                !(variable.required && variable.default.is_some()),
                "variable `{name}`: give either `required = true` or a `default`, not both"
            );
            let env = format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase());
            let value = match (std::env::var(&env), &variable.default) {
                (Ok(value), _) => value,
                (Err(_), Some(default)) => default.clone(),
                (Err(_), None) => bail!(
                    "variable `{name}` is required and has no value: set ${env} for `wafer up`"
                ),
            };
            values.insert(name.clone(), (value, variable.secret));
        }
        Ok(Self(values))
    }

    /// `template` with each `{{ name }}` replaced by the variable's value; whether any of
    /// them was secret.
    fn render(&self, template: &str) -> anyhow::Result<(String, bool)> {
        let mut out = String::with_capacity(template.len());
        let mut secret = false;
        let mut rest = template;
        while let Some(start) = rest.find("{{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .with_context(|| format!("`{template}`: `{{{{` without `}}}}`"))?;
            let name = after[..end].trim();
            let (value, is_secret) = self.0.get(name).with_context(|| {
                format!("`{template}` uses the variable `{name}`, which `[variables]` lacks")
            })?;
            out.push_str(value);
            secret |= is_secret;
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok((out, secret))
    }
}

/// Spin's rule for variable names: lower-case ASCII letters, digits and `_`, starting with
/// a letter, no `__`, not ending in `_`.
fn valid_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.contains("__")
        && !name.ends_with('_')
}

/// Reads a Spin manifest; `base` is its directory.
pub(crate) fn parse(text: &str, base: &Path) -> anyhow::Result<Manifest> {
    let spin: SpinManifest = toml::from_str(text)?;
    ensure!(
        spin.spin_manifest_version.as_integer() == Some(2),
        "spin_manifest_version is {}: Wafer reads version 2 (Spin 2 and later); Spin 1 \
         manifests can be converted with `spin doctor`",
        spin.spin_manifest_version
    );
    if let Some(settings) = &spin.application.trigger {
        if let Some(key) = settings.keys().next() {
            bail!("[application.trigger.{key}]: app-wide trigger settings are not supported");
        }
    }
    let variables = Variables::resolve(&spin.variables)?;
    let app = spin.application.name.clone();
    let staged = Arc::new(tempfile::tempdir().context("cannot create a directory for files")?);

    // Routes per component, in trigger order; inline components join the named ones.
    let mut components = spin.component.clone();
    let mut routes: BTreeMap<String, Vec<(Route, Option<Executor>)>> = BTreeMap::new();
    for (kind, triggers) in &spin.trigger {
        ensure!(
            kind == "http",
            "[[trigger.{kind}]]: Wafer serves HTTP triggers only (functions subscribe to \
             topics with `subscribe` in a wafer.toml)"
        );
        for (i, table) in triggers.iter().enumerate() {
            let trigger: HttpTrigger = toml::Value::Table(table.clone())
                .try_into()
                .with_context(|| format!("[[trigger.http]] number {}", i + 1))?;
            let id = match trigger.component {
                ComponentRef::Id(id) => id,
                ComponentRef::Inline(component) => {
                    let id = trigger
                        .id
                        .clone()
                        .unwrap_or_else(|| format!("inline-component-{i}"));
                    components.insert(id.clone(), *component);
                    id
                }
            };
            ensure!(
                components.contains_key(&id),
                "[[trigger.http]] number {}: no [component.{id}]",
                i + 1
            );
            let route = match trigger.route {
                RouteSpec::Path(path) => path,
                RouteSpec::Private { .. } => bail!(
                    "[[trigger.http]] for `{id}`: private routes (`route = {{ private = true }}`) \
                     are not supported"
                ),
            };
            let route: Route = route
                .parse()
                .with_context(|| format!("[[trigger.http]] for `{id}`"))?;
            routes
                .entry(id)
                .or_default()
                .push((route, trigger.executor));
        }
    }

    let mut functions = Vec::new();
    for (id, component) in &components {
        let Some(served) = routes.remove(id) else {
            // Spin also keeps components no trigger names (for dependencies); they are
            // never called.
            continue;
        };
        let mut function = function(id, component, served, &app, &variables, base, staged.path())
            .with_context(|| format!("[component.{id}]"))?;
        function
            .resolve(base)
            .with_context(|| format!("[component.{id}]"))?;
        function
            .config()
            .validate()
            .with_context(|| format!("[component.{id}]"))?;
        functions.push(function);
    }
    ensure!(
        !functions.is_empty(),
        "no HTTP trigger serves any component"
    );
    Ok(Manifest {
        functions,
        staged: Some(staged),
    })
}

/// One component as a function.
fn function(
    id: &str,
    component: &Component,
    served: Vec<(Route, Option<Executor>)>,
    app: &str,
    variables: &Variables,
    base: &Path,
    staged: &Path,
) -> anyhow::Result<ManifestFunction> {
    let name: FunctionName = id
        .parse()
        .with_context(|| format!("the component id `{id}` as a function name"))?;
    if component.allowed_http_hosts.is_some() {
        bail!("`allowed_http_hosts` is Spin 1's; use `allowed_outbound_hosts`");
    }
    if let Some(model) = component.ai_models.first() {
        bail!("ai_models (`{model}`): Wafer serves no LLM models");
    }
    if let Some(dependency) = component
        .dependencies
        .as_ref()
        .and_then(|d| d.keys().next())
    {
        bail!("dependencies (`{dependency}`): component dependencies are not supported");
    }
    let module = match &component.source {
        Source::Path(path) => path.clone(),
        Source::Url { url, digest } => download(url, digest, base)?,
        Source::Registry {
            package, version, ..
        } => bail!(
            "source = {{ package = \"{package}\", version = \"{version}\" }}: registry \
             sources are not supported yet; give a path or a URL with its digest"
        ),
    };

    let (mut http, mut outbound) = (Vec::new(), Vec::new());
    for host in &component.allowed_outbound_hosts {
        let (host, _) = variables
            .render(host)
            .with_context(|| format!("allowed_outbound_hosts `{host}`"))?;
        let (rules, other) = outbound_rules(&host)?;
        http.extend(rules);
        outbound.extend(other);
    }

    let kv_stores = shared(app, &component.key_value_stores, "key_value_stores")?;
    let sqlite_databases = shared(app, &component.sqlite_databases, "sqlite_databases")?;

    let mut config = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (key, template) in &component.variables {
        ensure!(
            valid_name(key),
            "variables `{key}`: a name has lower-case letters, digits and single `_` between \
             them, and starts with a letter"
        );
        let (value, secret) = variables
            .render(template)
            .with_context(|| format!("variables `{key}`"))?;
        match secret {
            true => secrets.insert(key.clone(), Secret::new(value)),
            false => config.insert(key.clone(), value).map(Secret::new),
        };
    }

    let dirs = match component.files.is_empty() {
        true => Vec::new(),
        false => {
            let root = staged.join(id);
            stage_files(&component.files, &component.exclude_files, base, &root)?;
            vec![format!("{}::/:ro", root.display())
                .parse::<DirGrant>()
                .map_err(|e| anyhow::anyhow!("files: {e}"))?]
        }
    };

    // `wafer build` runs the command in the manifest's directory, Spin's in `workdir`.
    let (build, watch) = match &component.build {
        Some(build) => {
            let command = match &build.command {
                Commands::One(command) => command.clone(),
                Commands::Many(commands) => commands.join(" && "),
            };
            let command = match &build.workdir {
                Some(workdir) => format!(
                    "cd {} && {command}",
                    shell_quote(&workdir.display().to_string())
                ),
                None => command,
            };
            (Some(command), build.watch.clone())
        }
        None => (None, Vec::new()),
    };

    let (abi, entrypoint) = executor(served.iter().map(|(_, e)| e))?;
    let mut entry = toml::Table::new();
    entry.insert("name".into(), id.into());
    entry.insert("module".into(), module.display().to_string().into());
    let mut function: ManifestFunction = toml::Value::Table(entry).try_into()?;
    function.name = name;
    function.routes = served.into_iter().map(|(route, _)| route).collect();
    function.env = component.environment.clone();
    function.abi = abi;
    function.entrypoint = entrypoint;
    function.http = http;
    function.outbound = outbound;
    function.dirs = dirs;
    function.config = config;
    function.secret_values = secrets;
    function.kv_stores = kv_stores;
    function.sqlite_databases = sqlite_databases;
    function.build = build;
    function.watch = watch;
    function.spin = Some(SpinComponent {
        app: app.to_owned(),
        component: id.to_owned(),
    });
    // What a reload compares: everything the function is made of.
    let made_of = format!("{:?} {:?}", function.module, function.config());
    function.entry = Some(toml::Value::String(made_of));
    Ok(function)
}

/// How the routes' triggers run the component: Spin's executor (the component's own ABI)
/// or WAGI's (CGI, with its entrypoint). One component runs one way.
fn executor<'a>(
    executors: impl Iterator<Item = &'a Option<Executor>>,
) -> anyhow::Result<(Option<wafer_runtime::Abi>, Option<String>)> {
    let mut chosen = None;
    for executor in executors {
        let this = match executor {
            None | Some(Executor::Spin) => (None, None),
            Some(Executor::Wagi { argv, entrypoint }) => {
                if let Some(argv) = argv {
                    ensure!(
                        argv == "${SCRIPT_NAME} ${ARGS}",
                        "executor argv `{argv}`: Wafer passes WAGI's default arguments only"
                    );
                }
                (Some(wafer_runtime::Abi::Cgi), entrypoint.clone())
            }
        };
        match &chosen {
            None => chosen = Some(this),
            Some(previous) if *previous == this => {}
            Some(_) => bail!("the component's triggers run it with different executors"),
        }
    }
    Ok(chosen.unwrap_or((None, None)))
}

/// The app's stores (or databases) by label: label `L` of app `A` is `A--L`, shared by the
/// app's components granted it.
fn shared(
    app: &str,
    labels: &[String],
    key: &str,
) -> anyhow::Result<BTreeMap<String, FunctionName>> {
    let mut shared = BTreeMap::new();
    for label in labels {
        let name = format!("{}--{label}", app_slug(app));
        let name: FunctionName = name
            .parse()
            .with_context(|| format!("{key} `{label}`: the name `{name}`"))?;
        shared.insert(label.clone(), name);
    }
    Ok(shared)
}

/// An app name as a namespace prefix: lower case, other characters `-`.
fn app_slug(app: &str) -> String {
    app.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_' | '-') => c,
            _ => '-',
        })
        .collect()
}

/// Spin's `allowed_outbound_hosts` entry (`https://example.com`, `http://*:*`,
/// `*://127.0.0.0/24:8080`, `postgres://db:5432`): HTTP rules for `http`, `https` and `*`,
/// and an outbound rule (sockets, databases, brokers) for every other scheme and `*`.
fn outbound_rules(entry: &str) -> anyhow::Result<(Vec<HttpRule>, Option<OutboundRule>)> {
    let (scheme, rest) = entry
        .split_once("://")
        .with_context(|| format!("allowed_outbound_hosts `{entry}`: give scheme://host[:port]"))?;
    if rest == "self" || rest.starts_with("self:") || rest.starts_with("self.") {
        bail!(
            "allowed_outbound_hosts `{entry}`: requests to the app itself (`self`) are not \
             supported yet"
        );
    }
    let schemes: &[&str] = match scheme {
        "http" => &["http"],
        "https" => &["https"],
        "*" => &["http", "https"],
        _ => &[],
    };
    let http = schemes
        .iter()
        .map(|scheme| {
            format!("{scheme}://{rest}")
                .parse::<HttpRule>()
                .map_err(|e| anyhow::anyhow!("allowed_outbound_hosts `{entry}`: {e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let other = match scheme {
        "http" | "https" => None,
        _ => Some(
            entry
                .parse::<OutboundRule>()
                .map_err(|e| anyhow::anyhow!("allowed_outbound_hosts: {e}"))?,
        ),
    };
    Ok((http, other))
}

/// Copies the component's `files` into `root`, as Spin copies them for the component:
/// patterns (relative to the app) keep their relative paths; `{ source, destination }`
/// puts a file or a directory's contents at `destination`. `exclude` patterns drop files.
fn stage_files(
    files: &[FileSpec],
    exclude: &[String],
    base: &Path,
    root: &Path,
) -> anyhow::Result<()> {
    let mut excluded = globset::GlobSetBuilder::new();
    for pattern in exclude {
        excluded.add(
            globset::Glob::new(pattern).with_context(|| format!("exclude_files `{pattern}`"))?,
        );
    }
    let excluded = excluded.build().context("exclude_files")?;
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let app = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    for spec in files {
        match spec {
            FileSpec::Pattern(pattern) => {
                let glob = globset::Glob::new(pattern)
                    .with_context(|| format!("files `{pattern}`"))?
                    .compile_matcher();
                for file in walk(app)? {
                    let relative = file.strip_prefix(app).unwrap_or(&file);
                    if glob.is_match(relative) && !excluded.is_match(relative) {
                        copy(&file, &root.join(relative))?;
                    }
                }
            }
            FileSpec::Mapping {
                source,
                destination,
            } => {
                let destination = root.join(destination.trim_start_matches('/'));
                let source = app.join(source);
                if source.is_dir() {
                    for file in walk(&source)? {
                        let relative = file.strip_prefix(&source).unwrap_or(&file);
                        copy(&file, &destination.join(relative))?;
                    }
                } else {
                    copy(&source, &destination)?;
                }
            }
        }
    }
    Ok(())
}

/// Every file under `dir`, recursively.
fn walk(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?;
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::copy(from, to).with_context(|| format!("files: cannot copy {}", from.display()))?;
    Ok(())
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Fetches a `source = { url, digest }` once into `.wafer/sources/` beside the manifest,
/// checking the digest (`sha256:HEX`); answers its path relative to the manifest.
fn download(url: &str, digest: &str, base: &Path) -> anyhow::Result<PathBuf> {
    let hex = digest
        .strip_prefix("sha256:")
        .with_context(|| format!("source digest `{digest}`: give `sha256:HEX`"))?;
    let relative = Path::new(".wafer")
        .join("sources")
        .join(format!("{hex}.wasm"));
    let path = base.join(&relative);
    if path.exists() {
        return Ok(relative);
    }
    // On a thread of its own: the blocking client must not run inside the server's runtime.
    let fetch = || {
        reqwest::blocking::get(url)
            .and_then(reqwest::blocking::Response::error_for_status)
            .and_then(reqwest::blocking::Response::bytes)
    };
    let bytes = std::thread::scope(|s| s.spawn(fetch).join())
        .map_err(|_| anyhow::anyhow!("the download of {url} failed"))?
        .with_context(|| format!("cannot download {url}"))?;
    let got = wafer_registry::Digest::of(&bytes);
    ensure!(
        got.hex() == hex,
        "{url} has the digest sha256:{}, not the manifest's {digest}",
        got.hex()
    );
    let dir = base.join(".wafer").join("sources");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(relative)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn error(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("")).unwrap_err())
    }

    const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "shop"
[variables]
greeting = { default = "hello" }
token = { default = "t0ken", secret = true }
port = { default = "8080" }
[[trigger.http]]
route = "/cart/:id/..."
component = "cart"
[component.cart]
source = "cart.wasm"
allowed_outbound_hosts = ["https://api.example.com", "*://127.0.0.1:{{ port }}"]
key_value_stores = ["default"]
variables = { message = "{{ greeting }}, world", api_token = "{{ token }}" }
environment = { MODE = "test" }
"#;

    #[test]
    fn a_component_becomes_a_function_with_its_grants() {
        let manifest = parse(APP, Path::new("app")).unwrap();
        let f = &manifest.functions[0];
        assert_eq!(f.name.as_str(), "cart");
        assert_eq!(f.module.file(), Some(Path::new("app/cart.wasm")));
        assert_eq!(f.routes[0].as_str(), "/cart/:id/...");
        let rules: Vec<String> = f.http.iter().map(ToString::to_string).collect();
        assert_eq!(
            rules,
            [
                "https://api.example.com",
                "http://127.0.0.1:8080",
                "https://127.0.0.1:8080"
            ]
        );
        assert_eq!(f.outbound[0].to_string(), "*://127.0.0.1:8080");
        assert_eq!(f.kv_stores["default"].as_str(), "shop--default");
        let config = f.config();
        assert_eq!(config.grants.config["message"], "hello, world");
        assert_eq!(config.grants.secrets["api_token"].expose(), "t0ken");
        assert_eq!(config.env["MODE"], "test");
        assert!(!config.request_id_header());
        assert_eq!(config.spin.unwrap().app, "shop");
    }

    #[test]
    fn what_wafer_cannot_honour_is_refused_by_name() {
        let e = error(&APP.replace("environment", "ai_models = [\"llama2-chat\"]\nenvironment"));
        assert!(e.contains("ai_models"), "{e}");
        let e = error(&APP.replace("[[trigger.http]]", "[[trigger.redis]]"));
        assert!(e.contains("[[trigger.redis]]"), "{e}");
        let e = error(&APP.replace("environment", "colour = 1\nenvironment"));
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = error(&APP.replace("{{ greeting }}", "{{ nope }}"));
        assert!(e.contains("`nope`"), "{e}");
        let e = error(&APP.replace("https://api", "ftp://api"));
        assert!(e.contains("`ftp`"), "{e}");
        let e = error(&APP.replace("spin_manifest_version = 2", "spin_manifest_version = \"1\""));
        assert!(e.contains("version 2"), "{e}");
    }

    #[test]
    fn a_required_variable_without_a_value_is_an_error() {
        let text = APP.replace("[variables]", "[variables]\napi_url = { required = true }");
        let e = error(&text);
        assert!(e.contains("SPIN_VARIABLE_API_URL"), "{e}");
    }
}
