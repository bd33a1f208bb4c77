//! The smallest useful `wasi:http/proxy` component: every request gets
//! `200 Hello from a Rust component!` as text/plain.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

const GREETING: &[u8] = b"Hello from a Rust component!\n";

struct Hello;

// Exports `wasi:http/incoming-handler` implemented by `Hello`.
wasip2::http::proxy::export!(Hello);

impl Guest for Hello {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let headers = Fields::from_list(&[("content-type".to_string(), b"text/plain".to_vec())])
            .expect("valid header");
        let response = OutgoingResponse::new(headers); // status defaults to 200
        let body = response.body().expect("body is taken once");

        // Hand the response head to the host first, then stream the body.
        ResponseOutparam::set(response_out, Ok(response));

        let stream = body.write().expect("stream is taken once");
        stream
            .blocking_write_and_flush(GREETING) // at most 4096 bytes per call
            .expect("write body");
        drop(stream); // the stream must be dropped before its body is finished
        OutgoingBody::finish(body, None).expect("finish body");
    }
}
