//! Entry points for the fuzz targets and their regression tests; not a stable API.
//!
//! Each entry point takes the fuzzer's bytes, runs the real parsing code on them and asserts
//! the invariants that must hold: it panics exactly when the fuzz target should report a
//! crash. The fuzz targets (`fuzz/fuzz_targets/`) and the replay tests (which feed them every
//! file of `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/`) call the same functions, so
//! the two cannot drift apart.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::grants::{check_topic, DirGrant, HostPattern, HttpRule, PortRule, Scheme, TopicPattern};
use crate::names::{Digest, FunctionName, Route};

/// The `fuzz/` directory of the workspace (seeds, regressions, targets).
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Feeds `check` every file of `fuzz/seeds/TARGET/` and `fuzz/regressions/TARGET/`, and
/// panics naming each file whose check panicked. There must be at least one seed, so that a
/// wrong path cannot pass as an empty replay.
pub fn replay(target: &str, check: impl Fn(&[u8])) {
    let fuzz = fuzz_dir();
    let mut files = Vec::new();
    for kind in ["seeds", "regressions"] {
        let dir = fuzz.join(kind).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a readable directory entry").path();
            if path.is_file() && path.file_name().is_none_or(|n| n != "README.md") {
                files.push(path);
            }
        }
    }
    files.sort();
    let seeds = fuzz.join("seeds").join(target);
    assert!(
        files.iter().any(|f| f.starts_with(&seeds)),
        "no seed files in {}",
        seeds.display()
    );
    let mut failed = Vec::new();
    for file in &files {
        let data = std::fs::read(file).expect("a readable input file");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        if outcome.is_err() {
            failed.push(file.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs of fuzz target `{target}` fail (each panic is printed above):\n  {}",
        failed.len(),
        files.len(),
        failed.join("\n  ")
    );
}

/// How many lines (and routes) the cross checks of [`names_routes`] take.
const CROSS: usize = 32;

/// `names_routes`: each line of the input is parsed as a [`FunctionName`], [`Route`],
/// [`Digest`], [`HttpRule`], [`TopicPattern`] and [`DirGrant`]; whatever parses must print
/// back as written and survive a JSON round trip. Every rule is matched against every line
/// as a host, and every pattern against every line that is a topic, each checked against a
/// plain model of the matching rules.
///
/// Returns the first routes and lines, for the gateway's half of the target: they go into a
/// route table and every line is resolved as a request path
/// (`wafer_gateway::fuzzing::names_routes`).
pub fn names_routes(data: &[u8]) -> (Vec<Route>, Vec<String>) {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut routes = Vec::new();
    let mut rules = Vec::new();
    let mut patterns = Vec::new();
    for line in &lines {
        check_name(line);
        if let Some(route) = check_route(line) {
            routes.push(route);
        }
        check_digest(line);
        if let Some(rule) = check_http_rule(line) {
            rules.push(rule);
        }
        if let Some(pattern) = check_topic_pattern(line) {
            patterns.push(pattern);
        }
        check_dir_grant(line);
    }
    // The cross checks are quadratic: a bounded share of the input goes into them, so that
    // one iteration stays fast.
    let lines = &lines[..lines.len().min(CROSS)];
    routes.truncate(CROSS);
    rules.truncate(CROSS / 4);
    patterns.truncate(CROSS / 4);
    for rule in &rules {
        for host in lines {
            for scheme in [Scheme::Http, Scheme::Https] {
                let mut ports = vec![80, 443, 9];
                if let PortRule::Port(p) = rule.port {
                    ports.push(p);
                }
                for port in ports {
                    let allowed = rule.allows(scheme, host, port);
                    let expected = allows_model(rule, scheme, host, port);
                    assert_eq!(
                        allowed, expected,
                        "rule `{rule}` allows {scheme:?} {host:?}:{port}: {allowed}, the model says {expected}"
                    );
                }
            }
        }
    }
    for pattern in &patterns {
        for topic in lines.iter().filter(|t| check_topic(t).is_ok()) {
            let matched = pattern.matches(topic);
            let words: Vec<&str> = pattern.as_str().split('.').collect();
            let topic_words: Vec<&str> = topic.split('.').collect();
            let expected = matches_model(&words, &topic_words);
            assert_eq!(
                matched, expected,
                "pattern `{pattern}` matches {topic:?}: {matched}, the model says {expected}"
            );
        }
    }
    (routes, lines.iter().map(|l| (*l).to_owned()).collect())
}

/// Serializes to JSON and back: what is stored must load as what was stored.
fn json_round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).expect("a parsed value serializes");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json} does not load back: {e}"))
}

fn check_name(line: &str) {
    let Ok(name) = FunctionName::from_str(line) else {
        return;
    };
    assert_eq!(name.as_str(), line);
    assert_eq!(name.to_string(), line);
    assert!(
        (1..=63).contains(&line.len()),
        "name {line:?} has a bad length"
    );
    assert!(
        line.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
        "name {line:?} has a bad character"
    );
    assert_eq!(json_round_trip(&name), name);
    let route = Route::default_for(&name);
    let parsed = Route::from_str(route.as_str())
        .unwrap_or_else(|e| panic!("the default route of `{name}` does not parse: {e}"));
    assert_eq!(parsed.pattern(), (format!("/{name}").as_str(), true));
}

fn check_route(line: &str) -> Option<Route> {
    let route = Route::from_str(line).ok()?;
    assert_eq!(route.as_str(), line);
    assert_eq!(route.to_string(), line);
    assert!(
        line.starts_with('/') && line.len() <= 1024,
        "route {line:?}"
    );
    let (prefix, wildcard) = route.pattern();
    if wildcard {
        assert_eq!(format!("{prefix}/..."), line);
    } else {
        assert_eq!(prefix, line);
    }
    assert!(
        !prefix.starts_with("/_wafer"),
        "route {line:?} is under /_wafer"
    );
    assert_eq!(json_round_trip(&route), route);
    Some(route)
}

fn check_digest(line: &str) {
    if let Ok(digest) = Digest::from_str(line) {
        assert_eq!(digest.as_str(), line);
        assert_eq!(digest.to_string(), line);
        assert_eq!(digest.hex().len(), 64);
        assert_eq!(json_round_trip(&digest), digest);
    }
    let own = Digest::of(line.as_bytes());
    assert_eq!(Digest::from_str(own.as_str()).ok(), Some(own));
}

fn check_http_rule(line: &str) -> Option<HttpRule> {
    let rule = HttpRule::from_str(line).ok()?;
    assert_eq!(rule.to_string(), line);
    assert_eq!(HttpRule::from_str(&rule.to_string()).as_ref(), Ok(&rule));
    assert_eq!(json_round_trip(&rule), rule);
    Some(rule)
}

fn check_topic_pattern(line: &str) -> Option<TopicPattern> {
    if check_topic(line).is_ok() {
        let topic = TopicPattern::from_str(line)
            .unwrap_or_else(|e| panic!("topic {line:?} is no pattern: {e}"));
        assert!(topic.matches(line), "topic {line:?} does not match itself");
    }
    let pattern = TopicPattern::from_str(line).ok()?;
    assert_eq!(pattern.as_str(), line);
    assert_eq!(pattern.to_string(), line);
    assert_eq!(json_round_trip(&pattern), pattern);
    Some(pattern)
}

fn check_dir_grant(line: &str) {
    let Ok(grant) = DirGrant::from_str(line) else {
        return;
    };
    assert!(grant.guest.starts_with('/'), "guest path of {line:?}");
    // Stored records keep a grant as its `Display`: it must read back as the same grant.
    let shown = grant.to_string();
    assert_eq!(
        DirGrant::from_str(&shown).as_ref(),
        Ok(&grant),
        "directory grant {line:?} prints as {shown:?}, which reads back differently"
    );
    assert_eq!(json_round_trip(&grant), grant);
}

/// [`HttpRule::allows`], plainly. A host may come in brackets (an IPv6 address in a URL).
fn allows_model(rule: &HttpRule, scheme: Scheme, host: &str, port: u16) -> bool {
    let scheme_ok = rule.scheme.is_none_or(|s| s == scheme);
    let port_ok = match rule.port {
        PortRule::Any => true,
        PortRule::Port(p) => p == port,
        PortRule::Default => port == scheme.default_port(),
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let lower = bare.to_ascii_lowercase();
    let host_ok = match &rule.host {
        HostPattern::Any => true,
        HostPattern::Net(net) => bare.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
        HostPattern::Ip(ip) => bare.parse::<IpAddr>().ok() == Some(*ip),
        HostPattern::Name(name) => lower == name.to_ascii_lowercase(),
        HostPattern::Subdomains(suffix) => lower
            .strip_suffix(suffix.to_ascii_lowercase().as_str())
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|label| !label.is_empty()),
    };
    scheme_ok && port_ok && host_ok
}

/// [`TopicPattern::matches`], plainly: `*` takes one word, a final `>` one or more.
fn matches_model(pattern: &[&str], topic: &[&str]) -> bool {
    match (pattern.split_first(), topic.split_first()) {
        (None, None) => true,
        (Some((&">", [])), Some(_)) => true,
        (Some((&"*", rest)), Some((_, words))) => matches_model(rest, words),
        (Some((part, rest)), Some((word, words))) => part == word && matches_model(rest, words),
        _ => false,
    }
}
