//! A WASI 0.2 HTTP component (`wasi:http/proxy`), the kind `wasmtime serve` and Spin run:
//! it exports `wasi:http/incoming-handler`, and Wafer calls `handle` for each request.

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Handler;

wasip2::http::proxy::export!(Handler);

impl Guest for Handler {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let greeting = format!("Hello from {{name}}! ({path})\n");

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("a valid header");
        let response = OutgoingResponse::new(headers); // 200 unless set
        let body = response.body().expect("the body, taken once");
        // The response head goes to the client first; the body streams after it.
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("the stream, taken once");
        stream
            .blocking_write_and_flush(greeting.as_bytes()) // up to 4096 bytes per call
            .expect("writing the body");
        drop(stream); // a body's stream must be dropped before the body is finished
        OutgoingBody::finish(body, None).expect("finishing the body");
    }
}
