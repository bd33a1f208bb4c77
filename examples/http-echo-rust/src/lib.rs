//! A `wasi:http/proxy` component for testing a host. Routes by the last segment of the path
//! (so `/trap` and `/echo/trap` are the same; the query is ignored):
//!
//! - `/trap`: panics, which traps the instance
//! - `/no-response`: returns without ever setting a response
//! - `/env`: the environment variables as sorted `KEY=VALUE` lines
//! - `/slow`: `tick N` five times, ~200 ms apart, each chunk flushed
//! - `/fetch?url=URL`: GETs URL via `wasi:http/outgoing-handler`; answers
//!   `fetched STATUS: BODY`, or 502 `fetch error: CODE`
//! - `/count`: how many requests this instance has handled, this one included (always 1
//!   unless the host reuses instances)
//! - `/grow?mib=N`: allocates and touches N MiB, answers `grew N MiB`
//! - `/headers`: the request's scheme and authority, then its headers, as sorted
//!   `name: value` lines
//! - `/connect?addr=IP:PORT`: opens a TCP connection (`wasi:sockets`, through std), sends
//!   `ping\n` and answers `connected: REPLY`, or 502 `connect error: ERROR`
//! - anything else: streams the request body back chunk by chunk, with the
//!   request's content-type plus `x-echo-method` / `x-echo-path`

use wasip2::clocks::monotonic_clock;
use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingBody, IncomingRequest, Method, OutgoingBody, OutgoingRequest,
    OutgoingResponse, ResponseOutparam, Scheme,
};
use wasip2::io::poll;
use wasip2::io::streams::{InputStream, OutputStream, StreamError};

use std::sync::atomic::{AtomicU64, Ordering};

/// Requests this instance has handled.
static HANDLED: AtomicU64 = AtomicU64::new(0);

struct Echo;

wasip2::http::proxy::export!(Echo);

impl Guest for Echo {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".to_string());
        let (route, query) = path.split_once('?').unwrap_or((&path, ""));
        let handled = HANDLED.fetch_add(1, Ordering::Relaxed) + 1;
        match route.rsplit('/').next().unwrap_or("") {
            "trap" => panic!("trap requested by {path}"),
            // Dropping the outparam unset: the host must cope with no response.
            "no-response" => {}
            "env" => env(response_out),
            "slow" => slow(response_out),
            "fetch" => fetch(query, response_out),
            "count" => respond(response_out, 200, format!("{handled}\n").as_bytes()),
            "grow" => grow(query, response_out),
            "headers" => request_headers(&request, response_out),
            "connect" => connect(query, response_out),
            _ => echo(&request, &path, response_out),
        }
    }
}

/// Streams the request body back without ever holding more than one chunk.
fn echo(request: &IncomingRequest, path: &str, response_out: ResponseOutparam) {
    let mut headers: Vec<(String, Vec<u8>)> = Vec::new();
    {
        let request_headers = request.headers(); // a child: dropped at scope end
        for value in request_headers.get("content-type") {
            headers.push(("content-type".to_string(), value));
        }
    }
    headers.push((
        "x-echo-method".to_string(),
        method_name(&request.method()).into_bytes(),
    ));
    headers.push(("x-echo-path".to_string(), path.as_bytes().to_vec()));

    let in_body = request.consume().expect("request body is consumed once");
    let in_stream = in_body.stream().expect("body stream is taken once");
    let (out_body, out_stream) = start_response(response_out, 200, headers);

    let complete = loop {
        match in_stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if write_all(&out_stream, &chunk).is_err() {
                    break false; // the client went away
                }
            }
            Err(StreamError::Closed) => break true, // end of the request body
            Err(StreamError::LastOperationFailed(err)) => {
                eprintln!(
                    "echo: reading the request body failed: {}",
                    err.to_debug_string()
                );
                break false;
            }
        }
    };
    drop(in_stream);
    drop(IncomingBody::finish(in_body)); // trailers are not echoed
    drop(out_stream);
    if complete {
        OutgoingBody::finish(out_body, None).expect("finish response body");
    }
    // Otherwise `out_body` is dropped unfinished, telling the host the body is truncated.
}

/// Answers the request's scheme and authority, then its headers as sorted `name: value` lines.
fn request_headers(request: &IncomingRequest, response_out: ResponseOutparam) {
    let scheme = match request.scheme() {
        Some(Scheme::Http) => "http".to_string(),
        Some(Scheme::Https) => "https".to_string(),
        Some(Scheme::Other(other)) => other,
        None => "none".to_string(),
    };
    let authority = request.authority().unwrap_or_else(|| "none".to_string());
    let mut lines: Vec<String> = request
        .headers()
        .entries()
        .into_iter()
        .map(|(name, value)| format!("{name}: {}\n", String::from_utf8_lossy(&value)))
        .collect();
    lines.sort();
    let text = format!("scheme: {scheme}\nauthority: {authority}\n{}", lines.concat());
    respond(response_out, 200, text.as_bytes());
}

/// Answers the environment as sorted `KEY=VALUE` lines.
fn env(response_out: ResponseOutparam) {
    let mut lines: Vec<String> = wasip2::cli::environment::get_environment()
        .into_iter()
        .map(|(key, value)| format!("{key}={value}\n"))
        .collect();
    lines.sort();
    respond(response_out, 200, lines.concat().as_bytes());
}

/// Allocates `mib` MiB and writes to every page of it, so the memory is really used.
fn grow(query: &str, response_out: ResponseOutparam) {
    let mib: usize = query
        .strip_prefix("mib=")
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let mut block = vec![0u8; mib << 20];
    for page in block.chunks_mut(4096) {
        page[0] = 1;
    }
    let touched: usize = block.iter().step_by(4096).map(|&b| usize::from(b)).sum();
    let text = format!("grew {} MiB\n", touched * 4096 >> 20);
    respond(response_out, 200, text.as_bytes());
}

/// Writes `tick N` five times, sleeping ~200 ms between chunks, flushing each one.
fn slow(response_out: ResponseOutparam) {
    let (body, stream) = start_response(response_out, 200, text_plain());
    for n in 1..=5 {
        if n > 1 {
            sleep_ns(200_000_000);
        }
        if write_all(&stream, format!("tick {n}\n").as_bytes()).is_err() {
            return; // the client went away; drop the body unfinished
        }
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish response body");
}

/// Connects to the `addr` query parameter over TCP, says `ping`, and answers the first line
/// that comes back.
fn connect(query: &str, response_out: ResponseOutparam) {
    use std::io::{BufRead, Write};
    let Some(addr) = query.split('&').find_map(|pair| pair.strip_prefix("addr=")) else {
        return respond(response_out, 400, b"usage: /connect?addr=IP:PORT\n");
    };
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::net::TcpStream::connect(addr)?;
        stream.write_all(b"ping\n")?;
        let mut reply = String::new();
        std::io::BufReader::new(stream).read_line(&mut reply)?;
        Ok(reply)
    };
    match exchange() {
        Ok(reply) => respond(response_out, 200, format!("connected: {reply}").as_bytes()),
        Err(e) => respond(response_out, 502, format!("connect error: {e}").as_bytes()),
    }
}

/// GETs the `url` query parameter and reports the outcome.
fn fetch(query: &str, response_out: ResponseOutparam) {
    let url = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("url="))
        .map(percent_decode);
    let Some(url) = url else {
        return respond(response_out, 400, b"usage: /fetch?url=http://host/path\n");
    };
    match get(&url) {
        Ok((status, body)) => {
            let mut text = format!("fetched {status}: ").into_bytes();
            text.extend_from_slice(&body);
            respond(response_out, 200, &text);
        }
        Err(code) => respond(
            response_out,
            502,
            format!("fetch error: {code:?}").as_bytes(),
        ),
    }
}

/// A blocking GET through `wasi:http/outgoing-handler`, buffering the (small) answer.
fn get(url: &str) -> Result<(u16, Vec<u8>), ErrorCode> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else {
        return Err(ErrorCode::HttpRequestUriInvalid);
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };

    let request = OutgoingRequest::new(Fields::new());
    request
        .set_method(&Method::Get)
        .map_err(|()| ErrorCode::HttpRequestMethodInvalid)?;
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    request
        .set_authority(Some(authority))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| ErrorCode::HttpRequestUriInvalid)?;
    // The body is never taken, so the request goes out with an empty one.

    let future = outgoing_handler::handle(request, None)?;
    let response = loop {
        if let Some(result) = future.get() {
            break result.expect("response is taken once")?;
        }
        future.subscribe().block(); // wait until the response head arrives
    };

    let status = response.status();
    let body = response.consume().expect("response body is consumed once");
    let stream = body.stream().expect("body stream is taken once");
    let data = read_to_end(&stream);
    drop(stream);
    drop(IncomingBody::finish(body));
    Ok((status, data?))
}

fn read_to_end(stream: &InputStream) -> Result<Vec<u8>, ErrorCode> {
    let mut data = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => data.extend_from_slice(&chunk),
            Err(StreamError::Closed) => return Ok(data),
            Err(StreamError::LastOperationFailed(err)) => {
                return Err(wasip2::http::types::http_error_code(&err)
                    .unwrap_or_else(|| ErrorCode::InternalError(Some(err.to_debug_string()))));
            }
        }
    }
}

/// Sets a response with the given status and headers; returns its body and stream.
fn start_response(
    response_out: ResponseOutparam,
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
) -> (OutgoingBody, OutputStream) {
    let response = OutgoingResponse::new(Fields::from_list(&headers).expect("valid headers"));
    response.set_status_code(status).expect("valid status");
    let body = response.body().expect("body is taken once");
    ResponseOutparam::set(response_out, Ok(response));
    let stream = body.write().expect("stream is taken once");
    (body, stream)
}

/// A complete text/plain response.
fn respond(response_out: ResponseOutparam, status: u16, text: &[u8]) {
    let (body, stream) = start_response(response_out, status, text_plain());
    if write_all(&stream, text).is_ok() {
        drop(stream);
        OutgoingBody::finish(body, None).expect("finish response body");
    }
}

fn text_plain() -> Vec<(String, Vec<u8>)> {
    vec![("content-type".to_string(), b"text/plain".to_vec())]
}

/// Writes and flushes `data`, in pieces no larger than the 4096 bytes
/// `blocking-write-and-flush` accepts at once.
fn write_all(stream: &OutputStream, data: &[u8]) -> Result<(), StreamError> {
    for piece in data.chunks(4096) {
        stream.blocking_write_and_flush(piece)?;
    }
    Ok(())
}

/// Sleeps with a monotonic-clock pollable.
fn sleep_ns(ns: u64) {
    let timer = monotonic_clock::subscribe_duration(ns);
    poll::poll(&[&timer]);
}

fn method_name(method: &Method) -> String {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
    .to_string()
}

/// Decodes `%XX` escapes (and `+` as space) in a query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
