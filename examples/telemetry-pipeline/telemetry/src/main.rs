//! Stage 1 of the telemetry pipeline: the front door. A CGI program that takes an event, a JSON
//! object such as `{"kind": "cpu", "value": 0.93}`, by `POST` and publishes the body unchanged
//! to topic `telemetry.<kind>`.
//!
//! - `202 published telemetry.<kind>` when the event was published;
//! - `400` when the body is not a JSON object with a `kind` string of `[a-z0-9_-]+`;
//! - `502` with the host's message when publishing failed (for example `denied: ...`);
//! - `405` for any method but `POST`.
//!
//! Grants: `publish = ["telemetry.>"]`.

use serde_json::Value;
use wafer_guest::{cgi, pubsub};

fn main() -> std::io::Result<()> {
    let mut request = cgi::Request::from_env();
    if request.method != "POST" {
        let usage = "POST an event, a JSON object such as {\"kind\": \"cpu\", \"value\": 0.93}\n";
        return text(405, usage).header("Allow", "POST").send();
    }
    let event = request.body()?;
    let response = match topic_for(event) {
        Err(reason) => text(400, format!("{reason}\n")),
        Ok(topic) => match pubsub::publish(&topic, event) {
            Ok(()) => text(202, format!("published {topic}\n")),
            Err(e) => text(502, format!("publish error: {e}\n")),
        },
    };
    response.send()
}

/// The topic an event goes to, `telemetry.<kind>`, or why `body` is not an event.
fn topic_for(body: &[u8]) -> Result<String, String> {
    let event: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let Value::Object(fields) = event else {
        return Err("the body must be a JSON object, such as {\"kind\": \"cpu\"}".to_owned());
    };
    match fields.get("kind") {
        None => Err("the event has no \"kind\"".to_owned()),
        Some(Value::String(kind)) if is_valid_kind(kind) => Ok(format!("telemetry.{kind}")),
        Some(Value::String(kind)) => Err(format!(
            "kind {kind:?} is not one or more of a-z, 0-9, _ and -"
        )),
        Some(other) => Err(format!("\"kind\" must be a string, not {other}")),
    }
}

/// Whether `kind` can be a topic word here: `[a-z0-9_-]+`.
fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// A plain-text response.
fn text(status: u16, body: impl Into<Vec<u8>>) -> cgi::Response {
    cgi::Response::new(status)
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_go_to_their_kind() {
        let topic = topic_for(br#"{"kind":"cpu","value":0.93}"#);
        assert_eq!(topic.as_deref(), Ok("telemetry.cpu"));
        let topic = topic_for(br#"{"kind":"disk_io-2"}"#);
        assert_eq!(topic.as_deref(), Ok("telemetry.disk_io-2"));
    }

    #[test]
    fn bad_events_are_explained() {
        let cases = [
            (&b"cpu"[..], "the body is not JSON: "),
            (b"[1]", "the body must be a JSON object"),
            (b"{}", "the event has no \"kind\""),
            (br#"{"kind":7}"#, "\"kind\" must be a string, not 7"),
            (br#"{"kind":""}"#, "kind \"\" is not"),
            (br#"{"kind":"CPU"}"#, "kind \"CPU\" is not"),
            (br#"{"kind":"a.b"}"#, "kind \"a.b\" is not"),
        ];
        for (body, reason) in cases {
            let error = topic_for(body).unwrap_err();
            assert!(error.starts_with(reason), "{error}");
        }
    }
}
