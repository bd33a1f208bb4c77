//! Function logs: the lines a function's calls wrote to stderr or through log imports, and the
//! faults that ended them, each tagged with its request id. Kept in memory per function.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;
use wafer_registry::Function;

/// Lines kept per function; older lines are dropped first. 1000 lines is a screenful of
/// history for `wafer logs` at a bounded cost (about 100 KiB per chatty function).
pub const LINES_KEPT: usize = 1000;

/// One log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// When the call ended (RFC 3339, UTC).
    pub time: String,
    /// The request that wrote it.
    pub request_id: String,
    /// The line, without its newline.
    pub text: String,
}

/// The recent log lines of every function.
#[derive(Default)]
pub struct LogBook {
    functions: Mutex<HashMap<String, VecDeque<LogLine>>>,
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
        if text.is_empty() {
            return;
        }
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        let text = String::from_utf8_lossy(text);
        let mut functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        let lines = functions.entry(function.to_owned()).or_default();
        for line in text.lines() {
            tracing::debug!(function, request_id, "{line}");
            if lines.len() == LINES_KEPT {
                lines.pop_front();
            }
            lines.push_back(LogLine {
                time: time.clone(),
                request_id: request_id.to_owned(),
                text: line.to_owned(),
            });
        }
    }

    /// The last `tail` lines of `function`, oldest first.
    pub fn tail(&self, function: &str, tail: usize) -> Vec<LogLine> {
        let functions = self.functions.lock().unwrap_or_else(|e| e.into_inner());
        functions.get(function).map_or_else(Vec::new, |lines| {
            lines
                .iter()
                .skip(lines.len().saturating_sub(tail))
                .cloned()
                .collect()
        })
    }

    /// Forgets a removed function's lines.
    pub fn forget(&self, function: &str) {
        self.functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(function);
    }
}
