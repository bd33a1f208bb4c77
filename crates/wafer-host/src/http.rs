//! `http`: outbound HTTP to the function's allow-list.
//!
//! Three checks, each with its own message:
//! 1. The URL's scheme, host and port must match an allow-list entry
//!    ([`wafer_registry::HttpRule`]).
//! 2. The address connected to must be public, unless an entry names the address itself (an IP
//!    address or `localhost`). Names are checked where they are resolved, in the client's DNS
//!    resolver, so a public name that resolves to `10.0.0.5` is refused too.
//! 3. Redirects are followed here, not by the client, and each hop goes through 1 and 2.
//!
//! The `Host` header is always the checked URL's authority: one the guest sets is dropped,
//! or it would reach another virtual host on an allowed address.
//!
//! Each function version gets its own client (its resolver knows the function's rules), kept
//! for connection reuse.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use tracing::Instrument as _;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use wafer_registry::{Deployment, FunctionName, HttpRule, Scheme};
use wafer_runtime::{BoxError, OutboundBody, OutboundError};

use crate::{bytes_field, json, put_bytes, unknown_operation, GuestError};

/// Redirects followed before giving up.
pub const MAX_REDIRECTS: usize = 5;

/// The clients of the functions that made requests, by function and version.
#[derive(Default)]
pub(crate) struct Http {
    clients: Mutex<HashMap<(FunctionName, u32), reqwest::Client>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: Vec<(String, String)>,
    body: Option<String>,
    body_base64: Option<String>,
}

impl Http {
    pub(crate) async fn call(
        &self,
        function: &Deployment,
        operation: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, GuestError> {
        if operation != "request" {
            return Err(unknown_operation("http", operation, "request"));
        }
        let rules = &function.config.grants.http;
        if rules.is_empty() {
            return Err(GuestError::Denied(
                "this function may not make HTTP requests (grant hosts with `http = [...]`)".into(),
            ));
        }
        let request: Request = json(payload, "http/request")?;
        let method = match &request.method {
            Some(m) => Method::from_bytes(m.as_bytes())
                .map_err(|_| GuestError::Invalid(format!("`{m}` is not an HTTP method")))?,
            None => Method::GET,
        };
        let url = Url::parse(&request.url)
            .map_err(|e| GuestError::Invalid(format!("`{}` is not a URL: {e}", request.url)))?;
        let body = bytes_field(request.body, request.body_base64, "body")?;
        let mut headers = http::HeaderMap::new();
        for (name, value) in &request.headers {
            let name = http::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| GuestError::Invalid(format!("`{name}` is not a header name")))?;
            let value = http::HeaderValue::from_str(value).map_err(|_| {
                GuestError::Invalid(format!("the `{name}` header value is invalid"))
            })?;
            headers.append(name, value);
        }
        // The URL's authority is what the allow-list checked; a `Host` of the guest's own
        // would reach another virtual host on the same address.
        headers.remove(http::header::HOST);
        // Within the call's `http.client` span (tracing on): its attributes, and its
        // context in `traceparent`, in place of any the guest set.
        let span = tracing::Span::current();
        if crate::trace::enabled() {
            crate::trace::rename(&span, method.to_string());
            span.record("http.request.method", method.as_str());
            span.record("server.address", url.host_str().unwrap_or_default());
            if let Some(port) = url.port_or_known_default() {
                span.record("server.port", i64::from(port));
            }
            span.record("url.full", without_credentials(&url).as_str());
            crate::trace::inject_headers(&mut headers);
        }
        let limits = &function.config.limits;
        let timeout = limits
            .http_timeout
            .min(deadline.saturating_duration_since(Instant::now()));
        let client = self.client(function)?;
        let send = send(
            &client,
            rules,
            method,
            url,
            headers,
            body,
            limits.http_response.as_u64(),
        );
        match tokio::time::timeout(timeout, send).await {
            Ok(Ok((status, answer))) => {
                if crate::trace::enabled() {
                    span.record("http.response.status_code", i64::from(status.as_u16()));
                    if status.is_server_error() {
                        span.record("otel.status_code", "error");
                    }
                }
                Ok(answer)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(GuestError::Failed(format!(
                "the request took longer than {:.1} s",
                timeout.as_secs_f64()
            ))),
        }
    }

    fn client(&self, function: &Deployment) -> Result<reqwest::Client, GuestError> {
        let key = (function.name.clone(), function.version);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        // An older version's client will not be used again.
        clients.retain(|(name, _), _| name != &function.name);
        let resolver = Arc::new(Resolver {
            rules: function.config.grants.http.clone(),
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(resolver)
            .no_proxy()
            .build()
            .map_err(|e| GuestError::Failed(format!("cannot create an HTTP client: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// Drops the clients of the functions `keep` refuses.
    pub(crate) fn retain(&self, keep: impl Fn(&FunctionName) -> bool) {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients.retain(|(name, _), _| keep(name));
    }
}

/// Sends the request, following redirects, each hop checked; returns the answer as JSON.
async fn send(
    client: &reqwest::Client,
    rules: &[HttpRule],
    mut method: Method,
    mut url: Url,
    mut headers: http::HeaderMap,
    mut body: Vec<u8>,
    max_body: u64,
) -> Result<(StatusCode, Vec<u8>), GuestError> {
    for _ in 0..=MAX_REDIRECTS {
        check_url(rules, &url)?;
        let response = client
            .request(method.clone(), url.clone())
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await
            .map_err(|e| request_error(&url, &e))?;
        let status = response.status();
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        if let (true, Some(location)) = (status.is_redirection(), location) {
            let next = url.join(location).map_err(|e| {
                GuestError::Failed(format!(
                    "{url} redirected to a bad location `{location}`: {e}"
                ))
            })?;
            // 303, and 301/302 after a POST, become a GET without a body, as browsers do.
            if status == StatusCode::SEE_OTHER
                || (method == Method::POST
                    && matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND))
            {
                method = Method::GET;
                body.clear();
                headers.remove(http::header::CONTENT_TYPE);
                headers.remove(http::header::CONTENT_LENGTH);
            }
            // Credentials are for the host they were meant for.
            if next.host_str() != url.host_str() {
                headers.remove(http::header::AUTHORIZATION);
                headers.remove(http::header::COOKIE);
            }
            url = next;
            continue;
        }
        return Ok((status, answer(response, max_body).await?));
    }
    Err(GuestError::Failed(format!(
        "more than {MAX_REDIRECTS} redirects, the last to {url}"
    )))
}

/// The URL without a user name or password, as a span may show it.
fn without_credentials(url: &Url) -> Url {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url
}

/// Reads the response within `max_body` bytes and writes the guest's answer.
async fn answer(mut response: reqwest::Response, max_body: u64) -> Result<Vec<u8>, GuestError> {
    let status = response.status().as_u16();
    let headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| GuestError::Failed(format!("reading the response: {e}")))?
    {
        if (body.len() + chunk.len()) as u64 > max_body {
            return Err(GuestError::TooLarge(format!(
                "the response body is over the http_response limit of {max_body} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let mut object = serde_json::Map::new();
    object.insert("status".into(), status.into());
    object.insert(
        "headers".into(),
        serde_json::to_value(headers).unwrap_or_default(),
    );
    put_bytes(&mut object, "body", body);
    serde_json::to_vec(&object).map_err(|e| GuestError::Failed(e.to_string()))
}

/// Step 1: the URL must be allowed by a rule; an address in the URL itself must be public or
/// named by the rule.
fn check_url(rules: &[HttpRule], url: &Url) -> Result<(), GuestError> {
    let scheme = match url.scheme() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => {
            return Err(GuestError::Denied(format!(
                "scheme `{other}` in {url}: only http and https are allowed"
            )))
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| GuestError::Invalid(format!("{url} has no host")))?
        .to_ascii_lowercase();
    let port = url.port_or_known_default().unwrap_or(scheme.default_port());
    if !rules.iter().any(|r| r.allows(scheme, &host, port)) {
        let shown = url.host_str().unwrap_or_default();
        return Err(GuestError::Denied(format!(
            "{}://{shown}:{port} is not on this function's allow-list",
            scheme.as_str()
        )));
    }
    Ok(())
}

/// Step 2, for names: resolves, then keeps only the addresses the function may reach.
struct Resolver {
    rules: Vec<HttpRule>,
}

/// The error a refused resolution carries through the client, found again by
/// [`request_error`].
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

impl Resolve for Resolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let rules = self.rules.clone();
        Box::pin(async move {
            match reachable(&rules, &host).await {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as Addrs),
                Err(refused) => Err(Box::new(refused) as _),
            }
        })
    }
}

/// Resolves `host` and keeps the addresses the rules let a function reach: public ones, and
/// any for a name a rule gives explicitly (`localhost`).
async fn reachable(rules: &[HttpRule], host: &str) -> Result<Vec<SocketAddr>, Refused> {
    // Only rules naming this host itself unlock its non-public addresses.
    let named = rules.iter().any(|r| names_host(r, host));
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| Refused(format!("cannot resolve {host}: {e}")))?
        .collect();
    let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) =
        addrs.into_iter().partition(|a| named || is_public(a.ip()));
    if allowed.is_empty() {
        let shown: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
        return Err(Refused(format!(
            "{host} resolves to {}, which this function may not reach: loopback, private and \
             link-local addresses need an allow-list entry naming the address",
            if shown.is_empty() {
                "nothing".into()
            } else {
                shown.join(", ")
            }
        )));
    }
    Ok(allowed)
}

/// The allow-list as the sender of HTTP components' `wasi:http/outgoing-handler` requests:
/// the URL is checked against the rules, then the request goes out through the function's
/// client, whose resolver checks each name's addresses and hands the client only those, so
/// the addresses checked are the addresses connected to. Redirects come back to the guest.
pub struct Policy {
    pub(crate) http: Arc<Http>,
    pub(crate) function: Arc<Deployment>,
    /// The span of the call the policy was made for (none when tracing is off): each
    /// request is an `http.client` span within it.
    pub(crate) span: tracing::Span,
}

/// The `http.client` span of a component's outgoing request to `url`.
fn client_span(
    parent: &tracing::Span,
    method: &http::Method,
    url: &Url,
    function: &str,
) -> tracing::Span {
    if !crate::trace::enabled() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        target: crate::trace::TARGET,
        parent: parent,
        "http.client",
        otel.name = method.as_str(),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        otel.status_description = tracing::field::Empty,
        http.request.method = method.as_str(),
        server.address = url.host_str().unwrap_or_default(),
        server.port = url.port_or_known_default().map(i64::from),
        url.full = without_credentials(url).as_str(),
        http.response.status_code = tracing::field::Empty,
        wafer.function = function,
    )
}

impl wafer_runtime::Outbound for Policy {
    fn send(
        self: Arc<Self>,
        request: http::Request<OutboundBody>,
    ) -> Pin<Box<dyn Future<Output = Result<http::Response<OutboundBody>, OutboundError>> + Send>>
    {
        Box::pin(async move {
            let uri = request.uri().to_string();
            let url = Url::parse(&uri)
                .map_err(|e| OutboundError::Denied(format!("bad URL {uri}: {e}")))?;
            check_url(&self.function.config.grants.http, &url).map_err(outbound_error)?;
            let client = self.http.client(&self.function).map_err(outbound_error)?;
            let (mut parts, body) = request.into_parts();
            // As for core modules: the host is the checked URL's, never a header of the
            // guest's (wasi-http forbids it already; this holds whatever the runtime allows).
            parts.headers.remove(http::header::HOST);
            let span = client_span(&self.span, &parts.method, &url, self.function.name.as_str());
            if !span.is_none() {
                let _entered = span.enter();
                crate::trace::inject_headers(&mut parts.headers);
            }
            // The body goes as it is, trailers included.
            let body = reqwest::Body::wrap(SyncBody(sync_wrapper::SyncWrapper::new(body)));
            let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(|e| OutboundError::Failed(format!("{uri}: {e}")))?;
            let sent = client.execute(request).instrument(span.clone()).await;
            let response = sent.map_err(|e| {
                span.record("otel.status_code", "error");
                outbound_error(request_error(&url, &e))
            })?;
            if !span.is_none() {
                let status = response.status();
                span.record("http.response.status_code", i64::from(status.as_u16()));
                if status.is_server_error() {
                    span.record("otel.status_code", "error");
                }
            }
            let response: http::Response<reqwest::Body> = response.into();
            Ok(response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync()))
        })
    }
}

/// A guest's request body, `Sync` (as the client wants) because no shared reference can
/// reach it.
struct SyncBody(sync_wrapper::SyncWrapper<OutboundBody>);

impl http_body::Body for SyncBody {
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(self.get_mut().0.get_mut()).poll_frame(cx)
    }
}

/// A host-call error as a component's outgoing-request error.
fn outbound_error(error: GuestError) -> OutboundError {
    match error {
        GuestError::Denied(why) => OutboundError::Denied(why),
        GuestError::Failed(why) => OutboundError::Failed(why),
        other => OutboundError::Failed(other.to_string()),
    }
}

/// Whether `rule` is a name rule for exactly `host` that names an address (`localhost`).
fn names_host(rule: &HttpRule, host: &str) -> bool {
    matches!(&rule.host, wafer_registry::HostPattern::Name(name) if name == host)
        && rule.names_address()
}

/// The guest's message for a request that did not complete.
fn request_error(url: &Url, error: &reqwest::Error) -> GuestError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return GuestError::Denied(refused.0.clone());
        }
        source = e.source();
    }
    let mut message = format!("{url}: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(e) = source {
        message.push_str(&format!(": {e}"));
        source = e.source();
    }
    GuestError::Failed(message)
}

/// IPv4 ranges that are not globally reachable: every entry of the IANA IPv4 Special-Purpose
/// Address Registry whose "Globally Reachable" is not true (the few global exceptions inside
/// 192.0.0.0/24 are refused too: none is a web server), multicast, and broadcast.
const NOT_PUBLIC_V4: [([u8; 4], u8); 16] = [
    ([0, 0, 0, 0], 8),          // "this network"
    ([10, 0, 0, 0], 8),         // private use
    ([100, 64, 0, 0], 10),      // shared address space (carrier-grade NAT)
    ([127, 0, 0, 0], 8),        // loopback
    ([169, 254, 0, 0], 16),     // link local (cloud metadata services among them)
    ([172, 16, 0, 0], 12),      // private use
    ([192, 0, 0, 0], 24),       // IETF protocol assignments
    ([192, 0, 2, 0], 24),       // documentation (TEST-NET-1)
    ([192, 88, 99, 0], 24),     // deprecated 6to4 relay anycast
    ([192, 168, 0, 0], 16),     // private use
    ([198, 18, 0, 0], 15),      // benchmarking
    ([198, 51, 100, 0], 24),    // documentation (TEST-NET-2)
    ([203, 0, 113, 0], 24),     // documentation (TEST-NET-3)
    ([224, 0, 0, 0], 4),        // multicast
    ([240, 0, 0, 0], 4),        // reserved
    ([255, 255, 255, 255], 32), // limited broadcast
];

/// IPv6 ranges that are not globally reachable, from the IANA IPv6 Special-Purpose Address
/// Registry, with multicast. IPv4-mapped addresses (`::ffff:a.b.c.d`) and the NAT64
/// well-known prefix (`64:ff9b::/96`) are judged by the IPv4 address they carry.
const NOT_PUBLIC_V6: [(u128, u8); 13] = [
    (0, 96),                      // ::/96: unspecified, loopback, IPv4-compatible (::a.b.c.d)
    (0x0064_ff9b_0001 << 80, 48), // 64:ff9b:1::/48 local-use IPv4/IPv6 translation
    (0x0100 << 112, 64),          // 100::/64 discard-only
    ((0x0100 << 112) | (1 << 64), 64), // 100:0:0:1::/64 dummy prefix
    (0x2001 << 112, 23),          // 2001::/23 IETF protocol assignments (Teredo among them)
    ((0x2001 << 112) | (0x0db8 << 96), 32), // 2001:db8::/32 documentation
    (0x2002 << 112, 16),          // 2002::/16 6to4 (carries any IPv4 address)
    (0x3fff << 112, 20),          // 3fff::/20 documentation
    (0x5f00 << 112, 16),          // 5f00::/16 segment routing SIDs
    (0xfc00 << 112, 7),           // fc00::/7 unique local
    (0xfe80 << 112, 10),          // fe80::/10 link local
    (0xfec0 << 112, 10),          // fec0::/10 site local (deprecated)
    (0xff00 << 112, 8),           // ff00::/8 multicast
];

/// Whether `ip` is in `net/len` (`len` from 1 to 32).
fn matches_v4(ip: u32, (net, len): ([u8; 4], u8)) -> bool {
    (ip ^ u32::from_be_bytes(net)) >> (32 - u32::from(len)) == 0
}

/// Whether `ip` is in `net/len` (`len` from 1 to 128).
fn matches_v6(ip: u128, (net, len): (u128, u8)) -> bool {
    (ip ^ net) >> (128 - u32::from(len)) == 0
}

/// Whether an address is on the public internet: not in any range of the IANA
/// special-purpose registries that is not globally reachable (loopback, private, link-local
/// with the cloud metadata address 169.254.169.254, carrier-grade NAT, benchmarking,
/// documentation, site-local, IPv4-compatible, translation prefixes, ...), nor multicast or
/// broadcast.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let ip = u32::from(v4);
            !NOT_PUBLIC_V4.iter().any(|&net| matches_v4(ip, net))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let ip = u128::from(v6);
            if matches_v6(ip, (0x0064_ff9b << 96, 96)) {
                return is_public(IpAddr::V4(std::net::Ipv4Addr::from(ip as u32)));
            }
            !NOT_PUBLIC_V6.iter().any(|&net| matches_v6(ip, net))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fec0::1",
            "::10.0.0.1",
            "::8.8.8.8",
            "64:ff9b:1::1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "198.18.0.1",
            "198.19.255.255",
            "192.0.0.170",
            "192.88.99.1",
            "2001::1",
            "2002:7f00:1::",
            "3fff::1",
            "5f00::1",
            "100::1",
            "240.0.0.1",
            "203.0.113.7",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
            "198.20.0.1",
            "2a00:1450:4001::1",
            "100.128.0.1",
            "172.32.0.1",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_are_checked_against_the_rules() {
        let rules: Vec<HttpRule> = vec![
            "https://api.example.com".parse().unwrap(),
            "http://127.0.0.1:9000".parse().unwrap(),
        ];
        let check = |u: &str| check_url(&rules, &Url::parse(u).unwrap());
        assert!(check("https://api.example.com/v1?x=1").is_ok());
        assert!(check("http://127.0.0.1:9000/").is_ok());
        let err = check("http://127.0.0.1:9001/").unwrap_err();
        assert_eq!(
            err.to_string(),
            "denied: http://127.0.0.1:9001 is not on this function's allow-list"
        );
        assert!(check("http://api.example.com/").is_err());
        assert!(check("ftp://api.example.com/").is_err());
    }
}
