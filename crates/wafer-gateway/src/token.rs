//! The admin token, as both planes need it: the admin plane checks requests against it, the
//! function plane removes it from any request that carries it. It can change while the
//! server runs (a cluster's token set by another node), so it is read per check.

use arc_swap::ArcSwap;
use http::HeaderValue;

/// The admin token (a bearer token), replaceable while the server runs.
pub struct AdminToken(ArcSwap<String>);

impl AdminToken {
    /// The token `token`.
    pub fn new(token: String) -> Self {
        Self(ArcSwap::from_pointee(token))
    }

    /// Replaces the token: from now on only `token` is accepted.
    pub fn set(&self, token: String) {
        if **self.0.load() != token {
            self.0.store(std::sync::Arc::new(token));
            tracing::info!("the admin token changed");
        }
    }

    /// Whether `given` (what follows `Bearer `) is the token, compared in constant time.
    pub fn matches(&self, given: &str) -> bool {
        constant_time_eq(given.trim().as_bytes(), self.0.load().as_bytes())
    }

    /// Whether an `Authorization` header value carries the token (`Bearer TOKEN`, the
    /// scheme in any case).
    pub fn is_in(&self, value: &HeaderValue) -> bool {
        let Ok(value) = value.to_str() else {
            return false;
        };
        match value.trim_start().split_once(' ') {
            Some((scheme, given)) if scheme.eq_ignore_ascii_case("bearer") => self.matches(given),
            _ => false,
        }
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guess
/// was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_in_any_scheme_case_and_only_whole() {
        let token = AdminToken::new("abcdefghijklmnop".into());
        let is_in = |v: &str| token.is_in(&HeaderValue::from_str(v).unwrap());
        assert!(is_in("Bearer abcdefghijklmnop"));
        assert!(is_in("bearer  abcdefghijklmnop "));
        assert!(is_in("BEARER abcdefghijklmnop"));
        assert!(!is_in("Bearer abcdefghijklmno"));
        assert!(!is_in("Basic abcdefghijklmnop"));
        assert!(!is_in("abcdefghijklmnop"));
        token.set("qrstuvwxyz0123456".into());
        assert!(!is_in("Bearer abcdefghijklmnop"));
        assert!(is_in("Bearer qrstuvwxyz0123456"));
    }
}
