//! `wafer serve` and `wafer up`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};
use tokio::net::TcpListener;
use wafer_gateway::{App, Functions};
use wafer_queue::Queue;
use wafer_registry::Registry;
use wafer_runtime::{Runtime, RuntimeConfig};

use crate::manifest::{Manifest, ManifestFunction};
use crate::DataArgs;

/// Options of `wafer serve`.
#[derive(clap::Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on (`127.0.0.1:0` picks a free port; the address is printed).
    #[arg(long, env = "WAFER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Address of the admin plane: the admin API and gRPC service, the dashboard, invocation
    /// records, logs and `/metrics` (docs/security.md). Keep it on loopback or a private
    /// network; functions are never served there, and it is never served on `--listen`.
    #[arg(long, env = "WAFER_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    admin_listen: SocketAddr,
    #[command(flatten)]
    data: DataArgs,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    tls: TlsArgs,
    /// A host that asynchronous invocations may post their results to (their
    /// `X-Callback-Url`): a name or `name:port`; repeat it, or comma-separate in the
    /// environment variable. None by default.
    #[arg(
        long = "callback-host",
        env = "WAFER_CALLBACK_HOSTS",
        value_delimiter = ','
    )]
    callback_hosts: Vec<String>,
    #[command(flatten)]
    asyncs: AsyncArgs,
    /// The admin token to require, instead of the one generated in the data directory on
    /// first start (it is written there too, for the `wafer` commands on this machine). In
    /// a cluster, give every node the same one; it becomes the cluster's.
    #[arg(long, env = "WAFER_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file holding the admin token (a mounted secret, say); as `--admin-token`.
    #[arg(long, value_name = "PATH", conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
}

impl ServeArgs {
    /// The admin token the operator gave, checked.
    fn given_token(&self) -> anyhow::Result<Option<String>> {
        let token = match (&self.admin_token, &self.admin_token_file) {
            (Some(token), _) => token.trim().to_owned(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the admin token file {}", path.display()))?
                .trim()
                .to_owned(),
            (None, None) => return Ok(None),
        };
        anyhow::ensure!(
            token.len() >= 16 && token.bytes().all(|b| b.is_ascii_graphic()),
            "the admin token must be at least 16 characters, printable, without spaces"
        );
        Ok(Some(token))
    }
}

/// Asynchronous invocations (docs/async.md#limits).
#[derive(clap::Args)]
struct AsyncArgs {
    /// Bytes the asynchronous queue may hold: bodies of calls not finished yet plus the
    /// records and results kept. Past it the oldest results go early, then new calls get
    /// `507`. In a cluster, split in four among its JetStream streams.
    #[arg(long, env = "WAFER_ASYNC_MAX_BYTES", default_value = "1GiB", value_parser = byte_size)]
    async_max_bytes: u64,
    /// Times one asynchronous call is started at most before it is recorded `failed` (a
    /// call that kills its node each time is not run forever).
    #[arg(long, env = "WAFER_ASYNC_MAX_ATTEMPTS", default_value_t = wafer_queue::MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    async_max_attempts: u32,
}

impl AsyncArgs {
    fn config(&self) -> wafer_queue::QueueConfig {
        wafer_queue::QueueConfig {
            max_bytes: self.async_max_bytes,
            max_attempts: self.async_max_attempts,
        }
    }
}

/// A size such as `64MiB` or `1GiB` (or a number of bytes), at least 1 MiB.
fn byte_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text
        .parse()
        .map_err(|e| format!("`{text}` is not a size like 512MiB or 1GiB: {e}"))?;
    match size.as_u64() {
        n if n < 1 << 20 => Err(format!("`{text}` is below the minimum of 1 MiB")),
        n => Ok(n),
    }
}

/// HTTPS (docs/operations.md#tls).
#[derive(clap::Args)]
struct TlsArgs {
    /// Serve HTTPS (and gRPC over TLS) with this certificate chain (PEM); reread on SIGHUP.
    #[arg(
        long,
        env = "WAFER_TLS_CERT",
        requires = "tls_key",
        value_name = "PATH"
    )]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1); reread on SIGHUP.
    #[arg(
        long,
        env = "WAFER_TLS_KEY",
        requires = "tls_cert",
        value_name = "PATH"
    )]
    tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn load(&self) -> anyhow::Result<Option<Arc<wafer_gateway::Tls>>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let tls = wafer_gateway::Tls::load(cert, key).context("cannot use the TLS certificate")?;
        Ok(Some(tls))
    }
}

/// Rereads the certificate and key on every SIGHUP, keeping the old ones if that fails.
fn reload_on_hangup(tls: Arc<wafer_gateway::Tls>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the certificate will not be reloaded");
            return;
        };
        while hangups.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate and key"),
                Err(e) => tracing::error!("SIGHUP: kept the old TLS certificate: {e}"),
            }
        }
    });
}

/// Joining a cluster (docs/cluster.md).
#[derive(clap::Args)]
struct ClusterArgs {
    /// NATS server URLs, comma-separated (`nats://HOST:4222`): serve the functions stored in
    /// that cluster's JetStream instead of those of the data directory, together with every
    /// other node pointed at it.
    #[arg(long, env = "WAFER_CLUSTER")]
    cluster: Option<String>,
    /// A token to authenticate to the NATS servers with.
    #[arg(long, env = "WAFER_CLUSTER_TOKEN", requires = "cluster")]
    cluster_token: Option<String>,
    /// A NATS credentials file (JWT and NKey seed).
    #[arg(long, env = "WAFER_CLUSTER_CREDS", requires = "cluster")]
    cluster_creds: Option<PathBuf>,
    /// A CA certificate for TLS to the NATS servers (TLS is then required).
    #[arg(long, env = "WAFER_CLUSTER_TLS_CA", requires = "cluster")]
    cluster_tls_ca: Option<PathBuf>,
    /// Copies JetStream keeps of each bucket Wafer creates: 1 for one NATS server, 3 for a
    /// NATS cluster of three or more.
    #[arg(long, env = "WAFER_CLUSTER_REPLICAS", default_value_t = 1)]
    cluster_replicas: usize,
    /// Bytes JetStream keeps of function records (docs/cluster.md#byte-limits).
    #[arg(long, env = "WAFER_CLUSTER_RECORDS_MAX_BYTES", default_value = "256MiB", value_parser = byte_size)]
    cluster_records_max_bytes: u64,
    /// Bytes JetStream keeps of module blobs.
    #[arg(long, env = "WAFER_CLUSTER_MODULES_MAX_BYTES", default_value = "4GiB", value_parser = byte_size)]
    cluster_modules_max_bytes: u64,
    /// Bytes JetStream keeps of each function's key-value store.
    #[arg(long, env = "WAFER_CLUSTER_KV_MAX_BYTES", default_value = "64MiB", value_parser = byte_size)]
    cluster_kv_max_bytes: u64,
    /// Bytes JetStream keeps of undelivered pub/sub messages.
    #[arg(long, env = "WAFER_CLUSTER_MESSAGES_MAX_BYTES", default_value = "1GiB", value_parser = byte_size)]
    cluster_messages_max_bytes: u64,
    /// Bytes JetStream keeps of dead-lettered messages.
    #[arg(long, env = "WAFER_CLUSTER_DEAD_MAX_BYTES", default_value = "256MiB", value_parser = byte_size)]
    cluster_dead_max_bytes: u64,
}

impl ClusterArgs {
    fn config(&self) -> Option<wafer_nats::ClusterConfig> {
        let urls = self.cluster.as_ref()?;
        Some(wafer_nats::ClusterConfig {
            token: self.cluster_token.clone(),
            credentials: self.cluster_creds.clone(),
            tls_ca: self.cluster_tls_ca.clone(),
            replicas: self.cluster_replicas,
            records_max_bytes: self.cluster_records_max_bytes,
            modules_max_bytes: self.cluster_modules_max_bytes,
            kv_max_bytes: self.cluster_kv_max_bytes,
            messages_max_bytes: self.cluster_messages_max_bytes,
            dead_max_bytes: self.cluster_dead_max_bytes,
            ..wafer_nats::ClusterConfig::new(urls.clone())
        })
    }
}

/// Server-wide connection limits (docs/limits.md).
#[derive(clap::Args)]
struct LimitArgs {
    /// Connections open at once; more wait in the kernel's accept queue. Lowered to fit the
    /// process's file descriptor limit if need be.
    #[arg(long, env = "WAFER_MAX_CONNECTIONS", default_value_t = 10_000)]
    max_connections: usize,
    /// Time a connection has to send a complete request head (first byte included).
    #[arg(long, env = "WAFER_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: Duration,
    /// Time a connection may stay open with no request running.
    #[arg(long, env = "WAFER_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    /// Time an admitted call's request body has to arrive (then `408`).
    #[arg(long, env = "WAFER_BODY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    body_timeout: Duration,
    /// Largest request head in bytes (then `431`); at least 8 KiB.
    #[arg(long, env = "WAFER_MAX_HEADER_BYTES", default_value_t = 64 << 10)]
    max_header_bytes: usize,
}

/// The longest server-wide timeout accepted: a day (a connection timer past it is a mistake,
/// and a far one would overflow the clock arithmetic).
const MAX_SERVER_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// File descriptors kept for everything but client connections: the registry, key-value
/// stores, outbound requests, services.
const RESERVED_FDS: u64 = 256;

impl LimitArgs {
    /// The gateway's settings, checked: contradictory values fail before a socket is bound.
    fn config(&self) -> anyhow::Result<wafer_gateway::ServeConfig> {
        for (flag, value) in [
            ("--header-timeout", self.header_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--body-timeout", self.body_timeout),
        ] {
            anyhow::ensure!(!value.is_zero(), "{flag} must be more than zero");
            anyhow::ensure!(
                value <= MAX_SERVER_TIMEOUT,
                "{flag} is {}, above its maximum of 1 day",
                humantime::format_duration(value)
            );
        }
        anyhow::ensure!(
            self.max_connections > 0,
            "--max-connections must be at least 1"
        );
        anyhow::ensure!(
            self.max_header_bytes >= 8 << 10,
            "--max-header-bytes must be at least 8192 (HTTP/1.1 needs that much buffer)"
        );
        Ok(wafer_gateway::ServeConfig {
            max_connections: fit_descriptors(self.max_connections),
            header_timeout: self.header_timeout,
            idle_timeout: self.idle_timeout,
            body_timeout: self.body_timeout,
            max_header_bytes: self.max_header_bytes,
        })
    }
}

/// Raises the soft file descriptor limit to the hard one (the usual soft limit, 1024, is far
/// below what a server with thousands of connections needs), and lowers `max_connections`
/// to what the limit allows, with a warning.
fn fit_descriptors(max_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!("cannot read or raise the file descriptor limit: {e}");
            return max_connections;
        }
    };
    let fits = usize::try_from(limit.saturating_sub(RESERVED_FDS).max(1)).unwrap_or(usize::MAX);
    if fits < max_connections {
        tracing::warn!(
            "the file descriptor limit is {limit}: serving at most {fits} connections at once \
             instead of {max_connections} (raise `ulimit -Hn` for more)"
        );
        return fits;
    }
    max_connections
}

/// Options of `wafer up`.
#[derive(clap::Args)]
pub(crate) struct UpArgs {
    /// The manifest declaring the functions: a `wafer.toml`, or a Spin app's `spin.toml`
    /// (default `wafer.toml`, else `spin.toml`).
    manifest: Option<PathBuf>,
    /// Follow changes: redeploy a function when its module file changes, rebuild and
    /// redeploy it when its `watch` sources change, and apply changes to the manifest.
    #[arg(long)]
    watch: bool,
    /// Credentials and transport for `oci://` modules (docs/oci.md).
    #[command(flatten)]
    registry: crate::oci::RegistryArgs,
    #[command(flatten)]
    serve: ServeArgs,
}

/// The server's parts, started in order: engine, registry, listener.
struct Server {
    config: wafer_gateway::ServeConfig,
    functions: Arc<Functions>,
    caps: Arc<wafer_host::Capabilities>,
    invocations: wafer_gateway::Invocations,
    token: Arc<wafer_gateway::AdminToken>,
    listener: TcpListener,
    /// The admin plane's listener.
    admin_listener: TcpListener,
    /// The certificate, when serving HTTPS.
    tls: Option<Arc<wafer_gateway::Tls>>,
    /// The cluster connection, in cluster mode.
    cluster: Option<wafer_nats::Cluster>,
}

impl Server {
    async fn start(args: &ServeArgs) -> anyhow::Result<Self> {
        let config = args.limits.config()?;
        let tls = args.tls.load()?;
        let runtime = Runtime::new(&RuntimeConfig::default())?;
        let data = args.data.data.clone();
        let given = args.given_token()?;
        let mut token = {
            let (data, given) = (data.clone(), given.clone());
            tokio::task::spawn_blocking(move || match given {
                Some(token) => wafer_registry::set_admin_token(&data, &token).map(|()| token),
                None => wafer_registry::admin_token(&data),
            })
            .await??
        };
        let mut joined = None;
        let queue_config = args.asyncs.config();
        let (registry, caps, queue) = match args.cluster.config() {
            None => {
                let data = data.clone();
                tokio::task::spawn_blocking(move || {
                    let registry = Registry::open(&data)?;
                    let caps = wafer_host::Capabilities::open(&data)?;
                    let queue: Arc<dyn Queue> =
                        Arc::new(wafer_queue::LocalQueue::open_with(&data, queue_config)?);
                    anyhow::Ok((registry, caps, queue))
                })
                .await??
            }
            Some(cluster) => {
                let cluster = wafer_nats::Cluster::connect(&cluster).await?;
                let store = wafer_nats::NatsStore::open(&cluster).await?;
                // One token for the cluster, kept where the CLI on this machine looks.
                let shared = match &given {
                    Some(token) => cluster
                        .set_admin_token(token)
                        .await
                        .map(|()| token.clone())?,
                    None => cluster.admin_token(&token).await?,
                };
                if shared != token {
                    wafer_registry::set_admin_token(&data, &shared)?;
                    token = shared;
                }
                tracing::info!(
                    "serving the cluster's functions ({})",
                    cluster_urls(&args.cluster)
                );
                let kv = Arc::new(wafer_nats::NatsKv::new(&cluster));
                let bus = Arc::new(wafer_nats::NatsBus::open(&cluster).await?);
                let queue: Arc<dyn Queue> =
                    Arc::new(wafer_nats::NatsQueue::open_with(&cluster, queue_config).await?);
                let caps = wafer_host::Capabilities::new(kv, bus);
                joined = Some(cluster);
                (Registry::new(store), caps, queue)
            }
        };
        let functions = Functions::start(registry, Arc::new(runtime), &data).await?;
        let invocations = wafer_gateway::Invocations::new(queue, args.callback_hosts.clone());
        anyhow::ensure!(
            args.listen != args.admin_listen || args.listen.port() == 0,
            "--listen and --admin-listen must differ: the admin plane has its own listener"
        );
        let listener = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let admin_listener = TcpListener::bind(args.admin_listen)
            .await
            .with_context(|| format!("cannot listen on {} (--admin-listen)", args.admin_listen))?;
        if !args.admin_listen.ip().is_loopback() {
            tracing::warn!(
                "the admin plane listens on {}, beyond this machine: keep that address private \
                 (docs/security.md)",
                args.admin_listen
            );
        }
        Ok(Self {
            config,
            functions,
            caps,
            invocations,
            token: Arc::new(wafer_gateway::AdminToken::new(token)),
            listener,
            admin_listener,
            tls,
            cluster: joined,
        })
    }

    /// Serves both planes until a shutdown signal; with `watch`, follows the manifest (as
    /// `wafer up --watch`).
    async fn run(
        self,
        data: &Path,
        watch: Option<(&Path, Manifest, crate::oci::RegistryArgs)>,
    ) -> anyhow::Result<()> {
        let local = self.listener.local_addr()?;
        let admin = self.admin_listener.local_addr()?;
        for f in self.functions.list() {
            let routes: Vec<&str> = f.routes.iter().map(|r| r.as_str()).collect();
            match &f.error {
                None => tracing::info!("serving {} v{} on {}", f.name, f.version, routes.join(" ")),
                Some(e) => tracing::error!("{} v{} cannot run: {e}", f.name, f.version),
            }
        }
        // Tests and scripts read this line to learn the port.
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        {
            // Both lines in one write, and no panic if whoever started the server stopped
            // reading its output.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = write!(
                out,
                "listening on {scheme}://{local}\nadmin on {scheme}://{admin}\n"
            );
            let _ = out.flush();
        }
        tracing::info!(
            "admin token: {} (or set WAFER_TOKEN)",
            data.join("admin-token").display()
        );
        let app = App::new(
            self.functions,
            self.caps,
            self.invocations,
            self.token,
            local,
            self.config,
        );
        if let Some(cluster) = self.cluster {
            // A token another node sets becomes this node's at once (and the file's, for
            // the `wafer` commands on this machine).
            let (token, data) = (app.token().clone(), data.to_owned());
            cluster.follow_admin_token(move |new| {
                if let Err(e) = wafer_registry::set_admin_token(&data, &new) {
                    tracing::warn!("cannot write the cluster's new admin token: {e}");
                }
                token.set(new);
            });
            app.set_health_check(Box::new(move || cluster.problem()));
        }
        if let Some((path, manifest, registry)) = watch {
            follow_manifest(app.clone(), path, manifest, registry)?;
        }
        if let Some(tls) = &self.tls {
            reload_on_hangup(tls.clone());
        }
        // Both planes stop together, on the first signal.
        let shutdown = shutdown_signal();
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let admin_plane = wafer_admin::serve(
            self.admin_listener,
            app.clone(),
            self.tls.clone(),
            stopped(stopping.clone()),
        );
        let function_plane = wafer_gateway::serve(self.listener, app, self.tls, stopped(stopping));
        let signal = async {
            shutdown.await;
            let _ = stop.send(true);
        };
        let (admin, functions, ()) = tokio::join!(admin_plane, function_plane, signal);
        admin.context("the admin listener failed")?;
        functions?;
        tracing::info!("stopped");
        Ok(())
    }
}

fn cluster_urls(args: &ClusterArgs) -> &str {
    args.cluster.as_deref().unwrap_or_default()
}

/// SIGINT or SIGTERM, listened for from the call on: made before the planes start, so that a
/// signal arriving while they do stops the server cleanly instead of killing it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Makes every file and directory the server creates private to its user (mode 0600 / 0700):
/// the data directory holds module bytes, invocation bodies and results, key-value data and
/// secrets. Files a function creates in a directory granted to it are made the same way.
fn private_files() {
    #[cfg(unix)]
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
}

pub(crate) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    private_files();
    let server = Server::start(&args).await?;
    server.run(&args.data.data, None).await
}

pub(crate) async fn up(args: UpArgs) -> anyhow::Result<()> {
    let path = Manifest::path(args.manifest);
    let manifest = Manifest::load(&path)?;
    private_files();
    let server = Server::start(&args.serve).await?;
    for function in &manifest.functions {
        deploy_from_manifest(&server.functions, function, &args.registry).await?;
    }
    // The files a Spin app's components see live as long as the server.
    let _staged = manifest.staged.clone();
    let watch = args
        .watch
        .then_some((path.as_path(), manifest, args.registry.clone()));
    server.run(&args.serve.data.data, watch).await
}

/// `wafer run --serve`: serves one function from a throwaway data directory (removed on
/// exit), the admin plane on a free loopback port. Says where on stderr, in the words of
/// `wasmtime serve`, so that scripts written for it find the address.
pub(crate) async fn serve_one(
    name: wafer_registry::FunctionName,
    module: Vec<u8>,
    config: wafer_registry::FunctionConfig,
    listen: SocketAddr,
) -> anyhow::Result<()> {
    use clap::{Args, FromArgMatches};
    private_files();
    let data = tempfile::tempdir().context("cannot create a data directory")?;
    let command = ServeArgs::augment_args(clap::Command::new("wafer run --serve"));
    let matches = command.try_get_matches_from([
        "wafer run --serve".as_ref(),
        "--listen".as_ref(),
        listen.to_string().as_ref(),
        "--admin-listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--data".as_ref(),
        data.path().as_os_str(),
    ])?;
    let args = ServeArgs::from_arg_matches(&matches)?;
    let server = Server::start(&args).await?;
    server
        .functions
        .deploy(name.clone(), module, config)
        .await
        .with_context(|| format!("cannot serve {name}"))?;
    eprintln!("Serving HTTP on http://{}/", server.listener.local_addr()?);
    server.run(data.path(), None).await
}

async fn deploy_from_manifest(
    functions: &Arc<Functions>,
    function: &ManifestFunction,
    registry: &crate::oci::RegistryArgs,
) -> anyhow::Result<()> {
    let module = function
        .module
        .load(registry)
        .await
        .with_context(|| format!("function `{}`", function.name))?
        .bytes;
    let mut config = function.config();
    let proto = match &function.proto {
        Some(path) => Some(tokio::fs::read_to_string(path).await.with_context(|| {
            format!(
                "function `{}`: cannot read {}",
                function.name,
                path.display()
            )
        })?),
        None => None,
    };
    let operations = function
        .operations
        .iter()
        .map(|(op, types)| format!("{op}={types}"))
        .collect::<Vec<_>>();
    config.schema = wafer_gateway::schema(proto, &operations)
        .with_context(|| format!("function `{}`", function.name))?;
    let deployed = functions
        .deploy(function.name.clone(), module, config)
        .await
        .with_context(|| format!("function `{}` ({})", function.name, function.module))?;
    if !deployed.unchanged {
        tracing::info!(
            "deployed {} v{} ({})",
            deployed.name,
            deployed.version,
            deployed.digest
        );
    }
    Ok(())
}

/// `wafer up --watch`: watches the manifest (a function whose entry changed is redeployed, a
/// new one deployed, one no longer declared removed), each function's module file
/// (redeployed), and each function's `watch` sources (its `build` runs, then it is
/// redeployed). Watching directories rather than files catches tools that replace a file by
/// renaming. A failed build or deploy is logged and the previous version goes on serving.
fn follow_manifest(
    app: Arc<App>,
    manifest_path: &Path,
    manifest: Manifest,
    registry: crate::oci::RegistryArgs,
) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = tx.send(path);
            }
        }
    })?;
    let manifest_path = canonical(manifest_path);
    let mut watched = Vec::new();
    watch_dirs(&mut watcher, &mut watched, &manifest_path, &manifest)?;
    tokio::spawn(async move {
        let mut manifest = manifest;
        while let Some(path) = rx.recv().await {
            // Let a tool finish writing, and fold the burst of events it causes into one.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let mut changed = vec![canonical(&path)];
            while let Ok(more) = rx.try_recv() {
                changed.push(canonical(&more));
            }
            if changed.contains(&manifest_path) {
                match Manifest::load(&manifest_path) {
                    Ok(reloaded) => {
                        apply_manifest(&app, &manifest, &reloaded, &registry).await;
                        manifest = reloaded;
                        if let Err(e) =
                            watch_dirs(&mut watcher, &mut watched, &manifest_path, &manifest)
                        {
                            tracing::error!("{e:#}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("manifest not reloaded, still serving as before: {e:#}")
                    }
                }
                continue;
            }
            for f in &manifest.functions {
                // An `oci://` module is pulled when the manifest is (re)applied; a tag that
                // moves in the registry is not followed.
                let module = f
                    .module
                    .file()
                    .is_some_and(|m| changed.contains(&canonical(m)));
                let sources = f.watch_set.as_ref().is_some_and(|set| {
                    let dir = canonical_dir(&f.dir);
                    changed
                        .iter()
                        .any(|p| p.strip_prefix(&dir).is_ok_and(|rel| set.is_match(rel)))
                });
                if sources {
                    if let Err(e) = rebuild(f).await {
                        tracing::error!("{e:#}; still serving the previous version");
                        continue;
                    }
                }
                if module || sources {
                    if let Err(e) = deploy_from_manifest(app.functions(), f, &registry).await {
                        tracing::error!("reload failed, still serving the previous version: {e:#}");
                    }
                }
            }
        }
        drop(watcher);
    });
    Ok(())
}

/// Watches what `manifest` names that is not watched yet: its own directory, its modules'
/// directories, and the directories its `watch` globs start from (recursively).
fn watch_dirs(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut Vec<(PathBuf, RecursiveMode)>,
    manifest_path: &Path,
    manifest: &Manifest,
) -> anyhow::Result<()> {
    let mut wanted: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    if let Some(dir) = manifest_path.parent() {
        wanted.push((dir.to_owned(), RecursiveMode::NonRecursive));
    }
    for f in &manifest.functions {
        if let Some(dir) = f
            .module
            .file()
            .and_then(|m| canonical(m).parent().map(Path::to_owned))
        {
            wanted.push((dir, RecursiveMode::NonRecursive));
        }
        for pattern in &f.watch {
            // The part before the first component with a wildcard.
            let fixed: PathBuf = Path::new(pattern)
                .components()
                .take_while(|c| {
                    !c.as_os_str()
                        .to_string_lossy()
                        .contains(['*', '?', '[', '{'])
                })
                .collect();
            let whole = fixed.as_os_str() == std::ffi::OsStr::new(pattern.as_str());
            let base = canonical_dir(&f.dir).join(fixed);
            if whole && !base.is_dir() {
                // One file: its directory, not what lies below it.
                if let Some(dir) = base.parent() {
                    wanted.push((dir.to_owned(), RecursiveMode::NonRecursive));
                }
                continue;
            }
            let base = if base.is_dir() {
                base
            } else {
                base.parent().unwrap_or(&base).to_owned()
            };
            wanted.push((base, RecursiveMode::Recursive));
        }
    }
    for (dir, mode) in wanted {
        if watched
            .iter()
            .any(|(d, m)| *d == dir && (*m == mode || *m == RecursiveMode::Recursive))
        {
            continue;
        }
        watcher
            .watch(&dir, mode)
            .with_context(|| format!("cannot watch {}", dir.display()))?;
        watched.push((dir, mode));
    }
    Ok(())
}

/// Deploys the functions of `new` whose entries differ from `old`'s, and removes those `new`
/// no longer declares (with their key-value data and message queues, as `wafer rm` does).
async fn apply_manifest(
    app: &App,
    old: &Manifest,
    new: &Manifest,
    registry: &crate::oci::RegistryArgs,
) {
    for f in &new.functions {
        let before = old.functions.iter().find(|o| o.name == f.name);
        if before.is_some_and(|o| o.entry == f.entry) {
            continue;
        }
        tracing::info!("manifest: function `{}` changed", f.name);
        if let Err(e) = deploy_from_manifest(app.functions(), f, registry).await {
            tracing::error!("manifest: {e:#}; still serving the previous version");
        }
    }
    for o in &old.functions {
        if !new.functions.iter().any(|f| f.name == o.name) {
            match app.remove(&o.name).await {
                Ok(()) => tracing::info!("manifest: function `{}` removed", o.name),
                Err(e) => tracing::error!("manifest: cannot remove `{}`: {e}", o.name),
            }
        }
    }
}

/// Runs `f`'s build command, as `wafer build` does.
async fn rebuild(f: &ManifestFunction) -> anyhow::Result<()> {
    let Some(command) = &f.build else {
        return Ok(());
    };
    tracing::info!("building {}: {command}", f.name);
    let status = tokio::process::Command::new("sh")
        .args(["-c", command])
        .current_dir(canonical_dir(&f.dir))
        .status()
        .await
        .with_context(|| format!("function `{}`: cannot run `{command}`", f.name))?;
    anyhow::ensure!(
        status.success(),
        "function `{}`: `{command}` failed ({status})",
        f.name
    );
    Ok(())
}

/// A manifest's directory, absolute (`""` is the current one).
fn canonical_dir(dir: &Path) -> PathBuf {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    dir.canonicalize().unwrap_or_else(|_| dir.to_owned())
}

/// The absolute form of a path whose file may not exist at the moment (mid-rebuild).
fn canonical(path: &Path) -> PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}
