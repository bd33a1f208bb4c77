//! `fermyon:spin/redis@2.0.0` and `spin:redis/redis@3.0.0`: commands on the Redis servers
//! the function's outbound rules allow, through `redis` host calls (their payloads are in
//! `wafer_host::redis`). A connection is its address: the host checks it on every call and
//! keeps the connection itself.

use base64::Engine as _;
use serde_json::{json, Value as Json};
use wasmtime::component::{Accessor, Resource};

use super::bindings::fermyon::spin::redis as v2;
use super::p3::spin::redis::redis as v3;
use super::{host_of, View};
use crate::interfaces::{Capabilities, HasCapabilities, Host, Refused};

/// An open connection: the address of its server.
pub struct Connection {
    address: String,
}

/// Why a call failed, in the words of both versions.
enum Failure {
    InvalidAddress,
    TypeError,
    Other(String),
}

impl From<Refused> for Failure {
    fn from(refused: Refused) -> Self {
        match refused.code() {
            "denied" => Self::InvalidAddress,
            "invalid" if refused.0.starts_with("invalid: address ") => Self::InvalidAddress,
            "invalid" if refused.0.starts_with("invalid: wrong type") => Self::TypeError,
            "failed" => {
                let why = refused.0.strip_prefix("failed: ").unwrap_or(&refused.0);
                Self::Other(why.to_owned())
            }
            _ => Self::Other(refused.0),
        }
    }
}

impl From<Failure> for v2::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::TypeError => Self::TypeError,
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl From<Failure> for v3::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::TypeError => Self::TypeError,
            Failure::Other(why) => Self::Other(why),
        }
    }
}

/// An argument of `execute`, of either version.
enum Parameter {
    Int64(i64),
    Binary(Vec<u8>),
}

/// A result of `execute`, of either version.
enum Outcome {
    Nil,
    Status(String),
    Int64(i64),
    Binary(Vec<u8>),
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn odd(operation: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Other(format!("the host answered redis/{operation} oddly: {why}"))
}

/// The `redis` host calls, as a client of the host.
impl Host<'_> {
    async fn redis(&self, operation: &str, address: &str, fields: Json) -> Result<Json, Failure> {
        let mut payload = fields;
        payload["address"] = address.into();
        let answer = self
            .call("redis", operation, payload.to_string().as_bytes())
            .await?;
        if answer.is_empty() {
            return Ok(Json::Null);
        }
        serde_json::from_slice(&answer).map_err(|e| odd(operation, e))
    }

    async fn redis_open(&self, address: &str) -> Result<(), Failure> {
        self.redis("open", address, json!({})).await.map(drop)
    }

    async fn redis_publish(
        &self,
        address: &str,
        channel: String,
        payload: &[u8],
    ) -> Result<(), Failure> {
        let fields = json!({ "channel": channel, "payload_base64": b64(payload) });
        self.redis("publish", address, fields).await.map(drop)
    }

    async fn redis_get(&self, address: &str, key: String) -> Result<Option<Vec<u8>>, Failure> {
        let answer = self.redis("get", address, json!({ "key": key })).await?;
        if let Some(text) = answer["value"].as_str() {
            return Ok(Some(text.as_bytes().to_vec()));
        }
        if let Some(encoded) = answer["value_base64"].as_str() {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| odd("get", e))?;
            return Ok(Some(bytes));
        }
        Ok(None)
    }

    async fn redis_set(&self, address: &str, key: String, value: &[u8]) -> Result<(), Failure> {
        let fields = json!({ "key": key, "value_base64": b64(value) });
        self.redis("set", address, fields).await.map(drop)
    }

    async fn redis_incr(&self, address: &str, key: String) -> Result<i64, Failure> {
        let answer = self.redis("incr", address, json!({ "key": key })).await?;
        answer["value"]
            .as_i64()
            .ok_or_else(|| odd("incr", "no value"))
    }

    /// `del`, `sadd` or `srem`: how many keys or values it changed.
    async fn redis_count(
        &self,
        operation: &str,
        address: &str,
        fields: Json,
    ) -> Result<u32, Failure> {
        let answer = self.redis(operation, address, fields).await?;
        answer["count"]
            .as_u64()
            .map(|n| u32::try_from(n).unwrap_or(u32::MAX))
            .ok_or_else(|| odd(operation, "no count"))
    }

    async fn redis_smembers(&self, address: &str, key: String) -> Result<Vec<String>, Failure> {
        let answer = self
            .redis("smembers", address, json!({ "key": key }))
            .await?;
        serde_json::from_value(answer["members"].clone()).map_err(|e| odd("smembers", e))
    }

    async fn redis_execute(
        &self,
        address: &str,
        command: String,
        arguments: Vec<Parameter>,
    ) -> Result<Vec<Outcome>, Failure> {
        let arguments: Vec<Json> = arguments
            .iter()
            .map(|argument| match argument {
                Parameter::Int64(n) => json!({ "int64": n }),
                Parameter::Binary(bytes) => json!({ "binary": b64(bytes) }),
            })
            .collect();
        let fields = json!({ "command": command, "arguments": arguments });
        let answer = self.redis("execute", address, fields).await?;
        let results = answer["results"]
            .as_array()
            .ok_or_else(|| odd("execute", "no results"))?;
        results
            .iter()
            .map(|result| {
                if result.is_null() {
                    return Ok(Outcome::Nil);
                }
                if let Some(status) = result["status"].as_str() {
                    return Ok(Outcome::Status(status.to_owned()));
                }
                if let Some(n) = result["int64"].as_i64() {
                    return Ok(Outcome::Int64(n));
                }
                let encoded = result["binary"]
                    .as_str()
                    .ok_or_else(|| odd("execute", result))?;
                base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .map(Outcome::Binary)
                    .map_err(|e| odd("execute", e))
            })
            .collect()
    }
}

impl From<v2::RedisParameter> for Parameter {
    fn from(parameter: v2::RedisParameter) -> Self {
        match parameter {
            v2::RedisParameter::Int64(n) => Self::Int64(n),
            v2::RedisParameter::Binary(b) => Self::Binary(b),
        }
    }
}

impl From<Outcome> for v2::RedisResult {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Nil => Self::Nil,
            Outcome::Status(s) => Self::Status(s),
            Outcome::Int64(n) => Self::Int64(n),
            Outcome::Binary(b) => Self::Binary(b),
        }
    }
}

impl From<v3::RedisParameter> for Parameter {
    fn from(parameter: v3::RedisParameter) -> Self {
        match parameter {
            v3::RedisParameter::Int64(n) => Self::Int64(n),
            v3::RedisParameter::Binary(b) => Self::Binary(b),
        }
    }
}

impl From<Outcome> for v3::RedisResult {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Nil => Self::Nil,
            Outcome::Status(s) => Self::Status(s),
            Outcome::Int64(n) => Self::Int64(n),
            Outcome::Binary(b) => Self::Binary(b),
        }
    }
}

type Answer2<T> = wasmtime::Result<Result<T, v2::Error>>;

impl Capabilities<'_> {
    fn redis_address(&self, connection: &Resource<Connection>) -> wasmtime::Result<String> {
        Ok(self.table.get(connection)?.address.clone())
    }
}

impl v2::Host for Capabilities<'_> {}

impl v2::HostConnection for Capabilities<'_> {
    async fn open(&mut self, address: String) -> Answer2<Resource<Connection>> {
        if let Err(failure) = self.host().redis_open(&address).await {
            return Ok(Err(failure.into()));
        }
        Ok(Ok(self.table.push(Connection { address })?))
    }

    async fn publish(
        &mut self,
        connection: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Answer2<()> {
        let address = self.redis_address(&connection)?;
        let done = self.host().redis_publish(&address, channel, &payload).await;
        Ok(done.map_err(Into::into))
    }

    async fn get(
        &mut self,
        connection: Resource<Connection>,
        key: String,
    ) -> Answer2<Option<Vec<u8>>> {
        let address = self.redis_address(&connection)?;
        Ok(self
            .host()
            .redis_get(&address, key)
            .await
            .map_err(Into::into))
    }

    async fn set(
        &mut self,
        connection: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> Answer2<()> {
        let address = self.redis_address(&connection)?;
        let done = self.host().redis_set(&address, key, &value).await;
        Ok(done.map_err(Into::into))
    }

    async fn incr(&mut self, connection: Resource<Connection>, key: String) -> Answer2<i64> {
        let address = self.redis_address(&connection)?;
        Ok(self
            .host()
            .redis_incr(&address, key)
            .await
            .map_err(Into::into))
    }

    async fn del(&mut self, connection: Resource<Connection>, keys: Vec<String>) -> Answer2<u32> {
        let address = self.redis_address(&connection)?;
        let count = self
            .host()
            .redis_count("del", &address, json!({ "keys": keys }))
            .await;
        Ok(count.map_err(Into::into))
    }

    async fn sadd(
        &mut self,
        connection: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Answer2<u32> {
        let address = self.redis_address(&connection)?;
        let fields = json!({ "key": key, "values": values });
        let count = self.host().redis_count("sadd", &address, fields).await;
        Ok(count.map_err(Into::into))
    }

    async fn smembers(
        &mut self,
        connection: Resource<Connection>,
        key: String,
    ) -> Answer2<Vec<String>> {
        let address = self.redis_address(&connection)?;
        Ok(self
            .host()
            .redis_smembers(&address, key)
            .await
            .map_err(Into::into))
    }

    async fn srem(
        &mut self,
        connection: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Answer2<u32> {
        let address = self.redis_address(&connection)?;
        let fields = json!({ "key": key, "values": values });
        let count = self.host().redis_count("srem", &address, fields).await;
        Ok(count.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> Answer2<Vec<v2::RedisResult>> {
        let address = self.redis_address(&connection)?;
        let arguments = arguments.into_iter().map(Into::into).collect();
        let results = self
            .host()
            .redis_execute(&address, command, arguments)
            .await;
        Ok(results
            .map(|results| results.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

type Answer3<T> = wasmtime::Result<Result<T, v3::Error>>;

/// The address of an open connection of a WASI 0.3 component.
fn address3<T: HasCapabilities>(
    accessor: &Accessor<T, View>,
    connection: &Resource<Connection>,
) -> wasmtime::Result<String> {
    accessor.with(|mut access| Ok(access.get().table.get(connection)?.address.clone()))
}

impl v3::Host for Capabilities<'_> {}

impl v3::HostConnection for Capabilities<'_> {
    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl<T: HasCapabilities> v3::HostConnectionWithStore<T> for View {
    async fn open(accessor: &Accessor<T, Self>, address: String) -> Answer3<Resource<Connection>> {
        let host = host_of(accessor);
        if let Err(failure) = Host(host.as_ref()).redis_open(&address).await {
            return Ok(Err(failure.into()));
        }
        let pushed = accessor.with(|mut access| access.get().table.push(Connection { address }))?;
        Ok(Ok(pushed))
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        channel: String,
        payload: Vec<u8>,
    ) -> Answer3<()> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let done = Host(host.as_ref())
            .redis_publish(&address, channel, &payload)
            .await;
        Ok(done.map_err(Into::into))
    }

    async fn get(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        key: String,
    ) -> Answer3<Option<Vec<u8>>> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let value = Host(host.as_ref()).redis_get(&address, key).await;
        Ok(value.map_err(Into::into))
    }

    async fn set(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        key: String,
        value: Vec<u8>,
    ) -> Answer3<()> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let done = Host(host.as_ref()).redis_set(&address, key, &value).await;
        Ok(done.map_err(Into::into))
    }

    async fn incr(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        key: String,
    ) -> Answer3<i64> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let value = Host(host.as_ref()).redis_incr(&address, key).await;
        Ok(value.map_err(Into::into))
    }

    async fn del(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        keys: Vec<String>,
    ) -> Answer3<u32> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let fields = json!({ "keys": keys });
        let count = Host(host.as_ref())
            .redis_count("del", &address, fields)
            .await;
        Ok(count.map_err(Into::into))
    }

    async fn sadd(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Answer3<u32> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let fields = json!({ "key": key, "values": values });
        let count = Host(host.as_ref())
            .redis_count("sadd", &address, fields)
            .await;
        Ok(count.map_err(Into::into))
    }

    async fn smembers(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        key: String,
    ) -> Answer3<Vec<String>> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let members = Host(host.as_ref()).redis_smembers(&address, key).await;
        Ok(members.map_err(Into::into))
    }

    async fn srem(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        key: String,
        values: Vec<String>,
    ) -> Answer3<u32> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let fields = json!({ "key": key, "values": values });
        let count = Host(host.as_ref())
            .redis_count("srem", &address, fields)
            .await;
        Ok(count.map_err(Into::into))
    }

    async fn execute(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> Answer3<Vec<v3::RedisResult>> {
        let address = address3(accessor, &connection)?;
        let host = host_of(accessor);
        let arguments = arguments.into_iter().map(Into::into).collect();
        let results = Host(host.as_ref())
            .redis_execute(&address, command, arguments)
            .await;
        Ok(results
            .map(|results| results.into_iter().map(Into::into).collect())
            .map_err(Into::into))
    }
}
