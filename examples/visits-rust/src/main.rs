//! The visits example, written with the `wafer-guest` SDK: a CGI program that counts its
//! visits in the key-value store and greets with a config value. The same program exists in
//! every SDK's language, so one test covers them all.
//!
//! - config `greeting` (default `hello`; an error other than `not_found` is reported as
//!   `config error: MSG`);
//! - kv key `visits`, a decimal count, incremented (a kv error is reported as `kv error: MSG`
//!   and the visit number is 0);
//! - log line `visit N`;
//! - output `GREETING, visit N`, then the reports, then one line for each of the query
//!   parameters `fetch=URL` (an HTTP GET), `publish=TOPIC` (publishes the request body) and
//!   `secret=NAME` (the length of a config value or secret, never the value).
//!
//! The Rust version also touches files, for the directory grants: `read=PATH` prints a file's
//! contents and `write=PATH` writes the request body to a file (`file: ...` or
//! `file error: ...`).
//!
//! The query values are taken raw, up to the next `&`. It always exits 0.

use std::io::Write;

use wafer_guest::{cgi, config, http, kv, log, pubsub, Error, ErrorKind};

fn main() -> std::io::Result<()> {
    let mut request = cgi::Request::from_env();

    let (greeting, config_error) = match config::get("greeting") {
        Ok(greeting) => (greeting, None),
        Err(e) if e.kind == ErrorKind::NotFound => ("hello".to_owned(), None),
        Err(e) => ("hello".to_owned(), Some(e)),
    };
    let (visit, kv_error) = match count_visit() {
        Ok(visit) => (visit, None),
        Err(e) => (0, Some(e)),
    };
    log::info(&format!("visit {visit}"));

    let mut out = Vec::new();
    writeln!(out, "{greeting}, visit {visit}")?;
    if let Some(e) = config_error {
        writeln!(out, "config error: {e}")?;
    }
    if let Some(e) = kv_error {
        writeln!(out, "kv error: {e}")?;
    }
    if let Some(url) = request.query_raw("fetch") {
        match http::get(url) {
            Ok(response) => {
                write!(out, "fetch: {} ", response.status)?;
                out.extend_from_slice(&response.body);
                out.push(b'\n');
            }
            Err(e) => writeln!(out, "fetch error: {e}")?,
        }
    }
    if let Some(topic) = request.query_raw("publish").map(str::to_owned) {
        match request.body() {
            Ok(body) => match pubsub::publish(&topic, body) {
                Ok(()) => writeln!(out, "published")?,
                Err(e) => writeln!(out, "publish error: {e}")?,
            },
            Err(e) => writeln!(out, "publish error: reading the request body: {e}")?,
        }
    }
    if let Some(name) = request.query_raw("secret") {
        match config::get(name) {
            Ok(secret) => writeln!(out, "secret length: {}", secret.len())?,
            Err(e) => writeln!(out, "secret error: {e}")?,
        }
    }

    if let Some(path) = request.query_raw("read") {
        match std::fs::read(path) {
            Ok(bytes) => {
                write!(out, "file: ")?;
                out.extend_from_slice(&bytes);
                out.push(b'\n');
            }
            Err(e) => writeln!(out, "file error: {e}")?,
        }
    }
    if let Some(path) = request.query_raw("write").map(str::to_owned) {
        let written = request
            .body()
            .map(<[u8]>::to_vec)
            .and_then(|body| std::fs::write(&path, body));
        match written {
            Ok(()) => writeln!(out, "file: written")?,
            Err(e) => writeln!(out, "file error: {e}")?,
        }
    }

    cgi::Response::new(200)
        .header("Content-Type", "text/plain")
        .body(out)
        .send()
}

/// Reads the `visits` count (absent: 0), stores it plus one and returns the new count. An
/// unreadable count starts again from 0.
fn count_visit() -> Result<u64, Error> {
    let previous = kv::get("visits")?.map_or(0, |raw| {
        String::from_utf8_lossy(&raw).trim().parse().unwrap_or(0)
    });
    let visit = previous + 1;
    kv::set("visits", visit.to_string())?;
    Ok(visit)
}
