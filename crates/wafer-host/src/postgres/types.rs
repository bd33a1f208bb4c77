//! PostgreSQL values as host calls carry them (JSON), and their conversions to and from the
//! client's Rust types, as Spin's host converts them (`spin-factor-outbound-pg`): the same
//! PostgreSQL types for the same values, `other`/`unsupported` for the rest.

use std::error::Error;

use bytes::{Buf as _, BufMut as _, BytesMut};
use chrono::{Datelike as _, Timelike as _};
use postgres_protocol::types as protocol;
use rust_decimal::Decimal;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};
use tokio_postgres::Row;
use wafer_abi::postgres::{Bound, DataType, Interval, PgValue, Range};

use crate::GuestError;

type BoxError = Box<dyn Error + Sync + Send>;

/// The type of a column of PostgreSQL type `ty`.
pub(crate) fn data_type(ty: &Type) -> DataType {
    match *ty {
        Type::BOOL => DataType::Boolean,
        Type::BYTEA => DataType::Binary,
        Type::FLOAT4 => DataType::Floating32,
        Type::FLOAT8 => DataType::Floating64,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DataType::Datetime,
        Type::DATE => DataType::Date,
        Type::TIME => DataType::Time,
        Type::UUID => DataType::Uuid,
        Type::JSONB => DataType::Jsonb,
        Type::NUMERIC => DataType::Decimal,
        Type::INT4_RANGE => DataType::RangeInt32,
        Type::INT8_RANGE => DataType::RangeInt64,
        Type::NUM_RANGE => DataType::RangeDecimal,
        Type::INT4_ARRAY => DataType::ArrayInt32,
        Type::INT8_ARRAY => DataType::ArrayInt64,
        Type::NUMERIC_ARRAY => DataType::ArrayDecimal,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DataType::ArrayStr,
        Type::INTERVAL => DataType::Interval,
        _ => DataType::Other(ty.name().to_owned()),
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
        PgValue::Interval(v) => Box::new(PgInterval(*v)),
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
        Type::INTERVAL => get(row, i, |v: PgInterval| Ok(PgValue::Interval(v.0))),
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

/// An `interval` in PostgreSQL's binary form.
#[derive(Debug)]
struct PgInterval(Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.put_i64(self.0.micros);
        out.put_i32(self.0.days);
        out.put_i32(self.0.months);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::INTERVAL
    }

    to_sql_checked!();
}

impl FromSql<'_> for PgInterval {
    fn from_sql(_: &Type, mut raw: &[u8]) -> Result<Self, BoxError> {
        if raw.len() != 16 {
            return Err("unexpected binary format for Postgres INTERVAL".into());
        }
        Ok(Self(Interval {
            micros: raw.get_i64(),
            days: raw.get_i32(),
            months: raw.get_i32(),
        }))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
