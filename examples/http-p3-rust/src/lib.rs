//! A WASI 0.3 HTTP component (`wasi:http/service`): `handle` is an async function that returns
//! the response, whose body the guest writes (or forwards) after returning.
//!
//! - `.../echo` streams the request body straight back, with its content type;
//! - `.../fetch?url=http://HOST:PORT/PATH` makes an outbound GET and answers with what came back;
//! - `.../meet?n=N&wait=MS` waits (up to MS milliseconds, default 5000) until N requests are
//!   in this instance at once, then says whether they met and which instance it is: with
//!   concurrent instance reuse, requests run side by side in one instance;
//! - anything else answers `200 Hello from a WASI 0.3 component!`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use wasip3::clocks::monotonic_clock;
use wasip3::http::client;
use wasip3::random::random;
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
        if path.ends_with("/meet") {
            return Ok(text(meet(query).await));
        }
        Ok(text("Hello from a WASI 0.3 component!\n".into()))
    }
}

/// A response whose body is `body`, written once the response is handed back (a stream write
/// waits for its reader, which the host has only after `handle` returns).
fn text(body: String) -> Response {
    let headers = Fields::from_list(&[("content-type".into(), b"text/plain".to_vec())])
        .expect("a valid header");
    let (mut contents, reader) = wit_stream::new();
    let (trailers, trailers_reader) = wit_future::new(|| Ok(None));
    let (response, _sent) = Response::new(headers, Some(reader), trailers_reader);
    drop(trailers);
    wit_bindgen::spawn(async move {
        let unwritten = contents.write_all(body.into_bytes()).await;
        assert!(unwritten.is_empty(), "the client went away");
    });
    response
}

/// Requests in this instance now.
static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
/// Times `n` requests were in this instance at once, each time counted by the last to arrive.
static MEETINGS: AtomicU32 = AtomicU32::new(0);
/// This instance's name: a random number drawn by its first request.
static INSTANCE: OnceLock<u64> = OnceLock::new();

/// Waits until `n` requests are in this instance at once (or `wait` ms pass), polling
/// every 10 ms without blocking the instance: other requests run meanwhile.
async fn meet(query: &str) -> String {
    let param = |name: &str, default: u32| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
            .unwrap_or(default)
    };
    let (n, wait) = (param("n", 2), param("wait", 5000));
    let instance = *INSTANCE.get_or_init(random::get_random_u64);
    let before = MEETINGS.load(Ordering::SeqCst);
    if IN_FLIGHT.fetch_add(1, Ordering::SeqCst) + 1 >= n {
        MEETINGS.fetch_add(1, Ordering::SeqCst);
    }
    let mut waited = 0;
    while MEETINGS.load(Ordering::SeqCst) == before && waited < wait {
        monotonic_clock::wait_for(10_000_000).await;
        waited += 10;
    }
    IN_FLIGHT.fetch_sub(1, Ordering::SeqCst);
    let met = match MEETINGS.load(Ordering::SeqCst) == before {
        true => "alone",
        false => "together",
    };
    format!("{met} in instance {instance:x}\n")
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
