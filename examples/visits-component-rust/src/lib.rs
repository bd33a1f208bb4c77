//! The visits example as a `wasi:http/proxy` component: it counts its visits in the
//! function's key-value store (`wasi:keyvalue`), greets with a config value
//! (`wasi:config`), logs each visit (`wasi:logging`), and publishes on request
//! (`wafer:pubsub`), through the `wafer-component` SDK.
//!
//! - config `greeting` (default `hello`; an error is reported as `config error: MSG`);
//! - kv counter `visits`, incremented atomically (an error is reported as `kv error: MSG`
//!   and the visit number is 0);
//! - log line `visit N`;
//! - output `GREETING, visit N`, then the reports, then one line for each of the query
//!   parameters `publish=TOPIC` (publishes the request body), `get=KEY` (the value of a
//!   key, or `(none)`), `set=KEY` (sets it to the request body) and `secret=NAME` (the
//!   length of a config value or secret, never the value), `read=PATH` (a file's contents,
//!   through the granted directories) and `write=PATH` (writes the request body there).
//!
//! Subscribed to topics (`subscribe = [...]`), it takes each message through its
//! `wafer:pubsub/subscriber` export: it counts it in `messages`, keeps it in `last-message`
//! and logs `message on TOPIC`; a message on the topic `fail` is refused (`told to fail`).

use wafer_component::{config, kv, log, pubsub};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Visits;

wasip2::http::proxy::export!(Visits);
wafer_component::export_subscriber!(Visits);

impl wafer_component::wit::subscriber::Guest for Visits {
    fn on_message(topic: String, message: Vec<u8>) -> Result<(), String> {
        if topic == "fail" {
            return Err("told to fail".to_owned());
        }
        let bucket = kv::open().map_err(|e| format!("{e:?}"))?;
        kv::increment(&bucket, "messages", 1).map_err(|e| format!("{e:?}"))?;
        bucket
            .set("last-message", &message)
            .map_err(|e| format!("{e:?}"))?;
        log::info(&format!("message on {topic}"));
        Ok(())
    }
}

impl Guest for Visits {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let query = request
            .path_with_query()
            .and_then(|p| p.split_once('?').map(|(_, q)| q.to_owned()))
            .unwrap_or_default();
        let body = read_body(&request);
        let text = visit(&query, &body);

        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let out = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = out.write().expect("stream is taken once");
        for chunk in text.as_bytes().chunks(4096) {
            stream.blocking_write_and_flush(chunk).expect("write body");
        }
        drop(stream);
        OutgoingBody::finish(out, None).expect("finish body");
    }
}

/// The whole response text for one visit.
fn visit(query: &str, body: &[u8]) -> String {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    };
    let mut reports = Vec::new();
    let greeting = match config::get("greeting") {
        Ok(value) => value.unwrap_or_else(|| "hello".to_owned()),
        Err(e) => {
            reports.push(format!("config error: {e:?}"));
            "hello".to_owned()
        }
    };
    let bucket = kv::open();
    let counted = match &bucket {
        Ok(bucket) => kv::increment(bucket, "visits", 1),
        Err(e) => Err(e.clone()),
    };
    let visit = counted.unwrap_or_else(|e| {
        reports.push(format!("kv error: {e:?}"));
        0
    });
    log::info(&format!("visit {visit}"));

    let mut out = format!("{greeting}, visit {visit}\n");
    for report in reports {
        out.push_str(&report);
        out.push('\n');
    }
    if let Some(topic) = param("publish") {
        match pubsub::publish(topic, body) {
            Ok(()) => out.push_str("published\n"),
            Err(e) => out.push_str(&format!("publish error: {e}\n")),
        }
    }
    if let (Some(key), Ok(bucket)) = (param("set"), &bucket) {
        match bucket.set(key, body) {
            Ok(()) => out.push_str(&format!("set {key}\n")),
            Err(e) => out.push_str(&format!("set error: {e:?}\n")),
        }
    }
    if let (Some(key), Ok(bucket)) = (param("get"), &bucket) {
        match bucket.get(key) {
            Ok(Some(value)) => {
                out.push_str(&format!("{key} = {}\n", String::from_utf8_lossy(&value)))
            }
            Ok(None) => out.push_str(&format!("{key} = (none)\n")),
            Err(e) => out.push_str(&format!("get error: {e:?}\n")),
        }
    }
    if let Some(name) = param("secret") {
        match config::get(name) {
            Ok(Some(value)) => out.push_str(&format!("secret {name}: {} bytes\n", value.len())),
            Ok(None) => out.push_str(&format!("secret {name}: none\n")),
            Err(e) => out.push_str(&format!("secret error: {e:?}\n")),
        }
    }
    if let Some(path) = param("write") {
        match std::fs::write(path, body) {
            Ok(()) => out.push_str(&format!("wrote {path}\n")),
            Err(e) => out.push_str(&format!("file error: {e}\n")),
        }
    }
    if let Some(path) = param("read") {
        match std::fs::read(path) {
            Ok(bytes) => out.push_str(&format!("file: {}\n", String::from_utf8_lossy(&bytes))),
            Err(e) => out.push_str(&format!("file error: {e}\n")),
        }
    }
    out
}

/// The request body, whole (the function's `request_body` limit bounds it).
fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    let Ok(incoming) = request.consume() else {
        return body;
    };
    if let Ok(stream) = incoming.stream() {
        while let Ok(chunk) = stream.blocking_read(64 * 1024) {
            body.extend_from_slice(&chunk);
        }
    }
    body
}
