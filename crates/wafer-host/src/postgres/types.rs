//! PostgreSQL values as host calls carry them (JSON), and their conversions to and from the
//! client's Rust types, as Spin's host converts them (`spin-factor-outbound-pg`): the same
//! PostgreSQL types for the same values, `other`/`unsupported` for the rest.

use std::error::Error;

use bytes::{Buf as _, BufMut as _, BytesMut};
use chrono::{Datelike as _, Timelike as _};
use postgres_protocol::types as protocol;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::Row;

use crate::GuestError;

type BoxError = Box<dyn Error + Sync + Send>;

/// A value of a parameter or a result, as JSON: `null`, or an object with one field naming
/// its kind (`{"int32": 7}`, `{"str": "a"}`, `{"date": [2024, 2, 29]}`, ...). Bytes are
/// base64; a float that is not finite is `"NaN"`, `"Infinity"` or `"-Infinity"`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PgValue {
    /// `boolean`
    Boolean(bool),
    /// `"char"` (a one-byte integer)
    Int8(i8),
    /// `smallint`
    Int16(i16),
    /// `integer`
    Int32(i32),
    /// `bigint`
    Int64(i64),
    /// `real`
    Floating32(#[serde(with = "float")] f32),
    /// `double precision`
    Floating64(#[serde(with = "float")] f64),
    /// `text`, `varchar`, `char(n)`
    Str(String),
    /// `bytea`, base64
    Binary(#[serde(with = "base64_bytes")] Vec<u8>),
    /// `date`: year, month, day
    Date((i32, u8, u8)),
    /// `time`: hour, minute, second, nanosecond
    Time((u8, u8, u8, u32)),
    /// `timestamp` (and `timestamptz`, in UTC): year, month, day, hour, minute, second,
    /// nanosecond
    Datetime((i32, u8, u8, u8, u8, u8, u32)),
    /// `timestamptz`, as seconds since the Unix epoch (a parameter only)
    Timestamp(i64),
    /// `uuid`, as text
    Uuid(String),
    /// `jsonb`, the JSON value itself
    Jsonb(serde_json::Value),
    /// `numeric`, as decimal text
    Decimal(String),
    /// `int4range`
    RangeInt32(Range<i32>),
    /// `int8range`
    RangeInt64(Range<i64>),
    /// `numrange`, bounds as decimal text
    RangeDecimal(Range<String>),
    /// `integer[]`
    ArrayInt32(Vec<Option<i32>>),
    /// `bigint[]`
    ArrayInt64(Vec<Option<i64>>),
    /// `numeric[]`, as decimal text
    ArrayDecimal(Vec<Option<String>>),
    /// `text[]`, `varchar[]`, `char(n)[]`
    ArrayStr(Vec<Option<String>>),
    /// `interval`
    Interval(Interval),
    /// A value of any other type, in PostgreSQL's binary form, base64 (a result only).
    Unsupported(#[serde(with = "base64_bytes")] Vec<u8>),
    /// SQL `NULL`.
    #[serde(untagged)]
    Null(()),
}

/// A range's lower and upper bounds, each a value and its kind, or `null` for none.
pub type Range<T> = (Option<(T, Bound)>, Option<(T, Bound)>);

/// Whether a range's bound is in the range.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Bound {
    /// `[` or `]`
    Inclusive,
    /// `(` or `)`
    Exclusive,
}

/// An `interval`, as PostgreSQL keeps it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    /// Microseconds.
    pub micros: i64,
    /// Days.
    pub days: i32,
    /// Months.
    pub months: i32,
}

/// A result's column.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type.
    #[serde(rename = "type")]
    pub data_type: DataType,
}

/// A column's type, as Spin names it (`"int32"`, `"str"`, ...), `{"other": NAME}` for the
/// rest.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum DataType {
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

impl DataType {
    /// The type of a column of PostgreSQL type `ty`.
    pub(crate) fn of(ty: &Type) -> Self {
        match *ty {
            Type::BOOL => Self::Boolean,
            Type::BYTEA => Self::Binary,
            Type::FLOAT4 => Self::Floating32,
            Type::FLOAT8 => Self::Floating64,
            Type::INT2 => Self::Int16,
            Type::INT4 => Self::Int32,
            Type::INT8 => Self::Int64,
            Type::TEXT | Type::VARCHAR | Type::BPCHAR => Self::Str,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Self::Datetime,
            Type::DATE => Self::Date,
            Type::TIME => Self::Time,
            Type::UUID => Self::Uuid,
            Type::JSONB => Self::Jsonb,
            Type::NUMERIC => Self::Decimal,
            Type::INT4_RANGE => Self::RangeInt32,
            Type::INT8_RANGE => Self::RangeInt64,
            Type::NUM_RANGE => Self::RangeDecimal,
            Type::INT4_ARRAY => Self::ArrayInt32,
            Type::INT8_ARRAY => Self::ArrayInt64,
            Type::NUMERIC_ARRAY => Self::ArrayDecimal,
            Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => Self::ArrayStr,
            Type::INTERVAL => Self::Interval,
            _ => Self::Other(ty.name().to_owned()),
        }
    }
}

impl PgValue {
    /// About how many bytes the value takes.
    pub(crate) fn size(&self) -> usize {
        let text = |s: &Option<String>| s.as_ref().map_or(0, String::len) + 8;
        16 + match self {
            Self::Str(s) | Self::Uuid(s) | Self::Decimal(s) => s.len(),
            Self::Binary(b) | Self::Unsupported(b) => b.len(),
            Self::Jsonb(j) => j.to_string().len(),
            Self::RangeDecimal((lower, upper)) => {
                lower.as_ref().map_or(0, |b| b.0.len()) + upper.as_ref().map_or(0, |b| b.0.len())
            }
            Self::ArrayInt32(a) => a.len() * 8,
            Self::ArrayInt64(a) => a.len() * 16,
            Self::ArrayDecimal(a) | Self::ArrayStr(a) => a.iter().map(text).sum(),
            _ => 16,
        }
    }
}

/// The client's values for `parameters`; a value that does not convert is `invalid`.
pub(crate) fn to_sql(
    parameters: &[PgValue],
) -> Result<Vec<Box<dyn ToSql + Send + Sync>>, GuestError> {
    parameters
        .iter()
        .map(|value| parameter(value).map_err(GuestError::Invalid))
        .collect()
}

fn parameter(value: &PgValue) -> Result<Box<dyn ToSql + Send + Sync>, String> {
    Ok(match value {
        PgValue::Boolean(v) => Box::new(*v),
        PgValue::Int8(v) => Box::new(*v),
        PgValue::Int16(v) => Box::new(*v),
        PgValue::Int32(v) => Box::new(*v),
        PgValue::Int64(v) => Box::new(*v),
        PgValue::Floating32(v) => Box::new(*v),
        PgValue::Floating64(v) => Box::new(*v),
        PgValue::Str(v) => Box::new(v.clone()),
        PgValue::Binary(v) => Box::new(v.clone()),
        PgValue::Date(v) => Box::new(date(*v)?),
        PgValue::Time(v) => Box::new(time(*v)?),
        PgValue::Datetime((y, mo, d, h, mi, s, ns)) => Box::new(chrono::NaiveDateTime::new(
            date((*y, *mo, *d))?,
            time((*h, *mi, *s, *ns))?,
        )),
        PgValue::Timestamp(v) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(*v, 0)
                .ok_or_else(|| format!("invalid epoch timestamp {v}"))?,
        ),
        PgValue::Uuid(v) => {
            Box::new(uuid::Uuid::parse_str(v).map_err(|e| format!("invalid UUID {v}: {e}"))?)
        }
        PgValue::Jsonb(v) => Box::new(v.clone()),
        PgValue::Decimal(v) => Box::new(decimal(v)?),
        PgValue::RangeInt32(r) => Box::new(PgRange::from(*r)),
        PgValue::RangeInt64(r) => Box::new(PgRange::from(*r)),
        PgValue::RangeDecimal((lower, upper)) => {
            let bound = |b: &Option<(String, Bound)>| -> Result<_, String> {
                b.as_ref()
                    .map(|(v, kind)| Ok((decimal(v)?, *kind)))
                    .transpose()
            };
            Box::new(PgRange {
                lower: bound(lower)?,
                upper: bound(upper)?,
            })
        }
        PgValue::ArrayInt32(v) => Box::new(v.clone()),
        PgValue::ArrayInt64(v) => Box::new(v.clone()),
        PgValue::ArrayDecimal(v) => Box::new(
            v.iter()
                .map(|d| d.as_deref().map(decimal).transpose())
                .collect::<Result<Vec<_>, _>>()?,
        ),
        PgValue::ArrayStr(v) => Box::new(v.clone()),
        PgValue::Interval(v) => Box::new(*v),
        PgValue::Null(()) => Box::new(PgNull),
        PgValue::Unsupported(_) => return Err("`unsupported` is a result, not a parameter".into()),
    })
}

fn date((y, m, d): (i32, u8, u8)) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::from_ymd_opt(y, m.into(), d.into())
        .ok_or_else(|| format!("invalid date y={y}, m={m}, d={d}"))
}

fn time((h, m, s, ns): (u8, u8, u8, u32)) -> Result<chrono::NaiveTime, String> {
    chrono::NaiveTime::from_hms_nano_opt(h.into(), m.into(), s.into(), ns)
        .ok_or_else(|| format!("invalid time {h}:{m}:{s}:{ns}"))
}

fn decimal(text: &str) -> Result<Decimal, String> {
    Decimal::from_str_exact(text).map_err(|e| format!("invalid decimal {text}: {e}"))
}

/// A row's values; one that does not convert fails the statement (in the client's words).
pub(crate) fn row(row: &Row) -> Result<Vec<PgValue>, GuestError> {
    (0..row.len())
        .map(|i| entry(row, i).map_err(|e| GuestError::Failed(format!("{e:?}"))))
        .collect()
}

/// Reads column `i` as `T`, `NULL` as [`PgValue::Null`].
fn get<'a, T: FromSql<'a>>(
    row: &'a Row,
    i: usize,
    convert: impl FnOnce(T) -> Result<PgValue, BoxError>,
) -> Result<PgValue, BoxError> {
    match row.try_get::<_, Option<T>>(i)? {
        Some(value) => convert(value),
        None => Ok(PgValue::Null(())),
    }
}

fn entry(row: &Row, i: usize) -> Result<PgValue, BoxError> {
    let Some(column) = row.columns().get(i) else {
        return Err(format!("no column {i}").into());
    };
    let narrow = |n: u32| u8::try_from(n).map_err(|e| Box::new(e) as BoxError);
    let datetime = |v: chrono::NaiveDateTime| -> Result<PgValue, BoxError> {
        Ok(PgValue::Datetime((
            v.year(),
            narrow(v.month())?,
            narrow(v.day())?,
            narrow(v.hour())?,
            narrow(v.minute())?,
            narrow(v.second())?,
            v.nanosecond(),
        )))
    };
    let decimal_bound = |b: Option<(Decimal, Bound)>| b.map(|(d, kind)| (d.to_string(), kind));
    match *column.type_() {
        Type::BOOL => get(row, i, |v| Ok(PgValue::Boolean(v))),
        Type::BYTEA => get(row, i, |v| Ok(PgValue::Binary(v))),
        Type::FLOAT4 => get(row, i, |v| Ok(PgValue::Floating32(v))),
        Type::FLOAT8 => get(row, i, |v| Ok(PgValue::Floating64(v))),
        Type::INT2 => get(row, i, |v| Ok(PgValue::Int16(v))),
        Type::INT4 => get(row, i, |v| Ok(PgValue::Int32(v))),
        Type::INT8 => get(row, i, |v| Ok(PgValue::Int64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, |v| Ok(PgValue::Str(v))),
        Type::TIMESTAMP => get(row, i, datetime),
        // Spin names the type but cannot read it; here it is the time in UTC.
        Type::TIMESTAMPTZ => get(row, i, |v: chrono::DateTime<chrono::Utc>| {
            datetime(v.naive_utc())
        }),
        Type::DATE => get(row, i, |v: chrono::NaiveDate| {
            Ok(PgValue::Date((
                v.year(),
                narrow(v.month())?,
                narrow(v.day())?,
            )))
        }),
        Type::TIME => get(row, i, |v: chrono::NaiveTime| {
            Ok(PgValue::Time((
                narrow(v.hour())?,
                narrow(v.minute())?,
                narrow(v.second())?,
                v.nanosecond(),
            )))
        }),
        Type::UUID => get(row, i, |v: uuid::Uuid| Ok(PgValue::Uuid(v.to_string()))),
        Type::JSONB => get(row, i, |v| Ok(PgValue::Jsonb(v))),
        Type::NUMERIC => get(row, i, |v: Decimal| Ok(PgValue::Decimal(v.to_string()))),
        Type::INT4_RANGE => get(row, i, |r: PgRange<i32>| {
            Ok(PgValue::RangeInt32((r.lower, r.upper)))
        }),
        Type::INT8_RANGE => get(row, i, |r: PgRange<i64>| {
            Ok(PgValue::RangeInt64((r.lower, r.upper)))
        }),
        Type::NUM_RANGE => get(row, i, |r: PgRange<Decimal>| {
            Ok(PgValue::RangeDecimal((
                decimal_bound(r.lower),
                decimal_bound(r.upper),
            )))
        }),
        Type::INT4_ARRAY => get(row, i, |v| Ok(PgValue::ArrayInt32(v))),
        Type::INT8_ARRAY => get(row, i, |v| Ok(PgValue::ArrayInt64(v))),
        Type::NUMERIC_ARRAY => get(row, i, |v: Vec<Option<Decimal>>| {
            Ok(PgValue::ArrayDecimal(
                v.into_iter().map(|d| d.map(|d| d.to_string())).collect(),
            ))
        }),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => {
            get(row, i, |v| Ok(PgValue::ArrayStr(v)))
        }
        Type::INTERVAL => get(row, i, |v| Ok(PgValue::Interval(v))),
        _ => get(row, i, |v: Other| Ok(PgValue::Unsupported(v.0))),
    }
}

/// SQL `NULL` for a parameter of any type. (`Option::None` would be typed, and refused
/// where the type differs.)
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn to_sql_checked(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, BoxError> {
        Ok(IsNull::Yes)
    }
}

/// A value of a type without a conversion: its bytes as the server sent them.
struct Other(Vec<u8>);

impl FromSql<'_> for Other {
    fn from_sql(_: &Type, raw: &[u8]) -> Result<Self, BoxError> {
        Ok(Self(raw.to_owned()))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

impl ToSql for Interval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.micros);
        out.put_i32(self.days);
        out.put_i32(self.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

impl FromSql<'_> for Interval {
    fn from_sql(_: &Type, mut raw: &[u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err("unexpected binary format for Postgres INTERVAL".into());
        }
        Ok(Self {
            micros: raw.get_i64(),
            days: raw.get_i32(),
            months: raw.get_i32(),
        })
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }
}

/// A range of any element type, its bounds sent as given (the server normalises discrete
/// ranges) and read as the server sends them. An empty range reads as no bounds, as in Spin.
#[derive(Debug)]
struct PgRange<T> {
    lower: Option<(T, Bound)>,
    upper: Option<(T, Bound)>,
}

impl<T> From<Range<T>> for PgRange<T> {
    fn from((lower, upper): Range<T>) -> Self {
        Self { lower, upper }
    }
}

fn element(ty: &Type) -> Result<&Type, BoxError> {
    match ty.kind() {
        Kind::Range(element) => Ok(element),
        _ => Err(format!("{ty} is not a range type").into()),
    }
}

impl<T: ToSql> ToSql for PgRange<T> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let element = element(ty)?;
        let bound = |bound: &Option<(T, Bound)>, buf: &mut BytesMut| {
            let Some((value, kind)) = bound else {
                return Ok(protocol::RangeBound::Unbounded);
            };
            let null = match value.to_sql(element, buf)? {
                IsNull::Yes => postgres_protocol::IsNull::Yes,
                IsNull::No => postgres_protocol::IsNull::No,
            };
            Ok(match kind {
                Bound::Inclusive => protocol::RangeBound::Inclusive(null),
                Bound::Exclusive => protocol::RangeBound::Exclusive(null),
            })
        };
        protocol::range_to_sql(
            |buf| bound(&self.lower, buf),
            |buf| bound(&self.upper, buf),
            out,
        )?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Range(element) if T::accepts(element))
    }

    to_sql_checked!();
}

impl<'a, T: FromSql<'a>> FromSql<'a> for PgRange<T> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let element = element(ty)?;
        let bound = |bound: protocol::RangeBound<Option<&'a [u8]>>| -> Result<_, BoxError> {
            let (raw, kind) = match bound {
                protocol::RangeBound::Inclusive(raw) => (raw, Bound::Inclusive),
                protocol::RangeBound::Exclusive(raw) => (raw, Bound::Exclusive),
                protocol::RangeBound::Unbounded => return Ok(None),
            };
            let value = match raw {
                Some(raw) => T::from_sql(element, raw)?,
                None => T::from_sql_null(element)?,
            };
            Ok(Some((value, kind)))
        };
        match protocol::range_from_sql(raw)? {
            protocol::Range::Empty => Ok(Self {
                lower: None,
                upper: None,
            }),
            protocol::Range::Nonempty(lower, upper) => Ok(Self {
                lower: bound(lower)?,
                upper: bound(upper)?,
            }),
        }
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Range(element) if T::accepts(element))
    }
}

/// Floats as JSON numbers, and the values JSON has no number for as text.
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

    #[test]
    fn values_travel_as_json() {
        let values = vec![
            PgValue::Null(()),
            PgValue::Int32(-3),
            PgValue::Floating32(7.8),
            PgValue::Floating64(f64::NAN),
            PgValue::Floating64(f64::NEG_INFINITY),
            PgValue::Str("hi".into()),
            PgValue::Binary(vec![0, 255]),
            PgValue::Date((2024, 2, 29)),
            PgValue::Jsonb(serde_json::json!({"a": [1, null]})),
            PgValue::RangeInt64((Some((5, Bound::Inclusive)), None)),
            PgValue::ArrayStr(vec![Some("a".into()), None]),
            PgValue::Interval(Interval {
                micros: 1,
                days: 2,
                months: 3,
            }),
        ];
        let json = serde_json::to_string(&values).unwrap();
        assert_eq!(
            json,
            r#"[null,{"int32":-3},{"floating32":7.8},{"floating64":"NaN"},{"floating64":"-Infinity"},{"str":"hi"},{"binary":"AP8="},{"date":[2024,2,29]},{"jsonb":{"a":[1,null]}},{"range_int64":[[5,"inclusive"],null]},{"array_str":["a",null]},{"interval":{"micros":1,"days":2,"months":3}}]"#
        );
        let back: Vec<PgValue> = serde_json::from_str(&json).unwrap();
        assert!(matches!(back[3], PgValue::Floating64(x) if x.is_nan()));
        assert_eq!(back[4..], values[4..]);
        assert_eq!(back[..3], values[..3]);
        let types = serde_json::to_string(&[DataType::Int32, DataType::Other("money".into())]);
        assert_eq!(types.unwrap(), r#"["int32",{"other":"money"}]"#);
    }

    #[test]
    fn parameters_a_guest_gets_wrong_are_invalid_not_a_panic() {
        for (value, why) in [
            (PgValue::Date((2023, 2, 29)), "invalid date"),
            (PgValue::Time((24, 0, 0, 0)), "invalid time"),
            (PgValue::Uuid("nope".into()), "invalid UUID nope"),
            (PgValue::Decimal("1.2.3".into()), "invalid decimal"),
            (PgValue::Timestamp(i64::MAX), "invalid epoch timestamp"),
            (
                PgValue::ArrayDecimal(vec![Some("x".into())]),
                "invalid decimal x",
            ),
            (PgValue::Unsupported(vec![]), "not a parameter"),
        ] {
            let Err(GuestError::Invalid(e)) = to_sql(&[value]) else {
                panic!("{why}: converted");
            };
            assert!(e.contains(why), "{e}");
        }
        // Bounds at the edge of the type go to the server as given (it answers), not through
        // a normalisation that could overflow.
        let edge = PgValue::RangeInt32((None, Some((i32::MAX, Bound::Inclusive))));
        let mut out = BytesMut::new();
        let converted = to_sql(&[edge]).unwrap();
        converted[0]
            .to_sql_checked(&Type::INT4_RANGE, &mut out)
            .unwrap();
        assert!(converted[0].to_sql_checked(&Type::INT4, &mut out).is_err());
    }
}
