//! Stage 2 of the telemetry pipeline: a CGI program subscribed to `telemetry.>`. Each message
//! arrives as a `POST` whose body is the event and whose topic is in `WAFER_TOPIC`.
//!
//! For each event it keeps, in its key-value store:
//! - `count:<topic>`: how many events came on that topic, a decimal number;
//! - `batch`: the events not yet passed on, a JSON array of `{"topic": T, "event": E}`.
//!
//! When the batch holds `batch_size` events (config value, default 3) it is published to
//! `batches.ready` and cleared. If publishing fails the batch is kept, so the next event tries
//! again. A message answers `200 ok`; one that is not JSON `400`; any other failure `500` with
//! the host's message, so the delivery counts as failed.
//!
//! `GET` answers the state as JSON: `{"counts": {"telemetry.cpu": 2, ...}, "pending": 1}`.
//!
//! Grants: `subscribe = ["telemetry.>"]`, `publish = ["batches.ready"]`, `kv = true`, and
//! optionally `config = { batch_size = "N" }`.

use std::env;

use serde_json::{json, Map, Value};
use wafer_guest::{cgi, config, kv, log, pubsub, Error};

/// The key of the pending batch.
const BATCH_KEY: &str = "batch";
/// The prefix of the per-topic counters.
const COUNT_PREFIX: &str = "count:";
/// Where full batches go.
const READY_TOPIC: &str = "batches.ready";
/// The batch size when config `batch_size` is not set.
const DEFAULT_BATCH_SIZE: usize = 3;

fn main() -> std::io::Result<()> {
    let mut request = cgi::Request::from_env();
    let topic = env::var("WAFER_TOPIC").ok().filter(|t| !t.is_empty());
    let response = match (request.method.as_str(), topic) {
        ("POST", Some(topic)) => match receive(&topic, request.body()?) {
            Ok(()) => text(200, "ok\n"),
            Err(failure) => failure.response(),
        },
        ("GET", _) => match summary() {
            Ok(summary) => cgi::Response::new(200)
                .header("Content-Type", "application/json")
                .body(format!("{summary}\n")),
            Err(failure) => failure.response(),
        },
        _ => text(
            405,
            "GET shows the counts; events arrive as messages on telemetry.>\n",
        )
        .header("Allow", "GET"),
    };
    response.send()
}

/// Counts one event that came on `topic` and adds it to the batch, publishing the batch when
/// it is full.
fn receive(topic: &str, message: &[u8]) -> Result<(), Failure> {
    let event: Value = serde_json::from_slice(message).map_err(|e| Failure {
        status: 400,
        message: format!("the message on {topic} is not JSON: {e}"),
    })?;
    let batch_size = batch_size()?;

    let count_key = format!("{COUNT_PREFIX}{topic}");
    let count = read_count(&count_key)? + 1;
    kv::set(&count_key, count.to_string()).map_err(kv_failure)?;

    let mut batch = read_batch()?;
    batch.push(json!({ "topic": topic, "event": event }));
    let events = batch.len();
    let batch = Value::Array(batch).to_string();
    if events < batch_size {
        return kv::set(BATCH_KEY, batch).map_err(kv_failure);
    }
    match pubsub::publish(READY_TOPIC, &batch) {
        Ok(()) => {
            log::info(&format!("published {events} events to {READY_TOPIC}"));
            kv::delete(BATCH_KEY).map_err(kv_failure)
        }
        Err(e) => {
            kv::set(BATCH_KEY, batch).map_err(kv_failure)?;
            Err(Failure::internal(format!(
                "publish error: {e} (the {events} events stay pending)"
            )))
        }
    }
}

/// The state: each topic's count and the number of events waiting in the batch.
fn summary() -> Result<Value, Failure> {
    let mut counts = Map::new();
    for key in kv::list(COUNT_PREFIX).map_err(kv_failure)? {
        let count = read_count(&key)?;
        let topic = key.strip_prefix(COUNT_PREFIX).unwrap_or(&key);
        counts.insert(topic.to_owned(), count.into());
    }
    let pending = read_batch()?.len();
    Ok(json!({ "counts": counts, "pending": pending }))
}

/// Config `batch_size`, a whole number above 0; [`DEFAULT_BATCH_SIZE`] when it is not set.
fn batch_size() -> Result<usize, Failure> {
    let value = config::get_opt("batch_size")
        .map_err(|e| Failure::internal(format!("config error: {e}")))?;
    let Some(value) = value else {
        return Ok(DEFAULT_BATCH_SIZE);
    };
    match value.trim().parse() {
        Ok(size) if size > 0 => Ok(size),
        _ => Err(Failure::internal(format!(
            "config batch_size must be a whole number above 0, not {value:?}"
        ))),
    }
}

/// The counter stored under `key`; 0 when there is none.
fn read_count(key: &str) -> Result<u64, Failure> {
    let Some(value) = kv::get_string(key).map_err(kv_failure)? else {
        return Ok(0);
    };
    value
        .parse()
        .map_err(|_| Failure::internal(format!("kv key {key:?} holds {value:?}, not a count")))
}

/// The pending batch; empty when there is none.
fn read_batch() -> Result<Vec<Value>, Failure> {
    let Some(raw) = kv::get(BATCH_KEY).map_err(kv_failure)? else {
        return Ok(Vec::new());
    };
    serde_json::from_slice(&raw)
        .map_err(|e| Failure::internal(format!("kv key {BATCH_KEY:?} is not a JSON array: {e}")))
}

/// Why a call failed: the status to answer with and the message to answer and log.
struct Failure {
    status: u16,
    message: String,
}

impl Failure {
    /// A failure that is not the caller's fault: `500`.
    fn internal(message: String) -> Self {
        Self {
            status: 500,
            message,
        }
    }

    /// Logs the failure and turns it into the response.
    fn response(self) -> cgi::Response {
        log::error(&self.message);
        text(self.status, format!("{}\n", self.message))
    }
}

/// A failed key-value call, with the host's message verbatim.
fn kv_failure(e: Error) -> Failure {
    Failure::internal(format!("kv error: {e}"))
}

/// A plain-text response.
fn text(status: u16, body: impl Into<Vec<u8>>) -> cgi::Response {
    cgi::Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
}
