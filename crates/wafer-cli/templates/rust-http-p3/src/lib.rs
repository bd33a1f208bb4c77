//! A WASI 0.3 HTTP component (`wasi:http/service`), the kind Spin 4 and `wasmtime serve
//! -Sp3` run: it exports `wasi:http/handler`, whose `handle` is an async function returning
//! the response. Wafer calls it for each request.

use wasip3::http::types::{ErrorCode, Fields, Request, Response};
use wasip3::{wit_bindgen, wit_future, wit_stream};

struct Handler;

wasip3::http::service::export!(Handler);

impl wasip3::exports::http::handler::Guest for Handler {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let path = request.get_path_with_query().unwrap_or_default();
        let greeting = format!("Hello from {{name}}! ({path})\n");

        let headers = Fields::from_list(&[(
            "content-type".to_string(),
            b"text/plain; charset=utf-8".to_vec(),
        )])
        .expect("a valid header");
        // The body is a stream the guest writes after returning the response (its head goes
        // to the client first); the trailers, a future (none here).
        let (mut body, body_reader) = wit_stream::new();
        let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
        drop(trailers);
        let (response, _sent) = Response::new(headers, Some(body_reader), trailers_reader);
        wit_bindgen::spawn(async move {
            body.write_all(greeting.into_bytes()).await;
        });
        Ok(response) // 200 unless set
    }
}
