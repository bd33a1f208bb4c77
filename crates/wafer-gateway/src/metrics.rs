//! Prometheus metrics, served at `GET /metrics` (and `/_wafer/metrics`) in the OpenMetrics
//! text format by `prometheus-client`.
//!
//! Each live function version carries its own [`FunctionMetrics`]: plain atomic counters and
//! a fixed-bucket histogram, so recording a request costs a few relaxed atomic adds and
//! neither a lock nor an allocation (`prometheus-client`'s own histogram takes a mutex per
//! observation, and its label families a map lookup). A scrape walks the live table and
//! encodes what it finds through `prometheus-client`'s [`Collector`] interface. The series
//! of a version end when another version replaces it.
//!
//! Every metric and its meaning is listed in docs/operations.md.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use wafer_runtime::Fault;

use crate::error::Error;

/// Upper bounds of the request-duration buckets, in seconds.
const BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// The host calls counted one by one; any other is counted as `other`.
const HOST_CALLS: [(&str, &str); 11] = [
    ("kv", "get"),
    ("kv", "set"),
    ("kv", "delete"),
    ("kv", "list"),
    ("kv", "increment"),
    ("pubsub", "publish"),
    ("config", "get"),
    ("config", "all"),
    ("http", "request"),
    ("log", "write"),
    ("other", "other"),
];

/// Which counter of a function's a metric reports.
type Pick = fn(&FunctionMetrics) -> &AtomicU64;

/// The counters of one function version. See the module docs.
#[derive(Default)]
pub struct FunctionMetrics {
    /// Answered requests by status class (index 0 is 1xx, 4 is 5xx).
    requests: [AtomicU64; 5],
    duration: Histogram,
    in_flight: AtomicI64,
    queued: AtomicU64,
    busy: AtomicU64,
    timeouts: AtomicU64,
    traps: AtomicU64,
    out_of_memory: AtomicU64,
    host_calls: [AtomicU64; HOST_CALLS.len()],
    deliveries: AtomicU64,
    /// How long the version took to compile (or load from the artifact cache), in nanoseconds.
    compile_nanos: AtomicU64,
}

/// A request counted as in flight until dropped.
pub(crate) struct InFlight<'a>(&'a FunctionMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl FunctionMetrics {
    /// Counts a request as in flight until the guard drops.
    pub(crate) fn in_flight(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Counts an answered request: its status and how long it took to answer.
    pub(crate) fn answered(&self, status: StatusCode, took: Duration) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class].fetch_add(1, Ordering::Relaxed);
        self.duration.observe(took);
    }

    /// Counts a call that had to wait for a free slot.
    pub(crate) fn waited(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a call refused because the function stayed at its concurrency limit.
    pub(crate) fn refused(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a failed call by what went wrong, if it was the guest's fault.
    pub(crate) fn failed(&self, error: &Error) {
        let Error::Guest { fault, .. } = error else {
            return;
        };
        let counter = match fault {
            Fault::Timeout(_) => &self.timeouts,
            Fault::OutOfMemory(_) => &self.out_of_memory,
            Fault::Trap(_) | Fault::OutputTooLarge(_) => &self.traps,
            Fault::Busy => &self.busy,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a host call the guest made.
    pub(crate) fn host_call(&self, namespace: &str, operation: &str) {
        let other = HOST_CALLS.len() - 1;
        let index = HOST_CALLS
            .iter()
            .position(|&(n, o)| n == namespace && o == operation)
            .unwrap_or(other);
        self.host_calls[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a pub/sub message delivered to the function.
    pub(crate) fn delivered(&self) {
        self.deliveries.fetch_add(1, Ordering::Relaxed);
    }

    /// Records how long the version took to compile or load.
    pub(crate) fn compiled(&self, took: Duration) {
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.compile_nanos.store(nanos, Ordering::Relaxed);
    }

    /// How long the version took to compile or load.
    pub fn compile_time(&self) -> Duration {
        Duration::from_nanos(self.compile_nanos.load(Ordering::Relaxed))
    }

    /// The counters as JSON, for the dashboard (`GET /_wafer/stats`).
    pub(crate) fn snapshot(&self) -> serde_json::Value {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let classes = ["1xx", "2xx", "3xx", "4xx", "5xx"];
        let requests: serde_json::Map<String, serde_json::Value> = classes
            .iter()
            .zip(&self.requests)
            .map(|(class, count)| ((*class).to_owned(), load(count).into()))
            .collect();
        let buckets: Vec<serde_json::Value> = BUCKETS
            .iter()
            .map(|&le| serde_json::Value::from(le))
            .chain([serde_json::Value::from("+Inf")])
            .zip(&self.duration.buckets)
            .map(|(le, count)| serde_json::json!([le, load(count)]))
            .collect();
        serde_json::json!({
            "requests": requests,
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "duration_buckets": buckets,
            "duration_sum_seconds": load(&self.duration.sum_nanos) as f64 / 1e9,
            "queue_waits": load(&self.queued),
            "busy_rejections": load(&self.busy),
            "timeouts": load(&self.timeouts),
            "traps": load(&self.traps),
            "memory_limit_hits": load(&self.out_of_memory),
        })
    }
}

/// Request durations in fixed buckets, lock-free.
#[derive(Default)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    fn observe(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS.partition_point(|&bound| bound < seconds);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .zip(counts.iter().copied())
            .collect();
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }
}

/// What the server reports beside the functions.
#[derive(Debug, Default)]
pub(crate) struct ServerFigures {
    /// Open client connections.
    pub(crate) connections: u64,
    /// Accepted asynchronous invocations not yet finished, if the queue could say.
    pub(crate) queue_depth: Option<u64>,
    /// Instance slots of the pooling allocator in use and in all, if it pools.
    pub(crate) pool: Option<(u64, u64)>,
}

/// What a scrape reads of a live function (the live table's `Function`): its name, its
/// version, its counters.
pub(crate) trait Measured: Send + Sync + 'static {
    /// The function's name.
    fn name(&self) -> &str;
    /// The version the counters are of.
    fn version(&self) -> u32;
    /// The counters.
    fn counters(&self) -> &FunctionMetrics;
}

/// One scrape: the functions and figures it reports.
struct Scrape<F> {
    functions: Vec<Arc<F>>,
    server: ServerFigures,
}

impl<F> std::fmt::Debug for Scrape<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrape")
            .field("functions", &self.functions.len())
            .field("server", &self.server)
            .finish()
    }
}

/// The OpenMetrics text of a scrape of `functions` and the server's figures.
pub(crate) fn encode<F: Measured>(mut functions: Vec<Arc<F>>, server: ServerFigures) -> String {
    functions.sort_by(|a, b| a.name().cmp(b.name()));
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { functions, server }));
    let mut text = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
    text
}

/// The content type of [`encode`]'s text.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl<F: Measured> Collector for Scrape<F> {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let versions: Vec<String> = self
            .functions
            .iter()
            .map(|f| f.version().to_string())
            .collect();
        let labelled = || {
            self.functions.iter().zip(&versions).map(|(f, v)| {
                (
                    f.counters(),
                    [("function", f.name()), ("version", v.as_str())],
                )
            })
        };
        let counter = |v: &AtomicU64| v.load(Ordering::Relaxed);

        let mut family = encoder.encode_descriptor(
            "wafer_requests",
            "Requests answered by a function, by status class",
            None,
            MetricType::Counter,
        )?;
        for (m, labels) in labelled() {
            for (class, count) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().zip(&m.requests) {
                let labels = [labels[0], labels[1], ("class", class)];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&counter(count), None)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "wafer_request_duration",
            "Time from a request's arrival to its response head",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (m, labels) in labelled() {
            m.duration.encode(family.encode_family(&labels)?)?;
        }

        let mut family = encoder.encode_descriptor(
            "wafer_requests_in_flight",
            "Calls of a function running now",
            None,
            MetricType::Gauge,
        )?;
        for (m, labels) in labelled() {
            let now = m.in_flight.load(Ordering::Relaxed);
            family.encode_family(&labels)?.encode_gauge(&now)?;
        }

        let counters: [(&str, &str, Pick); 6] = [
            (
                "wafer_queue_waits",
                "Calls that waited for a free slot at the function's concurrency limit",
                |m| &m.queued,
            ),
            (
                "wafer_busy_rejections",
                "Calls refused with 503 because the function stayed at its concurrency limit",
                |m| &m.busy,
            ),
            ("wafer_timeouts", "Calls stopped at their time limit", |m| {
                &m.timeouts
            }),
            (
                "wafer_traps",
                "Calls that trapped (or wrote past their output limit)",
                |m| &m.traps,
            ),
            (
                "wafer_memory_limit_hits",
                "Calls that failed growing their memory past the limit",
                |m| &m.out_of_memory,
            ),
            (
                "wafer_pubsub_deliveries",
                "Pub/sub messages delivered to a subscribing function",
                |m| &m.deliveries,
            ),
        ];
        for (name, help, pick) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (m, labels) in labelled() {
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&counter(pick(m)), None)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "wafer_host_calls",
            "Host calls made by a function's guests (key-value, pub/sub, config, ...)",
            None,
            MetricType::Counter,
        )?;
        for (m, labels) in labelled() {
            for (&(namespace, operation), count) in HOST_CALLS.iter().zip(&m.host_calls) {
                let count = counter(count);
                if count == 0 {
                    continue;
                }
                let labels = [
                    labels[0],
                    labels[1],
                    ("namespace", namespace),
                    ("operation", operation),
                ];
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
            }
        }

        let mut family = encoder.encode_descriptor(
            "wafer_compile_duration",
            "How long the version took to compile, or to load from the artifact cache",
            Some(&Unit::Seconds),
            MetricType::Gauge,
        )?;
        for (m, labels) in labelled() {
            let seconds = m.compile_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            family.encode_family(&labels)?.encode_gauge(&seconds)?;
        }

        let server = &self.server;
        gauge(
            &mut encoder,
            "wafer_open_connections",
            "Client connections open now",
            None,
            server.connections,
        )?;
        if let Some(depth) = server.queue_depth {
            gauge(
                &mut encoder,
                "wafer_async_queue_depth",
                "Asynchronous invocations accepted and not finished (queued or running)",
                None,
                depth,
            )?;
        }
        if let Some((used, capacity)) = server.pool {
            gauge(
                &mut encoder,
                "wafer_instance_slots_in_use",
                "Instance slots of the pooling allocator in use (instances alive)",
                None,
                used,
            )?;
            gauge(
                &mut encoder,
                "wafer_instance_slots",
                "Instance slots of the pooling allocator in all",
                None,
                capacity,
            )?;
        }
        let mut family = encoder.encode_descriptor(
            "wafer_background_panics",
            "Panics caught in the server's background work, by task (each one logged; the \
             task went on or was started again)",
            None,
            MetricType::Counter,
        )?;
        for (task, count) in wafer_host::tasks::panics() {
            let labels = [("task", task)];
            family
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        if let Some(process) = Process::read() {
            gauge(
                &mut encoder,
                "process_resident_memory",
                "Resident memory of the server process",
                Some(&Unit::Bytes),
                process.resident_bytes,
            )?;
            let mut family = encoder.encode_descriptor(
                "process_cpu",
                "CPU time of the server process, user and system",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            family.encode_counter::<NoLabelSet, _, f64>(&process.cpu_seconds, None)?;
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors of the server process",
                None,
                process.open_fds,
            )?;
        }
        Ok(())
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, unit, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// The process's own figures, from `/proc/self` (Linux).
struct Process {
    resident_bytes: u64,
    cpu_seconds: f64,
    open_fds: u64,
}

impl Process {
    fn read() -> Option<Self> {
        // statm: sizes in pages; the second is the resident set.
        let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
        let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
        // stat: user and system time in clock ticks are the 12th and 13th fields after the
        // parenthesised command name (which may contain spaces).
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let after = &stat[stat.rfind(')')? + 2..];
        let mut fields = after.split_whitespace().skip(11);
        let user: u64 = fields.next()?.parse().ok()?;
        let system: u64 = fields.next()?.parse().ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        Some(Self {
            resident_bytes: pages * PAGE_SIZE,
            cpu_seconds: (user + system) as f64 / CLOCK_TICKS,
            open_fds,
        })
    }
}

/// Linux's page size on the platforms Wafer runs on (x86-64, aarch64 with 4 KiB pages).
const PAGE_SIZE: u64 = 4096;
/// Linux's `USER_HZ`, the unit of CPU times in `/proc` (100 on every mainstream platform).
const CLOCK_TICKS: f64 = 100.0;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_the_first_bucket_they_fit() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(400)); // <= 0.5 ms
        h.observe(Duration::from_micros(500)); // <= 0.5 ms (bounds are inclusive)
        h.observe(Duration::from_millis(2)); // <= 2.5 ms
        h.observe(Duration::from_secs(120)); // +Inf
        let counts: Vec<u64> = h
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 2);
        assert_eq!(counts[2], 1);
        assert_eq!(counts[BUCKETS.len()], 1);
        assert_eq!(counts.iter().sum::<u64>(), 4);
        assert_eq!(h.sum_nanos.load(Ordering::Relaxed), 120_002_900_000);
    }

    #[test]
    fn unknown_host_calls_count_as_other() {
        let m = FunctionMetrics::default();
        m.host_call("kv", "get");
        m.host_call("nope", "x");
        assert_eq!(m.host_calls[0].load(Ordering::Relaxed), 1);
        assert_eq!(
            m.host_calls[HOST_CALLS.len() - 1].load(Ordering::Relaxed),
            1
        );
    }
}
