//! The commands that talk to a running server's admin API.

use std::path::PathBuf;

use anyhow::{bail, Context};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use crate::manifest::ModuleSource;
use crate::oci::RegistryArgs;
use crate::DataArgs;

mod cacert;

/// Where the server is and how to prove we may administer it.
#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// The server's admin URL: its `--admin-listen` address (not the functions' one).
    #[arg(long, env = "WAFER_SERVER", default_value = "http://127.0.0.1:8081")]
    server: String,
    /// Admin token; by default read from the data directory of a local server.
    #[arg(long, env = "WAFER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A CA certificate (PEM) to trust for an `https://` server, besides the system's: the
    /// server's own certificate, if it is self-signed.
    #[arg(long, env = "WAFER_CACERT", value_name = "PATH")]
    cacert: Option<std::path::PathBuf>,
    #[command(flatten)]
    data: DataArgs,
}

/// A command on one function.
#[derive(clap::Args)]
pub(crate) struct NameArgs {
    /// The function's name.
    name: String,
    #[command(flatten)]
    server: ServerArgs,
}

/// Options of `wafer deploy`.
#[derive(clap::Args)]
pub(crate) struct DeployArgs {
    /// The function's name: `[a-z0-9][a-z0-9_-]{0,62}`.
    name: String,
    /// The module: a `.wasm` binary or `.wat` text, or an artifact in an OCI registry,
    /// `oci://HOST[:PORT]/REPOSITORY:TAG` or `oci://HOST[:PORT]/REPOSITORY@sha256:HEX`,
    /// pulled here with your credentials and verified against its digests (docs/oci.md).
    #[arg(value_name = "MODULE", value_parser = ModuleSource::parse)]
    module: ModuleSource,
    /// Take the function's configuration (routes, environment, limits, ABI, entrypoint,
    /// protobuf types) from the `oci://` artifact, as `wafer push` stored it. Grants are not
    /// taken from an artifact: give them with the flags (`--http`, `--kv`, `--secret`, ...).
    #[arg(long, conflicts_with_all = [
        "routes", "env", "memory", "timeout", "max_concurrency", "request_body", "stdout",
        "stderr", "abi", "entrypoint", "proto", "descriptor_set", "operations", "http_timeout",
        "http_response", "kv_value", "kv_keys", "instance_reuse", "max_concurrent_per_instance",
        "instance_idle",
    ])]
    artifact_config: bool,
    /// A route to serve on (repeatable): `/path` exactly, or `/path/...` and everything below.
    /// Default: `/NAME/...`.
    #[arg(long = "route", value_name = "ROUTE")]
    routes: Vec<String>,
    /// An environment variable for every call (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Memory limit, e.g. `64MiB` (default 128 MiB).
    #[arg(long)]
    memory: Option<String>,
    /// Time limit per call, e.g. `500ms`, `5s` (default 30s).
    #[arg(long)]
    timeout: Option<String>,
    /// Concurrent instances before requests queue, then get 503 (default 64).
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Largest request body, e.g. `1MiB` (default 16 MiB).
    #[arg(long)]
    request_body: Option<String>,
    /// Largest response, e.g. `1MiB` (default 16 MiB).
    #[arg(long)]
    stdout: Option<String>,
    /// Log output kept per call (default 1 MiB).
    #[arg(long)]
    stderr: Option<String>,
    /// Call the module as `cgi`, `wapc` or `exports` rather than as its exports suggest.
    #[arg(long)]
    abi: Option<String>,
    /// Run this export instead of `_start` for each CGI call (WAGI's `entrypoint`).
    #[arg(long)]
    entrypoint: Option<String>,
    /// A `.proto` file with the operations' message types (compiled by the server).
    #[arg(long, value_name = "FILE", conflicts_with = "descriptor_set")]
    proto: Option<PathBuf>,
    /// An encoded `FileDescriptorSet` with the operations' message types.
    #[arg(long, value_name = "FILE")]
    descriptor_set: Option<PathBuf>,
    /// An operation's protobuf types (repeatable): JSON calls of it are transcoded.
    #[arg(long = "operation", value_name = "OP=INPUT:OUTPUT")]
    operations: Vec<String>,
    /// Allow outbound HTTP to `[scheme://]host[:port]`, e.g. `https://api.example.com`,
    /// `*.example.com` (repeatable).
    #[arg(long = "http", value_name = "ENTRY")]
    http: Vec<String>,
    /// Pre-open a server directory for the guest, read-only with `:ro` (repeatable). A
    /// relative HOST is relative to the current directory.
    #[arg(long = "dir", value_name = "HOST::GUEST[:ro]")]
    dirs: Vec<String>,
    /// A config value the guest reads with `config/get` (repeatable).
    #[arg(long = "config", value_name = "KEY=VALUE")]
    config: Vec<String>,
    /// A secret: read like a config value, never shown (repeatable).
    #[arg(long = "secret", value_name = "KEY=VALUE")]
    secrets: Vec<String>,
    /// Give the function a key-value store.
    #[arg(long)]
    kv: bool,
    /// A topic pattern the function may publish to (repeatable).
    #[arg(long = "publish", value_name = "PATTERN")]
    publish: Vec<String>,
    /// A topic pattern whose messages invoke the function (repeatable).
    #[arg(long = "subscribe", value_name = "PATTERN")]
    subscribe: Vec<String>,
    /// Run the function as a service listening on this address (a WASI 0.2 command
    /// component using wasi:sockets).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Most time one outbound HTTP request may take (default 10s).
    #[arg(long)]
    http_timeout: Option<String>,
    /// Largest outbound HTTP response body (default 4 MiB).
    #[arg(long)]
    http_response: Option<String>,
    /// Largest key-value value (default 1 MiB).
    #[arg(long)]
    kv_value: Option<String>,
    /// Most keys in the key-value store (default 10000).
    #[arg(long)]
    kv_keys: Option<u64>,
    /// Requests one instance of an HTTP component may serve before a fresh one is made
    /// (default 1: a fresh instance per request). Faster, but requests share memory.
    #[arg(long, value_name = "N")]
    instance_reuse: Option<u32>,
    /// Requests one reused instance of a WASI 0.3 HTTP component serves at once (default 16).
    #[arg(long, value_name = "N")]
    max_concurrent_per_instance: Option<u32>,
    /// How long a reused instance may sit idle before it is dropped (default 1s).
    #[arg(long, value_name = "DURATION")]
    instance_idle: Option<String>,
    /// Call the function on a schedule (repeatable): a cron expression of 5 fields, or 6
    /// with seconds first (`*/10 * * * * *`), UTC unless it starts with `CRON_TZ=ZONE `.
    /// Each tick is a queued `POST` to the function's route with `X-Wafer-Schedule`.
    #[arg(long = "schedule", value_name = "CRON")]
    schedules: Vec<String>,
    /// Deploy as a canary: the new version takes this percentage of the requests (1 to
    /// 99) and the active version keeps the rest, until `wafer promote` or `wafer rollback`.
    #[arg(long, value_name = "PERCENT")]
    canary: Option<u8>,
    #[command(flatten)]
    sticky: StickyArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// What keeps one client on one version while requests are split.
#[derive(clap::Args)]
pub(crate) struct StickyArgs {
    /// Keep each client on one version by the value of this request header.
    #[arg(long, value_name = "NAME", conflicts_with = "sticky_cookie")]
    sticky_header: Option<String>,
    /// Keep each client on one version by this cookie (set by the server when the client
    /// has none).
    #[arg(long, value_name = "NAME")]
    sticky_cookie: Option<String>,
}

impl StickyArgs {
    /// As the admin API takes it, if given.
    fn json(&self) -> Option<Value> {
        match (&self.sticky_header, &self.sticky_cookie) {
            (Some(header), _) => Some(serde_json::json!({ "header": header })),
            (_, Some(cookie)) => Some(serde_json::json!({ "cookie": cookie })),
            _ => None,
        }
    }
}

/// Options of `wafer traffic`.
#[derive(clap::Args)]
pub(crate) struct TrafficArgs {
    /// The function's name.
    name: String,
    /// Each version's share: `v7=25 v6=75` (2 to 4 versions with the same routes, together
    /// 100%).
    #[arg(required = true, value_name = "vN=PERCENT")]
    shares: Vec<String>,
    #[command(flatten)]
    sticky: StickyArgs,
    #[command(flatten)]
    server: ServerArgs,
}

impl DeployArgs {
    /// The grants as the admin API takes them (the `grants` part, JSON); `None` if none.
    fn grants(&self) -> anyhow::Result<Option<Value>> {
        let pairs =
            |list: &[String], what: &str| -> anyhow::Result<serde_json::Map<String, Value>> {
                list.iter()
                    .map(|kv| {
                        let (k, v) = kv
                            .split_once('=')
                            .with_context(|| format!("--{what} `{kv}` must be KEY=VALUE"))?;
                        Ok((k.to_owned(), Value::from(v)))
                    })
                    .collect()
            };
        let mut dirs = Vec::new();
        for dir in &self.dirs {
            let (host, guest) = dir
                .split_once("::")
                .with_context(|| format!("--dir `{dir}` must be HOST::GUEST or HOST::GUEST:ro"))?;
            let host = std::path::absolute(host)
                .with_context(|| format!("--dir `{dir}`: bad host path"))?;
            dirs.push(Value::from(format!("{}::{guest}", host.display())));
        }
        let grants = serde_json::json!({
            "http": self.http,
            "dirs": dirs,
            "config": pairs(&self.config, "config")?,
            "secrets": pairs(&self.secrets, "secret")?,
            "kv": self.kv,
            "publish": self.publish,
            "subscribe": self.subscribe,
            "listen": self.listen,
        });
        let empty = self.http.is_empty()
            && dirs.is_empty()
            && self.config.is_empty()
            && self.secrets.is_empty()
            && !self.kv
            && self.publish.is_empty()
            && self.subscribe.is_empty()
            && self.listen.is_none();
        Ok((!empty).then_some(grants))
    }
}

/// Options of `wafer logs`.
#[derive(clap::Args)]
pub(crate) struct LogsArgs {
    /// The function's name.
    name: String,
    /// How many of the most recent lines to show.
    #[arg(long, default_value_t = 100)]
    tail: usize,
    /// Only lines newer than this: a duration back from now (`10m`, `1h30m`) or an RFC 3339
    /// time.
    #[arg(long)]
    since: Option<String>,
    /// Keep going: print new lines as they are written, until interrupted.
    #[arg(long, short)]
    follow: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// Options of `wafer invoke`.
#[derive(clap::Args)]
pub(crate) struct InvokeArgs {
    /// The function's name.
    name: String,
    /// The waPC operation or the export to call; with `--async`, the path below the
    /// function's route (for a waPC or exports function, the operation).
    operation: String,
    /// Queue the call instead of waiting for it (docs/async.md): prints the invocation's
    /// id; `wafer invocations ID` shows how it went.
    #[arg(long = "async")]
    queue: bool,
    /// With `--async`: where the server posts the result (a host of its `--callback-host`).
    #[arg(long, requires = "queue", value_name = "URL")]
    callback: Option<String>,
    /// Arguments of an export, as a JSON array: numbers, and strings (passed through the
    /// guest's allocator), e.g. `[3, 2]` or `["world"]`.
    #[arg(long, conflicts_with_all = ["payload", "payload_file"])]
    args: Option<String>,
    /// The payload of a waPC operation (or the one bytes argument of an export), as text;
    /// `-` reads standard input.
    #[arg(long, conflicts_with = "payload_file")]
    payload: Option<String>,
    /// The payload, read from a file.
    #[arg(long, value_name = "PATH")]
    payload_file: Option<PathBuf>,
    /// How to read an export's result: `number` (default, printed as JSON), `string` or
    /// `bytes` (returned as `(ptr << 32) | len` in an i64).
    #[arg(long)]
    returns: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

impl ServerArgs {
    fn token(&self) -> anyhow::Result<String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let path = self.data.data.join("admin-token");
        match std::fs::read_to_string(&path) {
            Ok(token) => Ok(token.trim().to_owned()),
            Err(e) => bail!(
                "no admin token: pass --token or set WAFER_TOKEN (cannot read {}: {e})",
                path.display()
            ),
        }
    }

    fn request(&self, method: Method, path: &str) -> anyhow::Result<RequestBuilder> {
        let url = format!("{}/_wafer/{path}", self.server.trim_end_matches('/'));
        Ok(self
            .client()?
            .request(method, url)
            .bearer_auth(self.token()?))
    }

    /// An HTTP client trusting `--cacert` as well as the built-in roots: as a CA, and as
    /// the server's own certificate, self-signed (see [`cacert`]).
    fn client(&self) -> anyhow::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &self.cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read the CA certificate {}", path.display()))?;
            builder = builder.use_preconfigured_tls(cacert::tls_config(path, &pem)?);
        }
        builder.build().context("cannot set up the HTTP client")
    }

    async fn send(&self, request: RequestBuilder) -> anyhow::Result<Response> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.server))?;
        if !response.status().is_success() {
            let status = response.status();
            let message = response.text().await.unwrap_or_default();
            bail!("{} ({status})", message.trim());
        }
        Ok(response)
    }

    async fn json(&self, method: Method, path: &str) -> anyhow::Result<Value> {
        let response = self.send(self.request(method, path)?).await?;
        Ok(response.json().await?)
    }
}

pub(crate) async fn deploy(args: DeployArgs) -> anyhow::Result<()> {
    let loaded = args.module.load(&args.registry).await?;
    if let ModuleSource::Oci(source) = &args.module {
        eprintln!("pulled {source}");
    }
    if args.artifact_config {
        return deploy_with_artifact_config(&args, loaded).await;
    }
    let module = loaded.bytes;
    let mut query: Vec<(&str, String)> = Vec::new();
    query.extend(args.routes.iter().map(|r| ("route", r.clone())));
    query.extend(args.env.iter().map(|e| ("env", e.clone())));
    let limits = [
        ("memory", args.memory.clone()),
        ("timeout", args.timeout.clone()),
        (
            "max_concurrency",
            args.max_concurrency.map(|n| n.to_string()),
        ),
        ("request_body", args.request_body.clone()),
        ("stdout", args.stdout.clone()),
        ("stderr", args.stderr.clone()),
        ("http_timeout", args.http_timeout.clone()),
        ("http_response", args.http_response.clone()),
        ("kv_value", args.kv_value.clone()),
        ("kv_keys", args.kv_keys.map(|n| n.to_string())),
        ("instance_reuse", args.instance_reuse.map(|n| n.to_string())),
        (
            "max_concurrent_per_instance",
            args.max_concurrent_per_instance.map(|n| n.to_string()),
        ),
        ("instance_idle", args.instance_idle.clone()),
    ];
    query.extend(limits.into_iter().filter_map(|(k, v)| Some((k, v?))));
    query.extend(args.operations.iter().map(|o| ("operation", o.clone())));
    query.extend(args.abi.iter().map(|a| ("abi", a.clone())));
    query.extend(args.entrypoint.iter().map(|e| ("entrypoint", e.clone())));
    query.extend(args.schedules.iter().map(|s| ("schedule", s.clone())));
    match (
        args.canary,
        &args.sticky.sticky_header,
        &args.sticky.sticky_cookie,
    ) {
        (None, None, None) => {}
        (None, _, _) => {
            bail!("--sticky-header and --sticky-cookie go with --canary (or `wafer traffic`)")
        }
        (Some(percent), header, cookie) => {
            query.push(("canary", percent.to_string()));
            query.extend(header.iter().map(|h| ("sticky_header", h.clone())));
            query.extend(cookie.iter().map(|c| ("sticky_cookie", c.clone())));
        }
    }
    let request = args
        .server
        .request(Method::PUT, &format!("functions/{}", args.name))?
        .query(&query);
    let schema = match (&args.proto, &args.descriptor_set) {
        (Some(path), _) => Some(("proto", path)),
        (_, Some(path)) => Some(("descriptor_set", path)),
        _ => None,
    };
    let grants = args.grants()?;
    let progress = Progress::new(module.len() as u64);
    let request = if schema.is_none() && grants.is_none() {
        match &progress {
            Some(progress) => request
                .header(reqwest::header::CONTENT_LENGTH, module.len())
                .body(progress.body(module)),
            None => request.body(module),
        }
    } else {
        let mut form =
            reqwest::multipart::Form::new().part("module", reqwest::multipart::Part::bytes(module));
        if let Some((part, path)) = schema {
            let bytes = tokio::fs::read(path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))?;
            form = form.part(part, reqwest::multipart::Part::bytes(bytes));
        }
        if let Some(grants) = grants {
            form = form.text("grants", grants.to_string());
        }
        request.multipart(form)
    };
    let answer = args.server.send(request).await;
    if let Some(progress) = progress {
        progress.bar.finish_and_clear();
    }
    let deployed: Value = answer?.json().await?;
    print_deployed(&args.name, &deployed);
    Ok(())
}

/// `wafer deploy --artifact-config`: the module with the configuration pushed along with
/// it, and the grants of the flags.
async fn deploy_with_artifact_config(
    args: &DeployArgs,
    loaded: crate::manifest::LoadedModule,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        matches!(args.module, ModuleSource::Oci(_)),
        "--artifact-config takes the configuration from an `oci://` module's artifact; {} is a \
         file",
        args.module
    );
    let Some(mut config) = loaded.config else {
        bail!(
            "{} carries no Wafer configuration (it was not pushed by `wafer push`); deploy it \
             without --artifact-config",
            args.module
        );
    };
    let Some(object) = config.as_object_mut() else {
        bail!(
            "{}: the pushed configuration is not a JSON object",
            args.module
        );
    };
    match args.grants()? {
        Some(grants) => object.insert("grants".into(), grants),
        None => object.remove("grants"),
    };
    let form = reqwest::multipart::Form::new()
        .part("module", reqwest::multipart::Part::bytes(loaded.bytes))
        .text("config", config.to_string());
    let request = args
        .server
        .request(Method::PUT, &format!("functions/{}", args.name))?
        .multipart(form);
    let deployed: Value = args.server.send(request).await?.json().await?;
    print_deployed(&args.name, &deployed);
    Ok(())
}

/// The line a deploy prints: `deployed NAME vN (DIGEST, compiled in MS ms)`.
fn print_deployed(name: &str, deployed: &Value) {
    let unchanged = deployed["unchanged"].as_bool().unwrap_or(false);
    let compiled = match deployed["compile_ms"].as_f64() {
        Some(ms) if !unchanged => format!(", compiled in {ms} ms"),
        _ => String::new(),
    };
    println!(
        "{} {} v{} ({}{compiled})",
        if unchanged { "unchanged" } else { "deployed" },
        deployed["name"].as_str().unwrap_or(name),
        deployed["version"],
        deployed["digest"].as_str().unwrap_or("?")
    );
    if let Some(split) = split_summary(&deployed["traffic"]) {
        println!("traffic: {split}");
    }
}

/// A traffic split as `v7 25%, v6 75%`, if `traffic` holds one.
fn split_summary(traffic: &Value) -> Option<String> {
    let shares: Vec<String> = (traffic["split"].as_array()?.iter())
        .map(|s| format!("v{} {}%", s["version"], s["percent"]))
        .collect();
    let sticky = match (
        traffic["sticky"]["header"].as_str(),
        traffic["sticky"]["cookie"].as_str(),
    ) {
        (Some(header), _) => format!(" (sticky by header {header})"),
        (_, Some(cookie)) => format!(" (sticky by cookie {cookie})"),
        _ => String::new(),
    };
    Some(shares.join(", ") + &sticky)
}

pub(crate) async fn traffic(args: TrafficArgs) -> anyhow::Result<()> {
    let mut split = Vec::new();
    for share in &args.shares {
        let parsed = share.split_once('=').and_then(|(version, percent)| {
            let version: u32 = version.strip_prefix('v').unwrap_or(version).parse().ok()?;
            let percent: u8 = percent.trim_end_matches('%').parse().ok()?;
            Some(serde_json::json!({ "version": version, "percent": percent }))
        });
        split.push(parsed.with_context(|| format!("`{share}` must be vN=PERCENT, e.g. v7=25"))?);
    }
    let mut body = serde_json::json!({ "split": split });
    if let Some(sticky) = args.sticky.json() {
        body["sticky"] = sticky;
    }
    let request = args
        .server
        .request(Method::PUT, &format!("functions/{}/traffic", args.name))?
        .json(&body);
    let answer: Value = args.server.send(request).await?.json().await?;
    let split = split_summary(&answer["traffic"]).unwrap_or_default();
    println!("{}: {split}", args.name);
    Ok(())
}

pub(crate) async fn promote(args: NameArgs) -> anyhow::Result<()> {
    let deployed = args
        .server
        .json(Method::POST, &format!("functions/{}/promote", args.name))
        .await?;
    println!(
        "promoted {}: v{} takes every request",
        args.name, deployed["version"]
    );
    Ok(())
}

/// Options of `wafer apply`.
#[derive(clap::Args)]
pub(crate) struct ApplyArgs {
    /// The manifest: a `wafer.toml`, or a Spin app's `spin.toml` (default `wafer.toml`, else
    /// `spin.toml`).
    manifest: Option<PathBuf>,
    /// Credentials and transport for `oci://` modules (docs/oci.md).
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// `wafer apply`: deploys each function of a manifest, in order, with its whole
/// configuration (the `config` part of a deploy), stopping at the first refused. Nothing is
/// removed: a function the manifest no longer declares stays until `wafer rm`.
pub(crate) async fn apply(args: ApplyArgs) -> anyhow::Result<()> {
    let manifest =
        crate::manifest::Manifest::load(&crate::manifest::Manifest::path(args.manifest))?;
    for function in &manifest.functions {
        let name = &function.name;
        anyhow::ensure!(
            function.dirs.is_empty(),
            "function `{name}`: directories (`dirs`, a Spin component's `files`) are the \
             server's own; `wafer apply` sends modules and configuration only (serve this one \
             with `wafer up` on the server)"
        );
        let module = function
            .module
            .load(&args.registry)
            .await
            .with_context(|| format!("function `{name}`"))?
            .bytes;
        let mut config = function.config();
        let proto =
            match &function.proto {
                Some(path) => Some(tokio::fs::read_to_string(path).await.with_context(|| {
                    format!("function `{name}`: cannot read {}", path.display())
                })?),
                None => None,
            };
        let operations: Vec<String> = function
            .operations
            .iter()
            .map(|(op, types)| format!("{op}={types}"))
            .collect();
        config.schema = wafer_gateway::schema(proto, &operations)
            .with_context(|| format!("function `{name}`"))?;
        let form = reqwest::multipart::Form::new()
            .part("module", reqwest::multipart::Part::bytes(module))
            .text("config", serde_json::to_string(&config)?);
        let request = args
            .server
            .request(Method::PUT, &format!("functions/{name}"))?
            .multipart(form);
        let deployed: Value = args
            .server
            .send(request)
            .await
            .with_context(|| format!("function `{name}`"))?
            .json()
            .await?;
        let unchanged = deployed["unchanged"].as_bool().unwrap_or(false);
        println!(
            "{} {name} v{} ({})",
            if unchanged { "unchanged" } else { "deployed" },
            deployed["version"],
            deployed["digest"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

/// A deploy's progress on a terminal: the upload as a bar, then a spinner while the server
/// compiles. Nothing when stderr is not a terminal.
struct Progress {
    bar: indicatif::ProgressBar,
}

/// Upload chunk, and so the bar's step.
const UPLOAD_CHUNK: usize = 64 << 10;

impl Progress {
    fn new(len: u64) -> Option<Self> {
        if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            return None;
        }
        let bar = indicatif::ProgressBar::new(len);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:>10} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message("uploading");
        Some(Self { bar })
    }

    /// `module` as a request body that moves the bar as it is sent, and turns it into a
    /// spinner once all of it is.
    fn body(&self, module: Vec<u8>) -> reqwest::Body {
        let bar = self.bar.clone();
        let module = bytes::Bytes::from(module);
        let len = module.len();
        let chunks = (0..len.div_ceil(UPLOAD_CHUNK)).map(move |i| {
            let chunk = module.slice(i * UPLOAD_CHUNK..((i + 1) * UPLOAD_CHUNK).min(len));
            bar.inc(chunk.len() as u64);
            if bar.position() >= len as u64 {
                bar.set_style(
                    indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                );
                bar.set_message("compiling on the server");
                bar.enable_steady_tick(std::time::Duration::from_millis(100));
            }
            Ok::<_, std::io::Error>(chunk)
        });
        reqwest::Body::wrap_stream(tokio_stream::iter(chunks))
    }
}

pub(crate) async fn ls(args: ServerArgs) -> anyhow::Result<()> {
    let list = args.json(Method::GET, "functions").await?;
    println!(
        "{:<24} {:>7}  {:<8} {:<20} {:<40} STATUS",
        "NAME", "VERSION", "ABI", "DIGEST", "ROUTES"
    );
    for f in list.as_array().into_iter().flatten() {
        let routes: Vec<&str> = f["routes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let digest = f["digest"].as_str().unwrap_or("");
        let status = match f["error"].as_str() {
            Some(e) => format!("error: {e}"),
            None => "ready".into(),
        };
        let name = f["name"].as_str().unwrap_or("");
        let default_route = format!("/{name}/...");
        println!(
            "{:<24} {:>7}  {:<8} {:<20} {:<40} {status}",
            name,
            format!("v{}", f["version"]),
            f["abi"].as_str().unwrap_or("?"),
            &digest[..digest.len().min(19)],
            if routes.is_empty() {
                default_route
            } else {
                routes.join(" ")
            },
        );
        if let Some(grants) = grants_summary(&f["config"]["grants"]) {
            println!("{:<24} grants: {grants}", "");
        }
        if let Some(split) = split_summary(&f["traffic"]) {
            println!("{:<24} traffic: {split}", "");
        }
        for schedule in f["schedules"].as_array().into_iter().flatten() {
            let path = schedule["path"].as_str().unwrap_or("");
            println!(
                "{:<24} schedule: {}{}, next {}",
                "",
                schedule["cron"].as_str().unwrap_or("?"),
                if path.is_empty() {
                    String::new()
                } else {
                    format!(" -> {path}")
                },
                schedule["next"].as_str().unwrap_or("never")
            );
        }
    }
    Ok(())
}

/// One line naming a function's grants, as the server shows them (secrets masked).
fn grants_summary(grants: &Value) -> Option<String> {
    let object = grants.as_object()?;
    let mut parts = Vec::new();
    for (key, value) in object {
        let shown = match value {
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>()
                .join(","),
            Value::Object(map) => map
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("?")))
                .collect::<Vec<_>>()
                .join(","),
            Value::Bool(true) => String::new(),
            Value::String(text) => text.clone(),
            _ => continue,
        };
        parts.push(if shown.is_empty() {
            key.clone()
        } else {
            format!("{key}={shown}")
        });
    }
    (!parts.is_empty()).then(|| parts.join(" "))
}

pub(crate) async fn rm(args: NameArgs) -> anyhow::Result<()> {
    let request = args
        .server
        .request(Method::DELETE, &format!("functions/{}", args.name))?;
    args.server.send(request).await?;
    println!("removed {}", args.name);
    Ok(())
}

pub(crate) async fn rollback(args: NameArgs) -> anyhow::Result<()> {
    let deployed = args
        .server
        .json(Method::POST, &format!("functions/{}/rollback", args.name))
        .await?;
    println!(
        "rolled back {}: v{} takes every request ({})",
        args.name,
        deployed["version"],
        deployed["digest"].as_str().unwrap_or("?")
    );
    Ok(())
}

pub(crate) async fn versions(args: NameArgs) -> anyhow::Result<()> {
    let record = args
        .server
        .json(Method::GET, &format!("functions/{}", args.name))
        .await?;
    let active = record["active"].as_u64();
    let shares = record["traffic"]["split"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    println!(
        "{:>7}  {:<6} {:<7} {:<71} CREATED",
        "VERSION", "ACTIVE", "TRAFFIC", "DIGEST"
    );
    for v in record["versions"].as_array().into_iter().flatten() {
        let share = shares.iter().find(|s| s["version"] == v["version"]);
        let traffic = match (share, v["version"].as_u64() == active) {
            (Some(share), _) => format!("{}%", share["percent"]),
            (None, true) => "100%".to_owned(),
            (None, false) => String::new(),
        };
        println!(
            "{:>7}  {:<6} {:<7} {:<71} {}",
            format!("v{}", v["version"]),
            if v["version"].as_u64() == active {
                "*"
            } else {
                ""
            },
            traffic,
            v["digest"].as_str().unwrap_or(""),
            v["created"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

pub(crate) async fn logs(args: LogsArgs) -> anyhow::Result<()> {
    let mut path = format!("functions/{}/logs?tail={}", args.name, args.tail);
    if let Some(since) = &args.since {
        let since =
            percent_encoding::utf8_percent_encode(since, percent_encoding::NON_ALPHANUMERIC);
        path.push_str(&format!("&since={since}"));
    }
    let print = |line: &Value| {
        println!(
            "{} [{}] {}",
            line["time"].as_str().unwrap_or(""),
            line["request_id"].as_str().unwrap_or(""),
            line["text"].as_str().unwrap_or("")
        );
    };
    if !args.follow {
        let lines = args.server.json(Method::GET, &path).await?;
        lines.as_array().into_iter().flatten().for_each(print);
        return Ok(());
    }
    // Server-Sent Events: `data: LINE-JSON` events, `event: lagged` when lines were skipped,
    // and keep-alive comments.
    path.push_str("&follow=true");
    let mut response = args
        .server
        .send(args.server.request(Method::GET, &path)?)
        .await?;
    let mut pending = Vec::new();
    while let Some(chunk) = response.chunk().await.context("the log stream broke off")? {
        pending.extend_from_slice(&chunk);
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = pending.drain(..end + 2).collect();
            let event = String::from_utf8_lossy(&event);
            let mut kind = "message";
            let mut data = String::new();
            for field in event.lines() {
                if let Some(value) = field.strip_prefix("event: ") {
                    kind = value;
                } else if let Some(value) = field.strip_prefix("data: ") {
                    data.push_str(value);
                }
            }
            match kind {
                "lagged" => eprintln!("wafer: {data} lines were written too fast to follow"),
                _ if !data.is_empty() => print(&serde_json::from_str(&data)?),
                _ => {}
            }
        }
    }
    Ok(())
}

/// `wafer invoke`: calls a waPC operation or an export and writes the answer to stdout.
pub(crate) async fn invoke(args: InvokeArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut path = match args.queue {
        true => {
            let below = args.operation.trim_start_matches('/');
            format!("async/{}/{below}", args.name)
        }
        false => {
            let operation = percent_encoding::utf8_percent_encode(
                &args.operation,
                percent_encoding::NON_ALPHANUMERIC,
            );
            format!("functions/{}/invoke/{operation}", args.name)
        }
    };
    if let Some(returns) = &args.returns {
        path.push_str(&format!("?returns={returns}"));
    }
    let mut request = args.server.request(Method::POST, &path)?;
    if let Some(url) = &args.callback {
        request = request.header("x-callback-url", url);
    }
    let request = match (&args.args, &args.payload, &args.payload_file) {
        (Some(json), _, _) => request
            .header("content-type", "application/json")
            .body(json.clone()),
        (_, Some(data), _) => {
            let bytes = if data == "-" {
                let mut bytes = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut bytes)
                    .context("cannot read standard input")?;
                bytes
            } else {
                data.clone().into_bytes()
            };
            request
                .header("content-type", "application/octet-stream")
                .body(bytes)
        }
        (_, _, Some(file)) => {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            request
                .header("content-type", "application/octet-stream")
                .body(bytes)
        }
        (None, None, None) => request,
    };
    let response = args.server.send(request).await?;
    if args.queue {
        let queued: Value = response.json().await?;
        println!("{}", queued["id"].as_str().unwrap_or_default());
        return Ok(());
    }
    let bytes = response.bytes().await?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&bytes)?;
    if std::io::IsTerminal::is_terminal(&stdout) && !bytes.ends_with(b"\n") {
        stdout.write_all(b"\n")?;
    }
    Ok(())
}

/// Options of `wafer invocations`.
#[derive(clap::Args)]
pub(crate) struct InvocationsArgs {
    /// One invocation's id: show its record and result (JSON). Without it, list the newest.
    id: Option<String>,
    /// How many to list.
    #[arg(long, default_value_t = 20)]
    limit: usize,
    #[command(flatten)]
    server: ServerArgs,
}

/// `wafer invocations [ID]`: the newest asynchronous invocations, or one in full.
pub(crate) async fn invocations(args: InvocationsArgs) -> anyhow::Result<()> {
    if let Some(id) = &args.id {
        let record = args
            .server
            .json(Method::GET, &format!("invocations/{id}"))
            .await?;
        println!("{}", serde_json::to_string_pretty(&record)?);
        return Ok(());
    }
    let path = format!("invocations?limit={}", args.limit);
    let list = args.server.json(Method::GET, &path).await?;
    println!(
        "{:<24} {:<8} {:>6} {:>8}  {:<24} PATH",
        "ID", "STATE", "STATUS", "ATTEMPTS", "FUNCTION"
    );
    for record in list.as_array().into_iter().flatten() {
        let text = |field: &str| record[field].as_str().unwrap_or("").to_owned();
        let number = |field: &str| record[field].as_u64().map(|n| n.to_string());
        println!(
            "{:<24} {:<8} {:>6} {:>8}  {:<24} {}",
            text("id"),
            text("state"),
            number("status").unwrap_or_else(|| "-".into()),
            number("attempts").unwrap_or_default(),
            text("function"),
            text("path"),
        );
    }
    Ok(())
}

/// Options of `wafer push`.
#[derive(clap::Args)]
pub(crate) struct PushArgs {
    /// The deployed function whose module to push.
    name: String,
    /// Where to: `HOST[:PORT]/REPOSITORY:TAG` (`oci://` in front is allowed). A registry on a
    /// loopback address is reached over plain HTTP, any other over HTTPS (see `--insecure`).
    #[arg(value_name = "REF")]
    reference: String,
    /// Push this version instead of the active one.
    #[arg(long, value_name = "N")]
    version: Option<u64>,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    server: ServerArgs,
}

/// `wafer push NAME REF`: publishes a function's module as a Wasm OCI artifact, with the
/// function's configuration (secrets left out) in an annotation. Prints the reference pinned
/// to the manifest's digest.
pub(crate) async fn push(args: PushArgs) -> anyhow::Result<()> {
    let source = crate::oci::OciSource::parse(&args.reference)?;
    let record = args
        .server
        .json(Method::GET, &format!("functions/{}", args.name))
        .await?;
    let wanted = match args.version {
        Some(n) => Some(n),
        None => record["active"].as_u64(),
    };
    let Some(version) = record["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["version"].as_u64() == wanted)
    else {
        match args.version {
            Some(n) => bail!("function `{}` has no version {n}", args.name),
            None => bail!("function `{}` has no active version", args.name),
        }
    };
    let digest = version["digest"]
        .as_str()
        .context("the server's record names no module digest")?;
    let module = args
        .server
        .send(
            args.server
                .request(Method::GET, &format!("modules/{digest}"))?,
        )
        .await
        .with_context(|| format!("cannot fetch module {digest}"))?
        .bytes()
        .await
        .with_context(|| format!("cannot fetch module {digest}"))?;
    let got = crate::oci::sha256(&module);
    anyhow::ensure!(
        got == digest,
        "the server sent a module that does not match its digest: expected {digest}, got {got}"
    );
    let mut config = version["config"].clone();
    // The server shows secrets masked; their values stay on the server.
    if let Some(secrets) = config
        .get_mut("grants")
        .and_then(Value::as_object_mut)
        .and_then(|grants| grants.remove("secrets"))
    {
        let names: Vec<&String> = secrets
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        eprintln!(
            "note: secrets are not pushed ({}); give them with --secret where you deploy it",
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let artifact = crate::oci::Artifact {
        name: args.name.clone(),
        module: module.to_vec(),
        config: config.is_object().then_some(config),
    };
    let manifest = crate::oci::push(&source, artifact, &args.registry).await?;
    println!(
        "pushed {} v{} to {source}@{manifest}",
        args.name, version["version"]
    );
    Ok(())
}
