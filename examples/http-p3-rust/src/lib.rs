//! A WASI 0.3 HTTP component (`wasi:http/service`): `handle` is an async function that returns
//! the response, whose body the guest writes (or forwards) after returning.
//!
//! - `.../echo` streams the request body straight back, with its content type;
//! - `.../fetch?url=http://HOST:PORT/PATH` makes an outbound GET and answers with what came back;
//! - anything else answers `200 Hello from a WASI 0.3 component!`.

use wasip3::http::client;
use wasip3::http::types::{ErrorCode, Fields, Method, Request, Response, Scheme};
use wasip3::{wit_bindgen, wit_future, wit_stream};

struct Component;

wasip3::http::service::export!(Component);

impl wasip3::exports::http::handler::Guest for Component {
    async fn handle(request: Request) -> Result<Response, ErrorCode> {
        let target = request.get_path_with_query().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target.as_str(), ""));
        if path.ends_with("/echo") {
            return Ok(echo(request));
        }
        if path.ends_with("/fetch") {
            let url = query.strip_prefix("url=").unwrap_or_default();
            return fetch(url).await;
        }
        Ok(text("Hello from a WASI 0.3 component!\n"))
    }
}

/// A response whose body is `body`, written once the response is handed back (a stream write
/// waits for its reader, which the host has only after `handle` returns).
fn text(body: &'static str) -> Response {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("a valid header");
    let (mut contents, reader) = wit_stream::new();
    let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(reader), trailers_reader);
    drop(trailers);
    wit_bindgen::spawn(async move {
        let unwritten = contents.write_all(body.as_bytes().to_vec()).await;
        assert!(unwritten.is_empty(), "the client went away");
    });
    response
}

/// The request's body (and trailers) as the response's: streamed, never held whole.
fn echo(request: Request) -> Response {
    let content_type = request.get_headers().get("content-type");
    let headers = Fields::new();
    if let Some(value) = content_type.into_iter().next() {
        let _ = headers.set("content-type", &[value]);
    }
    let (_, done) = wit_future::new(|| Ok(()));
    let (body, trailers) = Request::consume_body(request, done);
    let (response, _sent) = Response::new(headers, Some(body), trailers);
    response
}

/// GET `url` (`http://HOST[:PORT]/PATH`) through the host's HTTP client; its status and body
/// are the answer. A denied or failed request is the guest's error (`ErrorCode`).
async fn fetch(url: &str) -> Result<Response, ErrorCode> {
    let rest = url.strip_prefix("http://").ok_or(ErrorCode::HttpRequestUriInvalid)?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => (rest, "/"),
    };
    let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
    drop(trailers);
    let (outgoing, _sent) = Request::new(Fields::new(), None, trailers_reader, None);
    let invalid = |_| ErrorCode::HttpRequestUriInvalid;
    outgoing.set_method(&Method::Get).map_err(invalid)?;
    outgoing.set_scheme(Some(&Scheme::Http)).map_err(invalid)?;
    outgoing.set_authority(Some(authority)).map_err(invalid)?;
    outgoing.set_path_with_query(Some(path)).map_err(invalid)?;
    let answer = client::send(outgoing).await?;
    let status = answer.get_status_code();
    let (_, done) = wit_future::new(|| Ok(()));
    let (body, trailers) = Response::consume_body(answer, done);
    let (response, _sent) = Response::new(Fields::new(), Some(body), trailers);
    response.set_status_code(status).map_err(|_| ErrorCode::InternalError(None))?;
    Ok(response)
}
