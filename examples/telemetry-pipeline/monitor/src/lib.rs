//! The telemetry pipeline's monitor, a WASI 0.2 component: subscribed to `batches.ready`, it
//! takes each batch through its `wafer:pubsub/subscriber` export, counts batches and events
//! with `wasi:keyvalue/atomics`, and logs `batch of N events` (`wasi:logging`). `GET
//! /pipeline-monitor` answers `{"batches": B, "events": E}`.

use wafer_component::{kv, log};
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Monitor;

wasip2::http::proxy::export!(Monitor);
wafer_component::export_subscriber!(Monitor);

impl wafer_component::wit::subscriber::Guest for Monitor {
    fn on_message(_topic: String, batch: Vec<u8>) -> Result<(), String> {
        // A batch is a JSON array of `{"topic": ..., "event": ...}`: one `"topic"` per event.
        let text = String::from_utf8_lossy(&batch);
        let events = text.matches("\"topic\"").count() as u64;
        let bucket = kv::open().map_err(|e| format!("{e:?}"))?;
        kv::increment(&bucket, "batches", 1).map_err(|e| format!("{e:?}"))?;
        kv::increment(&bucket, "events", events).map_err(|e| format!("{e:?}"))?;
        log::info(&format!("batch of {events} events"));
        Ok(())
    }
}

impl Guest for Monitor {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let count = |key: &str| -> u64 {
            kv::open()
                .ok()
                .and_then(|bucket| bucket.get(key).ok().flatten())
                .and_then(|value| String::from_utf8(value).ok()?.parse().ok())
                .unwrap_or(0)
        };
        let body = format!(
            "{{\"batches\": {}, \"events\": {}}}\n",
            count("batches"),
            count("events")
        );
        let headers =
            Fields::from_list(&[("content-type".to_string(), b"application/json".to_vec())])
                .expect("valid header");
        let response = OutgoingResponse::new(headers);
        let out = response.body().expect("body is taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = out.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(body.as_bytes())
            .expect("write body");
        drop(stream);
        OutgoingBody::finish(out, None).expect("finish body");
    }
}
