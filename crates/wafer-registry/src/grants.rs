//! What a function may reach beyond its own memory: outbound HTTP hosts, directories, config
//! values and secrets, a key-value namespace, pub/sub topics. Everything is denied unless
//! granted here.
//!
//! Every grant is written as a string in manifests, deploy flags and stored records
//! (`https://api.example.com`, `./data::/data:ro`, `telemetry.*`) and parsed into a checked
//! type once.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::names::FunctionName;

/// The capabilities granted to a function.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Grants {
    /// Outbound HTTP allow-list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRule>,
    /// Allow-list of other outbound connections (TCP sockets, and Spin's Redis, MQTT,
    /// PostgreSQL and MySQL clients).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<OutboundRule>,
    /// Pre-opened directories.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// Config values the guest reads with `config/get`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// Values read like config values but never shown.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Secret>,
    /// A private key-value namespace (the store labelled `default`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub kv: bool,
    /// Key-value stores the guest opens by label, each the namespace given (Spin's
    /// `key_value_stores`: the components of one app granted a label share its store).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub kv_stores: BTreeMap<String, FunctionName>,
    /// SQLite databases the guest opens by label, each the database given (Spin's
    /// `sqlite_databases`, shared like `kv_stores`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub sqlite_databases: BTreeMap<String, FunctionName>,
    /// Topics the function may publish to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<TopicPattern>,
    /// Topics whose messages invoke the function.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subscribe: Vec<TopicPattern>,
    /// The address a service listens on: the function runs as a long-lived instance that
    /// accepts TCP connections there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

impl Grants {
    /// Checks what parsing cannot: names, and that granted directories exist.
    pub fn validate(&self) -> Result<(), RegistryError> {
        for name in self.config.keys().chain(self.secrets.keys()) {
            if name.is_empty() || name.len() > 256 || name.contains('\0') {
                return Err(invalid(format!(
                    "config name `{name}` must be 1 to 256 bytes without NUL"
                )));
            }
        }
        if let Some(name) = self.config.keys().find(|k| self.secrets.contains_key(*k)) {
            return Err(invalid(format!(
                "`{name}` is both a config value and a secret"
            )));
        }
        for dir in &self.dirs {
            if !dir.host.is_dir() {
                return Err(invalid(format!(
                    "directory grant `{dir}`: {} is not a directory on the server",
                    dir.host.display()
                )));
            }
        }
        Ok(())
    }

    /// A copy fit to show: every secret value replaced by `********`.
    pub fn masked(&self) -> Self {
        let mut grants = self.clone();
        for value in grants.secrets.values_mut() {
            *value = Secret(Secret::MASK.into());
        }
        grants
    }

    /// A config value or secret by name.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.config
            .get(name)
            .map(String::as_str)
            .or_else(|| self.secrets.get(name).map(Secret::expose))
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }
}

fn invalid(message: String) -> RegistryError {
    RegistryError::InvalidConfig(message)
}

/// A secret value: stored, handed to the guest that asks, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// What listings show instead of a secret's value.
    pub const MASK: &'static str = "********";

    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

/// Serializes a grant as the string it was parsed from, and parses it back with `FromStr`.
macro_rules! string_grant {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// The URL scheme an HTTP rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`
    Http,
    /// `https://`
    Https,
}

impl Scheme {
    /// The port a URL of this scheme uses when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Self::Http => 80,
            Self::Https => 443,
        }
    }

    /// `http` or `https`, as in a URL.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
        }
    }
}

/// The hosts an HTTP rule allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this name (lower case).
    Name(String),
    /// Any name ending in `.SUFFIX` (the rule `*.SUFFIX`).
    Subdomains(String),
    /// Exactly this address.
    Ip(IpAddr),
    /// Any address in this network (the rule `10.0.0.0/8`, as Spin writes it).
    Net(ipnet::IpNet),
    /// Any name or address (the rule `*`, as Spin writes it).
    Any,
}

impl HostPattern {
    /// Whether `host` (a name in lower case, or an address) is one of these.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let address = host.parse::<IpAddr>().ok();
        match self {
            HostPattern::Any => true,
            HostPattern::Ip(ip) => address == Some(*ip),
            HostPattern::Net(net) => address.is_some_and(|a| net.contains(&a)),
            // Name rules match DNS names only: `*.0.0.1` must not reach `127.0.0.1`. An
            // address is allowed only by a rule that names it.
            _ if address.is_some() => false,
            HostPattern::Name(name) => host.eq_ignore_ascii_case(name),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() + 1
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// The ports an HTTP rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortRule {
    /// The scheme's default port.
    Default,
    /// Any port (`:*`).
    Any,
    /// This port.
    Port(u16),
}

/// One entry of the outbound HTTP allow-list: `[scheme://]host[:port]`, where host may be
/// `*.example.com` and port `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRule {
    /// `None` allows both http and https.
    pub scheme: Option<Scheme>,
    /// Which hosts.
    pub host: HostPattern,
    /// Which ports.
    pub port: PortRule,
    text: String,
}

impl HttpRule {
    /// Whether a request to `scheme://host:port` is allowed by this rule. `host` is a name
    /// in lower case or an address.
    pub fn allows(&self, scheme: Scheme, host: &str, port: u16) -> bool {
        if self.scheme.is_some_and(|s| s != scheme) {
            return false;
        }
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Port(p) => p == port,
            PortRule::Default => port == scheme.default_port(),
        };
        port_ok && self.allows_host(host)
    }

    fn allows_host(&self, host: &str) -> bool {
        self.host.allows(host)
    }

    /// Whether this rule names loopback, private or link-local addresses itself: an address,
    /// or `localhost`. Only such rules let a request reach those addresses.
    pub fn names_address(&self) -> bool {
        match &self.host {
            HostPattern::Ip(_) | HostPattern::Net(_) | HostPattern::Any => true,
            HostPattern::Name(name) => name == "localhost",
            HostPattern::Subdomains(_) => false,
        }
    }
}

impl FromStr for HttpRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("HTTP allow-list entry `{text}`: {why}");
        let (scheme, rest) = match text.split_once("://") {
            Some(("http", rest)) => (Some(Scheme::Http), rest),
            Some(("https", rest)) => (Some(Scheme::Https), rest),
            Some((other, _)) => return Err(bad(&format!("scheme `{other}` is not http or https"))),
            None => (None, text),
        };
        let (host, port) = host_port(rest, &bad)?;
        Ok(Self {
            scheme,
            host,
            port,
            text: text.to_owned(),
        })
    }
}

/// The `host[:port]` of an allow-list entry: a name, `*.domain`, `*`, an address or a network
/// (`10.0.0.0/8`), and a port, `*`, or none (the scheme's default).
fn host_port(rest: &str, bad: &dyn Fn(&str) -> String) -> Result<(HostPattern, PortRule), String> {
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    // A `/` only as a network's prefix length (`10.0.0.0/8:*`).
    let cidr = rest
        .split_once('/')
        .is_some_and(|(_, after)| after.starts_with(|c: char| c.is_ascii_digit()));
    if rest.contains(['?', '#', '@'])
        || (rest.contains('/') && !cidr)
        || rest.chars().any(char::is_whitespace)
    {
        return Err(bad(
            "give only [scheme://]host[:port], no path, query or user",
        ));
    }
    // Split off the port; an IPv6 address is in brackets.
    let (host, port) = if let Some(inner) = rest.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| bad("unclosed `[` in an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| bad("expected `:port` after `]`"))?,
            ),
        };
        (addr, port)
    } else {
        match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => PortRule::Default,
        Some("*") => PortRule::Any,
        Some(p) => PortRule::Port(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(&format!("port `{p}` is not 1-65535 or `*`")))?,
        ),
    };
    let host = if host == "*" {
        HostPattern::Any
    } else if let Ok(ip) = host.parse::<IpAddr>() {
        HostPattern::Ip(ip)
    } else if let Ok(net) = host.parse::<ipnet::IpNet>() {
        HostPattern::Net(net)
    } else {
        let name = host.to_ascii_lowercase();
        let (pattern, labels) = match name.strip_prefix("*.") {
            Some(suffix) => (
                HostPattern::Subdomains(suffix.to_owned()),
                suffix.to_owned(),
            ),
            None => (HostPattern::Name(name.clone()), name),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        if labels.is_empty() || labels.len() > 253 || !labels.split('.').all(label_ok) {
            return Err(bad(&format!(
                "`{host}` is not a host name, `*.domain` or an IP address"
            )));
        }
        pattern
    };
    Ok((host, port))
}

impl fmt::Display for HttpRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_grant!(HttpRule);

/// One entry of the allow-list for other connections than HTTP, as Spin writes them:
/// `SCHEME://host:port` with the scheme `tcp`, `udp`, `redis`, `mqtt`, `postgres`, `mysql`, or
/// `*` for any; host as in an [`HttpRule`] (names, `*.domain`, `*`, addresses, networks).
/// The port may be left out only for a scheme with a default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundRule {
    /// `None` allows every scheme.
    pub scheme: Option<String>,
    /// Which hosts.
    pub host: HostPattern,
    /// Which ports.
    pub port: PortRule,
    text: String,
}

/// The schemes of [`OutboundRule`]s, with their default ports.
const OUTBOUND_SCHEMES: &[(&str, Option<u16>)] = &[
    ("tcp", None),
    ("udp", None),
    ("redis", Some(6379)),
    ("mqtt", Some(1883)),
    ("postgres", Some(5432)),
    ("mysql", Some(3306)),
];

impl OutboundRule {
    /// Whether a connection of `scheme` to `host:port` is allowed by this rule. `host` is a
    /// name in lower case or an address.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let port_ok = match self.port {
            PortRule::Any => true,
            PortRule::Port(p) => p == port,
            PortRule::Default => default_port(scheme) == Some(port),
        };
        port_ok && self.host.allows(host)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    OUTBOUND_SCHEMES
        .iter()
        .find(|(s, _)| *s == scheme)
        .and_then(|(_, port)| *port)
}

impl FromStr for OutboundRule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("outbound allow-list entry `{text}`: {why}");
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| bad("give SCHEME://host:port"))?;
        let scheme = match scheme {
            "*" => None,
            s if OUTBOUND_SCHEMES.iter().any(|(known, _)| *known == s) => Some(s.to_owned()),
            other => {
                return Err(bad(&format!(
                    "the scheme `{other}` is none of tcp, udp, redis, mqtt, postgres, mysql, *"
                )))
            }
        };
        let (host, port) = host_port(rest, &bad)?;
        if port == PortRule::Default && scheme.as_deref().and_then(default_port).is_none() {
            return Err(bad("give the port (`:5432`, or `:*` for any)"));
        }
        Ok(Self {
            scheme,
            host,
            port,
            text: text.to_owned(),
        })
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_grant!(OutboundRule);

/// A pre-opened directory: `HOST::GUEST`, or `HOST::GUEST:ro` for read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirGrant {
    /// The directory on the server.
    pub host: PathBuf,
    /// Where the guest sees it (an absolute path).
    pub guest: String,
    /// Whether the guest may only read.
    pub read_only: bool,
}

impl FromStr for DirGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("directory grant `{text}`: {why}");
        let (host, guest) = text
            .split_once("::")
            .ok_or_else(|| bad("expected HOST::GUEST or HOST::GUEST:ro"))?;
        let (guest, read_only) = match guest.strip_suffix(":ro") {
            Some(guest) => (guest, true),
            None => (guest.strip_suffix(":rw").unwrap_or(guest), false),
        };
        if host.is_empty() {
            return Err(bad("the host directory is empty"));
        }
        if !guest.starts_with('/') || guest.split('/').any(|part| part == "..") {
            return Err(bad(&format!(
                "the guest path `{guest}` must be absolute, without `..`"
            )));
        }
        if text.contains('\0') {
            return Err(bad("contains a NUL byte"));
        }
        // `:` ends the guest path (`:ro`, `:rw`); one inside it would read back otherwise
        // (`/d:ro:rw` is read-write at `/d:ro`, printed as `/d:ro`, read back read-only).
        if guest.contains(':') {
            return Err(bad(&format!(
                "the guest path `{guest}` may not contain `:` (it separates the `:ro` or `:rw` suffix)"
            )));
        }
        Ok(Self {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            read_only,
        })
    }
}

impl fmt::Display for DirGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{}", self.host.display(), self.guest)?;
        if self.read_only {
            f.write_str(":ro")?;
        }
        Ok(())
    }
}

string_grant!(DirGrant);

/// A topic (`telemetry.cpu`) or topic pattern (`telemetry.*`, `telemetry.>`): dot-separated
/// words of `[A-Za-z0-9_-]`; in a pattern `*` stands for one word and a final `>` for one or
/// more.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPattern(String);

impl TopicPattern {
    /// Whether `topic` (a concrete topic, checked with [`check_topic`]) matches.
    pub fn matches(&self, topic: &str) -> bool {
        let mut words = topic.split('.');
        for part in self.0.split('.') {
            match (part, words.next()) {
                (">", Some(_)) => return true,
                ("*", Some(_)) => {}
                (part, Some(word)) if part == word => {}
                _ => return false,
            }
        }
        words.next().is_none()
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a concrete topic a guest publishes to (no wildcards).
pub fn check_topic(topic: &str) -> Result<(), String> {
    check_words(topic, false).map_err(|why| format!("topic `{topic}`: {why}"))
}

fn check_words(text: &str, pattern: bool) -> Result<(), String> {
    if text.is_empty() || text.len() > 256 {
        return Err("must be 1 to 256 bytes".into());
    }
    let words: Vec<&str> = text.split('.').collect();
    for (i, word) in words.iter().enumerate() {
        let wildcard = pattern && (*word == "*" || (*word == ">" && i == words.len() - 1));
        let plain = !word.is_empty()
            && word
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !wildcard && !plain {
            return Err(format!(
                "word `{word}` must be [A-Za-z0-9_-]+{}",
                if pattern { ", `*`, or a final `>`" } else { "" }
            ));
        }
    }
    Ok(())
}

impl FromStr for TopicPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        check_words(text, true).map_err(|why| format!("topic pattern `{text}`: {why}"))?;
        Ok(Self(text.to_owned()))
    }
}

impl fmt::Display for TopicPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_grant!(TopicPattern);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rule(text: &str) -> HttpRule {
        text.parse().unwrap()
    }

    #[test]
    fn http_rules_match_scheme_host_and_port() {
        let api = rule("https://api.example.com");
        assert!(api.allows(Scheme::Https, "api.example.com", 443));
        assert!(api.allows(Scheme::Https, "API.example.com", 443));
        assert!(!api.allows(Scheme::Http, "api.example.com", 80));
        assert!(!api.allows(Scheme::Https, "api.example.com", 8443));
        assert!(!api.allows(Scheme::Https, "evil.com", 443));

        let wild = rule("*.example.com");
        assert!(wild.allows(Scheme::Http, "a.example.com", 80));
        assert!(wild.allows(Scheme::Https, "a.b.example.com", 443));
        assert!(!wild.allows(Scheme::Https, "example.com", 443));
        assert!(!wild.allows(Scheme::Https, "badexample.com", 443));
        assert!(!wild.allows(Scheme::Http, "a.example.com", 8080));

        let local = rule("http://127.0.0.1:9000");
        assert!(local.allows(Scheme::Http, "127.0.0.1", 9000));
        assert!(!local.allows(Scheme::Http, "127.0.0.1", 9001));
        assert!(local.names_address());
        assert!(!wild.names_address());

        let v6 = rule("http://[::1]:*");
        assert!(v6.allows(Scheme::Http, "[::1]", 1234));
        assert!(rule("example.com:*").allows(Scheme::Https, "example.com", 1));
    }

    #[test]
    fn wildcard_rules_match_names_never_addresses() {
        // Reported: `*.0.0.1` allowed the address 127.0.0.1.
        let wild = rule("*.0.0.1");
        assert!(!wild.allows(Scheme::Http, "127.0.0.1", 80));
        assert!(!wild.names_address());
        assert!(!rule("*.1").allows(Scheme::Http, "10.0.0.1", 80));
        assert!(!rule("*.ffff").allows(Scheme::Http, "[::ffff]", 80));
        assert!(!rule("*.ffff:*").allows(Scheme::Http, "::ffff", 80));
        // A name that looks like an address's tail is still a name.
        assert!(wild.allows(Scheme::Http, "a.0.0.1", 80));
        // Addresses are allowed by the rules that name them, and only those.
        assert!(rule("127.0.0.1").allows(Scheme::Http, "127.0.0.1", 80));
        assert!(!rule("127.0.0.2").allows(Scheme::Http, "127.0.0.1", 80));
    }

    #[test]
    fn bad_http_rules_are_refused_with_the_reason() {
        for (text, why) in [
            ("ftp://x.com", "scheme `ftp`"),
            ("https://x.com/path", "no path"),
            ("https://user@x.com", "no path, query or user"),
            ("x.com:0", "port `0`"),
            ("x.com:99999", "port `99999`"),
            ("*.", "not a host name"),
            ("exa mple.com", "no path"),
            ("[::1", "unclosed"),
        ] {
            let err = text.parse::<HttpRule>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn dir_grants_parse_and_print_back() {
        let dir: DirGrant = "./data::/data:ro".parse().unwrap();
        assert_eq!(dir.host, PathBuf::from("./data"));
        assert_eq!(dir.guest, "/data");
        assert!(dir.read_only);
        assert_eq!(dir.to_string(), "./data::/data:ro");
        assert!("/srv::/srv".parse::<DirGrant>().is_ok_and(|d| !d.read_only));
        assert!("/srv::srv".parse::<DirGrant>().is_err());
        assert!("/srv::/a/../b".parse::<DirGrant>().is_err());
        assert!("/srv".parse::<DirGrant>().is_err());
        // Found by fuzzing: read-write at `/d:ro` printed as `/d:ro` and read back read-only.
        assert!("data::/d:ro:rw".parse::<DirGrant>().is_err());
    }

    #[test]
    fn topic_patterns_match_words() {
        let p = |t: &str| t.parse::<TopicPattern>().unwrap();
        assert!(p("telemetry.cpu").matches("telemetry.cpu"));
        assert!(p("telemetry.*").matches("telemetry.cpu"));
        assert!(!p("telemetry.*").matches("telemetry.cpu.load"));
        assert!(!p("telemetry.*").matches("telemetry"));
        assert!(p("telemetry.>").matches("telemetry.cpu.load"));
        assert!(!p("telemetry.>").matches("telemetry"));
        assert!(!p("a.b").matches("a.bc"));
        assert!("a..b".parse::<TopicPattern>().is_err());
        assert!("a.>.b".parse::<TopicPattern>().is_err());
        assert!(check_topic("a.*").is_err());
        assert!(check_topic("a.b-c_d").is_ok());
    }

    #[test]
    fn secrets_are_masked_and_never_debug_printed() {
        let mut grants = Grants::default();
        grants.secrets.insert("token".into(), Secret::new("s3cret"));
        assert_eq!(grants.value("token"), Some("s3cret"));
        assert!(!format!("{grants:?}").contains("s3cret"));
        let shown = serde_json::to_string(&grants.masked()).unwrap();
        assert!(shown.contains("********") && !shown.contains("s3cret"));
        // Stored records keep the value.
        assert!(serde_json::to_string(&grants).unwrap().contains("s3cret"));
    }
}
