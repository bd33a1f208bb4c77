//! Per-function resource limits.

use std::time::Duration;

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
    #[serde(with = "exact_size")]
    pub memory: ByteSize,
    /// Wall-clock time one call may take, enforced by epoch interruption. Default 30 s, the
    /// usual reverse-proxy read timeout, so a function never outlives the client's patience.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Largest request body (the guest's stdin). Default 16 MiB.
    #[serde(with = "exact_size")]
    pub request_body: ByteSize,
    /// Largest response (the guest's stdout). Default 16 MiB; output beyond it ends the call.
    #[serde(with = "exact_size")]
    pub stdout: ByteSize,
    /// Largest amount of log output (stderr and log imports) kept per call. Default 1 MiB; the
    /// rest is dropped and a note says so, the call itself carries on.
    #[serde(with = "exact_size")]
    pub stderr: ByteSize,
    /// Instances of this function running at once. Default 64. Further calls wait in a queue
    /// as long as this for up to one second, then get `503 Service Unavailable`.
    pub max_concurrency: u32,
    /// Time one outbound HTTP request (host call `http/request`) may take, never past the
    /// call's own deadline. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Largest outbound HTTP response body a guest may receive. Default 4 MiB.
    #[serde(with = "exact_size")]
    pub http_response: ByteSize,
    /// Largest value in the function's key-value store. Default 1 MiB.
    #[serde(with = "exact_size")]
    pub kv_value: ByteSize,
    /// Most keys the function's key-value store may hold. Default 10,000.
    pub kv_keys: u64,
    /// Requests one instance of an HTTP component may serve. Default 1: a fresh instance per
    /// request. Above 1, instances are reused and what one request leaves in memory the next
    /// can see (see the runtime's `InstancePool`).
    pub instance_reuse: u32,
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
        }
    }
}

impl Limits {
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
}
