//! PostgreSQL values as host calls carry them, in JSON: what the host (which talks to the
//! database) and the runtime (which hands them to Spin guests) agree on. The host-call
//! payloads are in `docs/host-calls.md`.

use serde::{Deserialize, Serialize};

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
    Binary(#[serde(with = "crate::base64_bytes")] Vec<u8>),
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
    Unsupported(#[serde(with = "crate::base64_bytes")] Vec<u8>),
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

/// An error the database reported, as Spin's `db-error` has it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DbError {
    /// The whole error as text (what Spin's earlier versions answer alone).
    pub text: String,
    /// `ERROR`, `FATAL`, ...
    pub severity: String,
    /// The SQLSTATE code (`42601`).
    pub code: String,
    /// The primary message.
    pub message: String,
    /// The detail, if any.
    pub detail: Option<String>,
    /// The other fields given (`hint`, `table`, `constraint`, ...).
    #[serde(default)]
    pub extras: Vec<(String, String)>,
}

impl PgValue {
    /// About how many bytes the value takes.
    pub fn size(&self) -> usize {
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
}
