//! `fermyon:spin/mqtt@2.0.0` and `spin:mqtt/mqtt@3.0.0`: publishing to the MQTT brokers the
//! function's outbound rules allow, through `mqtt` host calls (their payloads are in
//! `wafer_host::mqtt`). A connection is what `open` was given: the host checks the address
//! on every call and keeps the connection itself.

use base64::Engine as _;
use serde_json::{json, Value as Json};
use wasmtime::component::{Accessor, Resource};

use super::bindings::fermyon::spin::mqtt as v2;
use super::p3::spin::mqtt::mqtt as v3;
use super::{host_of, View};
use crate::interfaces::{Capabilities, HasCapabilities, Host, Refused};

/// An open connection: what `open` was given.
pub struct Connection {
    address: String,
    username: String,
    password: String,
    keep_alive: u64,
}

impl Connection {
    /// The host-call payload naming this connection, with `fields`.
    fn payload(&self, mut fields: Json) -> Vec<u8> {
        fields["address"] = self.address.as_str().into();
        fields["username"] = self.username.as_str().into();
        fields["password"] = self.password.as_str().into();
        fields["keep_alive_secs"] = self.keep_alive.into();
        fields.to_string().into_bytes()
    }
}

/// Why a call failed, in the words of both versions.
enum Failure {
    InvalidAddress,
    ConnectionFailed(String),
    Other(String),
}

impl Failure {
    /// A refused call on the connection to `address`, as Spin words it: an address the
    /// rules do not allow is `connection-failed("address ... is not permitted")`.
    fn of(refused: Refused, address: &str) -> Self {
        match refused.code() {
            "denied" => Self::ConnectionFailed(format!("address {address} is not permitted")),
            "invalid" if refused.0.starts_with("invalid: address ") => Self::InvalidAddress,
            "failed" => {
                let why = refused.0.strip_prefix("failed: ").unwrap_or(&refused.0);
                Self::ConnectionFailed(why.to_owned())
            }
            _ => Self::Other(refused.0),
        }
    }
}

impl From<Failure> for v2::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::ConnectionFailed(why) => Self::ConnectionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl From<Failure> for v3::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::InvalidAddress => Self::InvalidAddress,
            Failure::ConnectionFailed(why) => Self::ConnectionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl Host<'_> {
    async fn mqtt_open(&self, connection: &Connection) -> Result<(), Failure> {
        let payload = connection.payload(json!({}));
        self.call("mqtt", "open", &payload)
            .await
            .map(drop)
            .map_err(|refused| Failure::of(refused, &connection.address))
    }

    async fn mqtt_publish(
        &self,
        connection: &Connection,
        topic: String,
        payload: &[u8],
        qos: u8,
    ) -> Result<(), Failure> {
        let payload = connection.payload(json!({
            "topic": topic,
            "payload_base64": base64::engine::general_purpose::STANDARD.encode(payload),
            "qos": qos,
        }));
        self.call("mqtt", "publish", &payload)
            .await
            .map(drop)
            .map_err(|refused| Failure::of(refused, &connection.address))
    }
}

/// What a call needs of an open connection, copied out of the table.
fn copy(connection: &Connection) -> Connection {
    Connection {
        address: connection.address.clone(),
        username: connection.username.clone(),
        password: connection.password.clone(),
        keep_alive: connection.keep_alive,
    }
}

fn qos2(qos: v2::Qos) -> u8 {
    match qos {
        v2::Qos::AtMostOnce => 0,
        v2::Qos::AtLeastOnce => 1,
        v2::Qos::ExactlyOnce => 2,
    }
}

fn qos3(qos: v3::Qos) -> u8 {
    match qos {
        v3::Qos::AtMostOnce => 0,
        v3::Qos::AtLeastOnce => 1,
        v3::Qos::ExactlyOnce => 2,
    }
}

impl v2::Host for Capabilities<'_> {}

impl v2::HostConnection for Capabilities<'_> {
    async fn open(
        &mut self,
        address: String,
        username: String,
        password: String,
        keep_alive: u64,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2::Error>> {
        let connection = Connection {
            address,
            username,
            password,
            keep_alive,
        };
        if let Err(failure) = self.host().mqtt_open(&connection).await {
            return Ok(Err(failure.into()));
        }
        Ok(Ok(self.table.push(connection)?))
    }

    async fn publish(
        &mut self,
        connection: Resource<Connection>,
        topic: String,
        payload: Vec<u8>,
        qos: v2::Qos,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        let connection = copy(self.table.get(&connection)?);
        let done = self
            .host()
            .mqtt_publish(&connection, topic, &payload, qos2(qos))
            .await;
        Ok(done.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl v3::Host for Capabilities<'_> {}

impl v3::HostConnection for Capabilities<'_> {
    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl<T: HasCapabilities> v3::HostConnectionWithStore<T> for View {
    async fn open(
        accessor: &Accessor<T, Self>,
        address: String,
        username: String,
        password: String,
        keep_alive: u64,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        let connection = Connection {
            address,
            username,
            password,
            keep_alive,
        };
        let host = host_of(accessor);
        if let Err(failure) = Host(host.as_ref()).mqtt_open(&connection).await {
            return Ok(Err(failure.into()));
        }
        let pushed = accessor.with(|mut access| access.get().table.push(connection))?;
        Ok(Ok(pushed))
    }

    async fn publish(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        topic: String,
        payload: Vec<u8>,
        qos: v3::Qos,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let connection =
            accessor.with(|mut access| access.get().table.get(&connection).map(copy))?;
        let host = host_of(accessor);
        let done = Host(host.as_ref())
            .mqtt_publish(&connection, topic, &payload, qos3(qos))
            .await;
        Ok(done.map_err(Into::into))
    }
}
