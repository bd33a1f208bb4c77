//! Helpers for functions served as CGI programs (WASI preview1 commands): the request comes in
//! environment variables and stdin, the response goes to stdout.
//!
//! ```no_run
//! use wafer_guest::cgi;
//!
//! let mut request = cgi::Request::from_env();
//! let name = request.query("name").unwrap_or_else(|| "world".into());
//! let size = request.body()?.len();
//! cgi::Response::new(200)
//!     .header("Content-Type", "text/plain")
//!     .body(format!("hello {name}, you sent {size} bytes to {}\n", request.path_info))
//!     .send()?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::env;
use std::io::{self, Read, Write};

/// The request, as Wafer passes it to a CGI program.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `REQUEST_METHOD`: `GET`, `POST`, ...
    pub method: String,
    /// `PATH_INFO`: the path after the matched route, percent-decoded.
    pub path_info: String,
    /// `QUERY_STRING`: the raw query string, without `?`.
    pub query_string: String,
    /// The body, once read from stdin.
    body: Option<Vec<u8>>,
}

impl Request {
    /// Reads the request from the environment. The body is read from stdin on the first call to
    /// [`body`](Request::body).
    pub fn from_env() -> Self {
        let var = |name| env::var(name).unwrap_or_default();
        Self {
            method: var("REQUEST_METHOD"),
            path_info: var("PATH_INFO"),
            query_string: var("QUERY_STRING"),
            body: None,
        }
    }

    /// The query string's `name=value` pairs, form-decoded (`+` is a space, `%XX` a byte;
    /// invalid UTF-8 is replaced). A pair without `=` has an empty value.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(&self.query_string)
    }

    /// The form-decoded value of the first query parameter named `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, value)| value)
    }

    /// The raw (not decoded) value of the first query parameter whose raw name is `name`: the
    /// text after `name=` up to the next `&`.
    pub fn query_raw(&self, name: &str) -> Option<&str> {
        let mut pairs = self.query_string.split('&');
        pairs.find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
    }

    /// A request header (`name` in any case, such as `user-agent`), from its `HTTP_*`
    /// variable; `Content-Type` and `Content-Length` also come from `CONTENT_TYPE` and
    /// `CONTENT_LENGTH`. `Authorization` is never passed to functions.
    pub fn header(&self, name: &str) -> Option<String> {
        let var = name.to_ascii_uppercase().replace('-', "_");
        if let Ok(value) = env::var(format!("HTTP_{var}")) {
            return Some(value);
        }
        match var.as_str() {
            "CONTENT_TYPE" | "CONTENT_LENGTH" => env::var(var).ok().filter(|v| !v.is_empty()),
            _ => None,
        }
    }

    /// The request body: all of stdin, read on the first call.
    pub fn body(&mut self) -> io::Result<&[u8]> {
        if self.body.is_none() {
            let mut body = Vec::new();
            io::stdin().read_to_end(&mut body)?;
            self.body = Some(body);
        }
        Ok(self.body.as_deref().unwrap_or_default())
    }
}

/// Splits a query string into form-decoded pairs; see [`Request::query_pairs`].
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    let pairs = query.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

/// Form-decodes one name or value: `+` becomes a space and `%XX` a byte; a `%` not followed by
/// two hex digits is kept as is.
fn decode(text: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
            (b'+', ..) => out.push(b' '),
            (b, ..) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response to write to stdout: status, headers and body.
#[must_use = "a response does nothing until it is sent"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code (100 to 599).
    pub status: u16,
    /// Header names and values, in order; repeated names (such as `Set-Cookie`) are all sent.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Default for Response {
    fn default() -> Self {
        Self::new(200)
    }
}

impl Response {
    /// A response with `status`, no headers and an empty body.
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Writes the CGI header block, an empty line and the body. A `Status` line is written
    /// unless the status is 200 and there is a `Content-Type` header (Wafer needs one of the
    /// two to recognise the block). A header name or value containing a line break is refused
    /// with [`io::ErrorKind::InvalidInput`], before anything is written.
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let mut head = Vec::new();
        let has_type = self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"));
        if self.status != 200 || !has_type {
            writeln!(head, "Status: {}", self.status)?;
        }
        for (name, value) in &self.headers {
            if [name, value].iter().any(|s| s.contains(['\r', '\n'])) {
                let message = format!("line break in response header {name:?}");
                return Err(io::Error::new(io::ErrorKind::InvalidInput, message));
            }
            writeln!(head, "{name}: {value}")?;
        }
        head.push(b'\n');
        out.write_all(&head)?;
        out.write_all(&self.body)?;
        out.flush()
    }

    /// Writes the response to stdout; see [`write_to`](Response::write_to).
    pub fn send(&self) -> io::Result<()> {
        self.write_to(io::stdout().lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|&(n, v)| (n.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn query_pairs_are_form_decoded() {
        let parsed = parse_query("a=1&b=x+y&&c&d=%41%2f%zz%4&e%3D=caf%C3%A9&f=%FF");
        let expected = [
            ("a", "1"),
            ("b", "x y"),
            ("c", ""),
            ("d", "A/%zz%4"),
            ("e=", "café"),
        ];
        let mut expected = pairs(&expected);
        expected.push(("f".into(), "\u{FFFD}".into()));
        assert_eq!(parsed, expected);
        assert!(parse_query("").is_empty());
    }

    #[test]
    fn query_lookup() {
        let query_string = "fetch=http://h/x%20y?a=1&b=+&fetch=second&fetchx=no".to_owned();
        let request = Request {
            query_string,
            ..Request::default()
        };
        assert_eq!(request.query_raw("fetch"), Some("http://h/x%20y?a=1"));
        assert_eq!(request.query("fetch").as_deref(), Some("http://h/x y?a=1"));
        assert_eq!(request.query("b").as_deref(), Some(" "));
        assert_eq!(request.query_raw("fetc"), None);
        assert_eq!(request.query("missing"), None);
    }

    #[test]
    fn response_header_block() {
        let write = |r: Response| {
            let mut out = Vec::new();
            r.write_to(&mut out)
                .map(|()| String::from_utf8(out).unwrap())
        };
        let ok = Response::new(200)
            .header("Content-Type", "text/plain")
            .body("hi\n");
        assert_eq!(write(ok).unwrap(), "Content-Type: text/plain\n\nhi\n");
        let created = Response::new(201)
            .header("Set-Cookie", "a=1")
            .header("Set-Cookie", "b=2");
        assert_eq!(
            write(created).unwrap(),
            "Status: 201\nSet-Cookie: a=1\nSet-Cookie: b=2\n\n"
        );
        assert_eq!(write(Response::default()).unwrap(), "Status: 200\n\n");
        let injected = Response::new(200).header("X", "a\nStatus: 500");
        assert_eq!(
            write(injected).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
