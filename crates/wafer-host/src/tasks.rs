//! The server's background work, supervised: a panic in a long-running task (the live
//! table's watch, the asynchronous dispatcher, the callback poster, a pub/sub drain or
//! puller) or in one piece of work it runs (a delivery, an invocation) is logged, counted by
//! kind for `/metrics` (`wafer_background_panics_total{task}`), and never the end of the
//! task: [`supervise`] starts it again, [`contained`] turns the piece into its failure.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

/// Panics caught so far, by the kind of task.
static PANICS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// How long a task that panicked waits before it is started again.
const RESTART: Duration = Duration::from_secs(1);

/// Counts one panic of a task of kind `task`.
pub fn count_panic(task: &'static str) {
    *PANICS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(task)
        .or_default() += 1;
}

/// Panics caught so far, by the kind of task, in name order.
pub fn panics() -> Vec<(&'static str, u64)> {
    let panics = PANICS.lock().unwrap_or_else(|e| e.into_inner());
    panics.iter().map(|(task, n)| (*task, *n)).collect()
}

/// Runs the task `start` makes until it ends by itself; one that panics is logged, counted
/// as `task`, and started again (a second later). A long-running loop that returns when
/// what it serves is gone (a `Weak` that no longer upgrades) ends here too.
pub fn supervise<F, Fut>(task: &'static str, mut start: F) -> tokio::task::JoinHandle<()>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            match tokio::spawn(start()).await {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    count_panic(task);
                    tracing::error!(
                        task,
                        "a background task failed (a panic; see above); starting it again"
                    );
                    tokio::time::sleep(RESTART).await;
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
        }
    })
}

/// Runs one piece of work of kind `task` in a task of its own, so that a panic on its path
/// is counted and returned as `Err` (with the panic's text) rather than unwinding through
/// the loop that runs it. Dropping the future aborts the work.
pub async fn contained<T: Send + 'static>(
    task: &'static str,
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);
    impl<T> Drop for AbortOnDrop<T> {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let mut handle = AbortOnDrop(tokio::spawn(work));
    match (&mut handle.0).await {
        Ok(value) => Ok(value),
        Err(e) => {
            if e.is_panic() {
                count_panic(task);
            }
            Err(e.to_string())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    fn count(task: &str) -> u64 {
        panics()
            .into_iter()
            .find(|(t, _)| *t == task)
            .map_or(0, |(_, n)| n)
    }

    #[tokio::test]
    async fn a_task_that_panics_is_counted_and_started_again() {
        let runs = Arc::new(AtomicU32::new(0));
        let handle = supervise("test-supervised", {
            let runs = runs.clone();
            move || {
                let runs = runs.clone();
                async move {
                    if runs.fetch_add(1, Ordering::SeqCst) == 0 {
                        panic!("the first run fails");
                    }
                }
            }
        });
        handle.await.unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
        assert_eq!(count("test-supervised"), 1);
    }

    #[tokio::test]
    async fn a_piece_of_work_that_panics_is_its_own_failure() {
        let failed = contained("test-contained", async { panic!("boom") }).await;
        assert!(failed.unwrap_err().contains("panic"));
        assert_eq!(contained("test-contained", async { 7 }).await, Ok(7));
        assert_eq!(count("test-contained"), 1);
    }
}
