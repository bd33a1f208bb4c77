//! HTTP <-> CGI: the request as environment variables (RFC 3875 and WAGI), and the guest's
//! stdout as a response.

use std::net::SocketAddr;

use crate::error::excerpt;
use crate::live::Resolved;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::request::Parts;
use http::StatusCode;
use percent_encoding::percent_decode_str;
use wafer_runtime::{CgiRequest, Inputs};

use crate::error::Error;

/// What the server tells the guest about itself.
pub(crate) const SERVER_SOFTWARE: &str = concat!("Wafer/", env!("CARGO_PKG_VERSION"));

/// Request headers never passed to the guest: credentials stay with the server, a `Proxy`
/// header must not become `HTTP_PROXY` (the "httpoxy" attack on CGI programs), and a name
/// with `_` is dropped because `X_Remote_User` and `X-Remote-User` would both become
/// `HTTP_X_REMOTE_USER`: a client could pose as a header a proxy in front sets (nginx and
/// Apache drop them too).
fn is_withheld(name: &HeaderName) -> bool {
    name == header::AUTHORIZATION
        || name == header::PROXY_AUTHORIZATION
        || name.as_str() == "proxy"
        || name.as_str().contains('_')
}

/// The authentication scheme of an `Authorization` header, for `AUTH_TYPE`: only a scheme
/// the IANA registry lists, so that a header holding a bare secret (`Authorization: s3cret`)
/// does not hand the secret to the guest.
fn auth_scheme(value: &str) -> &'static str {
    const SCHEMES: [&str; 12] = [
        "Basic",
        "Bearer",
        "Digest",
        "DPoP",
        "GNAP",
        "HOBA",
        "Mutual",
        "Negotiate",
        "OAuth",
        "PrivateToken",
        "SCRAM-SHA-256",
        "vapid",
    ];
    let Some((scheme, _credentials)) = value.trim_start().split_once(' ') else {
        return "";
    };
    SCHEMES
        .iter()
        .find(|s| s.eq_ignore_ascii_case(scheme))
        .copied()
        .unwrap_or("")
}

/// Builds the CGI request: the environment and argv, as far as the program can read them
/// (`inputs`), and the body as stdin. A path or query that decodes to a NUL byte is refused:
/// neither the environment nor argv can carry one.
pub(crate) fn request(
    parts: &Parts,
    body: Bytes,
    peer: SocketAddr,
    local: SocketAddr,
    https: bool,
    resolved: &Resolved,
    inputs: Inputs,
) -> Result<CgiRequest, Error> {
    let nul = |what: &str| {
        Err(Error::BadRequest(format!(
            "the request's {what} decodes to a NUL byte (%00), which CGI cannot pass"
        )))
    };
    if percent_decode_str(&parts.uri.path()[resolved.script_name_len..]).any(|b| b == 0) {
        return nul("path");
    }
    let raw_path = parts.uri.path();
    let script_name = &raw_path[..resolved.script_name_len];
    let query = parts.uri.query().unwrap_or("");
    let args = if inputs.args {
        let mut args = vec![script_name.to_owned()];
        args.extend(form_urlencoded::parse(query.as_bytes()).map(|(k, v)| format!("{k}={v}")));
        if args.iter().any(|a| a.contains('\0')) {
            return nul("query");
        }
        args
    } else {
        Vec::new()
    };
    let env = if inputs.env {
        environment(parts, body.len(), peer, local, resolved, https)
    } else {
        Vec::new()
    };
    Ok(CgiRequest {
        args,
        env,
        stdin: body,
    })
}

/// The CGI environment of a request: RFC 3875 and WAGI variables, the headers as `HTTP_*`,
/// then the function's configured variables.
fn environment(
    parts: &Parts,
    content_length: usize,
    peer: SocketAddr,
    local: SocketAddr,
    resolved: &Resolved,
    https: bool,
) -> Vec<(String, String)> {
    let function = &resolved.function;
    let uri = &parts.uri;
    let raw_path = uri.path();
    let script_name = &raw_path[..resolved.script_name_len];
    let raw_path_info = &raw_path[resolved.script_name_len..];
    let path_info = percent_decode_str(raw_path_info).decode_utf8_lossy();
    let query = uri.query().unwrap_or("");
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| local.to_string());
    let (server_name, server_port) = split_host(&host, local.port());
    let route = resolved.route().as_str();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let auth_type = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map_or("", auth_scheme);
    let method = parts.method.as_str();
    let remote_ip = peer.ip().to_string();

    let mut env: Vec<(String, String)> =
        Vec::with_capacity(32 + parts.headers.keys_len() + function.config.env.len());
    let mut set = |k: &str, v: String| env.push((k.to_owned(), v));
    set("AUTH_TYPE", auth_type.to_owned());
    set("CONTENT_LENGTH", content_length.to_string());
    set("CONTENT_TYPE", content_type);
    set("GATEWAY_INTERFACE", "CGI/1.1".into());
    set("PATH_INFO", path_info.to_string());
    set("PATH_TRANSLATED", path_info.to_string());
    set("QUERY_STRING", query.to_owned());
    set("REMOTE_ADDR", remote_ip.clone());
    set("REMOTE_HOST", remote_ip);
    set("REMOTE_USER", String::new());
    set("REQUEST_METHOD", method.to_owned());
    set("SCRIPT_NAME", script_name.to_owned());
    set("SERVER_NAME", server_name.to_owned());
    set("SERVER_PORT", server_port);
    set("SERVER_PROTOCOL", format!("{:?}", parts.version));
    set("SERVER_SOFTWARE", SERVER_SOFTWARE.to_owned());
    set(
        "X_FULL_URL",
        format!(
            "{}://{host}{}",
            if https { "https" } else { "http" },
            uri.path_and_query().map_or("/", |p| p.as_str())
        ),
    );
    set("X_MATCHED_ROUTE", route.to_owned());
    set("X_RAW_PATH_INFO", raw_path_info.to_owned());
    // The short names of the original Go FaaS demo.
    set("http_path", raw_path.to_owned());
    set("http_method", method.to_owned());
    set("http_host", host.clone());
    set("http_query", query.to_owned());
    set("remote_addr", peer.to_string());
    for name in parts.headers.keys() {
        if is_withheld(name) {
            continue;
        }
        let separator = if name == header::COOKIE { "; " } else { ", " };
        let value = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(separator);
        let key = format!(
            "HTTP_{}",
            name.as_str().to_ascii_uppercase().replace('-', "_")
        );
        env.push((key, value));
    }
    // Configured variables come last and only where the request did not set the name.
    let derived = env.len();
    for (key, value) in &function.config.env {
        if !env[..derived].iter().any(|(k, _)| k == key) {
            env.push((key.clone(), value.clone()));
        }
    }
    env
}

/// Splits a Host header into name and port (the listening port when it names none).
fn split_host(host: &str, default_port: u16) -> (&str, String) {
    // `[::1]:8080`, `example.com:8080`, `example.com`
    if let Some(end) = host.rfind(']') {
        let port = host[end + 1..].strip_prefix(':').map(str::to_owned);
        return (
            &host[..=end],
            port.unwrap_or_else(|| default_port.to_string()),
        );
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, port.to_owned()),
        None => (host, default_port.to_string()),
    }
}

/// A guest's stdout turned into a response.
#[derive(Debug)]
pub(crate) struct Output {
    pub status: StatusCode,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
    /// Whether stdout began with a complete CGI header block.
    pub has_headers: bool,
}

/// Parses stdout: a CGI header block (ended by an empty line, or by the end of output) with at
/// least one of `Content-Type`, `Status`, `Location`, then the body; or, when stdout does not
/// begin with such a block, the whole of it as a `text/plain` body.
///
/// A block that is recognisably CGI headers but malformed is an error, never a guess.
pub(crate) fn parse_output(stdout: Bytes) -> Result<Output, String> {
    let mut headers = Vec::new();
    let mut status = None;
    let mut location = false;
    let mut is_cgi = false;
    let mut pos = 0;
    let body_start = loop {
        let rest = &stdout[pos..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], pos + i + 1),
            None if rest.is_empty() => break None,
            None => (rest, stdout.len()),
        };
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break Some(next);
        }
        let Some((name, value)) = split_header(line) else {
            if is_cgi {
                return Err(format!(
                    "malformed CGI header line {}: expected `Name: value` or an empty line ending the headers",
                    excerpt(line)
                ));
            }
            return Ok(raw(stdout));
        };
        let value = value.trim_ascii();
        if name.eq_ignore_ascii_case(b"status") {
            status = Some(parse_status(value)?);
            is_cgi = true;
        } else {
            let name = HeaderName::from_bytes(name)
                .map_err(|_| format!("invalid header name {}", excerpt(name)))?;
            let header_value = HeaderValue::from_bytes(value)
                .map_err(|_| format!("invalid value for header `{name}`: {}", excerpt(value)))?;
            if name == header::LOCATION {
                location = true;
            }
            is_cgi |= name == header::CONTENT_TYPE || name == header::LOCATION;
            if !is_hop_by_hop(&name) {
                headers.push((name, header_value));
            }
        }
        if next == stdout.len() && !stdout.ends_with(b"\n") {
            // The last line has no newline: a header block can't end this way.
            return if is_cgi {
                Err("CGI header block is not terminated by a newline".into())
            } else {
                Ok(raw(stdout))
            };
        }
        pos = next;
    };
    if !is_cgi {
        return Ok(raw(stdout));
    }
    let status = match (status, location) {
        (Some(status), _) => status,
        (None, true) => StatusCode::FOUND,
        (None, false) => StatusCode::OK,
    };
    let body = stdout.slice(body_start.unwrap_or(stdout.len())..);
    Ok(Output {
        status,
        headers,
        body,
        has_headers: true,
    })
}

fn raw(stdout: Bytes) -> Output {
    Output {
        status: StatusCode::OK,
        headers: vec![(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        )],
        body: stdout,
        has_headers: false,
    }
}

/// `Name: value`, where Name is an HTTP token.
fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let is_token = |b: &u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b);
    (!name.is_empty() && name.iter().all(is_token)).then(|| (name, &line[colon + 1..]))
}

/// `Status: 404 Not Found` -> 404. The reason phrase is not kept. A final response has a
/// code from 200 to 599: an informational `1xx` cannot end a CGI response.
fn parse_status(value: &[u8]) -> Result<StatusCode, String> {
    let code = value.split(|&b| b == b' ').next().unwrap_or_default();
    std::str::from_utf8(code)
        .ok()
        .filter(|c| c.len() == 3)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| {
            format!(
                "invalid Status {}: expected a code from 200 to 599",
                excerpt(value)
            )
        })
}

/// Headers that describe one connection rather than the response; the server sets its own.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::CONTENT_LENGTH,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Output, String> {
        parse_output(Bytes::from(s.to_owned()))
    }

    #[test]
    fn header_block_sets_status_and_keeps_repeated_headers() {
        let out = parse("Status: 404 Not Found\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nbody").unwrap();
        assert_eq!(out.status, StatusCode::NOT_FOUND);
        let cookies: Vec<_> = out
            .headers
            .iter()
            .filter(|(n, _)| n == header::SET_COOKIE)
            .collect();
        assert_eq!(cookies.len(), 2);
        assert_eq!(&out.body[..], b"body");
    }

    #[test]
    fn location_without_status_redirects() {
        let out = parse("Location: /elsewhere\n\n").unwrap();
        assert_eq!(out.status, StatusCode::FOUND);
        let out = parse("Location: /elsewhere\n").unwrap();
        assert_eq!(out.status, StatusCode::FOUND);
    }

    #[test]
    fn plain_output_is_the_body() {
        for s in [
            "hello world\n",
            "Hello: not cgi\n\nbody",
            "",
            "no newline",
            "a\n\nb",
        ] {
            let out = parse(s).unwrap();
            assert_eq!(out.status, StatusCode::OK);
            assert_eq!(&out.body[..], s.as_bytes());
            assert!(!out.has_headers);
        }
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert!(parse("Status: abc\n\n").is_err());
        assert!(parse("Status: 99\n\n").is_err());
        assert!(parse("Status: 101 Switching Protocols\n\n").is_err());
        assert!(parse("Status: 100\n\n").is_err());
        assert!(parse("Content-Type: text/plain\nnot a header\n\nbody").is_err());
        assert!(parse("Content-Type: text/pl\x01ain\n\n").is_err());
        assert!(parse("Content-Type: text/plain").is_err());
    }

    #[test]
    fn guest_text_in_errors_is_excerpted() {
        let long = format!("Content-Type: text/plain\n{}\n\n", "x".repeat(1 << 20));
        let error = parse(&long).unwrap_err();
        assert!(error.len() < 400, "{} bytes", error.len());
        assert!(error.ends_with("... (1048576 bytes in all): expected `Name: value` or an empty line ending the headers"), "{error}");
    }

    #[test]
    fn auth_type_is_a_known_scheme_or_nothing() {
        assert_eq!(auth_scheme("Basic dXNlcjpwdw=="), "Basic");
        assert_eq!(auth_scheme("bearer abc"), "Bearer");
        assert_eq!(auth_scheme("s3cret"), "");
        assert_eq!(auth_scheme("s3cret and more"), "");
        assert_eq!(auth_scheme("Basic"), "");
    }

    #[test]
    fn headers_with_underscores_are_withheld() {
        for name in [
            "x_remote_user",
            "authorization",
            "proxy",
            "proxy-authorization",
        ] {
            assert!(is_withheld(&HeaderName::from_static(name)), "{name}");
        }
        assert!(!is_withheld(&HeaderName::from_static("x-remote-user")));
    }

    #[test]
    fn host_splits_into_name_and_port() {
        assert_eq!(
            split_host("example.com:8080", 1),
            ("example.com", "8080".into())
        );
        assert_eq!(split_host("example.com", 1), ("example.com", "1".into()));
        assert_eq!(split_host("[::1]:9", 1), ("[::1]", "9".into()));
    }
}
