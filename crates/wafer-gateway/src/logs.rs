//! Function logs: the lines a function's calls wrote to stderr or through log imports, and the
//! faults that ended them, each tagged with its request id. Kept in memory per function,
//! bounded in lines and bytes; new lines are also sent to whoever follows them
//! ([`LogBook::follow`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::broadcast;

use crate::live::Function;
use serde::Serialize;

/// Lines kept per function; older lines are dropped first. 1000 lines is a screenful of
/// history for `wafer logs`.
pub const LINES_KEPT: usize = 1000;

/// Bytes of log text kept per function (besides [`LINES_KEPT`]): a guest that logs long lines
/// costs the server at most this much. Default 1 MiB.
pub const BYTES_KEPT: usize = 1 << 20;

/// Longest line kept; the rest of a longer line is cut, with a note of its length.
pub const LINE_MAX: usize = 16 << 10;

/// The gateway's own notes on a function's failed calls (bad requests, faults) are kept
/// apart from what the guest logged, in a smaller ring: a caller who sends bad requests fills
/// this one, and cannot push the guest's lines out.
const NOTES_KEPT: usize = 100;
const NOTE_BYTES_KEPT: usize = 64 << 10;

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// When the call ended (RFC 3339, UTC).
    pub time: String,
    /// The request that wrote it.
    pub request_id: String,
    /// The line, without its newline.
    pub text: String,
    /// Order of writing, across both rings of a function.
    #[serde(skip)]
    seq: u64,
    /// When the call ended, for `since`.
    #[serde(skip)]
    at: SystemTime,
}

impl LogLine {
    /// When the line was written.
    pub fn at(&self) -> SystemTime {
        self.at
    }

    /// Its place in the order its function's lines were written.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// Lines a follower may fall behind by before it is told it missed some.
const FOLLOW_BUFFER: usize = 1024;

/// Lines within a count and a byte budget; the oldest go first.
#[derive(Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, line: LogLine, max_lines: usize, max_bytes: usize) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > max_lines || self.bytes > max_bytes {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }
}

/// What one function logged, and what the gateway noted about its calls.
#[derive(Default)]
struct FunctionLog {
    guest: Ring,
    notes: Ring,
    seq: u64,
}

/// The recent log lines of every function.
pub struct LogBook {
    functions: Mutex<HashMap<String, FunctionLog>>,
    /// New lines with their function's name, for followers.
    new_lines: broadcast::Sender<(Arc<str>, LogLine)>,
}

impl Default for LogBook {
    fn default() -> Self {
        Self {
            functions: Mutex::default(),
            new_lines: broadcast::Sender::new(FOLLOW_BUFFER),
        }
    }
}

/// Which ring a line goes to.
#[derive(Clone, Copy)]
enum Source {
    Guest,
    Gateway,
}

impl LogBook {
    /// Appends what a call of `function` logged and, if its `stderr` limit cut the log, a
    /// `[log truncated at ...]` line.
    pub(crate) fn append_call(
        &self,
        function: &Function,
        request_id: &str,
        text: &[u8],
        truncated: bool,
    ) {
        let name = function.name.as_str();
        self.append(name, request_id, text);
        if truncated {
            let note = format!("[log truncated at {}]", function.config.limits.stderr);
            self.append(name, request_id, note.as_bytes());
        }
    }

    /// Appends the lines of `text` (a call's stderr) for `function`.
    pub fn append(&self, function: &str, request_id: &str, text: &[u8]) {
        self.write(Source::Guest, function, request_id, text);
    }

    /// Notes why a call of `function` failed, apart from the guest's own lines.
    pub(crate) fn note(&self, function: &str, request_id: &str, text: &str) {
        self.write(Source::Gateway, function, request_id, text.as_bytes());
    }

    fn write(&self, source: Source, function: &str, request_id: &str, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let at = SystemTime::now();
        let time = humantime::format_rfc3339_millis(at).to_string();
        let text = String::from_utf8_lossy(text);
        let followed = (self.new_lines.receiver_count() > 0).then(|| Arc::<str>::from(function));
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let log = match functions.get_mut(function) {
            Some(log) => log,
            None => functions.entry(function.to_owned()).or_default(),
        };
        for line in text.lines() {
            tracing::debug!(function, request_id, "{line}");
            log.seq += 1;
            let line = LogLine {
                time: time.clone(),
                request_id: request_id.to_owned(),
                text: cut(line),
                seq: log.seq,
                at,
            };
            if let Some(function) = &followed {
                let _ = self.new_lines.send((function.clone(), line.clone()));
            }
            match source {
                Source::Guest => log.guest.push(line, LINES_KEPT, BYTES_KEPT),
                Source::Gateway => log.notes.push(line, NOTES_KEPT, NOTE_BYTES_KEPT),
            }
        }
    }

    /// The last `tail` lines of `function`, oldest first: the guest's lines and the
    /// gateway's notes, in the order written.
    pub fn tail(&self, function: &str, tail: usize) -> Vec<LogLine> {
        let functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(log) = functions.get(function) else {
            return Vec::new();
        };
        let mut lines: Vec<&LogLine> = log.guest.lines.iter().chain(&log.notes.lines).collect();
        lines.sort_unstable_by_key(|line| line.seq);
        lines[lines.len().saturating_sub(tail)..]
            .iter()
            .map(|&line| line.clone())
            .collect()
    }

    /// New lines of every function from now on, with the function's name: filter by name.
    /// A follower more than [`FOLLOW_BUFFER`] lines behind gets `Lagged` and goes on.
    pub fn follow(&self) -> broadcast::Receiver<(Arc<str>, LogLine)> {
        self.new_lines.subscribe()
    }

    /// Forgets a removed function's lines.
    pub fn forget(&self, function: &str) {
        self.functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(function);
    }
}

/// A line cut to [`LINE_MAX`] bytes (at a character boundary), with a note of its length.
fn cut(line: &str) -> String {
    if line.len() <= LINE_MAX {
        return line.to_owned();
    }
    let mut end = LINE_MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... [line of {} bytes cut]", &line[..end], line.len())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_function_log_is_bounded_in_bytes_and_lines() {
        let book = LogBook::default();
        let line = "x".repeat(LINE_MAX);
        for _ in 0..200 {
            book.append("f", "1", line.as_bytes());
        }
        let kept = book.tail("f", usize::MAX);
        let bytes: usize = kept.iter().map(|l| l.text.len()).sum();
        assert!(bytes <= BYTES_KEPT, "{bytes} bytes kept");
        assert_eq!(kept.len(), BYTES_KEPT / LINE_MAX);
        let long = "y".repeat(10 * LINE_MAX);
        book.append("f", "2", long.as_bytes());
        let last = book.tail("f", 1).pop().unwrap();
        assert!(last
            .text
            .ends_with(&format!("... [line of {} bytes cut]", 10 * LINE_MAX)));
    }

    #[test]
    fn gateway_notes_cannot_push_out_the_guest_lines() {
        let book = LogBook::default();
        book.append("f", "1", b"the guest's own line");
        for i in 0..10_000 {
            book.note("f", &i.to_string(), "bad request");
        }
        let kept = book.tail("f", usize::MAX);
        assert_eq!(kept[0].text, "the guest's own line");
        assert_eq!(kept.len(), 1 + NOTES_KEPT);
        assert_eq!(kept.last().unwrap().request_id, "9999");
    }
}
