//! Services: functions granted `listen = ADDR` (WASI 0.2 command components) run as
//! long-lived instances, started when deployed, restarted with backoff when they exit or
//! trap, and stopped when removed or replaced by another version.
//!
//! The supervisor follows the live table's changes (it wakes only when the table changes), so
//! services deployed through the admin API, gRPC, `wafer up` or another cluster node are all
//! picked up the same way. A service's output and every start
//! and stop land in its log (`wafer logs NAME`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use wafer_registry::FunctionName;

use crate::live::Function;
use wafer_runtime::ServiceOptions;

use crate::App;

/// The first delay before a restart; it doubles on every quick exit, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long resets the backoff: the service was healthy.
const HEALTHY: Duration = Duration::from_secs(10);

/// Runs every service in the registry until dropped; stops them all then.
pub(crate) struct Supervisor {
    task: JoinHandle<()>,
}

impl Supervisor {
    pub(crate) fn start(app: Arc<App>) -> Self {
        Self {
            task: tokio::spawn(watch(app)),
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running service: its version, and the task running it (aborting it drops the instance
/// and closes its socket).
struct Running {
    version: u32,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn watch(app: Arc<App>) {
    let mut running: HashMap<FunctionName, Running> = HashMap::new();
    let mut changes = app.functions.changes();
    loop {
        let services = app.functions.services();
        running.retain(|name, r| {
            services
                .iter()
                .any(|f| &f.name == name && f.version == r.version)
        });
        for function in services {
            if !running.contains_key(&function.name) {
                let task = tokio::spawn(supervise(app.clone(), function.clone()));
                let version = function.version;
                running.insert(function.name.clone(), Running { version, task });
            }
        }
        // Every change the table applies; the table gone, the server is stopping.
        if changes.changed().await.is_err() {
            return;
        }
    }
}

/// Runs one version of a service forever, restarting it after each exit.
async fn supervise(app: Arc<App>, function: Arc<Function>) {
    let name = function.name.as_str();
    let (Some(listen), Ok(program)) = (function.config.grants.listen, function.program()) else {
        return;
    };
    let Some(service) = program.as_service() else {
        return;
    };
    let options = ServiceOptions {
        listen,
        env: function
            .config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        limits: function.config.limits,
    };
    let mut backoff = FIRST_BACKOFF;
    loop {
        let id = app.request_id();
        let note = |text: &str| app.logs.append(name, &id, text.as_bytes());
        note(&format!(
            "[service] v{} starting on {listen}",
            function.version
        ));
        tracing::info!(%name, %listen, "service starting");
        let started = Instant::now();
        let result = service
            .run(&options, |output| app.logs.append(name, &id, &output))
            .await;
        if started.elapsed() >= HEALTHY {
            backoff = FIRST_BACKOFF;
        }
        let ended = match result {
            Ok(code) => format!("exited with code {code}"),
            Err(fault) => fault.to_string(),
        };
        note(&format!(
            "[service] {ended}; restarting in {} ms",
            backoff.as_millis()
        ));
        tracing::warn!(%name, "service {ended}; restarting in {backoff:?}");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
