//! A live function: the active version of a function, loaded and ready to call.

use std::ops::Deref;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wafer_registry::{Deployment, Route};
use wafer_runtime::{InstancePool, Program};

use crate::metrics::FunctionMetrics;

/// How long a call waits for a free instance when the function is at its concurrency limit,
/// before it is refused with "busy". One second absorbs bursts without letting a backlog grow
/// that clients will have given up on.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);

/// The active version of a function: its [`Deployment`] (name, version, config; what the
/// host reads, and what this derefs to) and the program that runs it. Requests hold an `Arc`
/// to it, so a request that started on one version finishes on it even if another is
/// deployed meanwhile.
pub struct Function {
    /// The record's side: name, version, module, config.
    pub deployment: Arc<Deployment>,
    program: Result<Program, String>,
    /// The routes its module declared (WAGI `_routes`) under each configured route, each with
    /// the program that runs its handler export.
    declared: Vec<(Route, Program)>,
    gate: Arc<Gate>,
    /// Idle instances kept for reuse, when the config asks for it.
    instances: Option<Arc<InstancePool>>,
    metrics: FunctionMetrics,
}

/// Admission to a function: at most `max_concurrency` calls at once, as many again waiting.
/// Shared by successive versions while the limit stays the same, so a deploy does not
/// briefly double the function's concurrency.
pub(crate) struct Gate {
    permits: Arc<Semaphore>,
    limit: u32,
    waiting: AtomicUsize,
    /// The function was removed: nothing is admitted any more (a call that took the
    /// function before `rm`, such as a queued one waiting for its slot, must not run after
    /// its data is deleted).
    removed: AtomicBool,
}

/// Permission to run one call; the slot frees when this is dropped.
pub struct Admission(#[allow(dead_code)] OwnedSemaphorePermit);

impl Deref for Function {
    type Target = Deployment;

    fn deref(&self) -> &Deployment {
        &self.deployment
    }
}

impl Function {
    /// `deployment` served by `program` (or why it cannot run), and the programs of its
    /// module's declared routes. Shares `previous`'s admission gate when the limit is the same.
    pub(crate) fn new(
        deployment: Deployment,
        program: Result<(Program, Vec<(Route, Program)>), String>,
        previous: Option<&Function>,
    ) -> Self {
        let config = &deployment.config;
        let limit = config.limits.max_concurrency;
        let gate = match previous {
            Some(p) if p.gate.limit == limit => p.gate.clone(),
            _ => Arc::new(Gate {
                permits: Arc::new(Semaphore::new(limit as usize)),
                limit,
                waiting: AtomicUsize::new(0),
                removed: AtomicBool::new(false),
            }),
        };
        let reuse = config.limits.instance_reuse;
        let instances = (reuse > 1).then(|| InstancePool::new(&config.limits));
        let (program, declared) = match program {
            Ok((program, declared)) => (Ok(program), declared),
            Err(e) => (Err(e), Vec::new()),
        };
        Self {
            deployment: Arc::new(deployment),
            program,
            declared,
            gate,
            instances,
            metrics: FunctionMetrics::default(),
        }
    }

    /// This version's counters, for `/metrics`.
    pub fn metrics(&self) -> &FunctionMetrics {
        &self.metrics
    }

    /// The program to run, or why this version cannot run (for example a module that failed
    /// verification when the server started).
    pub fn program(&self) -> Result<&Program, &str> {
        self.program.as_ref().map_err(String::as_str)
    }

    /// Every route the function answers on: its configured routes, then those its module
    /// declared. [`super::Resolved::route`] indexes this order.
    pub fn routes(&self) -> impl Iterator<Item = &Route> {
        self.config
            .routes
            .iter()
            .chain(self.declared.iter().map(|(route, _)| route))
    }

    /// The route at `index` of [`Function::routes`].
    pub(crate) fn route(&self, index: usize) -> &Route {
        match index.checked_sub(self.config.routes.len()) {
            Some(declared) => &self.declared[declared].0,
            None => &self.config.routes[index],
        }
    }

    /// The program that handles the route at `index` of [`Function::routes`]: the
    /// function's program, or for a declared route the one that runs its handler.
    pub(crate) fn handler(&self, index: usize) -> Result<&Program, &str> {
        match index.checked_sub(self.config.routes.len()) {
            Some(declared) => Ok(&self.declared[declared].1),
            None => self.program(),
        }
    }

    /// The instances this version keeps between requests, if it reuses instances.
    pub fn instances(&self) -> Option<&Arc<InstancePool>> {
        self.instances.as_ref()
    }

    /// Waits for a free instance slot; `None` if the function stays saturated for
    /// [`QUEUE_WAIT`], its queue is already full, or it was removed ([`Function::removed`]).
    pub async fn admit(&self) -> Option<Admission> {
        let admitted = self.wait_for_slot().await?;
        // Checked once the slot is held: `retire` waits for every slot after marking the
        // function removed, so a call admitted here finishes before its data goes.
        (!self.removed()).then_some(admitted)
    }

    /// Whether the function was removed: its calls are refused as if it did not exist.
    pub fn removed(&self) -> bool {
        self.gate.removed.load(Ordering::Acquire)
    }

    async fn wait_for_slot(&self) -> Option<Admission> {
        let gate = &self.gate;
        if let Ok(permit) = gate.permits.clone().try_acquire_owned() {
            return Some(Admission(permit));
        }
        self.metrics.waited();
        if !wafer_host::trace::enabled() {
            return self.wait_in_queue().await;
        }
        // Only a call that waits has this span.
        let span = tracing::info_span!(
            target: wafer_host::trace::TARGET,
            "wafer.admission",
            otel.name = "admission wait",
            wafer.function = self.name.as_str(),
            wafer.admitted = tracing::field::Empty,
        );
        // Boxed: the admission's future (within every call's) no bigger for tracing.
        let waiting = tracing::Instrument::instrument(self.wait_in_queue(), span.clone());
        let admitted = Box::pin(waiting).await;
        span.record("wafer.admitted", admitted.is_some());
        admitted
    }

    /// Waits in the function's admission queue for a slot, up to [`QUEUE_WAIT`].
    async fn wait_in_queue(&self) -> Option<Admission> {
        let gate = &self.gate;
        let Some(_queued) = Queued::join(gate) else {
            self.metrics.refused();
            return None;
        };
        // The place in the queue is given back when `_queued` drops: after the wait, or when
        // the caller gives up (its future dropped mid-wait, as by an HTTP/2 stream reset).
        match tokio::time::timeout(QUEUE_WAIT, gate.permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(Admission(permit)),
            _ => {
                self.metrics.refused();
                None
            }
        }
    }
}

impl crate::metrics::Measured for Function {
    fn name(&self) -> &str {
        self.deployment.name.as_str()
    }

    fn version(&self) -> u32 {
        self.deployment.version
    }

    fn counters(&self) -> &FunctionMetrics {
        &self.metrics
    }
}

impl Function {
    /// Marks the function removed (no call is admitted any more), then waits, up to
    /// `limit`, until no call of it runs on this node (every slot of its gate free); says
    /// whether they all finished.
    pub(crate) async fn retire(&self, limit: Duration) -> bool {
        self.gate.removed.store(true, Ordering::Release);
        let all = self.gate.limit;
        tokio::time::timeout(limit, self.gate.permits.acquire_many(all))
            .await
            .is_ok_and(|permits| permits.is_ok())
    }
}

/// A place in a gate's queue, held while a call waits for a slot.
struct Queued<'a>(&'a Gate);

impl<'a> Queued<'a> {
    /// Takes a place, unless as many calls as the limit are already waiting.
    fn join(gate: &'a Gate) -> Option<Self> {
        let queued = Self(gate);
        (gate.waiting.fetch_add(1, Ordering::AcqRel) < gate.limit as usize).then_some(queued)
    }
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn function(max_concurrency: u32) -> Function {
        let mut config = wafer_registry::FunctionConfig::default();
        config.limits.max_concurrency = max_concurrency;
        let deployment = Deployment::of("f".parse().unwrap(), config);
        Function::new(deployment, Err("no program".into()), None)
    }

    #[tokio::test]
    async fn a_removed_function_admits_no_caller_that_was_waiting() {
        let f = Arc::new(function(1));
        let running = f.admit().await.unwrap();
        // A caller that took the function before `rm` waits for the slot.
        let waiter = tokio::spawn({
            let f = f.clone();
            async move { f.admit().await.is_some() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let retired = tokio::spawn({
            let f = f.clone();
            async move { f.retire(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(running);
        assert!(!waiter.await.unwrap(), "a caller was admitted after rm");
        assert!(
            retired.await.unwrap(),
            "the running call was not waited for"
        );
        assert!(f.admit().await.is_none());
    }

    #[tokio::test]
    async fn callers_that_give_up_while_queued_leave_the_queue() {
        let f = function(1);
        let busy = f.admit().await.unwrap();
        // Ten callers queue up and give up (their futures dropped) before a slot frees.
        for _ in 0..10 {
            let gave_up = tokio::time::timeout(Duration::from_millis(5), f.admit()).await;
            assert!(gave_up.is_err(), "a caller was admitted past the limit");
        }
        assert_eq!(f.gate.waiting.load(Ordering::Acquire), 0);
        // The queue still takes a caller, who gets the slot when it frees.
        let waiter = f.admit();
        drop(busy);
        assert!(waiter.await.is_some());
    }
}
