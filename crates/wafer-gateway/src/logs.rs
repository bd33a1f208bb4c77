//! Function logs: the lines a function's calls wrote to stderr or through log imports, and the
//! faults that ended them, each tagged with its request id. Kept in memory per function,
//! bounded in lines and bytes; new lines are also sent to whoever follows them
//! ([`LogBook::follow`]), through a channel of the function's own, so that a function that
//! logs a lot cannot make the followers of another one miss lines.

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
    /// The trace the call belonged to (32 hex digits), when tracing is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The span of the call (or host call) that wrote it (16 hex digits), when tracing is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
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

/// Lines a follower may fall behind its function's writing by before it is told it missed
/// some: 1024, per followed function (a channel holds that many lines, shared by the
/// function's followers).
const FOLLOW_BUFFER: usize = 1024;

/// A line sent to followers, with its function's name.
type Followed = (Arc<str>, LogLine);

/// The channel of one function's followers.
struct Followers {
    function: Arc<str>,
    sender: broadcast::Sender<Followed>,
}

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
    /// Its followers' channel: made by the first [`LogBook::follow`], dropped once nobody
    /// follows (at the next line) or with the log ([`LogBook::forget`]).
    followers: Option<Followers>,
}

/// The recent log lines of every function.
#[derive(Default)]
pub struct LogBook {
    functions: Mutex<HashMap<String, FunctionLog>>,
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
        let (trace_id, span_id) = wafer_host::trace::ids().unzip();
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let log = match functions.get_mut(function) {
            Some(log) => log,
            None => functions.entry(function.to_owned()).or_default(),
        };
        if log
            .followers
            .as_ref()
            .is_some_and(|f| f.sender.receiver_count() == 0)
        {
            log.followers = None;
        }
        for line in text.lines() {
            tracing::debug!(function, request_id, "{line}");
            log.seq += 1;
            let line = LogLine {
                time: time.clone(),
                request_id: request_id.to_owned(),
                text: cut(line),
                trace_id: trace_id.clone(),
                span_id: span_id.clone(),
                seq: log.seq,
                at,
            };
            if let Some(followers) = &log.followers {
                let _ = followers
                    .sender
                    .send((followers.function.clone(), line.clone()));
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

    /// New lines of `function` from now on, each with the function's name. A follower more
    /// than [`FOLLOW_BUFFER`] lines behind gets `Lagged` and goes on; other functions' lines
    /// never count against it. The channel closes when the function's log is forgotten
    /// ([`LogBook::forget`], when the function is removed).
    pub fn follow(&self, function: &str) -> broadcast::Receiver<(Arc<str>, LogLine)> {
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let log = match functions.get_mut(function) {
            Some(log) => log,
            None => functions.entry(function.to_owned()).or_default(),
        };
        log.followers
            .get_or_insert_with(|| Followers {
                function: Arc::from(function),
                sender: broadcast::Sender::new(FOLLOW_BUFFER),
            })
            .sender
            .subscribe()
    }

    /// Forgets a removed function's lines, and ends its followers' streams.
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

    #[test]
    fn a_noisy_function_does_not_make_another_functions_follower_lag() {
        use broadcast::error::TryRecvError;
        let book = LogBook::default();
        let mut quiet = book.follow("quiet");
        let mut noisy = book.follow("noisy");
        book.append("quiet", "1", b"before the noise");
        for i in 0..4 * FOLLOW_BUFFER {
            book.append("noisy", &i.to_string(), b"noise");
        }
        book.append("quiet", "2", b"after the noise");
        let (name, line) = quiet.try_recv().unwrap();
        assert_eq!((&*name, line.text.as_str()), ("quiet", "before the noise"));
        let (_, line) = quiet.try_recv().unwrap();
        assert_eq!(line.text, "after the noise");
        assert!(matches!(quiet.try_recv(), Err(TryRecvError::Empty)));
        // The noisy function's own follower did fall behind, and is told so.
        assert!(matches!(noisy.try_recv(), Err(TryRecvError::Lagged(_))));
        let (name, _) = noisy.try_recv().unwrap();
        assert_eq!(&*name, "noisy");
    }

    #[test]
    fn a_functions_channel_lives_while_it_is_followed() {
        use broadcast::error::TryRecvError;
        let book = LogBook::default();
        let followed = |book: &LogBook| {
            book.functions
                .lock()
                .unwrap()
                .get("f")
                .is_some_and(|log| log.followers.is_some())
        };
        book.append("f", "1", b"nobody follows");
        assert!(!followed(&book));
        let first = book.follow("f");
        let mut second = book.follow("f");
        book.append("f", "2", b"two follow");
        drop(first);
        assert_eq!(second.try_recv().unwrap().1.text, "two follow");
        drop(second);
        assert!(followed(&book));
        book.append("f", "3", b"nobody follows again");
        assert!(!followed(&book));
        // Forgetting the function ends its followers' streams.
        let mut last = book.follow("f");
        book.forget("f");
        assert!(matches!(last.try_recv(), Err(TryRecvError::Closed)));
    }
}
