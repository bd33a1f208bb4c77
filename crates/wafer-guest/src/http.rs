//! Outbound HTTP, granted with `http = ["https://api.example.com", ...]`.
//!
//! Any status the server answers with is a [`Response`], not an error; errors are for requests
//! that were not allowed (`denied`) or did not complete (`failed`). Redirects are followed by
//! the host.
//!
//! ```no_run
//! use wafer_guest::http;
//!
//! let response = http::Request::post("https://api.example.com/items")
//!     .header("Content-Type", "application/json")
//!     .body(r#"{"name":"x"}"#)
//!     .send()?;
//! println!("{} {}", response.status, response.text());
//! # Ok::<(), wafer_guest::Error>(())
//! ```

use std::borrow::Cow;

use serde::Deserialize;

use crate::Error;

/// An outbound request, built with [`Request::new`] (or [`get`](Request::get),
/// [`post`](Request::post)), [`header`](Request::header) and [`body`](Request::body).
#[must_use = "a request does nothing until it is sent"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, such as `GET`.
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body; empty for none.
    pub body: Vec<u8>,
}

impl Request {
    /// A request with no headers and no body.
    pub fn new(method: impl Into<String>, url: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A `GET` request.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new("GET", url)
    }

    /// A `POST` request.
    pub fn post(url: impl Into<String>) -> Self {
        Self::new("POST", url)
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

    /// Sends the request and waits for the whole response.
    pub fn send(&self) -> Result<Response, Error> {
        Response::from_answer(&crate::host_call("http", "request", &self.payload())?)
    }

    fn payload(&self) -> Vec<u8> {
        let mut payload = serde_json::json!({
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
        });
        if !self.body.is_empty() {
            crate::put_bytes(&mut payload, "body", &self.body);
        }
        payload.to_string().into_bytes()
    }
}

/// A response: whatever status the server answered with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut matching = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        matching.next().map(|(_, value)| value.as_str())
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    fn from_answer(answer: &[u8]) -> Result<Self, Error> {
        #[derive(Deserialize)]
        struct Answer {
            status: u16,
            #[serde(default)]
            headers: Vec<(String, String)>,
            body: Option<String>,
            body_base64: Option<String>,
        }
        let malformed = |e: &dyn std::fmt::Display| {
            Error::failed(format_args!("malformed answer from http/request: {e}"))
        };
        let answer: Answer = serde_json::from_slice(answer).map_err(|e| malformed(&e))?;
        let body = crate::take_bytes(answer.body, answer.body_base64).map_err(|e| malformed(&e))?;
        Ok(Self {
            status: answer.status,
            headers: answer.headers,
            body,
        })
    }
}

/// Sends a `GET` request to `url`.
pub fn get(url: &str) -> Result<Response, Error> {
    Request::get(url).send()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_payload() {
        let json = |r: Request| serde_json::from_slice::<serde_json::Value>(&r.payload()).unwrap();
        let get = json!({"method": "GET", "url": "http://a/", "headers": []});
        assert_eq!(json(Request::get("http://a/")), get);

        let post = Request::post("http://a/").header("X-A", "1").body("hi");
        let expected = json!({"method": "POST", "url": "http://a/", "headers": [["X-A", "1"]],
                              "body": "hi"});
        assert_eq!(json(post), expected);

        let binary = json!({"method": "PUT", "url": "u", "headers": [], "body_base64": "gAE="});
        assert_eq!(json(Request::new("PUT", "u").body(vec![0x80, 1])), binary);
    }

    #[test]
    fn response_from_answer() {
        let text = br#"{"status":404,"headers":[["Content-Type","text/plain"]],"body":"no"}"#;
        let r = Response::from_answer(text).unwrap();
        assert_eq!((r.status, r.text().as_ref()), (404, "no"));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.header("x-missing"), None);

        let binary = Response::from_answer(br#"{"status":200,"body_base64":"/wA="}"#).unwrap();
        assert_eq!((binary.body, binary.headers), (vec![0xff, 0], vec![]));

        let empty = Response::from_answer(br#"{"status":204,"headers":[]}"#).unwrap();
        assert!(empty.body.is_empty());

        let bad = Response::from_answer(br#"{"status":200,"body_base64":"!"}"#).unwrap_err();
        assert_eq!(bad.kind, crate::ErrorKind::Failed);
        assert!(bad
            .message
            .starts_with("failed: malformed answer from http/request: "));
        assert!(Response::from_answer(b"nope").is_err());
    }
}
