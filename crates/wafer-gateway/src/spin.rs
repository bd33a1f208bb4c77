//! The request headers Spin gives a component (docs/spin.md), for a function made from a
//! `spin.toml`: where the request came in and how its route matched.

use std::net::SocketAddr;

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::live::Resolved;

/// Sets Spin's `spin-*` headers on a request to a Spin component, replacing any the client
/// sent (so that none can be forged): `spin-full-url`, `spin-path-info`,
/// `spin-matched-route`, `spin-raw-component-route`, `spin-component-route`,
/// `spin-base-path`, `spin-client-addr` and a `spin-path-match-NAME` per route parameter.
pub(crate) fn set_headers(
    headers: &mut HeaderMap,
    uri: &http::Uri,
    resolved: &Resolved,
    peer: SocketAddr,
    https: bool,
) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let path = uri.path();
    let route = resolved.route();
    let raw = route.as_str();
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(http::uri::Authority::as_str))
        .unwrap_or("localhost");
    let scheme = if https { "https" } else { "http" };
    let path_and_query = uri.path_and_query().map_or(path, |p| p.as_str());
    let full_url = format!("{scheme}://{host}{path_and_query}");
    let path_info = &path[resolved.script_name_len.min(path.len())..];
    let component_route = raw.strip_suffix("/...").unwrap_or(raw);
    let mut set = |name: &str, value: &str| {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    };
    set("spin-full-url", &full_url);
    set("spin-path-info", path_info);
    set("spin-matched-route", raw);
    set("spin-raw-component-route", raw);
    set("spin-component-route", component_route);
    set("spin-base-path", "/");
    set("spin-client-addr", &peer.to_string());
    if let Some((_, params)) = route.match_params(path) {
        for (name, value) in params {
            let name = format!("spin-path-match-{}", name.replace('_', "-"));
            set(&name.to_ascii_lowercase(), value);
        }
    }
}
