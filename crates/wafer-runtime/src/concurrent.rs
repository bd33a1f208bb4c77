//! Concurrent reuse of WASI 0.3 HTTP components: one instance serving several requests at
//! once, as Spin 4 and `wasmtime serve` do (component-model async runs each `handle` call as
//! a task of its own in the instance's store).
//!
//! Each instance lives in a worker task that runs its store's event loop and takes requests
//! from a channel: at most `max_concurrent_per_instance` at once and `instance_reuse` in all.
//! It is dropped after `instance_idle` with nothing to do, after its last request once it has
//! served its share, and at once when it fails. A request goes to the busiest instance with
//! room (so that few instances stay warm), or to a new one.
//!
//! What requests on one instance share: the guest's memory and state; its log (a request's
//! log is what the instance wrote while the request ran, other requests' lines included); its
//! memory limit; and its fate: a trap, or memory running out, fails every request in flight
//! on it. Each request keeps its own deadline: one that passes it answers with a timeout and
//! retires the instance (no new requests; dropped once the others finish). While wasm runs,
//! the store's deadline is the earliest of its requests', so a guest computing past it is
//! stopped, and its instance with it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime::component::Accessor;
use wasmtime_wasi_http::p3::bindings::{Service, ServicePre};

use crate::component::{fault, new_store, HttpCtx, HttpOptions};
use crate::error::Fault;
use crate::http::{p3_serve, Answer, Finished};
use crate::ticker::Running;
use wafer_abi::Limits;

/// A request's body, boxed to cross to the instance's task.
pub(crate) type JobBody = UnsyncBoxBody<Bytes, wasmtime_wasi_http::Error>;

/// One request for a shared instance.
pub(crate) struct Job {
    pub(crate) request: http::Request<JobBody>,
    pub(crate) https: bool,
    pub(crate) deadline: Instant,
    /// The guest's answer (the response, or its error code).
    pub(crate) answer: tokio::sync::oneshot::Sender<Answer>,
    /// How the request's run ended, once its body is done.
    pub(crate) finished: tokio::sync::oneshot::Sender<Finished>,
}

/// How many requests instances take, and how long they wait idle.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sharing {
    pub(crate) uses: u32,
    pub(crate) at_once: u32,
    pub(crate) idle: Duration,
}

/// The instances of one function version serving requests concurrently.
pub(crate) struct Workers {
    sharing: Sharing,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    next_id: u64,
}

/// A worker as dispatching sees it.
struct Slot {
    id: u64,
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
    /// Requests sent and not finished.
    active: u32,
    /// Requests sent in all.
    accepted: u32,
    /// False once it has served its share, or is retiring.
    accepting: bool,
    /// Why the instance failed, for the requests it dropped.
    failure: Arc<OnceLock<Fault>>,
}

impl Workers {
    pub(crate) fn new(sharing: Sharing) -> Self {
        Self {
            sharing,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if it did, the slots are still valid.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `job` to an instance with room, or to a new one made with `options`. Returns
    /// where the reason lands if that instance fails before finishing the job.
    pub(crate) fn dispatch(
        self: &Arc<Self>,
        pre: &ServicePre<HttpCtx>,
        options: &HttpOptions,
        job: Job,
    ) -> Result<Arc<OnceLock<Fault>>, Fault> {
        let mut state = self.lock();
        let at_once = self.sharing.at_once;
        if let Some(slot) = state
            .slots
            .iter_mut()
            .filter(|s| s.accepting && s.active < at_once)
            .max_by_key(|s| s.active)
        {
            slot.active += 1;
            slot.accepted += 1;
            slot.accepting = slot.accepted < self.sharing.uses;
            let failure = slot.failure.clone();
            // A worker removes its slot before it stops receiving: the send cannot fail.
            let _ = slot.jobs.send(job);
            return Ok(failure);
        }
        let store = new_store(pre.engine(), options)?;
        let (jobs, received) = tokio::sync::mpsc::unbounded_channel();
        let failure = Arc::new(OnceLock::new());
        let id = state.next_id;
        state.next_id += 1;
        let _ = jobs.send(job);
        state.slots.push(Slot {
            id,
            jobs,
            active: 1,
            accepted: 1,
            accepting: self.sharing.uses > 1,
            failure: failure.clone(),
        });
        drop(state);
        let worker = Worker {
            workers: self.clone(),
            id,
            limits: options.limits,
            failure: failure.clone(),
        };
        // The instance is made in the worker's task, within the span of the call it is for.
        let span = crate::trace::instantiate_span();
        tokio::spawn(worker.run(pre.clone(), store, received, span));
        Ok(failure)
    }

    /// One request of worker `id` finished; `retire` stops it taking more. True when the
    /// worker is done (retiring, nothing left): its slot is gone.
    fn finished(&self, id: u64, retire: bool) -> bool {
        let mut state = self.lock();
        let Some(at) = state.slots.iter().position(|s| s.id == id) else {
            return true;
        };
        let slot = &mut state.slots[at];
        slot.active -= 1;
        slot.accepting &= !retire;
        if slot.active == 0 && !slot.accepting {
            state.slots.swap_remove(at);
            return true;
        }
        false
    }

    /// Removes worker `id` if it has nothing to do; true if it was removed.
    fn retire_idle(&self, id: u64) -> bool {
        let mut state = self.lock();
        match state.slots.iter().position(|s| s.id == id) {
            Some(at) if state.slots[at].active == 0 => {
                state.slots.swap_remove(at);
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// Removes worker `id` whatever it was doing.
    fn remove(&self, id: u64) {
        self.lock().slots.retain(|s| s.id != id);
    }
}

/// One instance's task.
struct Worker {
    workers: Arc<Workers>,
    id: u64,
    limits: Limits,
    failure: Arc<OnceLock<Fault>>,
}

impl Worker {
    async fn run(
        self,
        pre: ServicePre<HttpCtx>,
        mut store: wasmtime::Store<HttpCtx>,
        mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>,
        span: tracing::Span,
    ) {
        store.set_epoch_deadline(1);
        let _running = Running::start();
        let result = async {
            let service =
                crate::trace::instantiating(span, pre.instantiate_async(&mut store)).await?;
            store
                .run_concurrent(async |guest| self.serve(guest, &service, &mut jobs).await)
                .await
        }
        .await;
        if let Err(e) = result {
            let _ = self.failure.set(fault(store.data(), &e, &self.limits));
            tracing::debug!("a shared instance failed: {e:#}");
            self.workers.remove(self.id);
        }
        // Requests sent but never started fail with the instance's reason.
        jobs.close();
    }

    /// Takes requests and runs them side by side until the instance is done.
    async fn serve(
        &self,
        guest: &Accessor<HttpCtx>,
        service: &Service,
        jobs: &mut tokio::sync::mpsc::UnboundedReceiver<Job>,
    ) -> wasmtime::Result<()> {
        let idle = self.workers.sharing.idle;
        let mut running = FuturesUnordered::new();
        // The deadlines of the requests running, for the store's.
        let mut deadlines: BTreeMap<Instant, u32> = BTreeMap::new();
        loop {
            tokio::select! {
                job = jobs.recv() => {
                    let Some(job) = job else { return Ok(()) };
                    *deadlines.entry(job.deadline).or_default() += 1;
                    self.set_deadline(guest, &deadlines);
                    running.push(self.one(guest, service, job));
                }
                Some((deadline, retire)) = running.next() => {
                    if let Some(n) = deadlines.get_mut(&deadline) {
                        *n -= 1;
                        if *n == 0 {
                            deadlines.remove(&deadline);
                        }
                    }
                    self.set_deadline(guest, &deadlines);
                    if self.workers.finished(self.id, retire) {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep(idle), if running.is_empty() => {
                    if self.workers.retire_idle(self.id) {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// The store's deadline: the earliest of the running requests', or one timeout from now
    /// for work the guest does between requests.
    fn set_deadline(&self, guest: &Accessor<HttpCtx>, deadlines: &BTreeMap<Instant, u32>) {
        let deadline = deadlines
            .keys()
            .next()
            .copied()
            .unwrap_or_else(|| self.limits.deadline(Instant::now()));
        guest.with(|mut store| store.data_mut().deadline = deadline);
    }

    /// Runs one request within its deadline; says how it ended on its `finished` channel.
    /// Returns its deadline, and whether the instance must retire (the request timed out or
    /// failed, leaving the guest in a state no other request should meet).
    async fn one(&self, guest: &Accessor<HttpCtx>, service: &Service, job: Job) -> (Instant, bool) {
        let Job {
            request,
            https,
            deadline,
            answer,
            finished,
        } = job;
        let answered = AtomicBool::new(false);
        let serve = p3_serve(guest, service, request, https, answer, &answered);
        let result = match tokio::time::timeout_at(deadline.into(), serve).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(guest.with(|mut store| fault(store.data_mut(), &e, &self.limits))),
            Err(_) => Err(Fault::Timeout(self.limits.timeout)),
        };
        let retire = result.is_err();
        let (log, log_truncated) = guest.with(|mut store| store.data_mut().hooks.log.drain());
        let _ = finished.send(Finished {
            result,
            log,
            log_truncated,
        });
        (deadline, retire)
    }
}
