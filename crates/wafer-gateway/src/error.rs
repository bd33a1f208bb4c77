//! Every failure the gateway reports, and the one place they become HTTP responses.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderValue, StatusCode};
use wafer_registry::RegistryError;
use wafer_runtime::{ByteSize, CallError, CompileError, Fault};

/// Why a request failed. The message is for the client: it names what went wrong, never an
/// internal path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No route matches the path.
    #[error("no function is served at `{0}`")]
    NoRoute(String),
    /// The function's active version cannot run (e.g. its module failed verification).
    #[error("function `{name}` cannot run: {reason}")]
    Unavailable {
        /// The function.
        name: String,
        /// Why.
        reason: String,
    },
    /// The function is at its concurrency limit and its queue did not move in time.
    #[error("function `{0}` is busy: too many concurrent requests, try again shortly")]
    Busy(String),
    /// The request body is larger than the function accepts.
    #[error("request body is larger than the limit of {0}")]
    BodyTooLarge(ByteSize),
    /// The request body did not arrive within the server's body timeout.
    #[error("the request body did not arrive within {}", humantime::format_duration(*.0))]
    BodyTimeout(std::time::Duration),
    /// The request body could not be read.
    #[error("cannot read the request body: {0}")]
    BadBody(String),
    /// The guest faulted.
    #[error("function `{name}` {fault}")]
    Guest {
        /// The function.
        name: String,
        /// What happened.
        fault: Fault,
    },
    /// The guest exited with a non-zero code before writing complete headers.
    #[error("function `{name}` exited with code {code}")]
    Exit {
        /// The function.
        name: String,
        /// The exit code.
        code: i32,
    },
    /// The guest wrote a malformed CGI header block.
    #[error("function `{name}` wrote an invalid response: {reason}")]
    BadOutput {
        /// The function.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A waPC or exports function was called without an operation.
    #[error("function `{0}` is called by operation: POST /{0}/OPERATION")]
    NoOperation(String),
    /// Operations are called with POST.
    #[error("method {0} not allowed: call an operation with POST")]
    MethodNotAllowed(http::Method),
    /// A waPC operation or export call failed.
    #[error("function `{name}`: {error}")]
    Call {
        /// The function.
        name: String,
        /// Why.
        error: CallError,
    },
    /// A service is reached on its own socket, not over HTTP.
    #[error("function `{name}` is a service{}: it is reached on its own socket, not over HTTP", .listen.map(|a| format!(" listening on {a}")).unwrap_or_default())]
    Service {
        /// The function.
        name: String,
        /// Where it listens.
        listen: Option<std::net::SocketAddr>,
    },
    /// A published message could not be delivered to a subscriber.
    #[error("message delivery failed: {0}")]
    Delivery(String),
    /// Missing or wrong admin token.
    #[error("missing or invalid admin token: send `Authorization: Bearer <token>` (the token is in the server's data directory, file `admin-token`)")]
    Unauthorized,
    /// A malformed admin request.
    #[error("{0}")]
    BadRequest(String),
    /// A request for something the server does not allow.
    #[error("{0}")]
    Forbidden(String),
    /// The server cannot take more of this now.
    #[error("{0}")]
    Overloaded(String),
    /// A store's byte budget is full (the asynchronous queue's `--async-max-bytes`).
    #[error("{0}")]
    NoSpace(String),
    /// No asynchronous invocation has the id (or it finished too long ago).
    #[error("no invocation `{0}` (finished ones are kept for 24 hours)")]
    NoInvocation(String),
    /// A registry operation failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A deployed module cannot be compiled or linked; nothing was changed.
    #[error(transparent)]
    Compile(#[from] CompileError),
}

impl Error {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Error::NoRoute(_) => StatusCode::NOT_FOUND,
            Error::Unavailable { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Error::BadBody(_) | Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::NoSpace(_) => StatusCode::INSUFFICIENT_STORAGE,
            Error::NoInvocation(_) => StatusCode::NOT_FOUND,
            Error::Guest { fault, .. } => fault_status(fault),
            Error::NoOperation(_) | Error::Service { .. } => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Error::Call { error, .. } => match error {
                CallError::Fault(fault) | CallError::Poisoned(fault) => fault_status(fault),
                CallError::Guest(_) => StatusCode::INTERNAL_SERVER_ERROR,
                CallError::UnknownOperation(_) | CallError::NoExport { .. } => {
                    StatusCode::NOT_FOUND
                }
                CallError::Signature { .. } | CallError::Unsupported(_) => StatusCode::BAD_REQUEST,
            },
            Error::Exit { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Error::BadOutput { .. } | Error::Delivery(_) => StatusCode::BAD_GATEWAY,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Compile(_) => StatusCode::BAD_REQUEST,
            Error::Registry(e) => match e {
                RegistryError::InvalidName { .. }
                | RegistryError::InvalidRoute { .. }
                | RegistryError::InvalidDigest(_)
                | RegistryError::InvalidConfig(_)
                | RegistryError::ModuleRoutes(_) => StatusCode::BAD_REQUEST,
                RegistryError::NotFound(_) | RegistryError::ModuleNotFound(_) => {
                    StatusCode::NOT_FOUND
                }
                RegistryError::RouteTaken { .. }
                | RegistryError::ServiceTaken { .. }
                | RegistryError::NoEarlierVersion(_)
                | RegistryError::Conflict(_) => StatusCode::CONFLICT,
                RegistryError::Corrupt { .. }
                | RegistryError::BadRecord { .. }
                | RegistryError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
        }
    }
}

fn fault_status(fault: &Fault) -> StatusCode {
    match fault {
        Fault::Trap(_) | Fault::OutOfMemory(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Fault::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        Fault::OutputTooLarge(_) => StatusCode::BAD_GATEWAY,
        Fault::Busy => StatusCode::SERVICE_UNAVAILABLE,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            // Storage failures carry host paths: log them, tell the client less.
            Error::Registry(e @ (RegistryError::Io { .. } | RegistryError::BadRecord { .. })) => {
                tracing::error!(error = %e, "storage failure");
                "internal storage error; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = Response::new(Body::from(message + "\n"));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::METHOD_NOT_ALLOWED {
            headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Most bytes of guest-written text quoted in an error message (which goes to the client
/// and into the function's log): enough to recognise the line, not a 16 MiB echo.
const EXCERPT: usize = 200;

/// Guest-controlled bytes quoted for a message: escaped, and cut to [`EXCERPT`] bytes with a
/// note of the full length.
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(EXCERPT)];
    let quoted = format!("{:?}", String::from_utf8_lossy(shown));
    if shown.len() < bytes.len() {
        format!("{quoted}... ({} bytes in all)", bytes.len())
    } else {
        quoted
    }
}
