//! Scheduled calls (docs/operations.md#schedules): every node follows the schedules of the
//! functions it serves and, at each tick, queues the tick's call as an asynchronous
//! invocation (recorded, retried, listed like any other), with the header
//! `X-Wafer-Schedule`.
//!
//! The invocation's id is made from the tick's time and the function and schedule, and the
//! queue takes an id once ([`wafer_queue::Queue::enqueue_once`]): in a cluster every node
//! queues every tick and one of them wins, so a tick runs once whichever nodes are up. A
//! tick that falls while no node is up is not made up afterwards (as cron does).

use std::hash::Hasher;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::Serialize;
use wafer_queue::Invocation;
use wafer_registry::{Clock, FunctionName, Schedule};

use crate::App;

/// The header a scheduled call carries: the schedule's expression.
pub const SCHEDULE_HEADER: &str = "x-wafer-schedule";

/// How long the scheduler sleeps when nothing is scheduled (a change of the table wakes it
/// sooner).
const IDLE: Duration = Duration::from_secs(3600);

/// One schedule of one function, and its next tick.
struct Entry {
    function: FunctionName,
    schedule: Schedule,
    clock: Clock,
    next: DateTime<Utc>,
}

/// A schedule as listed: its expression and next tick.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleStatus {
    /// The expression.
    pub cron: String,
    /// The path below the function's route each call goes to, if not the route itself.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// The next tick (RFC 3339, UTC).
    pub next: Option<String>,
}

/// `schedules` with their next ticks after now.
pub(crate) fn status(schedules: &[Schedule]) -> Vec<ScheduleStatus> {
    let now = Utc::now();
    schedules
        .iter()
        .map(|schedule| ScheduleStatus {
            cron: schedule.cron.clone(),
            path: schedule.path.clone(),
            next: (schedule.clock().ok())
                .and_then(|clock| clock.next_after(now))
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        })
        .collect()
}

/// Follows the served functions' schedules and queues each tick, until the app goes.
pub(crate) async fn run(app: Weak<App>) {
    let Some(mut changes) = app.upgrade().map(|app| app.functions.changes()) else {
        return;
    };
    let mut entries = Vec::new();
    let mut changed = true;
    loop {
        let now = Utc::now();
        {
            let Some(app) = app.upgrade() else { return };
            if changed {
                entries = plan(&app, now, entries);
                changed = false;
            }
            for entry in entries.iter_mut().filter(|e| e.next <= now) {
                queue(&app, entry);
                // A tick more than one behind (the node was stopped or starved) is skipped.
                match entry.clock.next_after(now) {
                    Some(next) => entry.next = next,
                    None => entry.next = DateTime::<Utc>::MAX_UTC,
                }
            }
        }
        let wake = entries.iter().map(|e| e.next).min();
        let sleep = wake.map_or(IDLE, |at| (at - Utc::now()).to_std().unwrap_or_default());
        tokio::select! {
            () = tokio::time::sleep(sleep.min(IDLE)) => {}
            changed_now = changes.changed() => {
                if changed_now.is_err() {
                    return;
                }
                changed = true;
            }
        }
    }
}

/// The schedules of the functions served now; one that was planned already keeps its next
/// tick (a change of another function skips or repeats nothing).
fn plan(app: &App, now: DateTime<Utc>, before: Vec<Entry>) -> Vec<Entry> {
    let mut entries = Vec::new();
    for function in app.functions.active() {
        for schedule in &function.config.schedules {
            let kept = before
                .iter()
                .find(|e| e.function == function.name && e.schedule == *schedule);
            if let Some(kept) = kept {
                entries.push(Entry {
                    function: kept.function.clone(),
                    schedule: kept.schedule.clone(),
                    clock: kept.clock.clone(),
                    next: kept.next,
                });
                continue;
            }
            let Ok(clock) = schedule.clock() else {
                continue;
            };
            let Some(next) = clock.next_after(now) else {
                continue;
            };
            entries.push(Entry {
                function: function.name.clone(),
                schedule: schedule.clone(),
                clock,
                next,
            });
        }
    }
    entries
}

/// Queues the call of `entry`'s tick (in the background: a slow queue delays no other
/// schedule).
fn queue(app: &Arc<App>, entry: &Entry) {
    let at = entry.next;
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let invocation = Invocation {
        id: tick_id(&entry.function, &entry.schedule, millis),
        function: entry.function.clone(),
        method: "POST".into(),
        path: entry.schedule.path.clone(),
        // `Host`: an HTTP component's request needs an authority; the call is the server's own.
        headers: vec![
            ("host".into(), "localhost".into()),
            (SCHEDULE_HEADER.into(), entry.schedule.cron.clone()),
        ],
        callback: None,
        created: millis,
    };
    let body = Bytes::from(entry.schedule.body.clone());
    let app = app.clone();
    tokio::spawn(async move {
        let (id, name) = (invocation.id.clone(), invocation.function.clone());
        match app.invocations.enqueue_once(invocation, body).await {
            Ok(true) => tracing::debug!(function = %name, %id, tick = %at, "scheduled call queued"),
            Ok(false) => {
                tracing::debug!(function = %name, %id, tick = %at, "scheduled call queued by another node")
            }
            Err(e) => {
                tracing::warn!(function = %name, %id, tick = %at, "cannot queue a scheduled call: {e}")
            }
        }
    });
}

/// The id of a tick's invocation, the same on every node: the tick's time (so ids sort by
/// time, as every invocation id does), then a hash of the function and the schedule.
fn tick_id(function: &FunctionName, schedule: &Schedule, millis: u64) -> String {
    let mut hasher = fnv::FnvHasher::default();
    for part in [
        function.as_str(),
        &schedule.cron,
        &schedule.path,
        &schedule.body,
    ] {
        hasher.write(part.as_bytes());
        hasher.write_u8(0);
    }
    format!("{millis:012x}{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_has_one_id_everywhere() {
        let f: FunctionName = "report".parse().unwrap();
        let hourly = Schedule::of("0 * * * *");
        let a = tick_id(&f, &hourly, 1_796_620_000_000);
        assert_eq!(a, tick_id(&f, &hourly, 1_796_620_000_000));
        assert_eq!(a.len(), 24);
        assert!(a.starts_with(&format!("{:012x}", 1_796_620_000_000u64)));
        assert_ne!(
            a,
            tick_id(&f, &Schedule::of("0 0 * * *"), 1_796_620_000_000)
        );
        assert_ne!(a, tick_id(&f, &hourly, 1_796_620_000_001));
    }
}
