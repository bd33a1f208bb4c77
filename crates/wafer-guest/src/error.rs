use std::fmt;

/// What went wrong, from the code word that starts a host error message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `denied`: the function was not granted this (a host or topic not on its list, no store).
    Denied,
    /// `not_found`: the key or config value does not exist.
    NotFound,
    /// `invalid`: the payload was malformed (bad JSON, missing field, bad URL, ...).
    Invalid,
    /// `too_large`: a key, value or response is over its limit.
    TooLarge,
    /// `failed`: the host tried and failed (connection refused, timeout, storage error).
    Failed,
    /// The message did not start with a known code word.
    Other,
}

impl ErrorKind {
    /// The kind named by a code word such as `not_found`; [`ErrorKind::Other`] if unknown.
    pub fn from_code(code: &str) -> Self {
        match code {
            "denied" => Self::Denied,
            "not_found" => Self::NotFound,
            "invalid" => Self::Invalid,
            "too_large" => Self::TooLarge,
            "failed" => Self::Failed,
            _ => Self::Other,
        }
    }
}

/// A host call that did not succeed.
///
/// `Display` prints [`message`](Error::message), the host's message exactly as it was sent
/// (for example `not_found: no config value or secret named "greeting"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The code word at the start of the message.
    pub kind: ErrorKind,
    /// The whole message, code word included.
    pub message: String,
}

impl Error {
    /// An error from a message of the form `code: text`.
    pub fn from_message(message: impl Into<String>) -> Self {
        let message = message.into();
        let code = message
            .split_once(':')
            .map_or(message.as_str(), |(code, _)| code);
        Self {
            kind: ErrorKind::from_code(code),
            message,
        }
    }

    /// A `failed` error made by this crate, for example for a malformed answer.
    pub(crate) fn failed(text: impl fmt::Display) -> Self {
        Self::from_message(format!("failed: {text}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

/// Lets `?` pass an [`Error`] out of a function returning `std::io::Result`, such as a CGI
/// `main`.
impl From<Error> for std::io::Error {
    fn from(e: Error) -> Self {
        std::io::Error::other(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_comes_from_the_code_word() {
        let cases = [
            (
                "denied: host x is not on this function's allow-list",
                ErrorKind::Denied,
            ),
            ("not_found: no key \"a\"", ErrorKind::NotFound),
            ("invalid: missing field `key`", ErrorKind::Invalid),
            ("too_large: value is 2 MiB", ErrorKind::TooLarge),
            ("failed: connection refused", ErrorKind::Failed),
            ("failed", ErrorKind::Failed),
            ("something odd: here", ErrorKind::Other),
            ("", ErrorKind::Other),
        ];
        for (message, kind) in cases {
            let e = Error::from_message(message);
            assert_eq!(e.kind, kind, "{message}");
            assert_eq!(e.to_string(), message);
        }
    }
}
