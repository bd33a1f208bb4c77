//! A Spin HTTP component written with the Spin Rust SDK 7 that uses outbound PostgreSQL
//! (`spin:postgres/postgres@4.2.0`): the database at the component variable `pg_address`.
//!
//! - `GET /pg/types`: in a temporary table, inserts one row of every type Spin converts
//!   (with parameters), reads it back, and answers JSON: the statement's `rows_affected`,
//!   the `columns` (name and type), the `row` (each value as `{"kind": value}`), and
//!   `same_backend`: whether two queries on the connection ran in one server process;
//! - `GET /pg/error`: runs SQL the server refuses and answers the error (500);
//! - `GET /pg/bad-parameter`: passes a UUID parameter that is not one, answers the error;
//! - `GET /pg/open?address=A`: opens the address `A` and answers `opened`, or the error
//!   (403 when the allow-list refuses it).
//!
//! Errors are answered with their WIT case names (`query-failed`, `connection-failed`, ...).

use bytes::Bytes;
use serde_json::{Value as Json, json};
use spin_sdk::http::{FullBody, IntoResponse, Method, Request, Response};
use spin_sdk::http_service;
use spin_sdk::pg::{
    self, Connection, DbDataType, DbValue, ParameterValue, PgError, QueryError, RangeBoundKind,
};
use spin_sdk::variables;

/// Every response body here is complete in memory.
type Body = FullBody<Bytes>;

#[http_service]
async fn handle(req: Request) -> anyhow::Result<impl IntoResponse> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if method != Method::GET {
        return Ok(text(405, "method not allowed"));
    }
    let address = variables::get("pg_address").await?;
    Ok(match path.as_str() {
        "/pg/types" => match types(&address).await {
            Ok(json) => json_response(&json),
            Err(e) => text(500, &describe(&e)),
        },
        "/pg/error" => match refused(&address).await {
            Ok(()) => text(200, "the server took it"),
            Err(e) => text(500, &describe(&e)),
        },
        "/pg/bad-parameter" => match bad_parameter(&address).await {
            Ok(()) => text(200, "converted"),
            Err(e) => text(500, &describe(&e)),
        },
        "/pg/open" => {
            let Some(address) = param(&query, "address") else {
                return Ok(text(400, "missing ?address="));
            };
            match Connection::open(address).await {
                Ok(_) => text(200, "opened"),
                Err(e) => text(403, &describe(&e)),
            }
        }
        _ => text(404, "not found"),
    })
}

async fn types(address: &str) -> Result<Json, pg::Error> {
    let db = Connection::open(address).await?;
    db.execute(
        "CREATE TEMPORARY TABLE every_type (
            b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision,
            s text, c char(6), bin bytea, d date, t time, ts timestamp, u uuid, j jsonb,
            n numeric, r4 int4range, r8 int8range, rn numrange, a4 int4[], a8 int8[],
            an numeric[], astr text[], iv interval, nothing text)",
        [],
    )
    .await?;
    let inserted = db
        .execute(
            "INSERT INTO every_type VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
             $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24)",
            [
                ParameterValue::Boolean(true),
                ParameterValue::Int16(-7),
                ParameterValue::Int32(2_000_000_000),
                ParameterValue::Int64(-9_000_000_000_000),
                ParameterValue::Floating32(1.5),
                ParameterValue::Floating64(-0.25),
                ParameterValue::Str("héllo".into()),
                ParameterValue::Str("ab".into()),
                ParameterValue::Binary(vec![0, 1, 254, 255]),
                ParameterValue::Date((2024, 2, 29)),
                ParameterValue::Time((23, 59, 58, 123_456_000)),
                ParameterValue::Datetime((1999, 12, 31, 23, 59, 59, 500_000_000)),
                ParameterValue::Uuid("12345678-1234-5678-9abc-def012345678".into()),
                ParameterValue::Jsonb(br#"{"k": [1, "two", null]}"#.to_vec()),
                ParameterValue::Decimal("12345678901234.5678".into()),
                ParameterValue::RangeInt32((
                    Some((1, RangeBoundKind::Exclusive)),
                    Some((10, RangeBoundKind::Inclusive)),
                )),
                ParameterValue::RangeInt64((Some((5_000_000_000, RangeBoundKind::Inclusive)), None)),
                ParameterValue::RangeDecimal((
                    Some(("1.5".into(), RangeBoundKind::Inclusive)),
                    Some(("2.25".into(), RangeBoundKind::Exclusive)),
                )),
                ParameterValue::ArrayInt32(vec![Some(1), None, Some(3)]),
                ParameterValue::ArrayInt64(vec![Some(1 << 40)]),
                ParameterValue::ArrayDecimal(vec![Some("0.5".into()), None]),
                ParameterValue::ArrayStr(vec![Some("x".into()), None]),
                ParameterValue::Interval(pg::Interval {
                    micros: 3_600_000_000,
                    days: 2,
                    months: 14,
                }),
                ParameterValue::DbNull,
            ],
        )
        .await?;
    let result = db
        .query("SELECT *, '12.50'::money AS m FROM every_type", [])
        .await?;
    let columns: Vec<Json> = result
        .columns()
        .iter()
        .map(|c| json!([c.name, type_name(&c.data_type)]))
        .collect();
    let rows = result.collect().await?;
    let row: Vec<Json> = rows
        .first()
        .map(|row| {
            (0..columns.len())
                .map(|i| json_of(&row[i]))
                .collect()
        })
        .unwrap_or_default();
    let pid = "SELECT pg_backend_pid()";
    let first = db.query(pid, []).await?.collect().await?;
    let second = db.query(pid, []).await?.collect().await?;
    let same_backend = json_of(&first[0][0]) == json_of(&second[0][0]);
    Ok(json!({
        "rows_affected": inserted,
        "columns": columns,
        "row": row,
        "same_backend": same_backend,
    }))
}

async fn refused(address: &str) -> Result<(), pg::Error> {
    let db = Connection::open(address).await?;
    db.query("SELEC 1", []).await?.collect().await?;
    Ok(())
}

async fn bad_parameter(address: &str) -> Result<(), pg::Error> {
    let db = Connection::open(address).await?;
    let uuid = ParameterValue::Uuid("not-a-uuid".into());
    db.query("SELECT $1::uuid", [uuid]).await?.collect().await?;
    Ok(())
}

/// A value as `{"kind": value}`, `null` for SQL `NULL`.
fn json_of(value: &DbValue) -> Json {
    let kind = |k: RangeBoundKind| match k {
        RangeBoundKind::Inclusive => "inclusive",
        RangeBoundKind::Exclusive => "exclusive",
    };
    match value {
        DbValue::Boolean(v) => json!({ "boolean": v }),
        DbValue::Int8(v) => json!({ "int8": v }),
        DbValue::Int16(v) => json!({ "int16": v }),
        DbValue::Int32(v) => json!({ "int32": v }),
        DbValue::Int64(v) => json!({ "int64": v }),
        DbValue::Floating32(v) => json!({ "floating32": v }),
        DbValue::Floating64(v) => json!({ "floating64": v }),
        DbValue::Str(v) => json!({ "str": v }),
        DbValue::Binary(v) => json!({ "binary": v }),
        DbValue::Date(v) => json!({ "date": [v.0, v.1, v.2] }),
        DbValue::Time(v) => json!({ "time": [v.0, v.1, v.2, v.3] }),
        DbValue::Datetime(v) => json!({ "datetime": [v.0, v.1, v.2, v.3, v.4, v.5, v.6] }),
        DbValue::Timestamp(v) => json!({ "timestamp": v }),
        DbValue::Uuid(v) => json!({ "uuid": v }),
        DbValue::Jsonb(v) => json!({ "jsonb": String::from_utf8_lossy(v) }),
        DbValue::Decimal(v) => json!({ "decimal": v }),
        DbValue::RangeInt32((lo, hi)) => json!({ "range_int32": [
            lo.map(|(v, k)| json!([v, kind(k)])), hi.map(|(v, k)| json!([v, kind(k)]))
        ] }),
        DbValue::RangeInt64((lo, hi)) => json!({ "range_int64": [
            lo.map(|(v, k)| json!([v, kind(k)])), hi.map(|(v, k)| json!([v, kind(k)]))
        ] }),
        DbValue::RangeDecimal((lo, hi)) => json!({ "range_decimal": [
            lo.as_ref().map(|(v, k)| json!([v, kind(*k)])),
            hi.as_ref().map(|(v, k)| json!([v, kind(*k)]))
        ] }),
        DbValue::ArrayInt32(v) => json!({ "array_int32": v }),
        DbValue::ArrayInt64(v) => json!({ "array_int64": v }),
        DbValue::ArrayDecimal(v) => json!({ "array_decimal": v }),
        DbValue::ArrayStr(v) => json!({ "array_str": v }),
        DbValue::Interval(v) => {
            json!({ "interval": { "micros": v.micros, "days": v.days, "months": v.months } })
        }
        DbValue::DbNull => Json::Null,
        DbValue::Unsupported(v) => json!({ "unsupported": v }),
    }
}

/// A column type by its WIT case name (`other(NAME)` for the rest).
fn type_name(ty: &DbDataType) -> String {
    let name = match ty {
        DbDataType::Boolean => "boolean",
        DbDataType::Int8 => "int8",
        DbDataType::Int16 => "int16",
        DbDataType::Int32 => "int32",
        DbDataType::Int64 => "int64",
        DbDataType::Floating32 => "floating32",
        DbDataType::Floating64 => "floating64",
        DbDataType::Str => "str",
        DbDataType::Binary => "binary",
        DbDataType::Date => "date",
        DbDataType::Time => "time",
        DbDataType::Datetime => "datetime",
        DbDataType::Timestamp => "timestamp",
        DbDataType::Uuid => "uuid",
        DbDataType::Jsonb => "jsonb",
        DbDataType::Decimal => "decimal",
        DbDataType::RangeInt32 => "range-int32",
        DbDataType::RangeInt64 => "range-int64",
        DbDataType::RangeDecimal => "range-decimal",
        DbDataType::ArrayInt32 => "array-int32",
        DbDataType::ArrayInt64 => "array-int64",
        DbDataType::ArrayDecimal => "array-decimal",
        DbDataType::ArrayStr => "array-str",
        DbDataType::Interval => "interval",
        DbDataType::Other(name) => return format!("other({name})"),
    };
    name.to_owned()
}

/// An error by its WIT case name, with what it carries.
fn describe(e: &pg::Error) -> String {
    let e = match e {
        pg::Error::Decode(why) => return format!("decode: {why}"),
        pg::Error::PgError(e) => e,
    };
    match e {
        PgError::ConnectionFailed(why) => format!("connection-failed: {why}"),
        PgError::BadParameter(why) => format!("bad-parameter: {why}"),
        PgError::QueryFailed(QueryError::Text(why)) => format!("query-failed: text: {why}"),
        PgError::QueryFailed(QueryError::DbError(e)) => format!(
            "query-failed: db-error: severity={} code={} message={}",
            e.severity, e.code, e.message
        ),
        PgError::ValueConversionFailed(why) => format!("value-conversion-failed: {why}"),
        PgError::Other(why) => format!("other: {why}"),
    }
}

fn json_response(json: &Json) -> Response<Body> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::new(Bytes::from(json.to_string())))
        .unwrap()
}

fn text(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .body(Body::new(Bytes::from(body.to_owned())))
        .unwrap()
}

/// The first value of the query parameter `name`, percent-decoded (`+` is a space).
fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
