//! `redis`: Spin's outbound Redis (`fermyon:spin/redis@2.0.0`, `spin:redis/redis@3.0.0`):
//! commands on the Redis servers a function's outbound rules allow (`redis://` or `*://`
//! entries of a Spin app's `allowed_outbound_hosts`), through the `redis` crate's
//! multiplexed connection (async, on tokio).
//!
//! Host-call namespace `redis`. Every payload is a JSON object with the server's `address`
//! (`redis://[user:password@]host[:port][/db]`), checked against the rules on every call,
//! before anything connects:
//!
//! | op | payload beyond `address` | answer |
//! |---|---|---|
//! | `open` | | empty, once connected (a kept connection answers a `PING` first) |
//! | `publish` | `channel`, `payload`/`payload_base64` | empty |
//! | `get` | `key` | `{"value": TEXT}`, `{"value_base64": B64}`, or `{"value": null}` |
//! | `set` | `key`, `value`/`value_base64` | empty |
//! | `incr` | `key` | `{"value": N}` |
//! | `del` | `keys` | `{"count": N}` (keys deleted) |
//! | `sadd`, `srem` | `key`, `values` | `{"count": N}` (values added, removed) |
//! | `smembers` | `key` | `{"members": [...]}` |
//! | `execute` | `command`, `arguments`: `[{"int64": N} \| {"binary": B64}, ...]` | `{"results": [null \| {"status": S} \| {"int64": N} \| {"binary": B64}, ...]}` |
//!
//! Errors: `denied` for an address the rules do not allow; `invalid: address ...` for one
//! that is not a `redis://` URL; `invalid: wrong type: ...` when a key holds another type
//! (Spin's `type-error`); `failed` for what the server or the network refused, and for a
//! call still running at its deadline.
//!
//! One connection is kept per function and address, shared by its calls (Redis answers
//! each in turn): at most [`MAX_CONNECTIONS_PER_FUNCTION`] per function and
//! [`MAX_CONNECTIONS`] in all, the least recently used let go first, none idle longer than
//! [`IDLE`]. A connection that fails, or is still busy at a call's deadline (a blocking
//! command), is let go, and the next call connects afresh; `open` checks a kept connection
//! with a `PING`, so one the server closed (a restart) is replaced before it is used. Because it is shared, `execute`
//! refuses the commands that change a connection's state for the calls after ([`REFUSED`]):
//! the database and the credentials go in the address instead.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Value};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value as Json};
use wafer_registry::Deployment;

use crate::outbound::{self, Pool};
use crate::{bytes_field, json, put_bytes, unknown_operation, GuestError};

/// Most connections kept for one function.
pub const MAX_CONNECTIONS_PER_FUNCTION: usize = 16;
/// Most connections kept in all.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection is kept unused.
pub const IDLE: Duration = Duration::from_secs(300);
/// Most bytes of one answer (its JSON), as for SQLite.
pub const MAX_ANSWER: usize = 64 << 20;

/// Commands `execute` refuses: each changes the state of the connection (its database,
/// user, protocol, transaction or subscriptions), which the function's later calls share.
pub const REFUSED: &[&str] = &[
    "AUTH",
    "HELLO",
    "SELECT",
    "RESET",
    "QUIT",
    "MULTI",
    "EXEC",
    "DISCARD",
    "WATCH",
    "UNWATCH",
    "SUBSCRIBE",
    "PSUBSCRIBE",
    "SSUBSCRIBE",
    "UNSUBSCRIBE",
    "PUNSUBSCRIBE",
    "SUNSUBSCRIBE",
    "MONITOR",
    "SYNC",
    "PSYNC",
    "CLIENT",
    "READONLY",
    "READWRITE",
];

/// The Redis connections of one node.
pub(crate) struct Redis {
    pool: Pool<String, MultiplexedConnection>,
}

impl Default for Redis {
    fn default() -> Self {
        Self {
            pool: Pool::new(MAX_CONNECTIONS_PER_FUNCTION, MAX_CONNECTIONS, IDLE),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    address: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    keys: Option<Vec<String>>,
    #[serde(default)]
    values: Option<Vec<String>>,
    #[serde(default)]
    command: Option<String>,
    #[serde(default)]
    arguments: Option<Vec<Argument>>,
}

/// An argument of `execute`.
#[derive(Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum Argument {
    Int64(i64),
    Binary(String),
}

fn field<T>(value: Option<T>, name: &str, operation: &str) -> Result<T, GuestError> {
    value.ok_or_else(|| GuestError::Invalid(format!("`redis/{operation}` needs `{name}`")))
}

impl Redis {
    /// Answers one `redis` host call of `function`; the call gives up at `deadline`.
    pub(crate) async fn call(
        &self,
        function: &Deployment,
        operation: &str,
        payload: &[u8],
        deadline: Instant,
    ) -> Result<Vec<u8>, GuestError> {
        const OPERATIONS: &str =
            "open, publish, get, set, incr, del, sadd, srem, smembers, execute";
        if !OPERATIONS.split(", ").any(|op| op == operation) {
            return Err(unknown_operation("redis", operation, OPERATIONS));
        }
        let request: Request = json(payload, &format!("redis/{operation}"))?;
        let allowed = outbound::check(function, &request.address, "redis")?;
        // Build the command first: a malformed one connects nowhere.
        let command = command(operation, request)?;
        let address = command.address.clone();
        let mut kept = self.pool.get(&function.name, &address);
        if let (Some(connection), None) = (&mut kept, &command.cmd) {
            // `open` makes sure a kept connection still answers (the server may have
            // restarted since), so that the commands after it find it working.
            let ping = ::redis::cmd("PING");
            if !matches!(
                within(deadline, ping.query_async::<Value>(connection)).await,
                Ok(Ok(_))
            ) {
                self.pool.remove(&function.name, &address);
                kept = None;
            }
        }
        let mut connection = match kept {
            Some(connection) => connection,
            None => {
                let connection = within(deadline, connect(&allowed, &address)).await??;
                self.pool.put(&function.name, address.clone(), connection)
            }
        };
        let Some(cmd) = command.cmd else {
            return Ok(Vec::new());
        };
        let value = match within(deadline, cmd.query_async::<Value>(&mut connection)).await {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error() {
                    self.pool.remove(&function.name, &address);
                }
                return Err(redis_error(&e));
            }
            Err(late) => {
                // The connection may be stuck behind the command (a blocking one).
                self.pool.remove(&function.name, &address);
                return Err(late);
            }
        };
        let answer = answer(command.answer, value)?;
        let json = serde_json::to_vec(&answer).map_err(crate::kv::failed)?;
        if json.len() > MAX_ANSWER {
            return Err(GuestError::TooLarge(format!(
                "the answer is {} bytes; at most {MAX_ANSWER} are answered",
                json.len()
            )));
        }
        Ok(match answer {
            Json::Null => Vec::new(),
            _ => json,
        })
    }

    /// Keeps only the connections of the functions `keep` says yes to.
    pub(crate) fn retain(&self, keep: impl Fn(&wafer_registry::FunctionName) -> bool) {
        self.pool.retain(keep);
    }
}

/// What an answer is made of.
#[derive(Clone, Copy)]
enum Shape {
    Empty,
    Value,
    Integer,
    Count,
    Members,
    Results,
}

struct Command {
    address: String,
    cmd: Option<::redis::Cmd>,
    answer: Shape,
}

/// The Redis command of one call.
fn command(operation: &str, request: Request) -> Result<Command, GuestError> {
    let op = operation;
    let (cmd, answer) = match operation {
        "open" => (None, Shape::Empty),
        "publish" => {
            let payload = bytes_field(request.payload, request.payload_base64, "payload")?;
            let mut cmd = ::redis::cmd("PUBLISH");
            cmd.arg(field(request.channel, "channel", op)?).arg(payload);
            (Some(cmd), Shape::Empty)
        }
        "get" => {
            let mut cmd = ::redis::cmd("GET");
            cmd.arg(field(request.key, "key", op)?);
            (Some(cmd), Shape::Value)
        }
        "set" => {
            let value = bytes_field(request.value, request.value_base64, "value")?;
            let mut cmd = ::redis::cmd("SET");
            cmd.arg(field(request.key, "key", op)?).arg(value);
            (Some(cmd), Shape::Empty)
        }
        "incr" => {
            let mut cmd = ::redis::cmd("INCRBY");
            cmd.arg(field(request.key, "key", op)?).arg(1);
            (Some(cmd), Shape::Integer)
        }
        "del" => {
            let mut cmd = ::redis::cmd("DEL");
            cmd.arg(field(request.keys, "keys", op)?);
            (Some(cmd), Shape::Count)
        }
        "sadd" | "srem" => {
            let mut cmd = ::redis::cmd(if op == "sadd" { "SADD" } else { "SREM" });
            cmd.arg(field(request.key, "key", op)?)
                .arg(field(request.values, "values", op)?);
            (Some(cmd), Shape::Count)
        }
        "smembers" => {
            let mut cmd = ::redis::cmd("SMEMBERS");
            cmd.arg(field(request.key, "key", op)?);
            (Some(cmd), Shape::Members)
        }
        _ => {
            let name = field(request.command, "command", op)?;
            if let Some(refused) = REFUSED.iter().find(|r| r.eq_ignore_ascii_case(&name)) {
                return Err(GuestError::Invalid(format!(
                    "`{refused}` changes the state of the connection, which Wafer shares \
                     between calls of the function: not supported (give the database and the \
                     user in the address)"
                )));
            }
            let mut cmd = ::redis::cmd(&name);
            for argument in request.arguments.unwrap_or_default() {
                match argument {
                    Argument::Int64(n) => cmd.arg(n),
                    Argument::Binary(b64) => {
                        let bytes = base64::engine::general_purpose::STANDARD
                            .decode(b64)
                            .map_err(|e| {
                                GuestError::Invalid(format!("an argument is not base64: {e}"))
                            })?;
                        cmd.arg(bytes)
                    }
                };
            }
            (Some(cmd), Shape::Results)
        }
    };
    // Commands with empty or missing arguments are the guest's to send: Redis answers them.
    Ok(Command {
        address: request.address,
        cmd,
        answer,
    })
}

/// Connects to the server at `address`, on the addresses the check allowed.
async fn connect(
    allowed: &outbound::Allowed,
    address: &str,
) -> Result<MultiplexedConnection, GuestError> {
    let invalid = |why: String| GuestError::Invalid(format!("address {address}: {why}"));
    if allowed.scheme != "redis" {
        return Err(invalid(format!(
            "the scheme is `{}`; Wafer connects to `redis://` addresses (not TLS or Unix \
             sockets)",
            allowed.scheme
        )));
    }
    let client = ::redis::Client::open(address).map_err(|e| invalid(e.to_string()))?;
    let addrs = allowed.resolve().await?;
    let config = AsyncConnectionConfig::new()
        .set_dns_resolver(Checked(addrs))
        // Calls are bounded by their own deadlines.
        .set_connection_timeout(None)
        .set_response_timeout(None);
    client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(|e| GuestError::Failed(format!("cannot connect to {address}: {e}")))
}

/// The resolver of a connection: the addresses the check allowed, whatever the name.
struct Checked(Vec<SocketAddr>);

impl ::redis::io::AsyncDNSResolver for Checked {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _host: &'b str,
        _port: u16,
    ) -> ::redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        let addrs = self.0.clone();
        Box::pin(
            async move { Ok(Box::new(addrs.into_iter()) as Box<dyn Iterator<Item = _> + Send>) },
        )
    }
}

/// Runs `work` until `deadline`.
async fn within<T>(deadline: Instant, work: impl Future<Output = T>) -> Result<T, GuestError> {
    tokio::time::timeout_at(deadline.into(), work)
        .await
        .map_err(|_| {
            GuestError::Failed("the Redis call was still running at the call's deadline".into())
        })
}

/// A Redis error as the guest reads it.
fn redis_error(e: &::redis::RedisError) -> GuestError {
    if e.kind() == ::redis::ErrorKind::UnexpectedReturnType || e.code() == Some("WRONGTYPE") {
        return GuestError::Invalid(format!("wrong type: {e}"));
    }
    GuestError::Failed(e.to_string())
}

/// The answer of one call, from the server's.
fn answer(shape: Shape, value: Value) -> Result<Json, GuestError> {
    let wrong = |what: &str, value: &Value| {
        GuestError::Invalid(format!(
            "wrong type: expected {what}, the server answered {value:?}"
        ))
    };
    Ok(match shape {
        Shape::Empty => Json::Null,
        Shape::Value => {
            let mut object = serde_json::Map::new();
            match value {
                Value::Nil => {
                    object.insert("value".into(), Json::Null);
                }
                Value::BulkString(bytes) => put_bytes(&mut object, "value", bytes),
                Value::SimpleString(text) => put_bytes(&mut object, "value", text.into_bytes()),
                Value::Int(n) => put_bytes(&mut object, "value", n.to_string().into_bytes()),
                other => return Err(wrong("a value", &other)),
            }
            Json::Object(object)
        }
        Shape::Integer | Shape::Count => {
            let Value::Int(n) = value else {
                return Err(wrong("an integer", &value));
            };
            match shape {
                Shape::Integer => json!({ "value": n }),
                _ => json!({ "count": u32::try_from(n).unwrap_or(u32::MAX) }),
            }
        }
        Shape::Members => {
            let (Value::Array(items) | Value::Set(items)) = value else {
                return Err(wrong("a set", &value));
            };
            let members = items
                .into_iter()
                .map(|item| match item {
                    Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| {
                        GuestError::Invalid("wrong type: a member is not UTF-8".into())
                    }),
                    Value::SimpleString(text) => Ok(text),
                    other => Err(wrong("a string", &other)),
                })
                .collect::<Result<Vec<_>, _>>()?;
            json!({ "members": members })
        }
        Shape::Results => {
            let mut results = Vec::new();
            flatten(value, &mut results)?;
            json!({ "results": results })
        }
    })
}

/// The results of `execute`, flattened as Spin flattens them: arrays and sets give their
/// items; maps, attributes, verbatim strings and pushes are refused.
fn flatten(value: Value, results: &mut Vec<Json>) -> Result<(), GuestError> {
    let binary =
        |bytes: &[u8]| json!({ "binary": base64::engine::general_purpose::STANDARD.encode(bytes) });
    match value {
        Value::Nil => results.push(Json::Null),
        Value::Int(n) => results.push(json!({ "int64": n })),
        Value::BulkString(bytes) => results.push(binary(&bytes)),
        Value::SimpleString(text) => results.push(json!({ "status": text })),
        Value::Okay => results.push(json!({ "status": "OK" })),
        Value::Array(items) | Value::Set(items) => {
            for item in items {
                flatten(item, results)?;
            }
        }
        Value::Double(x) => results.push(binary(x.to_string().as_bytes())),
        Value::Boolean(b) => results.push(json!({ "int64": i64::from(b) })),
        Value::BigNumber(n) => results.push(binary(&n)),
        Value::ServerError(e) => {
            return Err(GuestError::Failed(format!(
                "the server answered an error: {e:?}"
            )))
        }
        other => {
            return Err(GuestError::Invalid(format!(
                "wrong type: Spin's results carry no {}",
                match other {
                    Value::Map(_) => "maps",
                    Value::Attribute { .. } => "attributes",
                    Value::VerbatimString { .. } => "verbatim strings",
                    Value::Push { .. } => "pushes",
                    _ => "such values",
                }
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn execute_results_are_flattened_as_spin_does() {
        let value = Value::Array(vec![
            Value::Nil,
            Value::Okay,
            Value::Int(7),
            Value::BulkString(b"hi".to_vec()),
            Value::Array(vec![Value::Boolean(true), Value::Double(1.5)]),
        ]);
        let json = answer(Shape::Results, value).unwrap();
        assert_eq!(
            json.to_string(),
            r#"{"results":[null,{"status":"OK"},{"int64":7},{"binary":"aGk="},{"int64":1},{"binary":"MS41"}]}"#
        );
        let map = Value::Map(vec![(Value::Int(1), Value::Int(2))]);
        let e = answer(Shape::Results, map).unwrap_err();
        assert!(e.to_string().starts_with("invalid: wrong type"), "{e}");
    }

    #[test]
    fn commands_that_change_the_shared_connection_are_refused() {
        let request = |command: &str| Request {
            address: "redis://localhost".into(),
            command: Some(command.into()),
            ..serde_json::from_str(r#"{"address": ""}"#).unwrap()
        };
        for refused in ["select", "MULTI", "Subscribe", "client"] {
            let Err(e) = command("execute", request(refused)) else {
                panic!("{refused} was not refused");
            };
            assert!(
                e.to_string()
                    .contains("changes the state of the connection"),
                "{e}"
            );
        }
        assert!(command("execute", request("append")).is_ok());
        let missing = serde_json::from_str(r#"{"address": "redis://x"}"#).unwrap();
        let Err(e) = command("get", missing) else {
            panic!("a get without a key");
        };
        assert_eq!(e.to_string(), "invalid: `redis/get` needs `key`");
    }
}
