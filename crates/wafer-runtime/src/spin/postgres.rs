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
use wafer_abi::postgres::{Bound, Column, DataType, DbError, Interval, PgValue, Range};
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

/// What `query` and `execute` answer: rows, a count, or the database's error.
#[derive(Deserialize, Debug, Default)]
struct Answer {
    #[serde(default)]
    columns: Vec<Column>,
    #[serde(default)]
    rows: Vec<Vec<PgValue>>,
    rows_affected: Option<u64>,
    db_error: Option<DbError>,
}

/// Why a call failed, in the words of every version (4.x's, which the others narrow).
#[derive(Debug)]
enum Failure {
    Connection(String),
    BadParameter(String),
    Query(String, Option<Box<DbError>>),
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
    parameters: Vec<PgValue>,
) -> Result<Answer, Failure> {
    #[derive(Serialize)]
    struct Payload<'a> {
        connection: u64,
        statement: &'a str,
        parameters: Vec<PgValue>,
    }
    let payload = Payload {
        connection: id,
        statement,
        parameters,
    };
    // Written directly (not through a `serde_json::Value`, which would widen an f32).
    let payload = serde_json::to_vec(&payload).map_err(|e| Failure::Other(e.to_string()))?;
    let answer = host
        .call("postgres", operation, &payload)
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
    parameters: Vec<PgValue>,
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
    parameters: Vec<PgValue>,
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

fn bound4(b: Bound) -> v4::RangeBoundKind {
    match b {
        Bound::Inclusive => v4::RangeBoundKind::Inclusive,
        Bound::Exclusive => v4::RangeBoundKind::Exclusive,
    }
}

fn wire_bound(b: v4::RangeBoundKind) -> Bound {
    match b {
        v4::RangeBoundKind::Inclusive => Bound::Inclusive,
        v4::RangeBoundKind::Exclusive => Bound::Exclusive,
    }
}

type Range4<T> = (
    Option<(T, v4::RangeBoundKind)>,
    Option<(T, v4::RangeBoundKind)>,
);

fn range4<T>((lower, upper): Range<T>) -> Range4<T> {
    let bound = |b: Option<(T, Bound)>| b.map(|(v, k)| (v, bound4(k)));
    (bound(lower), bound(upper))
}

fn wire_range<T>((lower, upper): Range4<T>) -> Range<T> {
    let bound = |b: Option<(T, v4::RangeBoundKind)>| b.map(|(v, k)| (v, wire_bound(k)));
    (bound(lower), bound(upper))
}

/// A 4.x parameter for the host; `jsonb` must be JSON (else the error Spin gives, as
/// `BadParameter` text).
fn wire4(value: v4::ParameterValue) -> Result<PgValue, String> {
    use v4::ParameterValue as P;
    Ok(match value {
        P::Boolean(v) => PgValue::Boolean(v),
        P::Int8(v) => PgValue::Int8(v),
        P::Int16(v) => PgValue::Int16(v),
        P::Int32(v) => PgValue::Int32(v),
        P::Int64(v) => PgValue::Int64(v),
        P::Floating32(v) => PgValue::Floating32(v),
        P::Floating64(v) => PgValue::Floating64(v),
        P::Str(v) => PgValue::Str(v),
        P::Binary(v) => PgValue::Binary(v),
        P::Date(v) => PgValue::Date(v),
        P::Time(v) => PgValue::Time(v),
        P::Datetime(v) => PgValue::Datetime(v),
        P::Timestamp(v) => PgValue::Timestamp(v),
        P::Uuid(v) => PgValue::Uuid(v),
        P::Jsonb(v) => PgValue::Jsonb(
            serde_json::from_slice(&v)
                .map_err(|e| format!("invalid JSON {}: {e}", String::from_utf8_lossy(&v)))?,
        ),
        P::Decimal(v) => PgValue::Decimal(v),
        P::RangeInt32(v) => PgValue::RangeInt32(wire_range(v)),
        P::RangeInt64(v) => PgValue::RangeInt64(wire_range(v)),
        P::RangeDecimal(v) => PgValue::RangeDecimal(wire_range(v)),
        P::ArrayInt32(v) => PgValue::ArrayInt32(v),
        P::ArrayInt64(v) => PgValue::ArrayInt64(v),
        P::ArrayDecimal(v) => PgValue::ArrayDecimal(v),
        P::ArrayStr(v) => PgValue::ArrayStr(v),
        P::Interval(v) => PgValue::Interval(Interval {
            micros: v.micros,
            days: v.days,
            months: v.months,
        }),
        P::DbNull => PgValue::Null(()),
    })
}

/// 4.x parameters for the host, or the failure of `operation` Spin gives for a bad one.
fn parameters4(operation: &str, values: Vec<v4::ParameterValue>) -> Result<Vec<PgValue>, Failure> {
    values
        .into_iter()
        .map(wire4)
        .collect::<Result<_, _>>()
        .map_err(|why| match operation {
            "execute" => Failure::Conversion(why),
            _ => Failure::BadParameter(why),
        })
}

fn wire3(value: v3::ParameterValue) -> PgValue {
    use v3::ParameterValue as P;
    match value {
        P::Boolean(v) => PgValue::Boolean(v),
        P::Int8(v) => PgValue::Int8(v),
        P::Int16(v) => PgValue::Int16(v),
        P::Int32(v) => PgValue::Int32(v),
        P::Int64(v) => PgValue::Int64(v),
        P::Floating32(v) => PgValue::Floating32(v),
        P::Floating64(v) => PgValue::Floating64(v),
        P::Str(v) => PgValue::Str(v),
        P::Binary(v) => PgValue::Binary(v),
        P::Date(v) => PgValue::Date(v),
        P::Time(v) => PgValue::Time(v),
        P::Datetime(v) => PgValue::Datetime(v),
        P::Timestamp(v) => PgValue::Timestamp(v),
        P::DbNull => PgValue::Null(()),
    }
}

/// A 2.0 parameter; PostgreSQL has no unsigned integers (Spin's error).
fn wire2(value: v2t::ParameterValue) -> Result<PgValue, Failure> {
    use v2t::ParameterValue as P;
    Ok(match value {
        P::Boolean(v) => PgValue::Boolean(v),
        P::Int8(v) => PgValue::Int8(v),
        P::Int16(v) => PgValue::Int16(v),
        P::Int32(v) => PgValue::Int32(v),
        P::Int64(v) => PgValue::Int64(v),
        P::Uint8(_) | P::Uint16(_) | P::Uint32(_) | P::Uint64(_) => {
            return Err(Failure::Conversion(
                "Postgres does not support unsigned integers".into(),
            ))
        }
        P::Floating32(v) => PgValue::Floating32(v),
        P::Floating64(v) => PgValue::Floating64(v),
        P::Str(v) => PgValue::Str(v),
        P::Binary(v) => PgValue::Binary(v),
        P::DbNull => PgValue::Null(()),
    })
}

impl From<PgValue> for v4::DbValue {
    fn from(value: PgValue) -> Self {
        match value {
            PgValue::Boolean(v) => Self::Boolean(v),
            PgValue::Int8(v) => Self::Int8(v),
            PgValue::Int16(v) => Self::Int16(v),
            PgValue::Int32(v) => Self::Int32(v),
            PgValue::Int64(v) => Self::Int64(v),
            PgValue::Floating32(v) => Self::Floating32(v),
            PgValue::Floating64(v) => Self::Floating64(v),
            PgValue::Str(v) => Self::Str(v),
            PgValue::Binary(v) => Self::Binary(v),
            PgValue::Date(v) => Self::Date(v),
            PgValue::Time(v) => Self::Time(v),
            PgValue::Datetime(v) => Self::Datetime(v),
            PgValue::Timestamp(v) => Self::Timestamp(v),
            PgValue::Uuid(v) => Self::Uuid(v),
            // Spin's bytes for a `jsonb`: the value serialized again.
            PgValue::Jsonb(v) => Self::Jsonb(v.to_string().into_bytes()),
            PgValue::Decimal(v) => Self::Decimal(v),
            PgValue::RangeInt32(v) => Self::RangeInt32(range4(v)),
            PgValue::RangeInt64(v) => Self::RangeInt64(range4(v)),
            PgValue::RangeDecimal(v) => Self::RangeDecimal(range4(v)),
            PgValue::ArrayInt32(v) => Self::ArrayInt32(v),
            PgValue::ArrayInt64(v) => Self::ArrayInt64(v),
            PgValue::ArrayDecimal(v) => Self::ArrayDecimal(v),
            PgValue::ArrayStr(v) => Self::ArrayStr(v),
            PgValue::Interval(v) => Self::Interval(v4::Interval {
                micros: v.micros,
                days: v.days,
                months: v.months,
            }),
            PgValue::Unsupported(v) => Self::Unsupported(v),
            PgValue::Null(()) => Self::DbNull,
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

impl From<Column> for v4::Column {
    fn from(column: Column) -> Self {
        use v4::DbDataType as D;
        let data_type = match column.data_type {
            DataType::Boolean => D::Boolean,
            DataType::Int8 => D::Int8,
            DataType::Int16 => D::Int16,
            DataType::Int32 => D::Int32,
            DataType::Int64 => D::Int64,
            DataType::Floating32 => D::Floating32,
            DataType::Floating64 => D::Floating64,
            DataType::Str => D::Str,
            DataType::Binary => D::Binary,
            DataType::Date => D::Date,
            DataType::Time => D::Time,
            DataType::Datetime => D::Datetime,
            DataType::Timestamp => D::Timestamp,
            DataType::Uuid => D::Uuid,
            DataType::Jsonb => D::Jsonb,
            DataType::Decimal => D::Decimal,
            DataType::RangeInt32 => D::RangeInt32,
            DataType::RangeInt64 => D::RangeInt64,
            DataType::RangeDecimal => D::RangeDecimal,
            DataType::ArrayInt32 => D::ArrayInt32,
            DataType::ArrayInt64 => D::ArrayInt64,
            DataType::ArrayDecimal => D::ArrayDecimal,
            DataType::ArrayStr => D::ArrayStr,
            DataType::Interval => D::Interval,
            DataType::Other(name) => D::Other(name),
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
        parameters: Result<Vec<PgValue>, Failure>,
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
        parameters: Result<Vec<PgValue>, Failure>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The host's format (`wafer_host::postgres::types`' test pins the same text).
    #[test]
    fn values_travel_as_the_host_writes_them() {
        let json = r#"[null,{"int32":-3},{"floating32":7.8},{"floating64":"NaN"},{"floating64":"-Infinity"},{"str":"hi"},{"binary":"AP8="},{"date":[2024,2,29]},{"jsonb":{"a":[1,null]}},{"range_int64":[[5,"inclusive"],null]},{"array_str":["a",null]},{"interval":{"micros":1,"days":2,"months":3}}]"#;
        let values: Vec<PgValue> = serde_json::from_str(json).unwrap();
        assert!(matches!(values[3], PgValue::Floating64(x) if x.is_nan()));
        let db: Vec<v4::DbValue> = values.iter().cloned().map(Into::into).collect();
        assert!(matches!(db[0], v4::DbValue::DbNull));
        assert!(matches!(db[2], v4::DbValue::Floating32(x) if x == 7.8));
        assert!(matches!(&db[8], v4::DbValue::Jsonb(b) if b == br#"{"a":[1,null]}"#));
        assert!(matches!(
            db[9],
            v4::DbValue::RangeInt64((Some((5, v4::RangeBoundKind::Inclusive)), None))
        ));
        // Back to the same text.
        assert_eq!(serde_json::to_string(&values).unwrap(), json);
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
