//! What the client connections of Spin's outbound interfaces ([`redis`](crate::redis),
//! [`mqtt`](crate::mqtt)) share: the check of an address against the function's outbound
//! rules (Spin's `allowed_outbound_hosts`), made before anything connects, and the bounded
//! pool their connections are kept in between calls.
//!
//! The check is Spin's: the address is read as a URL (with `SCHEME://` put in front when it
//! has no host of its own), and a rule must allow its scheme, its host and its port (the
//! scheme's default port when it names none). Then the host's addresses must be reachable:
//! an address in the URL is, being named by the rule that allowed it; a name's addresses
//! are resolved here and each must be public, unless the rule that allowed the name is not a
//! wildcard (`*.example.com`): a database named exactly (`redis://cache.internal`) lives on
//! a private network as often as not, but a wildcard must not reach one through a name
//! that resolves there.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wafer_registry::{Deployment, FunctionName, HostPattern, OutboundRule};

use crate::GuestError;

/// An address a function's rules allow: its scheme, host and port as checked.
#[derive(Debug, Clone)]
pub(crate) struct Allowed {
    /// The URL's scheme (`redis`).
    pub(crate) scheme: String,
    /// The host, a name in lower case or an address (IPv6 without brackets).
    pub(crate) host: String,
    /// The port, the scheme's default when the address names none.
    pub(crate) port: u16,
    /// Whether the rule that allowed it may reach non-public addresses of the name.
    private_ok: bool,
}

/// The port a scheme's address uses when it names none (Spin's well-known ports).
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        _ => None,
    }
}

/// Checks `address` against the outbound rules of `function`, as Spin does for a client of
/// `scheme`; `denied` (naming the address) when no rule allows it.
pub(crate) fn check(
    function: &Deployment,
    address: &str,
    scheme: &str,
) -> Result<Allowed, GuestError> {
    let denied = || {
        GuestError::Denied(format!(
            "address {address} is not allowed by this function's outbound hosts \
             (`allowed_outbound_hosts` in spin.toml)"
        ))
    };
    let url = parse(address, scheme).ok_or_else(denied)?;
    let scheme = url.scheme().to_owned();
    let host = url
        .host_str()
        .ok_or_else(denied)?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = url
        .port()
        .or_else(|| default_port(&scheme))
        .ok_or_else(denied)?;
    let rules = &function.config.grants.outbound;
    let allowing = |r: &&OutboundRule| r.allows(&scheme, &host, port);
    if !rules.iter().any(|r| allowing(&r)) {
        return Err(denied());
    }
    let private_ok = rules
        .iter()
        .filter(allowing)
        .any(|r| !matches!(r.host, HostPattern::Subdomains(_)));
    Ok(Allowed {
        scheme,
        host,
        port,
        private_ok,
    })
}

/// `address` as Spin reads it for the check: a URL with a host, else the same behind
/// `SCHEME://`. The user part is percent-encoded first, so a password with `/` or `#` in
/// it does not change where the host is read.
fn parse(address: &str, scheme: &str) -> Option<url::Url> {
    let mut text = address.to_owned();
    if let Some(at) = text.find('@') {
        let start = text.find("://").map_or(0, |e| e + 3);
        let path = text[start..].find('/').map_or(usize::MAX, |e| e + start);
        if start <= at && at < path {
            let user = &text[start..at];
            let encoded: String =
                percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC)
                    .collect();
            text = format!("{}{encoded}{}", &text[..start], &text[at..]);
        }
    }
    match url::Url::parse(&text) {
        Ok(url) if url.has_host() => Some(url),
        _ => url::Url::parse(&format!("{scheme}://{text}"))
            .ok()
            .filter(url::Url::has_host),
    }
}

impl Allowed {
    /// The addresses to connect to: the host's, each one the rules let the function reach.
    pub(crate) async fn resolve(&self) -> Result<Vec<SocketAddr>, GuestError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            // An address in the URL was allowed by a rule naming it.
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let found: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| GuestError::Failed(format!("cannot resolve {}: {e}", self.host)))?
            .collect();
        self.reachable(found)
    }

    /// Of the addresses `found` for the name, those the function may reach.
    fn reachable(&self, found: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, GuestError> {
        let (reachable, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = found
            .into_iter()
            .partition(|a| self.private_ok || crate::http::is_public(a.ip()));
        if reachable.is_empty() {
            let shown: Vec<String> = refused.iter().map(|a| a.ip().to_string()).collect();
            return Err(GuestError::Denied(format!(
                "{} resolves to {}, which this function may not reach: a wildcard outbound \
                 host (`*.domain`) reaches public addresses only",
                self.host,
                match shown.is_empty() {
                    true => "nothing".to_owned(),
                    false => shown.join(", "),
                }
            )));
        }
        Ok(reachable)
    }
}

/// Connections kept between calls, by function and a key of the client's (its address,
/// and whatever else makes two connections differ), bounded: at most `per_function` for
/// one function and `total` in all (the least recently used goes first), none idle longer
/// than `idle`. A connection let go is closed once the calls using it are done with it.
pub(crate) struct Pool<K, C> {
    entries: Mutex<HashMap<(FunctionName, K), Entry<C>>>,
    per_function: usize,
    total: usize,
    idle: Duration,
}

struct Entry<C> {
    connection: C,
    used: Instant,
}

impl<K: Eq + Hash + Clone, C: Clone> Pool<K, C> {
    pub(crate) fn new(per_function: usize, total: usize, idle: Duration) -> Self {
        Self {
            entries: Mutex::default(),
            per_function: per_function.max(1),
            total: total.max(1),
            idle,
        }
    }

    /// The kept connection of `function` for `key`, if there is one.
    pub(crate) fn get(&self, function: &FunctionName, key: &K) -> Option<C> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let entry = entries.get_mut(&(function.clone(), key.clone()))?;
        if now.duration_since(entry.used) > self.idle {
            entries.remove(&(function.clone(), key.clone()));
            return None;
        }
        entry.used = now;
        Some(entry.connection.clone())
    }

    /// Keeps `connection` for `function` and `key`, letting others go to stay in bounds;
    /// answers the connection kept (another call's, when one got there first).
    pub(crate) fn put(&self, function: &FunctionName, key: K, connection: C) -> C {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let id = (function.clone(), key);
        if let Some(entry) = entries.get_mut(&id) {
            entry.used = now;
            return entry.connection.clone();
        }
        entries.retain(|_, entry| now.duration_since(entry.used) <= self.idle);
        let oldest = |entries: &HashMap<(FunctionName, K), Entry<C>>, own: bool| {
            entries
                .iter()
                .filter(|((name, _), _)| !own || name == function)
                .min_by_key(|(_, entry)| entry.used)
                .map(|(id, _)| id.clone())
        };
        let own = entries.keys().filter(|(name, _)| name == function).count();
        if own >= self.per_function {
            if let Some(id) = oldest(&entries, true) {
                entries.remove(&id);
            }
        }
        if entries.len() >= self.total {
            if let Some(id) = oldest(&entries, false) {
                entries.remove(&id);
            }
        }
        entries.insert(
            id,
            Entry {
                connection: connection.clone(),
                used: now,
            },
        );
        connection
    }

    /// Lets the connection of `function` for `key` go (it failed, or may be stuck).
    pub(crate) fn remove(&self, function: &FunctionName, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&(function.clone(), key.clone()));
    }

    /// Keeps only the connections of the functions `keep` says yes to.
    pub(crate) fn retain(&self, keep: impl Fn(&FunctionName) -> bool) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(name, _), _| keep(name));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use wafer_registry::{FunctionConfig, Grants};

    pub(crate) fn function(rules: &[&str]) -> Deployment {
        let grants = Grants {
            outbound: rules.iter().map(|r| r.parse().unwrap()).collect(),
            ..Grants::default()
        };
        let config = FunctionConfig {
            grants,
            ..FunctionConfig::default()
        };
        Deployment::of("f".parse().unwrap(), config)
    }

    #[test]
    fn addresses_are_checked_as_spin_checks_them() {
        let f = function(&[
            "redis://localhost:6379",
            "mqtt://*.example.com",
            "*://10.0.0.0/8:*",
        ]);
        let ok = |address: &str, scheme: &str| check(&f, address, scheme).is_ok();
        assert!(ok("redis://localhost:6379", "redis"));
        assert!(ok("redis://LOCALHOST", "redis"), "the default port");
        assert!(ok("redis://user:p%40ss@localhost:6379/2", "redis"));
        // As in Spin, a `/` in the password hides the host.
        assert!(!ok("redis://user:p/ss@localhost:6379", "redis"));
        assert!(
            ok("localhost:6379", "redis"),
            "no scheme: redis:// is put in front"
        );
        assert!(!ok("redis://localhost:6380", "redis"));
        assert!(!ok("rediss://localhost:6379", "redis"), "another scheme");
        assert!(!ok("mqtt://localhost:6379", "mqtt"));
        assert!(ok("mqtt://broker.example.com?client_id=a", "mqtt"));
        assert!(!ok("mqtt://example.com:1883", "mqtt"));
        assert!(ok("mqtt://10.1.2.3:9999", "mqtt"));
        assert!(ok("redis://10.1.2.3:1", "redis"));
        assert!(!ok("redis://11.1.2.3:1", "redis"));
        assert!(!ok("", "redis"));
        assert!(!ok("unix:///tmp/redis.sock", "redis"));
        let e = check(&f, "redis://evil.com", "redis").unwrap_err();
        assert!(e
            .to_string()
            .starts_with("denied: address redis://evil.com is not allowed"));
    }

    #[tokio::test]
    async fn wildcards_reach_public_addresses_only() {
        let f = function(&[
            "redis://*.localhost:*",
            "redis://localhost:*",
            "redis://[::1]",
        ]);
        let named = check(&f, "redis://localhost:7000", "redis").unwrap();
        let addrs = named.resolve().await.unwrap();
        assert!(addrs
            .iter()
            .all(|a| a.port() == 7000 && a.ip().is_loopback()));
        // A name under a wildcard, resolved to a loopback and a public address.
        let wild = check(&f, "redis://a.localhost:7000", "redis").unwrap();
        let (private, public) = (
            "127.0.0.1:7000".parse().unwrap(),
            "8.8.8.8:7000".parse().unwrap(),
        );
        assert_eq!(wild.reachable(vec![private, public]).unwrap(), [public]);
        let e = wild.reachable(vec![private]).unwrap_err();
        assert!(e.to_string().contains("wildcard"), "{e}");
        assert_eq!(named.reachable(vec![private]).unwrap(), [private]);
        let v6 = check(&f, "redis://[::1]", "redis").unwrap();
        assert_eq!(v6.resolve().await.unwrap(), ["[::1]:6379".parse().unwrap()]);
    }

    #[test]
    fn the_pool_stays_in_bounds() {
        let pool: Pool<String, u32> = Pool::new(2, 3, Duration::from_secs(60));
        let (a, b): (FunctionName, FunctionName) = ("a".parse().unwrap(), "b".parse().unwrap());
        assert_eq!(pool.put(&a, "x".into(), 1), 1);
        assert_eq!(pool.put(&a, "x".into(), 2), 1, "the first one is kept");
        pool.put(&a, "y".into(), 3);
        pool.put(&a, "z".into(), 4);
        assert_eq!(pool.len(), 2, "two per function");
        assert_eq!(
            pool.get(&a, &"x".into()),
            None,
            "the least recently used went"
        );
        pool.put(&b, "x".into(), 5);
        pool.put(&b, "y".into(), 6);
        assert_eq!(pool.len(), 3, "three in all");
        pool.remove(&b, &"y".into());
        assert_eq!(pool.get(&b, &"y".into()), None);
        pool.retain(|name| name != &a);
        assert_eq!(pool.len(), 1);
        let idle: Pool<String, u32> = Pool::new(2, 3, Duration::ZERO);
        idle.put(&a, "x".into(), 1);
        std::thread::sleep(Duration::from_millis(2));
        assert_eq!(idle.get(&a, &"x".into()), None, "idle too long");
    }
}
