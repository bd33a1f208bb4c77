//! Stage 3 of the telemetry pipeline: a CGI program subscribed to `batches.ready`. Each message
//! is a batch of events, a JSON array, which it `POST`s unchanged, with
//! `content-type: application/json`, to the URL in config value `endpoint`.
//!
//! It logs `posted N events: STATUS`. When the endpoint cannot be reached or answers with a
//! status other than 2xx, it logs the error and answers `502`, so the delivery counts as
//! failed (a message that is not a JSON array gets `400`, a missing `endpoint` `500`).
//!
//! `GET` answers a line describing what it does.
//!
//! Grants: `subscribe = ["batches.ready"]`, `http = ["<the endpoint's origin>"]` and
//! `config = { endpoint = "<URL>" }`.

use std::env;

use serde_json::Value;
use wafer_guest::{cgi, config, http, log};

/// The topic batches arrive on.
const READY_TOPIC: &str = "batches.ready";
/// How much of an endpoint's error answer goes into the log, in characters.
const ERROR_BODY_CHARS: usize = 200;

fn main() -> std::io::Result<()> {
    let mut request = cgi::Request::from_env();
    let topic = env::var("WAFER_TOPIC").ok().filter(|t| !t.is_empty());
    let response = match (request.method.as_str(), topic) {
        ("POST", Some(_)) => match forward(request.body()?) {
            Ok(done) => text(200, format!("{done}\n")),
            Err(failure) => {
                log::error(&failure.message);
                text(failure.status, format!("{}\n", failure.message))
            }
        },
        ("GET", _) => text(200, describe()),
        _ => text(
            405,
            "GET describes this function; batches arrive as messages\n",
        )
        .header("Allow", "GET"),
    };
    response.send()
}

/// Posts `batch` to the endpoint; answers `posted N events: STATUS`.
fn forward(batch: &[u8]) -> Result<String, Failure> {
    let events = serde_json::from_slice::<Vec<Value>>(batch)
        .map_err(|e| Failure {
            status: 400,
            message: format!("the message is not a JSON array of events: {e}"),
        })?
        .len();
    let endpoint = config::get("endpoint").map_err(|e| Failure {
        status: 500,
        message: format!("config error: {e}"),
    })?;
    let response = http::Request::post(&endpoint)
        .header("content-type", "application/json")
        .body(batch)
        .send()
        .map_err(|e| Failure {
            status: 502,
            message: format!("cannot post {events} events to {endpoint}: {e}"),
        })?;
    let done = format!("posted {events} events: {}", response.status);
    log::info(&done);
    if !(200..300).contains(&response.status) {
        let answer = response.text();
        let answer: String = answer.trim_end().chars().take(ERROR_BODY_CHARS).collect();
        return Err(Failure {
            status: 502,
            message: format!("{endpoint} answered {}: {answer}", response.status),
        });
    }
    Ok(done)
}

/// What this function does, for a `GET`.
fn describe() -> String {
    let target = match config::get("endpoint") {
        Ok(endpoint) => endpoint,
        Err(e) => format!("nowhere yet (config error: {e})"),
    };
    format!("pipeline-gateway: posts each batch of events published to {READY_TOPIC} to {target}\n")
}

/// Why forwarding a batch failed: the status to answer with and the message to answer and log.
struct Failure {
    status: u16,
    message: String,
}

/// A plain-text response.
fn text(status: u16, body: impl Into<Vec<u8>>) -> cgi::Response {
    cgi::Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
}
