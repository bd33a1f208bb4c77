//! Spin's outbound PostgreSQL: `fermyon:spin/postgres@2.0.0` (with `rdbms-types`),
//! `spin:postgres/postgres@3.0.0` and `@4.2.0` (which components importing 4.0.0 and 4.1.0
//! link to), through `postgres` host calls (their payloads are in `wafer_host::postgres`).
//!
//! A `connection` resource is one connection on the host, named by its number; dropping the
//! resource closes it (and the host closes what is left when the call ends). Values convert
//! as Spin converts them: 4.x has every type, 3.0 and 2.0 answer `unsupported` for the types
//! they lack, and 2.0 refuses unsigned parameters. Errors are Spin's: `connection-failed` for
//! an address the allow-list refuses or a server that cannot be reached, `query-failed` with
//! the database's own error (4.x: its code, message and fields), `bad-parameter` /
//! `value-conversion-failed` for a value the host cannot convert.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use wasmtime::component::{Accessor, FutureReader, Linker, Resource, StreamReader};

use super::bindings::fermyon::spin::postgres as v2;
use super::bindings::fermyon::spin::rdbms_types as v2t;
use super::bindings::spin::postgres3_0_0::postgres as v3;
use super::p3::spin::postgres4_2_0::postgres as v4;
use super::{host_of, View};
use crate::interfaces::{Capabilities, HasCapabilities, Host, Refused};

/// Links every version to `linker`.
pub(super) fn add_to_linker<T: HasCapabilities>(
    linker: &mut Linker<T>,
    get: fn(&mut T) -> Capabilities<'_>,
) -> wasmtime::Result<()> {
    v2t::add_to_linker::<T, View>(linker, get)?;
    v2::add_to_linker::<T, View>(linker, get)?;
    v3::add_to_linker::<T, View>(linker, get)?;
    v4::add_to_linker::<T, View>(linker, get)?;
    Ok(())
}

/// An open connection: its number on the host.
pub struct Connection {
    id: u64,
}

/// A `connection-builder` (4.1): the address, and the root certificate to trust for TLS.
pub struct Builder {
    address: String,
    ca_root: Option<String>,
}

/// A value as the host calls carry it (`wafer_host::postgres::PgValue`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Wire {
    Boolean(bool),
    Int8(i8),
    Int16(i16),
    Int32(i32),
    Int64(i64),
    Floating32(#[serde(with = "float")] f32),
    Floating64(#[serde(with = "float")] f64),
    Str(String),
    Binary(#[serde(with = "base64_bytes")] Vec<u8>),
    Date((i32, u8, u8)),
    Time((u8, u8, u8, u32)),
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    Timestamp(i64),
    Uuid(String),
    Jsonb(serde_json::Value),
    Decimal(String),
    RangeInt32(WireRange<i32>),
    RangeInt64(WireRange<i64>),
    RangeDecimal(WireRange<String>),
    ArrayInt32(Vec<Option<i32>>),
    ArrayInt64(Vec<Option<i64>>),
    ArrayDecimal(Vec<Option<String>>),
    ArrayStr(Vec<Option<String>>),
    Interval(WireInterval),
    Unsupported(#[serde(with = "base64_bytes")] Vec<u8>),
    #[serde(untagged)]
    Null(()),
}

type WireRange<T> = (Option<(T, WireBound)>, Option<(T, WireBound)>);

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "lowercase")]
enum WireBound {
    Inclusive,
    Exclusive,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
struct WireInterval {
    micros: i64,
    days: i32,
    months: i32,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
enum WireType {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Floating32,
    Floating64,
    Str,
    Binary,
    Date,
    Time,
    Datetime,
    Timestamp,
    Uuid,
    Jsonb,
    Decimal,
    RangeInt32,
    RangeInt64,
    RangeDecimal,
    ArrayInt32,
    ArrayInt64,
    ArrayDecimal,
    ArrayStr,
    Interval,
    Other(String),
}

#[derive(Deserialize, Debug)]
struct WireColumn {
    name: String,
    #[serde(rename = "type")]
    data_type: WireType,
}

#[derive(Deserialize, Debug, Clone)]
struct WireDbError {
    text: String,
    severity: String,
    code: String,
    message: String,
    detail: Option<String>,
    #[serde(default)]
    extras: Vec<(String, String)>,
}

/// What `query` and `execute` answer: rows, a count, or the database's error.
#[derive(Deserialize, Debug, Default)]
struct Answer {
    #[serde(default)]
    columns: Vec<WireColumn>,
    #[serde(default)]
    rows: Vec<Vec<Wire>>,
    rows_affected: Option<u64>,
    db_error: Option<WireDbError>,
}

/// Why a call failed, in the words of every version (4.x's, which the others narrow).
#[derive(Debug)]
enum Failure {
    Connection(String),
    BadParameter(String),
    Query(String, Option<Box<WireDbError>>),
    Conversion(String),
    Other(String),
}

/// A refused host call as the failure of `operation`.
fn refused(operation: &str, refused: Refused) -> Failure {
    let code = refused.code().to_owned();
    let text = refused
        .0
        .strip_prefix(&format!("{code}: "))
        .unwrap_or(&refused.0)
        .to_owned();
    match (operation, code.as_str()) {
        ("open", "denied" | "failed") => Failure::Connection(text),
        (_, "not_found") => Failure::Connection("no connection found".into()),
        // Spin's words for a parameter it cannot convert: `bad-parameter` for a query,
        // `value-conversion-failed` for a command.
        ("query", "invalid") => Failure::BadParameter(text),
        ("execute", "invalid") => Failure::Conversion(text),
        ("query" | "execute", "failed" | "too_large") => Failure::Query(text, None),
        _ => Failure::Other(refused.0),
    }
}

fn odd(operation: &str, why: impl std::fmt::Display) -> Failure {
    Failure::Other(format!(
        "the host answered postgres/{operation} oddly: {why}"
    ))
}

/// Opens a connection on the host.
async fn open(host: Host<'_>, address: &str, ca_root: Option<&str>) -> Result<u64, Failure> {
    let payload = serde_json::json!({ "address": address, "ca_root": ca_root });
    let answer = host
        .call("postgres", "open", payload.to_string().as_bytes())
        .await
        .map_err(|r| refused("open", r))?;
    let answer: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| odd("open", e))?;
    answer["connection"]
        .as_u64()
        .ok_or_else(|| odd("open", "no connection number"))
}

/// Runs `query` or `execute` on the host.
async fn statement(
    host: Host<'_>,
    operation: &str,
    id: u64,
    statement: &str,
    parameters: Vec<Wire>,
) -> Result<Answer, Failure> {
    let payload = serde_json::json!({
        "connection": id,
        "statement": statement,
        "parameters": parameters,
    });
    let answer = host
        .call("postgres", operation, payload.to_string().as_bytes())
        .await
        .map_err(|r| refused(operation, r))?;
    let answer: Answer = serde_json::from_slice(&answer).map_err(|e| odd(operation, e))?;
    match answer.db_error {
        Some(error) => Err(Failure::Query(error.text.clone(), Some(Box::new(error)))),
        None => Ok(answer),
    }
}

async fn query(
    host: Host<'_>,
    id: u64,
    sql: &str,
    parameters: Vec<Wire>,
) -> Result<v4::RowSet, Failure> {
    let answer = statement(host, "query", id, sql, parameters).await?;
    Ok(v4::RowSet {
        columns: answer.columns.into_iter().map(Into::into).collect(),
        rows: answer
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(Into::into).collect())
            .collect(),
    })
}

async fn execute(
    host: Host<'_>,
    id: u64,
    sql: &str,
    parameters: Vec<Wire>,
) -> Result<u64, Failure> {
    let answer = statement(host, "execute", id, sql, parameters).await?;
    answer
        .rows_affected
        .ok_or_else(|| odd("execute", "no rows_affected"))
}

/// Closes a connection on the host; one already gone is no error.
async fn close(host: Host<'_>, id: u64) {
    let payload = serde_json::json!({ "connection": id }).to_string();
    let _ = host.call("postgres", "close", payload.as_bytes()).await;
}

/// Spin checks a root certificate when it is set: text with a PEM certificate in it.
fn check_ca_root(pem: &str) -> Result<(), String> {
    let body = pem
        .split_once("-----BEGIN CERTIFICATE-----")
        .and_then(|(_, rest)| rest.split_once("-----END CERTIFICATE-----"))
        .map(|(body, _)| body.split_whitespace().collect::<String>());
    match body {
        Some(body)
            if base64::engine::general_purpose::STANDARD
                .decode(&body)
                .is_ok() =>
        {
            Ok(())
        }
        _ => Err("invalid root certificate: no PEM certificate in it".into()),
    }
}

// --- values ---------------------------------------------------------------------------

fn bound4(b: WireBound) -> v4::RangeBoundKind {
    match b {
        WireBound::Inclusive => v4::RangeBoundKind::Inclusive,
        WireBound::Exclusive => v4::RangeBoundKind::Exclusive,
    }
}

fn wire_bound(b: v4::RangeBoundKind) -> WireBound {
    match b {
        v4::RangeBoundKind::Inclusive => WireBound::Inclusive,
        v4::RangeBoundKind::Exclusive => WireBound::Exclusive,
    }
}

type Range4<T> = (
    Option<(T, v4::RangeBoundKind)>,
    Option<(T, v4::RangeBoundKind)>,
);

fn range4<T>((lower, upper): WireRange<T>) -> Range4<T> {
    let bound = |b: Option<(T, WireBound)>| b.map(|(v, k)| (v, bound4(k)));
    (bound(lower), bound(upper))
}

fn wire_range<T>((lower, upper): Range4<T>) -> WireRange<T> {
    let bound = |b: Option<(T, v4::RangeBoundKind)>| b.map(|(v, k)| (v, wire_bound(k)));
    (bound(lower), bound(upper))
}

/// A 4.x parameter for the host; `jsonb` must be JSON (else the error Spin gives, as
/// `BadParameter` text).
fn wire4(value: v4::ParameterValue) -> Result<Wire, String> {
    use v4::ParameterValue as P;
    Ok(match value {
        P::Boolean(v) => Wire::Boolean(v),
        P::Int8(v) => Wire::Int8(v),
        P::Int16(v) => Wire::Int16(v),
        P::Int32(v) => Wire::Int32(v),
        P::Int64(v) => Wire::Int64(v),
        P::Floating32(v) => Wire::Floating32(v),
        P::Floating64(v) => Wire::Floating64(v),
        P::Str(v) => Wire::Str(v),
        P::Binary(v) => Wire::Binary(v),
        P::Date(v) => Wire::Date(v),
        P::Time(v) => Wire::Time(v),
        P::Datetime(v) => Wire::Datetime(v),
        P::Timestamp(v) => Wire::Timestamp(v),
        P::Uuid(v) => Wire::Uuid(v),
        P::Jsonb(v) => Wire::Jsonb(
            serde_json::from_slice(&v)
                .map_err(|e| format!("invalid JSON {}: {e}", String::from_utf8_lossy(&v)))?,
        ),
        P::Decimal(v) => Wire::Decimal(v),
        P::RangeInt32(v) => Wire::RangeInt32(wire_range(v)),
        P::RangeInt64(v) => Wire::RangeInt64(wire_range(v)),
        P::RangeDecimal(v) => Wire::RangeDecimal(wire_range(v)),
        P::ArrayInt32(v) => Wire::ArrayInt32(v),
        P::ArrayInt64(v) => Wire::ArrayInt64(v),
        P::ArrayDecimal(v) => Wire::ArrayDecimal(v),
        P::ArrayStr(v) => Wire::ArrayStr(v),
        P::Interval(v) => Wire::Interval(WireInterval {
            micros: v.micros,
            days: v.days,
            months: v.months,
        }),
        P::DbNull => Wire::Null(()),
    })
}

/// 4.x parameters for the host, or the failure of `operation` Spin gives for a bad one.
fn parameters4(operation: &str, values: Vec<v4::ParameterValue>) -> Result<Vec<Wire>, Failure> {
    values
        .into_iter()
        .map(wire4)
        .collect::<Result<_, _>>()
        .map_err(|why| match operation {
            "execute" => Failure::Conversion(why),
            _ => Failure::BadParameter(why),
        })
}

fn wire3(value: v3::ParameterValue) -> Wire {
    use v3::ParameterValue as P;
    match value {
        P::Boolean(v) => Wire::Boolean(v),
        P::Int8(v) => Wire::Int8(v),
        P::Int16(v) => Wire::Int16(v),
        P::Int32(v) => Wire::Int32(v),
        P::Int64(v) => Wire::Int64(v),
        P::Floating32(v) => Wire::Floating32(v),
        P::Floating64(v) => Wire::Floating64(v),
        P::Str(v) => Wire::Str(v),
        P::Binary(v) => Wire::Binary(v),
        P::Date(v) => Wire::Date(v),
        P::Time(v) => Wire::Time(v),
        P::Datetime(v) => Wire::Datetime(v),
        P::Timestamp(v) => Wire::Timestamp(v),
        P::DbNull => Wire::Null(()),
    }
}

/// A 2.0 parameter; PostgreSQL has no unsigned integers (Spin's error).
fn wire2(value: v2t::ParameterValue) -> Result<Wire, Failure> {
    use v2t::ParameterValue as P;
    Ok(match value {
        P::Boolean(v) => Wire::Boolean(v),
        P::Int8(v) => Wire::Int8(v),
        P::Int16(v) => Wire::Int16(v),
        P::Int32(v) => Wire::Int32(v),
        P::Int64(v) => Wire::Int64(v),
        P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
            return Err(Failure::Conversion(
                "Postgres does not support unsigned integers".into(),
            ))
        }
        P::Floating32(v) => Wire::Floating32(v),
        P::Floating64(v) => Wire::Floating64(v),
        P::Str(v) => Wire::Str(v),
        P::Binary(v) => Wire::Binary(v),
        P::DbNull => Wire::Null(()),
    })
}

impl From<Wire> for v4::DbValue {
    fn from(value: Wire) -> Self {
        match value {
            Wire::Boolean(v) => Self::Boolean(v),
            Wire::Int8(v) => Self::Int8(v),
            Wire::Int16(v) => Self::Int16(v),
            Wire::Int32(v) => Self::Int32(v),
            Wire::Int64(v) => Self::Int64(v),
            Wire::Floating32(v) => Self::Floating32(v),
            Wire::Floating64(v) => Self::Floating64(v),
            Wire::Str(v) => Self::Str(v),
            Wire::Binary(v) => Self::Binary(v),
            Wire::Date(v) => Self::Date(v),
            Wire::Time(v) => Self::Time(v),
            Wire::Datetime(v) => Self::Datetime(v),
            Wire::Timestamp(v) => Self::Timestamp(v),
            Wire::Uuid(v) => Self::Uuid(v),
            // Spin's bytes for a `jsonb`: the value serialized again.
            Wire::Jsonb(v) => Self::Jsonb(v.to_string().into_bytes()),
            Wire::Decimal(v) => Self::Decimal(v),
            Wire::RangeInt32(v) => Self::RangeInt32(range4(v)),
            Wire::RangeInt64(v) => Self::RangeInt64(range4(v)),
            Wire::RangeDecimal(v) => Self::RangeDecimal(range4(v)),
            Wire::ArrayInt32(v) => Self::ArrayInt32(v),
            Wire::ArrayInt64(v) => Self::ArrayInt64(v),
            Wire::ArrayDecimal(v) => Self::ArrayDecimal(v),
            Wire::ArrayStr(v) => Self::ArrayStr(v),
            Wire::Interval(v) => Self::Interval(v4::Interval {
                micros: v.micros,
                days: v.days,
                months: v.months,
            }),
            Wire::Unsupported(v) => Self::Unsupported(v),
            Wire::Null(()) => Self::DbNull,
        }
    }
}

impl From<v4::DbValue> for v3::DbValue {
    fn from(value: v4::DbValue) -> Self {
        use v4::DbValue as V;
        match value {
            V::Boolean(v) => Self::Boolean(v),
            V::Int8(v) => Self::Int8(v),
            V::Int16(v) => Self::Int16(v),
            V::Int32(v) => Self::Int32(v),
            V::Int64(v) => Self::Int64(v),
            V::Floating32(v) => Self::Floating32(v),
            V::Floating64(v) => Self::Floating64(v),
            V::Str(v) => Self::Str(v),
            V::Binary(v) => Self::Binary(v),
            V::Date(v) => Self::Date(v),
            V::Time(v) => Self::Time(v),
            V::Datetime(v) => Self::Datetime(v),
            V::Timestamp(v) => Self::Timestamp(v),
            V::DbNull => Self::DbNull,
            _ => Self::Unsupported,
        }
    }
}

impl From<v4::DbValue> for v2t::DbValue {
    fn from(value: v4::DbValue) -> Self {
        use v4::DbValue as V;
        match value {
            V::Boolean(v) => Self::Boolean(v),
            V::Int8(v) => Self::Int8(v),
            V::Int16(v) => Self::Int16(v),
            V::Int32(v) => Self::Int32(v),
            V::Int64(v) => Self::Int64(v),
            V::Floating32(v) => Self::Floating32(v),
            V::Floating64(v) => Self::Floating64(v),
            V::Str(v) => Self::Str(v),
            V::Binary(v) => Self::Binary(v),
            V::DbNull => Self::DbNull,
            _ => Self::Unsupported,
        }
    }
}

impl From<WireColumn> for v4::Column {
    fn from(column: WireColumn) -> Self {
        use v4::DbDataType as D;
        let data_type = match column.data_type {
            WireType::Boolean => D::Boolean,
            WireType::Int8 => D::Int8,
            WireType::Int16 => D::Int16,
            WireType::Int32 => D::Int32,
            WireType::Int64 => D::Int64,
            WireType::Floating32 => D::Floating32,
            WireType::Floating64 => D::Floating64,
            WireType::Str => D::Str,
            WireType::Binary => D::Binary,
            WireType::Date => D::Date,
            WireType::Time => D::Time,
            WireType::Datetime => D::Datetime,
            WireType::Timestamp => D::Timestamp,
            WireType::Uuid => D::Uuid,
            WireType::Jsonb => D::Jsonb,
            WireType::Decimal => D::Decimal,
            WireType::RangeInt32 => D::RangeInt32,
            WireType::RangeInt64 => D::RangeInt64,
            WireType::RangeDecimal => D::RangeDecimal,
            WireType::ArrayInt32 => D::ArrayInt32,
            WireType::ArrayInt64 => D::ArrayInt64,
            WireType::ArrayDecimal => D::ArrayDecimal,
            WireType::ArrayStr => D::ArrayStr,
            WireType::Interval => D::Interval,
            WireType::Other(name) => D::Other(name),
        };
        Self {
            name: column.name,
            data_type,
        }
    }
}

impl From<v4::Column> for v3::Column {
    fn from(column: v4::Column) -> Self {
        use v3::DbDataType as D;
        use v4::DbDataType as F;
        let data_type = match column.data_type {
            F::Boolean => D::Boolean,
            F::Int8 => D::Int8,
            F::Int16 => D::Int16,
            F::Int32 => D::Int32,
            F::Int64 => D::Int64,
            F::Floating32 => D::Floating32,
            F::Floating64 => D::Floating64,
            F::Str => D::Str,
            F::Binary => D::Binary,
            F::Date => D::Date,
            F::Time => D::Time,
            F::Datetime => D::Datetime,
            F::Timestamp => D::Timestamp,
            _ => D::Other,
        };
        Self {
            name: column.name,
            data_type,
        }
    }
}

impl From<v4::Column> for v2t::Column {
    fn from(column: v4::Column) -> Self {
        use v2t::DbDataType as D;
        use v4::DbDataType as F;
        let data_type = match column.data_type {
            F::Boolean => D::Boolean,
            F::Int8 => D::Int8,
            F::Int16 => D::Int16,
            F::Int32 => D::Int32,
            F::Int64 => D::Int64,
            F::Floating32 => D::Floating32,
            F::Floating64 => D::Floating64,
            F::Str => D::Str,
            F::Binary => D::Binary,
            _ => D::Other,
        };
        Self {
            name: column.name,
            data_type,
        }
    }
}

impl From<v4::RowSet> for v3::RowSet {
    fn from(rows: v4::RowSet) -> Self {
        Self {
            columns: rows.columns.into_iter().map(Into::into).collect(),
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(Into::into).collect())
                .collect(),
        }
    }
}

impl From<v4::RowSet> for v2t::RowSet {
    fn from(rows: v4::RowSet) -> Self {
        Self {
            columns: rows.columns.into_iter().map(Into::into).collect(),
            rows: rows
                .rows
                .into_iter()
                .map(|row| row.into_iter().map(Into::into).collect())
                .collect(),
        }
    }
}

// --- errors ---------------------------------------------------------------------------

impl From<Failure> for v4::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Connection(why) => Self::ConnectionFailed(why),
            Failure::BadParameter(why) => Self::BadParameter(why),
            Failure::Query(text, None) => Self::QueryFailed(v4::QueryError::Text(text)),
            Failure::Query(_, Some(e)) => Self::QueryFailed(v4::QueryError::DbError(v4::DbError {
                as_text: e.text,
                severity: e.severity,
                code: e.code,
                message: e.message,
                detail: e.detail,
                extras: e.extras,
            })),
            Failure::Conversion(why) => Self::ValueConversionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl From<Failure> for v3::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Connection(why) => Self::ConnectionFailed(why),
            Failure::BadParameter(why) => Self::BadParameter(why),
            Failure::Query(text, _) => Self::QueryFailed(text),
            Failure::Conversion(why) => Self::ValueConversionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

impl From<Failure> for v2t::Error {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Connection(why) => Self::ConnectionFailed(why),
            Failure::BadParameter(why) => Self::BadParameter(why),
            Failure::Query(text, _) => Self::QueryFailed(text),
            Failure::Conversion(why) => Self::ValueConversionFailed(why),
            Failure::Other(why) => Self::Other(why),
        }
    }
}

// --- the calls, as WASI 0.2 components make them ---------------------------------------

impl Capabilities<'_> {
    async fn pg_open(
        &mut self,
        address: &str,
        ca_root: Option<&str>,
    ) -> wasmtime::Result<Result<Resource<Connection>, Failure>> {
        match open(self.host(), address, ca_root).await {
            Ok(id) => Ok(Ok(self.table.push(Connection { id })?)),
            Err(failure) => Ok(Err(failure)),
        }
    }

    async fn pg_query(
        &mut self,
        connection: &Resource<Connection>,
        sql: &str,
        parameters: Result<Vec<Wire>, Failure>,
    ) -> wasmtime::Result<Result<v4::RowSet, Failure>> {
        let id = self.table.get(connection)?.id;
        let parameters = match parameters {
            Ok(parameters) => parameters,
            Err(failure) => return Ok(Err(failure)),
        };
        Ok(query(self.host(), id, sql, parameters).await)
    }

    async fn pg_execute(
        &mut self,
        connection: &Resource<Connection>,
        sql: &str,
        parameters: Result<Vec<Wire>, Failure>,
    ) -> wasmtime::Result<Result<u64, Failure>> {
        let id = self.table.get(connection)?.id;
        let parameters = match parameters {
            Ok(parameters) => parameters,
            Err(failure) => return Ok(Err(failure)),
        };
        Ok(execute(self.host(), id, sql, parameters).await)
    }

    async fn pg_drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        let connection = self.table.delete(connection)?;
        close(self.host(), connection.id).await;
        Ok(())
    }
}

impl v2t::Host for Capabilities<'_> {}

impl v2::Host for Capabilities<'_> {}

impl v2::HostConnection for Capabilities<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v2t::Error>> {
        Ok(self.pg_open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<v2t::RowSet, v2t::Error>> {
        let parameters = params.into_iter().map(wire2).collect();
        let rows = self.pg_query(&connection, &statement, parameters).await?;
        Ok(rows.map(Into::into).map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v2t::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v2t::Error>> {
        let parameters = params.into_iter().map(wire2).collect();
        let n = self.pg_execute(&connection, &statement, parameters).await?;
        Ok(n.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.pg_drop(connection).await
    }
}

impl v3::Host for Capabilities<'_> {}

impl v3::HostConnection for Capabilities<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v3::Error>> {
        Ok(self.pg_open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<v3::RowSet, v3::Error>> {
        let parameters = Ok(params.into_iter().map(wire3).collect());
        let rows = self.pg_query(&connection, &statement, parameters).await?;
        Ok(rows.map(Into::into).map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v3::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v3::Error>> {
        let parameters = Ok(params.into_iter().map(wire3).collect());
        let n = self.pg_execute(&connection, &statement, parameters).await?;
        Ok(n.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.pg_drop(connection).await
    }
}

impl v4::Host for Capabilities<'_> {}

impl v4::HostConnection for Capabilities<'_> {
    async fn open(
        &mut self,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
        Ok(self.pg_open(&address, None).await?.map_err(Into::into))
    }

    async fn query(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<v4::RowSet, v4::Error>> {
        let parameters = parameters4("query", params);
        let rows = self.pg_query(&connection, &statement, parameters).await?;
        Ok(rows.map_err(Into::into))
    }

    async fn execute(
        &mut self,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        let parameters = parameters4("execute", params);
        let n = self.pg_execute(&connection, &statement, parameters).await?;
        Ok(n.map_err(Into::into))
    }

    async fn drop(&mut self, connection: Resource<Connection>) -> wasmtime::Result<()> {
        self.pg_drop(connection).await
    }
}

impl v4::HostConnectionBuilder for Capabilities<'_> {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<Builder>> {
        Ok(self.table.push(Builder {
            address,
            ca_root: None,
        })?)
    }

    async fn set_ca_root(
        &mut self,
        builder: Resource<Builder>,
        certificate: String,
    ) -> wasmtime::Result<Result<(), v4::Error>> {
        if let Err(why) = check_ca_root(&certificate) {
            return Ok(Err(v4::Error::Other(why)));
        }
        self.table.get_mut(&builder)?.ca_root = Some(certificate);
        Ok(Ok(()))
    }

    async fn build(
        &mut self,
        builder: Resource<Builder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
        let builder = self.table.get(&builder)?;
        let (address, ca_root) = (builder.address.clone(), builder.ca_root.clone());
        let opened = self.pg_open(&address, ca_root.as_deref()).await?;
        Ok(opened.map_err(Into::into))
    }

    async fn drop(&mut self, builder: Resource<Builder>) -> wasmtime::Result<()> {
        self.table.delete(builder)?;
        Ok(())
    }
}

// --- the calls, as WASI 0.3 components make them (4.2's async functions) ---------------

/// Opens a connection for a WASI 0.3 call and puts it in the resource table.
async fn open3<T: HasCapabilities>(
    accessor: &Accessor<T, View>,
    address: &str,
    ca_root: Option<&str>,
) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
    let host = host_of(accessor);
    match open(Host(host.as_ref()), address, ca_root).await {
        Ok(id) => {
            let pushed = accessor.with(|mut access| access.get().table.push(Connection { id }))?;
            Ok(Ok(pushed))
        }
        Err(failure) => Ok(Err(failure.into())),
    }
}

fn id3<T: HasCapabilities>(
    accessor: &Accessor<T, View>,
    connection: &Resource<Connection>,
) -> wasmtime::Result<u64> {
    accessor.with(|mut access| Ok(access.get().table.get(connection)?.id))
}

impl<T: HasCapabilities> v4::HostConnectionWithStore<T> for View {
    async fn open_async(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
        open3(accessor, &address, None).await
    }

    async fn query_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<
        Result<
            (
                Vec<v4::Column>,
                StreamReader<Vec<v4::DbValue>>,
                FutureReader<Result<(), v4::Error>>,
            ),
            v4::Error,
        >,
    > {
        let id = id3(accessor, &connection)?;
        let parameters = match parameters4("query", params) {
            Ok(parameters) => parameters,
            Err(failure) => return Ok(Err(failure.into())),
        };
        let host = host_of(accessor);
        let rows = match query(Host(host.as_ref()), id, &statement, parameters).await {
            Ok(rows) => rows,
            Err(failure) => return Ok(Err(failure.into())),
        };
        accessor.with(|mut access| {
            let stream = StreamReader::new(&mut access, rows.rows)?;
            let done = FutureReader::new(&mut access, async { Ok::<_, wasmtime::Error>(Ok(())) })?;
            Ok(Ok((rows.columns, stream, done)))
        })
    }

    async fn execute_async(
        accessor: &Accessor<T, Self>,
        connection: Resource<Connection>,
        statement: String,
        params: Vec<v4::ParameterValue>,
    ) -> wasmtime::Result<Result<u64, v4::Error>> {
        let id = id3(accessor, &connection)?;
        let parameters = match parameters4("execute", params) {
            Ok(parameters) => parameters,
            Err(failure) => return Ok(Err(failure.into())),
        };
        let host = host_of(accessor);
        let n = execute(Host(host.as_ref()), id, &statement, parameters).await;
        Ok(n.map_err(Into::into))
    }
}

impl<T: HasCapabilities> v4::HostConnectionBuilderWithStore<T> for View {
    async fn build_async(
        accessor: &Accessor<T, Self>,
        builder: Resource<Builder>,
    ) -> wasmtime::Result<Result<Resource<Connection>, v4::Error>> {
        let (address, ca_root) = accessor.with(|mut access| {
            let builder = access.get().table.get(&builder)?;
            Ok::<_, wasmtime::Error>((builder.address.clone(), builder.ca_root.clone()))
        })?;
        open3(accessor, &address, ca_root.as_deref()).await
    }
}

/// Floats as JSON numbers, and the values JSON has no number for as text
/// (`wafer_host::postgres` writes them the same way).
mod float {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) trait Float: Copy {
        fn to_f64(self) -> f64;
        fn from_f64(x: f64) -> Self;
        fn serialize_finite<S: Serializer>(self, s: S) -> Result<S::Ok, S::Error>;
    }

    impl Float for f32 {
        fn to_f64(self) -> f64 {
            f64::from(self)
        }
        fn from_f64(x: f64) -> Self {
            x as f32
        }
        fn serialize_finite<S: Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f32(self)
        }
    }

    impl Float for f64 {
        fn to_f64(self) -> f64 {
            self
        }
        fn from_f64(x: f64) -> Self {
            x
        }
        fn serialize_finite<S: Serializer>(self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(self)
        }
    }

    pub(super) fn serialize<T: Float, S: Serializer>(x: &T, s: S) -> Result<S::Ok, S::Error> {
        let wide = x.to_f64();
        if wide.is_nan() {
            s.serialize_str("NaN")
        } else if wide == f64::INFINITY {
            s.serialize_str("Infinity")
        } else if wide == f64::NEG_INFINITY {
            s.serialize_str("-Infinity")
        } else {
            x.serialize_finite(s)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given<'a> {
        Number(f64),
        Text(&'a str),
    }

    pub(super) fn deserialize<'de, T: Float, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let x = match Given::deserialize(d)? {
            Given::Number(x) => x,
            Given::Text("NaN") => f64::NAN,
            Given::Text("Infinity") => f64::INFINITY,
            Given::Text("-Infinity") => f64::NEG_INFINITY,
            Given::Text(other) => {
                return Err(serde::de::Error::custom(format!(
                    "`{other}` is not a number, `NaN`, `Infinity` or `-Infinity`"
                )))
            }
        };
        Ok(T::from_f64(x))
    }
}

mod base64_bytes {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The host's format (`wafer_host::postgres::types`' test pins the same text).
    #[test]
    fn values_travel_as_the_host_writes_them() {
        let json = r#"[null,{"int32":-3},{"floating32":7.8},{"floating64":"NaN"},{"floating64":"-Infinity"},{"str":"hi"},{"binary":"AP8="},{"date":[2024,2,29]},{"jsonb":{"a":[1,null]}},{"range_int64":[[5,"inclusive"],null]},{"array_str":["a",null]},{"interval":{"micros":1,"days":2,"months":3}}]"#;
        let values: Vec<Wire> = serde_json::from_str(json).unwrap();
        assert!(matches!(values[3], Wire::Floating64(x) if x.is_nan()));
        let db: Vec<v4::DbValue> = values.iter().cloned().map(Into::into).collect();
        assert!(matches!(db[0], v4::DbValue::DbNull));
        assert!(matches!(db[2], v4::DbValue::Floating32(x) if x == 7.8));
        assert!(matches!(&db[8], v4::DbValue::Jsonb(b) if b == br#"{"a":[1,null]}"#));
        assert!(matches!(
            db[9],
            v4::DbValue::RangeInt64((Some((5, v4::RangeBoundKind::Inclusive)), None))
        ));
        let mut back = serde_json::to_value(&values).unwrap();
        // NaN is not equal to itself; the rest round-trips to the same text.
        back[3] = serde_json::json!({"floating64": "NaN"});
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(json).unwrap()
        );
    }

    #[test]
    fn older_versions_see_what_they_can_name() {
        let uuid = v4::DbValue::Uuid("x".into());
        assert!(matches!(
            v3::DbValue::from(uuid.clone()),
            v3::DbValue::Unsupported
        ));
        assert!(matches!(
            v2t::DbValue::from(uuid),
            v2t::DbValue::Unsupported
        ));
        let date = v4::DbValue::Date((2024, 1, 2));
        assert!(matches!(
            v3::DbValue::from(date.clone()),
            v3::DbValue::Date((2024, 1, 2))
        ));
        assert!(matches!(
            v2t::DbValue::from(date),
            v2t::DbValue::Unsupported
        ));
        assert!(matches!(
            wire2(v2t::ParameterValue::Uint8(1)),
            Err(Failure::Conversion(why)) if why.contains("unsigned")
        ));
    }

    #[test]
    fn refusals_are_spins_errors() {
        let denied = Refused("denied: address postgres://db:5432 is not permitted".into());
        assert!(matches!(
            v4::Error::from(refused("open", denied)),
            v4::Error::ConnectionFailed(why) if why == "address postgres://db:5432 is not permitted"
        ));
        let bad = Refused("invalid: invalid UUID x: ...".into());
        assert!(matches!(
            v4::Error::from(refused("query", bad)),
            v4::Error::BadParameter(why) if why.starts_with("invalid UUID")
        ));
        let bad = Refused("invalid: invalid UUID x: ...".into());
        assert!(matches!(
            v4::Error::from(refused("execute", bad)),
            v4::Error::ValueConversionFailed(_)
        ));
        let gone = Refused("not_found: no PostgreSQL connection 3 is open in this call".into());
        assert!(matches!(
            v3::Error::from(refused("query", gone)),
            v3::Error::ConnectionFailed(why) if why == "no connection found"
        ));
        let jsonb = parameters4("query", vec![v4::ParameterValue::Jsonb(b"{".to_vec())]);
        assert!(
            matches!(jsonb, Err(Failure::BadParameter(why)) if why.starts_with("invalid JSON {"))
        );
        assert!(check_ca_root("not a certificate").is_err());
        assert!(
            check_ca_root("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").is_ok()
        );
    }
}
