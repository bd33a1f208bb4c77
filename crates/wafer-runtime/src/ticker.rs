//! The epoch ticker: the thread that advances an engine's epoch, so a running guest checks
//! its deadline (and yields to other tasks) once per tick, and that sleeps while no guest
//! runs, so an idle server uses no CPU.
//!
//! Every call into a guest holds a [`Running`] guard for as long as guest code may run
//! (instantiation, the call, a body still being written; a service for its whole life).
//! The ticker keeps ticking while any guard is held, and for [`LINGER`] after the last one is
//! dropped; then it parks until the next guard is taken. A guard taken while the ticker
//! ticks touches one atomic counter; only waking a parked ticker takes a lock.
//!
//! The count is process-wide (one per process, whatever the number of engines): a guest of
//! one engine keeps every engine's ticker awake, which costs nothing but ticks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// How often the epoch advances while guests run. A running guest checks its deadline, and
/// yields to other tasks, once per tick: 1 ms keeps timeouts precise and a busy guest from
/// hogging a thread.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How long a ticker goes on ticking after the last guest stopped, before it parks: long
/// enough that a steady stream of short requests never parks it.
const LINGER: Duration = Duration::from_millis(100);

/// Guests running now, in the whole process.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Tickers parked or about to park (each re-checks [`RUNNING`] after counting itself here).
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Every ticker thread, to wake.
static TICKERS: Mutex<Vec<Thread>> = Mutex::new(Vec::new());

/// Held while guest code may run; see the module docs.
#[must_use = "the ticker ticks only while the guard is held"]
pub(crate) struct Running(());

impl Running {
    /// Marks a guest as running, waking the tickers if they sleep.
    pub(crate) fn start() -> Self {
        // SeqCst pairs with the ticker's: either it sees this count before parking, or this
        // sees it counted in PARKED and wakes it.
        if RUNNING.fetch_add(1, Ordering::SeqCst) == 0 && PARKED.load(Ordering::SeqCst) > 0 {
            for ticker in TICKERS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                ticker.unpark();
            }
        }
        Running(())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Guests running now in the process (for tests and diagnostics).
pub fn running_guests() -> usize {
    RUNNING.load(Ordering::SeqCst)
}

/// Advances an engine's epoch every [`EPOCH_TICK`] while guests run, until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub(crate) fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wafer-epoch".into())
            .spawn(move || tick(&engine, &flag))
            .expect("spawning the epoch thread at start-up");
        TICKERS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(thread.thread().clone());
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn tick(engine: &Engine, stop: &AtomicBool) {
    let mut idle = Duration::ZERO;
    while !stop.load(Ordering::Relaxed) {
        if RUNNING.load(Ordering::SeqCst) > 0 {
            idle = Duration::ZERO;
        } else if idle >= LINGER {
            PARKED.fetch_add(1, Ordering::SeqCst);
            if RUNNING.load(Ordering::SeqCst) == 0 && !stop.load(Ordering::Relaxed) {
                std::thread::park();
            }
            PARKED.fetch_sub(1, Ordering::SeqCst);
            idle = Duration::ZERO;
            continue;
        } else {
            idle += EPOCH_TICK;
        }
        std::thread::sleep(EPOCH_TICK);
        engine.increment_epoch();
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let id = thread.thread().id();
            thread.thread().unpark();
            let _ = thread.join();
            TICKERS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|t| t.id() != id);
        }
    }
}
