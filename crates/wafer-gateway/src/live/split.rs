//! A traffic split as served: the live versions sharing a function's requests, and how one
//! request picks its version.
//!
//! A request falls in one of 100 buckets: a random one, or, with stickiness, one hashed from
//! the client's header or cookie value (FNV-1a, the same on every node and every release).
//! The members hold consecutive bucket ranges, newest first, so a canary grown from 10% to
//! 25% keeps the clients it had.

use std::hash::Hasher;
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue};
use wafer_registry::Sticky;

use super::function::Function;

/// The versions sharing a function's requests.
pub struct Split {
    /// Each member with the end of its bucket range (exclusive), newest first; the last
    /// ends at 100. Never empty. A member that could not load is its function's active
    /// version instead.
    members: Vec<(u8, Arc<Function>)>,
    sticky: Option<Sticky>,
}

impl Split {
    pub(crate) fn new(members: Vec<(u8, Arc<Function>)>, sticky: Option<Sticky>) -> Self {
        Self { members, sticky }
    }

    /// The live versions, newest first.
    pub fn members(&self) -> impl Iterator<Item = &Arc<Function>> {
        self.members.iter().map(|(_, f)| f)
    }

    /// The member with version `version`, if it serves here.
    pub(crate) fn member(&self, version: u32) -> Option<&Arc<Function>> {
        self.members().find(|f| f.version == version)
    }

    /// The version that serves a request with `headers`, and the `Set-Cookie` to send
    /// back when stickiness is by a cookie the client does not have yet.
    pub fn choose(&self, headers: &HeaderMap) -> (Arc<Function>, Option<HeaderValue>) {
        let (bucket, cookie) = match &self.sticky {
            None => (fastrand::u8(0..100), None),
            Some(Sticky::Header(name)) => match headers.get(name.as_str()) {
                Some(value) => (bucket_of(value.as_bytes()), None),
                None => (fastrand::u8(0..100), None),
            },
            Some(Sticky::Cookie(name)) => match cookie(headers, name) {
                Some(value) => (bucket_of(value), None),
                None => {
                    let token = format!("{:016x}", fastrand::u64(..));
                    let set = format!("{name}={token}; Path=/; HttpOnly; SameSite=Lax");
                    (
                        bucket_of(token.as_bytes()),
                        HeaderValue::from_str(&set).ok(),
                    )
                }
            },
        };
        (self.pick(bucket).clone(), cookie)
    }

    /// A version picked at random by share (for calls with no client to stick to:
    /// pub/sub deliveries).
    pub fn random(&self) -> Arc<Function> {
        self.pick(fastrand::u8(0..100)).clone()
    }

    fn pick(&self, bucket: u8) -> &Arc<Function> {
        let (_, last) = &self.members[self.members.len() - 1];
        (self.members.iter())
            .find(|(end, _)| bucket < *end)
            .map_or(last, |(_, f)| f)
    }
}

/// The bucket (0 to 99) a client's value falls in.
fn bucket_of(value: &[u8]) -> u8 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(value);
    (hasher.finish() % 100) as u8
}

/// The value of cookie `name` among the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let value = pair.strip_prefix(name.as_bytes())?.strip_prefix(b"=")?;
            Some(value.trim_ascii())
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; wafer=xyz"));
        headers.append(header::COOKIE, HeaderValue::from_static("waferx=no"));
        assert_eq!(cookie(&headers, "wafer"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&headers, "a"), Some(&b"1"[..]));
        assert_eq!(cookie(&headers, "b"), None);
    }

    #[test]
    fn a_value_always_falls_in_one_bucket() {
        // FNV-1a is fixed by its definition: these hold on every node and release.
        assert_eq!(bucket_of(b"alice"), bucket_of(b"alice"));
        let spread: std::collections::HashSet<u8> = (0..1000)
            .map(|n| bucket_of(format!("user-{n}").as_bytes()))
            .collect();
        assert!(spread.len() > 90, "{}", spread.len());
    }
}
