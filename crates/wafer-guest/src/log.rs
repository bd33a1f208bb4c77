//! The function's log, read with `wafer logs NAME`. Always granted.
//!
//! Lines other than `info` are shown with a `[level]` prefix. Logging never fails the caller: a
//! line the host refuses is dropped.

/// Logs a `debug` line.
pub fn debug(line: &str) {
    write("debug", line);
}

/// Logs an `info` line.
pub fn info(line: &str) {
    write("info", line);
}

/// Logs a `warn` line.
pub fn warn(line: &str) {
    write("warn", line);
}

/// Logs an `error` line.
pub fn error(line: &str) {
    write("error", line);
}

fn write(level: &str, line: &str) {
    // Deliberately ignored: see the module docs.
    let _ = crate::host_call("log", level, line.as_bytes());
}
