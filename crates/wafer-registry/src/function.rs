//! A live function: the active version of a function, loaded and ready to call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wafer_runtime::{InstancePool, Program};

use crate::config::FunctionConfig;
use crate::names::{Digest, FunctionName};

/// How long a call waits for a free instance when the function is at its concurrency limit,
/// before it is refused with "busy". One second absorbs bursts without letting a backlog grow
/// that clients will have given up on.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// The active version of a function. Requests hold an `Arc` to it, so a request that started
/// on one version finishes on it even if another is deployed meanwhile.
pub struct Function {
    /// The function's name.
    pub name: FunctionName,
    /// The version this is.
    pub version: u32,
    /// The module it runs.
    pub digest: Digest,
    /// Its routes, environment and limits.
    pub config: FunctionConfig,
    program: Result<Program, String>,
    gate: Arc<Gate>,
    /// Idle instances kept for reuse, when the config asks for it.
    instances: Option<Arc<InstancePool>>,
}

/// Admission to a function: at most `max_concurrency` calls at once, as many again waiting.
/// Shared by successive versions while the limit stays the same, so a deploy does not
/// briefly double the function's concurrency.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    limit: u32,
    waiting: AtomicUsize,
}

/// Permission to run one call; the slot frees when this is dropped.
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

impl Function {
    pub(crate) fn new(
        name: FunctionName,
        version: u32,
        digest: Digest,
        config: FunctionConfig,
        program: Result<Program, String>,
        previous: Option<&Function>,
    ) -> Self {
        let limit = config.limits.max_concurrency;
        let gate = match previous {
            Some(p) if p.gate.limit == limit => p.gate.clone(),
            _ => Arc::new(Gate {
                permits: Arc::new(Semaphore::new(limit as usize)),
                limit,
                waiting: AtomicUsize::new(0),
            }),
        };
        let reuse = config.limits.instance_reuse;
        let instances = (reuse > 1).then(|| InstancePool::new(reuse));
        Self {
            name,
            version,
            digest,
            config,
            program,
            gate,
            instances,
        }
    }

    /// The program to run, or why this version cannot run (for example a module that failed
    /// verification when the server started).
    pub fn program(&self) -> Result<&Program, &str> {
        self.program.as_ref().map_err(String::as_str)
    }

    /// The instances this version keeps between requests, if it reuses instances.
    pub fn instances(&self) -> Option<&Arc<InstancePool>> {
        self.instances.as_ref()
    }

    /// Waits for a free instance slot; `None` if the function stays saturated for
    /// [`QUEUE_WAIT`] or its queue is already full.
    pub async fn admit(&self) -> Option<Admission> {
        let gate = &self.gate;
        if let Ok(permit) = gate.permits.clone().try_acquire_owned() {
            return Some(Admission(permit));
        }
        if gate.waiting.fetch_add(1, Ordering::AcqRel) >= gate.limit as usize {
            gate.waiting.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let permit = tokio::time::timeout(QUEUE_WAIT, gate.permits.clone().acquire_owned()).await;
        gate.waiting.fetch_sub(1, Ordering::AcqRel);
        match permit {
            Ok(Ok(permit)) => Some(Admission(permit)),
            _ => None,
        }
    }
}
