//! Per-function resource limits, with the range each one accepts.

use std::time::{Duration, Instant};

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// The resources one call of a function may use.
///
/// Every field has a default chosen for a request/response function; a function's config
/// overrides any of them. In a manifest or on the command line sizes read like `64MiB` and
/// durations like `500ms` or `5s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest linear memory an instance may grow to. Default 128 MiB: plenty for an HTTP
    /// handler (Go and Python runtimes included) while letting hundreds of instances run at once.
    /// From 64 KiB (one wasm page) to 4 GiB ([`Limits::MAX_MEMORY`], all a 32-bit memory
    /// addresses).
    #[serde(with = "exact_size")]
    pub memory: ByteSize,
    /// Wall-clock time one call may take, enforced by epoch interruption. Default 30 s, the
    /// usual reverse-proxy read timeout, so a function never outlives the client's patience.
    /// Above zero and at most one day ([`Limits::MAX_DURATION`]): a call is a request, not a
    /// batch job, and a deadline must stay far from where `Instant` arithmetic overflows.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest request body (the guest's stdin). Default 16 MiB. At most 1 GiB
    /// ([`Limits::MAX_BODY`]): bodies are held in memory, up to `max_concurrency` of them.
    #[serde(with = "exact_size")]
    pub request_body: ByteSize,
    /// Largest response (the guest's stdout). Default 16 MiB; output beyond it ends the call.
    /// At most 1 GiB ([`Limits::MAX_BODY`]): the response is held in memory.
    #[serde(with = "exact_size")]
    pub stdout: ByteSize,
    /// Largest amount of log output (stderr and log imports) kept per call. Default 1 MiB; the
    /// rest is dropped and a note says so, the call itself carries on. At most 64 MiB
    /// ([`Limits::MAX_LOG`]): a function's log keeps 1 MiB of text anyway.
    #[serde(with = "exact_size")]
    pub stderr: ByteSize,
    /// Instances of this function running at once. Default 64. Further calls wait in a queue
    /// as long as this for up to one second, then get `503 Service Unavailable`. From 1 to
    /// 10,000 ([`Limits::MAX_CONCURRENCY`]): the server runs at most 1000 instances at once,
    /// and each waiting call may hold a request body.
    pub max_concurrency: u32,
    /// Time one outbound HTTP request (host call `http/request`) may take, never past the
    /// call's own deadline. Default 10 s. Above zero and at most one day
    /// ([`Limits::MAX_DURATION`]).
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Largest outbound HTTP response body a guest may receive. Default 4 MiB. At most 1 GiB
    /// ([`Limits::MAX_BODY`]): the body is held in memory and copied into the guest.
    #[serde(with = "exact_size")]
    pub http_response: ByteSize,
    /// Largest value in the function's key-value store. Default 1 MiB. At most 64 MiB
    /// ([`Limits::MAX_KV_VALUE`]): a value is read and written whole, in memory.
    #[serde(with = "exact_size")]
    pub kv_value: ByteSize,
    /// Most keys the function's key-value store may hold. Default 10,000. From 1 to
    /// 10,000,000 ([`Limits::MAX_KV_KEYS`]).
    pub kv_keys: u64,
    /// Requests one instance of an HTTP component may serve. Default 1: a fresh instance per
    /// request. Above 1, instances are reused and what one request leaves in memory the next
    /// can see (see the runtime's `InstancePool`). From 1 to 100,000
    /// ([`Limits::MAX_INSTANCE_REUSE`]).
    pub instance_reuse: u32,
    /// Requests one reused instance of a WASI 0.3 HTTP component serves at once, when
    /// `instance_reuse` is above 1 (WASI 0.3 lets one instance run several handlers
    /// concurrently; a WASI 0.2 one serves one at a time). Default 16, as Spin 4. From 1 to
    /// 1,000 ([`Limits::MAX_CONCURRENT_PER_INSTANCE`]).
    pub max_concurrent_per_instance: u32,
    /// How long a reused instance may sit idle before it is dropped (its memory and its slot
    /// freed). Default 1 s, as Spin 4. Above zero and at most one day.
    #[serde(with = "humantime_serde")]
    pub instance_idle: Duration,
}

/// Sizes are written as their exact number of bytes: `ByteSize`'s own text (`976.6 KiB`) is
/// rounded, so a limit like `1M` would read back as another one from a stored record (found
/// by fuzzing). Both forms are read.
mod exact_size {
    use bytesize::ByteSize;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(size: &ByteSize, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(size.as_u64())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
        ByteSize::deserialize(d)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: ByteSize::mib(128),
            timeout: Duration::from_secs(30),
            request_body: ByteSize::mib(16),
            stdout: ByteSize::mib(16),
            stderr: ByteSize::mib(1),
            max_concurrency: 64,
            http_timeout: Duration::from_secs(10),
            http_response: ByteSize::mib(4),
            kv_value: ByteSize::mib(1),
            kv_keys: 10_000,
            instance_reuse: 1,
            max_concurrent_per_instance: 16,
            instance_idle: Duration::from_secs(1),
        }
    }
}

/// A limit outside the range it accepts: which limit, the value given, and the bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("limit `{limit}` is {value}, {bound}")]
pub struct LimitError {
    /// The limit's name, as in a manifest (`timeout`, `max_concurrency`).
    pub limit: &'static str,
    /// The value given, as it reads back (`18446744073709551615s`, `8 GiB`).
    pub value: String,
    /// The bound it crossed (`above its maximum of 1day`).
    pub bound: String,
}

impl Limits {
    /// Smallest `memory`: one 64 KiB wasm page.
    pub const MIN_MEMORY: ByteSize = ByteSize(64 << 10);
    /// Largest `memory`: 4 GiB, all that a 32-bit wasm memory can address.
    pub const MAX_MEMORY: ByteSize = ByteSize(4 << 30);
    /// Largest `timeout` and `http_timeout`: one day.
    pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);
    /// Largest `request_body`, `stdout` and `http_response`: 1 GiB, held in memory.
    pub const MAX_BODY: ByteSize = ByteSize(1 << 30);
    /// Largest `stderr`: 64 MiB.
    pub const MAX_LOG: ByteSize = ByteSize(64 << 20);
    /// Largest `kv_value`: 64 MiB.
    pub const MAX_KV_VALUE: ByteSize = ByteSize(64 << 20);
    /// Largest `kv_keys`: 10,000,000.
    pub const MAX_KV_KEYS: u64 = 10_000_000;
    /// Largest `max_concurrency`: 10,000.
    pub const MAX_CONCURRENCY: u32 = 10_000;
    /// Largest `instance_reuse`: 100,000.
    pub const MAX_INSTANCE_REUSE: u32 = 100_000;
    /// Largest `max_concurrent_per_instance`: 1,000.
    pub const MAX_CONCURRENT_PER_INSTANCE: u32 = 1_000;

    /// Checks every limit against the range it accepts (see each field, and
    /// `docs/limits.md`); the first one outside names itself, its value and its bound.
    pub fn validate(&self) -> Result<(), LimitError> {
        check_size("memory", self.memory, Self::MIN_MEMORY, Self::MAX_MEMORY)?;
        check_duration("timeout", self.timeout)?;
        check_size(
            "request_body",
            self.request_body,
            ByteSize(0),
            Self::MAX_BODY,
        )?;
        check_size("stdout", self.stdout, ByteSize(0), Self::MAX_BODY)?;
        check_size("stderr", self.stderr, ByteSize(0), Self::MAX_LOG)?;
        check_count(
            "max_concurrency",
            self.max_concurrency.into(),
            1,
            Self::MAX_CONCURRENCY.into(),
        )?;
        check_duration("http_timeout", self.http_timeout)?;
        check_size(
            "http_response",
            self.http_response,
            ByteSize(0),
            Self::MAX_BODY,
        )?;
        check_size("kv_value", self.kv_value, ByteSize(0), Self::MAX_KV_VALUE)?;
        check_count("kv_keys", self.kv_keys, 1, Self::MAX_KV_KEYS)?;
        check_count(
            "instance_reuse",
            self.instance_reuse.into(),
            1,
            Self::MAX_INSTANCE_REUSE.into(),
        )?;
        check_count(
            "max_concurrent_per_instance",
            self.max_concurrent_per_instance.into(),
            1,
            Self::MAX_CONCURRENT_PER_INSTANCE.into(),
        )?;
        check_duration("instance_idle", self.instance_idle)?;
        Ok(())
    }

    /// When a call that starts at `start` must end: `start + timeout`. A record stored before
    /// limits were checked may hold a timeout `Instant` cannot add; its deadline is then as
    /// far away as `Instant` reaches (never a panic).
    pub fn deadline(&self, start: Instant) -> Instant {
        deadline_after(start, self.timeout)
    }

    /// [`Limits::memory`] in bytes, saturated to the address space.
    pub fn memory_bytes(&self) -> usize {
        usize::try_from(self.memory.as_u64()).unwrap_or(usize::MAX)
    }

    /// [`Limits::stdout`] in bytes, saturated to the address space.
    pub fn stdout_bytes(&self) -> usize {
        usize::try_from(self.stdout.as_u64()).unwrap_or(usize::MAX)
    }

    /// [`Limits::stderr`] in bytes, saturated to the address space.
    pub fn stderr_bytes(&self) -> usize {
        usize::try_from(self.stderr.as_u64()).unwrap_or(usize::MAX)
    }
}

/// `start + timeout`, or, when that overflows, the latest of `start` plus 30 years, one
/// year, or one day that `Instant` can hold (`start` itself if none can).
pub fn deadline_after(start: Instant, timeout: Duration) -> Instant {
    const DAY: u64 = 24 * 60 * 60;
    start
        .checked_add(timeout)
        .or_else(|| start.checked_add(Duration::from_secs(30 * 365 * DAY)))
        .or_else(|| start.checked_add(Duration::from_secs(365 * DAY)))
        .or_else(|| start.checked_add(Duration::from_secs(DAY)))
        .unwrap_or(start)
}

fn check_size(
    limit: &'static str,
    value: ByteSize,
    min: ByteSize,
    max: ByteSize,
) -> Result<(), LimitError> {
    let shown = |size: ByteSize| match size.as_u64() {
        bytes if bytes < 1024 => format!("{bytes} bytes"),
        bytes => format!("{bytes} bytes ({})", size.display().iec()),
    };
    let bound = if value < min {
        format!("below its minimum of {}", shown(min))
    } else if value > max {
        format!("above its maximum of {}", shown(max))
    } else {
        return Ok(());
    };
    Err(LimitError {
        limit,
        value: shown(value),
        bound,
    })
}

fn check_duration(limit: &'static str, value: Duration) -> Result<(), LimitError> {
    let bound = if value.is_zero() {
        "and must be above zero".to_owned()
    } else if value > Limits::MAX_DURATION {
        format!("above its maximum of {:?} (1 day)", Limits::MAX_DURATION)
    } else {
        return Ok(());
    };
    Err(LimitError {
        limit,
        value: format!("{value:?}"),
        bound,
    })
}

fn check_count(limit: &'static str, value: u64, min: u64, max: u64) -> Result<(), LimitError> {
    let bound = if value < min {
        format!("below its minimum of {min}")
    } else if value > max {
        format!("above its maximum of {max}")
    } else {
        return Ok(());
    };
    Err(LimitError {
        limit,
        value: value.to_string(),
        bound,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_back_exactly_from_a_stored_record() {
        // Found by fuzzing: `1M` was stored as "976.6 KiB" and read back as 1,000,038 bytes.
        let limits = Limits {
            stdout: ByteSize::b(1_000_000),
            ..Limits::default()
        };
        let json = serde_json::to_string(&limits).unwrap();
        assert!(json.contains(r#""stdout":1000000"#), "{json}");
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), limits);
        // Records written before keep loading.
        let old: Limits = serde_json::from_str(r#"{"memory": "64.0 MiB"}"#).unwrap();
        assert_eq!(old.memory, ByteSize::mib(64));
    }

    /// The message a deploy with `limits` gets, or `None` if they are accepted.
    fn refusal(json: &str) -> Option<String> {
        let limits: Limits = serde_json::from_str(json).unwrap();
        limits.validate().err().map(|e| e.to_string())
    }

    #[test]
    fn absurd_limits_are_refused_naming_the_limit_its_value_and_its_maximum() {
        assert_eq!(refusal("{}"), None);
        // Reported: every call of this function panicked in `Instant + Duration`.
        assert_eq!(
            refusal(r#"{"timeout": "18446744073709551615s"}"#).unwrap(),
            "limit `timeout` is 18446744073709551615s, above its maximum of 86400s (1 day)"
        );
        assert_eq!(
            refusal(r#"{"http_timeout": "0s"}"#).unwrap(),
            "limit `http_timeout` is 0ns, and must be above zero"
        );
        assert_eq!(
            refusal(r#"{"memory": "8GiB"}"#).unwrap(),
            "limit `memory` is 8589934592 bytes (8.0 GiB), above its maximum of 4294967296 bytes (4.0 GiB)"
        );
        assert_eq!(
            refusal(r#"{"memory": 1000}"#).unwrap(),
            "limit `memory` is 1000 bytes, below its minimum of 65536 bytes (64.0 KiB)"
        );
        assert_eq!(
            refusal(r#"{"max_concurrency": 4294967295}"#).unwrap(),
            "limit `max_concurrency` is 4294967295, above its maximum of 10000"
        );
        assert_eq!(
            refusal(r#"{"kv_keys": 0}"#).unwrap(),
            "limit `kv_keys` is 0, below its minimum of 1"
        );
        for (limit, value) in [
            ("request_body", "2GiB"),
            ("stdout", "2GiB"),
            ("stderr", "65MiB"),
            ("http_response", "2GiB"),
            ("kv_value", "65MiB"),
            ("kv_keys", "10000001"),
            ("instance_reuse", "100001"),
            ("instance_reuse", "0"),
            ("max_concurrent_per_instance", "0"),
            ("max_concurrent_per_instance", "1001"),
            ("instance_idle", "\"0s\""),
            ("max_concurrency", "0"),
            ("timeout", "\"0s\""),
            ("timeout", "\"1day 1s\""),
            ("http_timeout", "\"25h\""),
        ] {
            let value = if value.ends_with("iB") {
                format!("\"{value}\"")
            } else {
                value.to_owned()
            };
            let message = refusal(&format!(r#"{{"{limit}": {value}}}"#));
            assert!(
                message
                    .as_deref()
                    .is_some_and(|m| m.starts_with(&format!("limit `{limit}` is "))),
                "{limit} = {value}: {message:?}"
            );
        }
        // The bounds themselves are accepted.
        let most = Limits {
            memory: Limits::MAX_MEMORY,
            timeout: Limits::MAX_DURATION,
            request_body: Limits::MAX_BODY,
            stdout: Limits::MAX_BODY,
            stderr: Limits::MAX_LOG,
            max_concurrency: Limits::MAX_CONCURRENCY,
            http_timeout: Limits::MAX_DURATION,
            http_response: Limits::MAX_BODY,
            kv_value: Limits::MAX_KV_VALUE,
            kv_keys: Limits::MAX_KV_KEYS,
            instance_reuse: Limits::MAX_INSTANCE_REUSE,
            max_concurrent_per_instance: Limits::MAX_CONCURRENT_PER_INSTANCE,
            instance_idle: Limits::MAX_DURATION,
        };
        assert_eq!(most.validate(), Ok(()));
    }

    #[test]
    fn a_deadline_never_overflows() {
        let now = Instant::now();
        let stored = Limits {
            timeout: Duration::MAX,
            ..Limits::default()
        };
        assert!(stored.deadline(now) > now + Limits::MAX_DURATION);
        assert_eq!(
            Limits::default().deadline(now),
            now + Duration::from_secs(30)
        );
        assert!(deadline_after(now, Duration::from_secs(u64::MAX)) >= now);
    }
}
