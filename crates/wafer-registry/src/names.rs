//! Validated newtypes for what arrives as strings: function names, routes, module digests.
//! A value of one of these types is valid; no code re-checks it.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::error::RegistryError;

/// A function name: `[a-z0-9][a-z0-9_-]{0,62}`. Safe as a file name and a URL segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FunctionName {
    type Error = RegistryError;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        let invalid = |reason: &str| RegistryError::InvalidName {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        let first = name.bytes().next().ok_or_else(|| invalid("it is empty"))?;
        if name.len() > 63 {
            return Err(invalid("it is longer than 63 characters"));
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(invalid("it must start with a lower-case letter or a digit"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(invalid(
                "only lower-case letters, digits, `-` and `_` are allowed",
            ));
        }
        Ok(Self(name))
    }
}

impl std::str::FromStr for FunctionName {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.to_owned().try_into()
    }
}

impl From<FunctionName> for String {
    fn from(name: FunctionName) -> Self {
        name.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A route a function answers on, WAGI and Spin style: `/path` matches that path exactly;
/// `/path/...` matches `/path` and everything below it; `/...` matches everything. A
/// segment `:name` matches any one segment (Spin's parameters: `/users/:id/...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Route(String);

const WILDCARD: &str = "/...";

impl Route {
    /// The route every function gets when it declares none: `/NAME/...`.
    pub fn default_for(name: &FunctionName) -> Self {
        Self(format!("/{name}{WILDCARD}"))
    }

    /// The route as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a segment is a parameter (`:name`).
    pub fn has_params(&self) -> bool {
        self.0.split('/').any(|segment| segment.starts_with(':'))
    }

    /// For a route with parameters: whether it matches `path` (a raw request path), and if
    /// so how many bytes of `path` its segments take (the rest is below a `/...` route's
    /// prefix) and each parameter's name and value.
    pub fn match_params<'p>(&self, path: &'p str) -> Option<(usize, Vec<(&str, &'p str)>)> {
        let (pattern, wildcard) = self.pattern();
        let mut params = Vec::new();
        let mut rest = path;
        let mut taken = 0;
        for segment in pattern.split('/').skip(1) {
            let inner = rest.strip_prefix('/')?;
            let end = inner.find('/').unwrap_or(inner.len());
            let value = &inner[..end];
            match segment.strip_prefix(':') {
                Some(name) if !value.is_empty() => params.push((name, value)),
                None if value == segment => {}
                _ => return None,
            }
            taken += 1 + end;
            rest = &inner[end..];
        }
        (wildcard || rest.is_empty()).then_some((taken, params))
    }

    /// The path the route is anchored at (`/path` for both `/path` and `/path/...`; empty for
    /// `/...`), and whether everything below it matches too.
    pub fn pattern(&self) -> (&str, bool) {
        match self.0.strip_suffix(WILDCARD) {
            Some(prefix) => (prefix, true),
            None => (&self.0, false),
        }
    }
}

impl TryFrom<String> for Route {
    type Error = RegistryError;

    fn try_from(route: String) -> Result<Self, Self::Error> {
        let invalid = |reason: &str| RegistryError::InvalidRoute {
            route: route.clone(),
            reason: reason.to_owned(),
        };
        if !route.starts_with('/') {
            return Err(invalid("it must start with `/`"));
        }
        if route.len() > 1024 {
            return Err(invalid("it is longer than 1024 characters"));
        }
        let path = route.strip_suffix(WILDCARD).unwrap_or(&route);
        if path.starts_with("/_wafer") {
            return Err(invalid("paths under `/_wafer` belong to the server"));
        }
        if matches!(path, "/metrics" | "/healthz" | "/readyz") {
            return Err(invalid(
                "`/metrics`, `/healthz` and `/readyz` belong to the server (metrics and probes)",
            ));
        }
        if path.len() > 1 && path.ends_with('/') {
            return Err(invalid(
                "it must not end with `/` (use `/path/...` to match below it)",
            ));
        }
        if let Some(bad) = path.chars().find(|c| {
            c.is_ascii_control() || c.is_whitespace() || matches!(c, '?' | '#' | '%' | '*')
        }) {
            return Err(invalid(&format!("{bad:?} is not allowed in a route")));
        }
        if path.split('/').any(|seg| seg == ":") {
            return Err(invalid("a parameter segment needs a name (`:name`)"));
        }
        if path
            .split('/')
            .skip(1)
            .any(|seg| seg == "." || seg == ".." || seg == "...")
            || (path.len() > 1 && path.split('/').skip(1).any(str::is_empty))
        {
            return Err(invalid(
                "empty, `.`, `..` and `...` segments are not allowed",
            ));
        }
        Ok(Self(route))
    }
}

impl std::str::FromStr for Route {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.to_owned().try_into()
    }
}

impl From<Route> for String {
    fn from(route: Route) -> Self {
        route.0
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A module's identity: `sha256:<64 lower-case hex digits>` of its binary form.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The hex part, used as a file name.
    pub fn hex(&self) -> &str {
        &self.0["sha256:".len()..]
    }

    /// The digest as written (`sha256:...`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Digest {
    type Error = RegistryError;

    fn try_from(digest: String) -> Result<Self, Self::Error> {
        let valid = digest.strip_prefix("sha256:").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        });
        if valid {
            Ok(Self(digest))
        } else {
            Err(RegistryError::InvalidDigest(digest))
        }
    }
}

impl std::str::FromStr for Digest {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.to_owned().try_into()
    }
}

impl From<Digest> for String {
    fn from(digest: Digest) -> Self {
        digest.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn function_names_reject_path_tricks() {
        for bad in [
            "",
            "..",
            "../etc",
            "a/b",
            "Hello",
            "-x",
            "_x",
            "a.b",
            "a b",
            &"x".repeat(64),
        ] {
            assert!(bad.parse::<FunctionName>().is_err(), "{bad:?} accepted");
        }
        for good in ["a", "hello", "hello-world_2", "0x", &"x".repeat(63)] {
            assert!(good.parse::<FunctionName>().is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn routes_parse_into_patterns() {
        let r: Route = "/api/...".parse().unwrap();
        assert_eq!(r.pattern(), ("/api", true));
        let r: Route = "/...".parse().unwrap();
        assert_eq!(r.pattern(), ("", true));
        let r: Route = "/exact".parse().unwrap();
        assert_eq!(r.pattern(), ("/exact", false));
        for bad in [
            "api",
            "/a/../b",
            "/a//b",
            "/a/",
            "/a?b",
            "/_wafer/x",
            "/a b",
            "/a/.../b",
        ] {
            assert!(bad.parse::<Route>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn parameters_match_one_segment_each() {
        let r: Route = "/base/:a/:b_c/...".parse().unwrap();
        assert!(r.has_params());
        let (taken, params) = r.match_params("/base/x/y/rest?no").unwrap();
        assert_eq!(taken, "/base/x/y".len());
        assert_eq!(params, [("a", "x"), ("b_c", "y")]);
        assert_eq!(r.match_params("/base/x/y").unwrap().0, "/base/x/y".len());
        assert!(r.match_params("/base/x").is_none());
        assert!(r.match_params("/other/x/y").is_none());
        assert!(r.match_params("/base//y").is_none());
        let exact: Route = "/users/:id".parse().unwrap();
        assert!(exact.match_params("/users/7").is_some());
        assert!(exact.match_params("/users/7/more").is_none());
        assert!(!"/a:b".parse::<Route>().unwrap().has_params());
        assert!("/a/:".parse::<Route>().is_err());
    }

    #[test]
    fn digests_are_checked() {
        let d = Digest::of(b"abc");
        assert_eq!(d.as_str().parse::<Digest>().unwrap(), d);
        assert!("sha256:xyz".parse::<Digest>().is_err());
        assert!(format!("sha256:{}", "A".repeat(64))
            .parse::<Digest>()
            .is_err());
    }
}
