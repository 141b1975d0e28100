//! JSON read as serde_json reads it, except that an object that names a key
//! twice is refused, with the key and its line and column.

use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a text is not a metadata document's JSON.
pub(super) enum StrictError {
    /// Not JSON at all, or beyond serde_json's limits.
    Json(serde_json::Error),
    /// Valid JSON whose object names `key` twice; the position is where the
    /// parser stopped, right after the second one.
    RepeatedKey {
        key: String,
        line: usize,
        column: usize,
    },
}

/// Parses `text` as one JSON document, refusing repeated object keys.
pub(super) fn from_str(text: &str) -> Result<Value, StrictError> {
    let repeated = RefCell::new(None);
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let parsed = StrictValue {
        repeated: &repeated,
    }
    .deserialize(&mut deserializer)
    .and_then(|value| deserializer.end().map(|()| value));
    parsed.map_err(|error| match repeated.into_inner() {
        Some(key) => StrictError::RepeatedKey {
            key,
            line: error.line(),
            column: error.column(),
        },
        None => StrictError::Json(error),
    })
}

/// A JSON value read with repeated object keys refused. serde_json keeps the
/// last of two equal keys without a word, and a file with two `beamline` values
/// means one thing to this parser and maybe another to the facility's tools or a
/// person reading it: the start script never writes one, so it is refused.
/// The repeated key is kept aside, so that it is reported as what it is, not
/// as a damaged file.
#[derive(Clone, Copy)]
struct StrictValue<'r> {
    repeated: &'r RefCell<Option<String>>,
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
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

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                // The text is only for serde's error, which carries the position;
                // from_str reports the key kept here.
                *self.repeated.borrow_mut() = Some(key);
                return Err(de::Error::custom("repeated key"));
            }
            let value = map.next_value_seed(self)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}
