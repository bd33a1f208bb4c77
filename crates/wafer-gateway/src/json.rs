//! JSON bodies of typed calls, parsed within a budget of values.
//!
//! Anyone who can reach a function can send it a body of up to its `request_body` limit
//! (16 MiB by default). Parsed, JSON takes far more room than its text: `0,` is two bytes of
//! body and at least 32 bytes as a `serde_json::Value`, with more for the vectors that hold
//! it, so a 16 MiB array of small values took several hundred MiB per call. Parsing counts
//! values as it goes and stops at [`MAX_JSON_VALUES`], so a call's parsed arguments stay
//! within a few times the limit's worth of values, whatever the body holds.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The most JSON values the body of a typed call (a plain export's arguments, a component
/// function's arguments, a protobuf-described waPC operation's JSON input) may hold: every
/// number, string, boolean, null, array and object counts, at any depth, and so does each
/// key of an object. Fixed at 262,144 (2^18): a list of that many numbers takes at most about
/// 16 MiB parsed (as much as the default request body), while `[0,0,...]` in a 16 MiB body
/// holds 8 million. A body past it is refused with `400` before any instance is created.
/// (Nesting is bounded apart from this, at 128 levels.)
pub const MAX_JSON_VALUES: usize = 1 << 18;

/// Why a body was not parsed.
#[derive(Debug)]
pub(crate) enum JsonError {
    /// It holds more than [`MAX_JSON_VALUES`] values.
    TooLarge,
    /// It is not JSON, or not of the expected shape.
    Invalid(serde_json::Error),
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonError::TooLarge => write!(f, "{}", too_large()),
            JsonError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// The message for a body past the budget, naming the limit.
pub(crate) fn too_large() -> String {
    format!(
        "the JSON body holds more than {MAX_JSON_VALUES} values (numbers, strings, arrays, \
         objects and keys, at any depth), the most a typed call takes; send large data as a \
         string, or call the function with bytes"
    )
}

/// Values still allowed; once they run out, parsing stops.
struct Budget {
    left: Cell<usize>,
    exceeded: Cell<bool>,
}

impl Budget {
    fn new(values: usize) -> Self {
        Self {
            left: Cell::new(values),
            exceeded: Cell::new(false),
        }
    }

    /// Counts one value, or fails once the budget is spent.
    fn take<E: de::Error>(&self) -> Result<(), E> {
        match self.left.get().checked_sub(1) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => {
                self.exceeded.set(true);
                Err(E::custom(format_args!(
                    "more than {MAX_JSON_VALUES} values"
                )))
            }
        }
    }

    /// The outcome of a parse: a failure past the budget is [`JsonError::TooLarge`], whatever
    /// error the parser made of it.
    fn finish<T>(&self, parsed: Result<T, serde_json::Error>) -> Result<T, JsonError> {
        match parsed {
            Ok(value) => Ok(value),
            Err(_) if self.exceeded.get() => Err(JsonError::TooLarge),
            Err(e) => Err(JsonError::Invalid(e)),
        }
    }
}

/// Parses `body` (one JSON value, with nothing but whitespace after it) within
/// [`MAX_JSON_VALUES`].
pub(crate) fn parse(body: &[u8]) -> Result<Value, JsonError> {
    parse_within(body, MAX_JSON_VALUES)
}

fn parse_within(body: &[u8], values: usize) -> Result<Value, JsonError> {
    let budget = Budget::new(values);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = Build(&budget)
        .deserialize(&mut deserializer)
        .and_then(|value| deserializer.end().map(|()| value));
    budget.finish(parsed)
}

/// Checks that `body` holds at most [`MAX_JSON_VALUES`] values, keeping none of them: for a
/// body that another parser then turns straight into its own representation. A body that is
/// not JSON passes (that parser reports it in its own words); only one past the budget fails.
pub(crate) fn check(body: &[u8]) -> Result<(), JsonError> {
    check_within(body, MAX_JSON_VALUES)
}

fn check_within(body: &[u8], values: usize) -> Result<(), JsonError> {
    let budget = Budget::new(values);
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match budget.finish(Count(&budget).deserialize(&mut deserializer)) {
        Err(JsonError::TooLarge) => Err(JsonError::TooLarge),
        Ok(()) | Err(JsonError::Invalid(_)) => Ok(()),
    }
}

/// Builds a [`Value`], counting every value against the budget.
#[derive(Clone, Copy)]
struct Build<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Build<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.0.take()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Build<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.take()?;
            let value = map.next_value_seed(self)?;
            members.insert(key, value);
        }
        Ok(Value::Object(members))
    }
}

/// Walks a value without keeping it, counting every value (and key) against the budget.
#[derive(Clone, Copy)]
struct Count<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Count<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.0.take()?;
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Count<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_within_the_budget_parse_as_serde_json_parses_them() {
        let text = r#"{"a": [1, -2, 3.5, 18446744073709551615, "x\u00e9", true, null, {}, []],
                       "b": {"c": [[["deep"]]]}}"#;
        let expected: Value = serde_json::from_str(text).unwrap();
        assert_eq!(parse(text.as_bytes()).unwrap(), expected);
        assert!(check(text.as_bytes()).is_ok());
    }

    #[test]
    fn every_value_and_key_counts() {
        // [1, {"k": 2}]: the array, 1, the object, its key and 2.
        let text = br#"[1, {"k": 2}]"#;
        assert!(parse_within(text, 5).is_ok());
        assert!(matches!(parse_within(text, 4), Err(JsonError::TooLarge)));
        assert!(check_within(text, 5).is_ok());
        assert!(matches!(check_within(text, 4), Err(JsonError::TooLarge)));
    }

    #[test]
    fn a_body_past_the_budget_is_refused_naming_the_limit() {
        let mut body = b"[".to_vec();
        for _ in 0..MAX_JSON_VALUES {
            body.extend_from_slice(b"[],");
        }
        body.extend_from_slice(b"0]");
        let error = parse(&body).unwrap_err();
        assert!(matches!(error, JsonError::TooLarge), "{error}");
        assert!(
            error.to_string().contains(&MAX_JSON_VALUES.to_string()),
            "{error}"
        );
        assert!(matches!(check(&body), Err(JsonError::TooLarge)));
        // One value fewer fits: the outer array and MAX - 1 elements.
        let fits = format!("[{}0]", "0,".repeat(MAX_JSON_VALUES - 2));
        assert!(parse(fits.as_bytes()).is_ok());
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let error = parse(deep.as_bytes()).unwrap_err();
        assert!(
            error.to_string().contains("recursion limit exceeded"),
            "{error}"
        );
        assert!(check(deep.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_json_is_reported_as_such() {
        assert!(matches!(parse(b"[1, "), Err(JsonError::Invalid(_))));
        assert!(matches!(parse(b"[1] x"), Err(JsonError::Invalid(_))));
        // `check` leaves the words to the parser that follows.
        assert!(check(b"[1, ").is_ok());
    }
}
