//! Reading event contents at the edge: every field by its dotted path, so a shape error names
//! exactly what is missing or mistyped (serde's messages name only the last key). Unknown
//! fields are ignored, as Matrix event contents gain fields over time.

use serde_json::{Map, Value};

use crate::error::Error;

/// The largest integer canonical JSON carries (2^53 − 1); Matrix refuses events beyond it.
pub const MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// A JSON object being read, with the path that leads to it.
pub(crate) struct Object<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Object<'a> {
    /// The top-level content of an event (its fields have no prefix).
    pub(crate) fn root(value: &'a Value, what: &str) -> Result<Self, Error> {
        match value {
            Value::Object(map) => Ok(Object { map, path: String::new() }),
            _ => Err(Error::shape(what, "must be a JSON object")),
        }
    }

    /// The dotted path of one of this object's fields.
    pub(crate) fn path(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    fn get(&self, key: &str) -> Result<&'a Value, Error> {
        self.map.get(key).ok_or_else(|| Error::shape(self.path(key), "is missing"))
    }

    /// The object itself, for content kept as JSON (a FHIR resource).
    pub(crate) fn map(&self) -> &'a Map<String, Value> {
        self.map
    }

    /// Whether the field is there (with any value, null included).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub(crate) fn string(&self, key: &str) -> Result<&'a str, Error> {
        self.get(key)?.as_str().ok_or_else(|| Error::shape(self.path(key), "must be a string"))
    }

    /// A field that may be absent; present, it must be a string.
    pub(crate) fn optional_string(&self, key: &str) -> Result<Option<&'a str>, Error> {
        if !self.has(key) {
            return Ok(None);
        }
        self.string(key).map(Some)
    }

    pub(crate) fn object(&self, key: &str) -> Result<Object<'a>, Error> {
        match self.get(key)? {
            Value::Object(map) => Ok(Object { map, path: self.path(key) }),
            _ => Err(Error::shape(self.path(key), "must be a JSON object")),
        }
    }

    /// A field that may be absent; present, it must be an object.
    pub(crate) fn optional_object(&self, key: &str) -> Result<Option<Object<'a>>, Error> {
        if !self.has(key) {
            return Ok(None);
        }
        self.object(key).map(Some)
    }

    pub(crate) fn array(&self, key: &str) -> Result<&'a Vec<Value>, Error> {
        self.get(key)?.as_array().ok_or_else(|| Error::shape(self.path(key), "must be an array"))
    }

    /// An array of strings.
    pub(crate) fn strings(&self, key: &str) -> Result<Vec<&'a str>, Error> {
        self.array(key)?
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| Error::shape(self.path(key), "must be an array of strings"))
            })
            .collect()
    }

    /// An integer (no fraction, no exponent beyond an integer) within canonical JSON's range.
    pub(crate) fn integer(&self, key: &str) -> Result<i64, Error> {
        integer(self.get(key)?, &self.path(key))
    }

    /// A field that must be present and is an integer or null.
    pub(crate) fn nullable_integer(&self, key: &str) -> Result<Option<i64>, Error> {
        match self.get(key)? {
            Value::Null => Ok(None),
            value => integer(value, &self.path(key)).map(Some),
        }
    }

    /// A field that may be absent; present, it must be an integer.
    pub(crate) fn optional_integer(&self, key: &str) -> Result<Option<i64>, Error> {
        if !self.has(key) {
            return Ok(None);
        }
        self.integer(key).map(Some)
    }
}

fn integer(value: &Value, path: &str) -> Result<i64, Error> {
    let number = value.as_i64().ok_or_else(|| Error::shape(path, "must be an integer"))?;
    if !(-MAX_SAFE_INTEGER..=MAX_SAFE_INTEGER).contains(&number) {
        return Err(Error::value(
            path,
            "is outside the integers canonical JSON allows (±(2^53 − 1))",
        ));
    }
    Ok(number)
}
