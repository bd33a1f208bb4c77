//! Function calls over HTTP: `POST /NAME/OPERATION` runs a waPC operation or a plain export
//! (see `docs/calls.md`).
//!
//! - waPC: the body is the payload; the guest's response bytes are the answer
//!   (`application/octet-stream`).
//! - Plain exports: the body is a JSON array of arguments (numbers; strings are passed through
//!   the guest's allocator), or, with `Content-Type: application/octet-stream` or
//!   `text/plain`, one bytes/string argument. `?returns=string|bytes` reads the result as a
//!   buffer the guest returned; the default is numbers, answered as JSON.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::live::Function;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use percent_encoding::percent_decode_str;
use wafer_host::Capabilities;
use wafer_runtime::{
    Abi, CallError, CallOptions, HostCall, HostCallFuture, HostCalls, Program, Shape, Signature,
    Value, ValueType,
};

use crate::error::Error;
use crate::logs::LogBook;
use crate::schema::{self, Types};

use crate::json;

/// What a request asks a waPC or exports function to do.
pub struct Call<'a> {
    /// The request's method (operations are called with `POST`).
    pub method: &'a Method,
    /// The path after the function's route: `/OPERATION`.
    pub rest: &'a str,
    /// The query string (`returns=string`, say).
    pub query: Option<&'a str>,
    /// The payload's content type.
    pub content_type: Option<&'a str>,
    /// The payload.
    pub body: Bytes,
}

/// A successful call's answer.
pub struct Answer {
    /// The answer's bytes.
    pub body: Bytes,
    /// Their content type.
    pub content_type: &'static str,
}

impl Answer {
    fn new(body: impl Into<Bytes>, content_type: &'static str) -> Self {
        Self {
            body: body.into(),
            content_type,
        }
    }

    pub(crate) fn json(body: impl Into<Bytes>) -> Self {
        Self::new(body, "application/json")
    }

    /// The answer as a `200` response.
    pub fn into_response(self) -> Response {
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = StatusCode::OK;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        response
    }
}

/// How the result of a plain export is read and answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    /// Numbers, answered as JSON.
    Numbers,
    /// A UTF-8 buffer, answered as text.
    String,
    /// A buffer, answered as bytes.
    Bytes,
}

impl Returns {
    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "" | "number" | "numbers" | "json" => Ok(Returns::Numbers),
            "string" => Ok(Returns::String),
            "bytes" => Ok(Returns::Bytes),
            other => Err(Error::BadRequest(format!(
                "`returns` must be `number`, `string` or `bytes`, not `{other}`"
            ))),
        }
    }
}

/// The host calls a function may make on this server, binding `wafer`: `log` (the
/// operation is the level; lines go to the function's log with the request id) here, every
/// other namespace through the function's [`Capabilities`].
pub(crate) struct ServerHost {
    /// The call's span (none when tracing is off): host calls are spans within it, on
    /// whatever task the guest makes them.
    pub(crate) span: tracing::Span,
    pub(crate) logs: Arc<LogBook>,
    pub(crate) caps: Arc<Capabilities>,
    pub(crate) function: Arc<Function>,
    pub(crate) request_id: String,
    /// Deliveries that led to this call (0 for a request), for the pub/sub hop limit.
    pub(crate) hops: u32,
    /// When the guest call must end; capabilities give up by then.
    pub(crate) deadline: Instant,
    /// What the guest call holds open between host calls (database connections), closed
    /// when this host is dropped with the call.
    pub(crate) session: wafer_host::Session,
    /// Bytes the guest may still log with `log` calls in this call (its `stderr` limit), or
    /// `None` once the limit cut the log.
    pub(crate) log_left: Mutex<Option<u64>>,
}

impl ServerHost {
    /// Keeps a `log` line within the call's `stderr` limit; past it, the rest of the line is
    /// dropped, a `[log truncated at ...]` line is logged once, and later lines are dropped.
    fn log(&self, line: &[u8]) {
        let mut left = self.log_left.lock().unwrap_or_else(|e| e.into_inner());
        let Some(bytes) = *left else { return };
        let kept = match bytes.checked_sub(line.len() as u64) {
            Some(rest) => {
                *left = Some(rest);
                line
            }
            None => {
                *left = None;
                // `bytes` < `line.len()`, so it fits in a usize.
                &line[..bytes as usize]
            }
        };
        let cut = left.is_none();
        self.logs
            .append_call(&self.function, &self.request_id, kept, cut);
    }
}

impl HostCalls for ServerHost {
    fn call<'a>(&'a self, call: HostCall<'a>) -> HostCallFuture<'a> {
        if (call.binding, call.namespace) == ("wafer", "log") {
            self.function.metrics().host_call("log", "write");
            let line = match call.operation {
                "" | "info" => call.payload.to_vec(),
                level => [format!("[{level}] ").as_bytes(), call.payload].concat(),
            };
            self.log(&line);
            return Box::pin(std::future::ready(Ok(Vec::new())));
        }
        self.function
            .metrics()
            .host_call(call.namespace, call.operation);
        // Tracing off, the answer is one future less deep.
        let (caps, function, session) = (&self.caps, &self.function, &self.session);
        let (deadline, hops) = (self.deadline, self.hops);
        match self.span.is_none() {
            true => Box::pin(async move {
                (caps.call(function, session, call, deadline, hops).await)
                    .map_err(|e| e.to_string())
            }),
            false => Box::pin(tracing::Instrument::instrument(
                async move {
                    (caps
                        .call_traced(function, session, call, deadline, hops)
                        .await)
                        .map_err(|e| e.to_string())
                },
                self.span.clone(),
            )),
        }
    }
}

/// What a call's guest logged: the text, and whether it went past the stderr limit.
#[derive(Default)]
pub(crate) struct CallLog {
    pub(crate) text: Bytes,
    pub(crate) truncated: bool,
}

/// A call checked and converted, ready to run in an instance.
enum Prepared {
    Wapc {
        operation: String,
        payload: Bytes,
        /// The types to transcode JSON with, for a protobuf-described operation.
        transcode: Option<Arc<Types>>,
    },
    Export {
        export: String,
        args: Vec<Value>,
        shapes: Vec<Shape>,
        returns: Returns,
    },
}

/// Runs one waPC operation or plain export call; returns the response and the call's log.
///
/// `types` gives the protobuf types of an operation of a protobuf-described function: a JSON
/// payload is then validated and transcoded to protobuf, and the answer back to JSON. Every
/// check on the request happens before an instance is created.
pub(crate) async fn invoke(
    program: &Program,
    options: &CallOptions,
    name: &str,
    call: Call<'_>,
    types: impl Fn(&str) -> Option<Arc<Types>>,
) -> (Result<Answer, Error>, CallLog) {
    let prepared = match prepare(program, name, &call, types) {
        Ok(prepared) => prepared,
        Err(e) => return (Err(e), CallLog::default()),
    };
    let mut instance = match program.instantiate(options).await {
        Ok(instance) => instance,
        Err(e) => return (Err(call_error(name, e)), CallLog::default()),
    };
    let result = match prepared {
        Prepared::Wapc {
            operation,
            payload,
            transcode,
        } => match instance.call_wapc(&operation, &payload).await {
            Err(e) => Err(call_error(name, e)),
            Ok(bytes) => match transcode {
                None => Ok(Answer::new(bytes, "application/octet-stream")),
                Some(types) => schema::protobuf_to_json(&types.output, &bytes)
                    .map(|json| Answer::new(json, "application/json"))
                    .map_err(|reason| Error::BadOutput {
                        name: name.to_owned(),
                        reason,
                    }),
            },
        },
        Prepared::Export {
            export,
            args,
            shapes,
            returns,
        } => match instance.call_values(&export, args, &shapes).await {
            Err(e) => Err(call_error(name, e)),
            Ok(values) => answer(&export, values, returns),
        },
    };
    let log = CallLog {
        text: instance.take_log(),
        truncated: instance.log_truncated(),
    };
    (result, log)
}

/// Checks the request and converts its body for the guest.
fn prepare(
    program: &Program,
    name: &str,
    call: &Call<'_>,
    types: impl Fn(&str) -> Option<Arc<Types>>,
) -> Result<Prepared, Error> {
    let operation = operation(name, call)?;
    let media_type = media_type(call.content_type);
    if program.abi() == Abi::Wapc {
        let transcode = types(&operation).filter(|_| media_type == "application/json");
        let payload = match &transcode {
            Some(types) => Bytes::from(schema::json_to_protobuf(&types.input, &call.body)?),
            None => call.body.clone(),
        };
        return Ok(Prepared::Wapc {
            operation,
            payload,
            transcode,
        });
    }
    let returns = form_urlencoded::parse(call.query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "returns")
        .map_or(Ok(Returns::Numbers), |(_, v)| Returns::parse(&v))?;
    let ty = program
        .export_type(&operation)
        .map_err(|e| call_error(name, e))?;
    let args = match media_type.as_str() {
        "application/octet-stream" | "text/plain" => vec![Value::Bytes(call.body.to_vec())],
        _ => json_args(&ty, &call.body).map_err(Error::BadRequest)?,
    };
    let shapes = match returns {
        Returns::Numbers => vec![Shape::Number; ty.results.len()],
        Returns::String | Returns::Bytes => vec![Shape::Bytes],
    };
    Ok(Prepared::Export {
        export: operation,
        args,
        shapes,
        returns,
    })
}

/// An export's results as the answer `returns` asks for: one buffer as text or bytes, or
/// the numbers as JSON (one as is, several as an array, none as `null`).
fn answer(export: &str, values: Vec<Value>, returns: Returns) -> Result<Answer, Error> {
    match (returns, <[Value; 1]>::try_from(values)) {
        (Returns::String, Ok([Value::Bytes(bytes)])) => match String::from_utf8(bytes) {
            Ok(text) => Ok(Answer::new(text, "text/plain; charset=utf-8")),
            Err(_) => Err(Error::BadRequest(format!(
                "`{export}` returned bytes that are not UTF-8; ask for `returns=bytes`"
            ))),
        },
        (Returns::Bytes, Ok([Value::Bytes(bytes)])) => {
            Ok(Answer::new(bytes, "application/octet-stream"))
        }
        (_, Ok([value])) => Ok(json_answer(to_json(value))),
        (_, Err(values)) if values.is_empty() => Ok(json_answer(serde_json::Value::Null)),
        (_, Err(values)) => Ok(json_answer(values.into_iter().map(to_json).collect())),
    }
}

fn json_answer(json: serde_json::Value) -> Answer {
    Answer::new(format!("{json}\n"), "application/json")
}

/// The operation named by the path, percent-decoded; only `POST` calls one.
fn operation(name: &str, call: &Call<'_>) -> Result<String, Error> {
    let operation = call.rest.trim_start_matches('/');
    if operation.is_empty() {
        return Err(Error::NoOperation(name.to_owned()));
    }
    if call.method != Method::POST {
        return Err(Error::MethodNotAllowed(call.method.clone()));
    }
    percent_decode_str(operation)
        .decode_utf8()
        .map(|op| op.into_owned())
        .map_err(|_| Error::BadRequest("the operation name is not UTF-8".into()))
}

/// The component function a call names: `pkg:iface/iface#func` (the `#` percent-encoded in a
/// path), the same written as a path (`pkg:iface/iface/func`), or a world-level `func`.
pub(crate) fn component_function(name: &str, call: &Call<'_>) -> Result<String, Error> {
    let function = operation(name, call)?;
    Ok(match function.contains('#') || !function.contains(':') {
        true => function,
        false => match function.rsplit_once('/') {
            Some((interface, func)) => format!("{interface}#{func}"),
            None => function,
        },
    })
}

/// The JSON arguments of a component call: an array, an object by parameter name, or
/// nothing for a function without parameters; at most [`json::MAX_JSON_VALUES`] values.
pub(crate) fn component_args(body: &[u8]) -> Result<serde_json::Value, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Null);
    }
    json::parse(body).map_err(|e| {
        Error::BadRequest(match e {
            json::JsonError::TooLarge => json::too_large(),
            json::JsonError::Invalid(e) => format!(
                "the body is not valid JSON ({e}); send the arguments as a JSON array, or an \
                 object by parameter name"
            ),
        })
    })
}

/// The type and subtype of a Content-Type header, lower-cased (empty without one).
fn media_type(content_type: Option<&str>) -> String {
    content_type
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Turns a JSON body into arguments for an export of type `ty`: numbers take the type of
/// the parameter they land on; a string is passed as bytes (two `i32` parameters). The body
/// may hold at most [`json::MAX_JSON_VALUES`] values.
pub(crate) fn json_args(ty: &Signature, body: &[u8]) -> Result<Vec<Value>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let parsed = json::parse(body).map_err(|e| match e {
        json::JsonError::TooLarge => json::too_large(),
        json::JsonError::Invalid(e) => format!(
            "the body is not valid JSON ({e}); send the arguments as a JSON array, e.g. [3, 2]"
        ),
    })?;
    let args = match parsed {
        serde_json::Value::Array(args) => args,
        single => vec![single],
    };
    let params = &ty.params;
    let mut next = 0;
    let mut values = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let n = i + 1;
        let value = match arg {
            serde_json::Value::String(s) => {
                next += 2;
                Value::Bytes(s.as_bytes().to_vec())
            }
            serde_json::Value::Number(number) => {
                let param = params.get(next).copied();
                next += 1;
                number_arg(n, number, param)?
            }
            other => {
                return Err(format!(
                    "argument {n} is {}; arguments are numbers or strings",
                    json_kind(other)
                ))
            }
        };
        values.push(value);
    }
    Ok(values)
}

fn number_arg(
    n: usize,
    number: &serde_json::Number,
    param: Option<ValueType>,
) -> Result<Value, String> {
    let int = number
        .as_i64()
        .or_else(|| number.as_u64().map(|u| u as i64));
    let out_of_range = |ty: &str| format!("argument {n} ({number}) does not fit in {ty}");
    Ok(match param {
        Some(ValueType::I32) => {
            let v =
                int.ok_or_else(|| format!("argument {n} ({number}) must be an integer (i32)"))?;
            // Accept the signed and the unsigned range; wasm does not distinguish them.
            if v < i64::from(i32::MIN) || v > i64::from(u32::MAX) {
                return Err(out_of_range("i32"));
            }
            Value::I32(v as i32)
        }
        Some(ValueType::I64) => Value::I64(
            int.ok_or_else(|| format!("argument {n} ({number}) must be an integer (i64)"))?,
        ),
        Some(ValueType::F32) => Value::F32(number.as_f64().unwrap_or(f64::NAN) as f32),
        Some(ValueType::F64) => Value::F64(number.as_f64().unwrap_or(f64::NAN)),
        // No such parameter, or one a number cannot fill: the runtime reports the mismatch
        // against the real signature.
        _ => match int {
            Some(v) => Value::I64(v),
            None => Value::F64(number.as_f64().unwrap_or(f64::NAN)),
        },
    })
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn to_json(value: Value) -> serde_json::Value {
    match value {
        Value::I32(v) => v.into(),
        Value::I64(v) => v.into(),
        Value::F32(v) => {
            serde_json::Number::from_f64(f64::from(v)).map_or(serde_json::Value::Null, Into::into)
        }
        Value::F64(v) => {
            serde_json::Number::from_f64(v).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned().into(),
    }
}

pub(crate) fn call_error(name: &str, error: CallError) -> Error {
    Error::Call {
        name: name.to_owned(),
        error,
    }
}
