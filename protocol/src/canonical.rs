//! Canonical JSON: the one byte encoding that hashes and signatures are computed over.
//!
//! Parsing is strict, as room versions 6 and later require of events: integers only, within
//! ±(2^53 − 1). Serialization is ruma's (sorted keys, no insignificant whitespace, shortest
//! escapes), which reproduces the specification's examples byte for byte.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, canonical_json::CanonicalJsonError};
use serde_json::Value;

use crate::ProtocolError;

/// The most bytes of JSON accepted for one PDU before parsing it (the spec's 64 KiB).
pub const MAX_PDU_BYTES: usize = 65_536;

/// The largest canonical encoding of a PDU the checks accept. The spec allows 65,536 bytes;
/// ruma (whose format check Medrix uses) stops at 65,535, so an event of exactly 64 KiB is
/// refused: one byte stricter than Synapse, recorded in `spec/README.md`.
pub const MAX_CANONICAL_PDU_BYTES: usize = 65_535;

/// The largest integer canonical JSON can carry (2^53 − 1).
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Parses untrusted bytes into a canonical JSON object, refusing anything over `limit` bytes
/// before looking inside it.
pub fn parse_object(bytes: &[u8], limit: usize) -> Result<CanonicalJsonObject, ProtocolError> {
    match parse_value(bytes, limit)? {
        CanonicalJsonValue::Object(object) => Ok(object),
        other => Err(ProtocolError::NotJson(format!(
            "expected a JSON object, found {}",
            canonical_kind(&other)
        ))),
    }
}

/// Parses untrusted bytes into a canonical JSON value, strictly (integers only, within
/// ±(2^53 − 1)), refusing anything over `limit` bytes before looking inside it.
///
/// Written here rather than taken from ruma, whose `Deserialize` goes through a
/// `serde_json::Value` first: building the canonical tree directly halves the cost of the
/// parse that every received event and federation request body goes through. It accepts and
/// refuses exactly what parsing into a `Value` and converting does (the same serde_json
/// reader, a later duplicate key replacing an earlier one); a property test holds it to that.
pub fn parse_value(bytes: &[u8], limit: usize) -> Result<CanonicalJsonValue, ProtocolError> {
    if bytes.len() > limit {
        return Err(ProtocolError::TooLarge { size: bytes.len(), limit });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let (value, canonical) =
        serde::Deserializer::deserialize_any(&mut deserializer, CanonicalVisitor)
            .and_then(|parsed| deserializer.end().map(|()| parsed))
            .map_err(|err| ProtocolError::NotJson(err.to_string()))?;
    if !canonical {
        return Err(ProtocolError::NotCanonical(INTEGER_OUT_OF_RANGE.to_owned()));
    }
    Ok(value)
}

/// Builds canonical JSON values straight from serde_json's parse events. Each value comes
/// with whether it is canonical: a number that is not (a float, or an integer out of range)
/// is noted rather than refused on the spot, because a later duplicate key may still replace
/// it (as it would in a `Value`), and a syntax error later on must still win.
struct CanonicalVisitor;

type Parsed = (CanonicalJsonValue, bool);

impl<'de> serde::de::Visitor<'de> for CanonicalVisitor {
    type Value = Parsed;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("canonical JSON")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Parsed, E> {
        Ok((CanonicalJsonValue::Null, true))
    }

    fn visit_bool<E: serde::de::Error>(self, value: bool) -> Result<Parsed, E> {
        Ok((CanonicalJsonValue::Bool(value), true))
    }

    fn visit_i64<E: serde::de::Error>(self, value: i64) -> Result<Parsed, E> {
        Ok(match ruma::Int::new(value) {
            Some(value) => (CanonicalJsonValue::Integer(value), true),
            None => (CanonicalJsonValue::Null, false),
        })
    }

    fn visit_u64<E: serde::de::Error>(self, value: u64) -> Result<Parsed, E> {
        match i64::try_from(value) {
            Ok(value) => self.visit_i64(value),
            Err(_) => Ok((CanonicalJsonValue::Null, false)),
        }
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Parsed, E> {
        Ok((CanonicalJsonValue::Null, false))
    }

    fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Parsed, E> {
        Ok((CanonicalJsonValue::String(value.to_owned()), true))
    }

    fn visit_string<E: serde::de::Error>(self, value: String) -> Result<Parsed, E> {
        Ok((CanonicalJsonValue::String(value), true))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Parsed, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut canonical = true;
        while let Some((item, item_canonical)) = seq.next_element_seed(CanonicalSeed)? {
            canonical &= item_canonical;
            items.push(item);
        }
        Ok((CanonicalJsonValue::Array(items), canonical))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut object = CanonicalJsonObject::new();
        // Keys whose latest value is not canonical; almost always empty.
        let mut not_canonical: Vec<String> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let (value, canonical) = map.next_value_seed(CanonicalSeed)?;
            if !not_canonical.is_empty() {
                not_canonical.retain(|earlier| *earlier != key);
            }
            if !canonical {
                not_canonical.push(key.clone());
            }
            object.insert(key, value);
        }
        Ok((CanonicalJsonValue::Object(object), not_canonical.is_empty()))
    }
}

/// [`CanonicalVisitor`] for nested values.
struct CanonicalSeed;

impl<'de> serde::de::DeserializeSeed<'de> for CanonicalSeed {
    type Value = Parsed;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_any(CanonicalVisitor)
    }
}

const INTEGER_OUT_OF_RANGE: &str = "integer outside ±(2^53 − 1)";

fn canonical_kind(value: &CanonicalJsonValue) -> &'static str {
    match value {
        CanonicalJsonValue::Null => "null",
        CanonicalJsonValue::Bool(_) => "a boolean",
        CanonicalJsonValue::Integer(_) => "a number",
        CanonicalJsonValue::String(_) => "a string",
        CanonicalJsonValue::Array(_) => "an array",
        CanonicalJsonValue::Object(_) => "an object",
    }
}

/// Converts an already-parsed JSON value, strictly, into a canonical JSON object.
pub fn object_from_value(value: Value) -> Result<CanonicalJsonObject, ProtocolError> {
    match value {
        Value::Object(map) => ruma::canonical_json::try_from_json_map(map)
            .map_err(|err| ProtocolError::NotCanonical(describe(err))),
        other => Err(ProtocolError::NotJson(format!(
            "expected a JSON object, found {}",
            json_kind(&other)
        ))),
    }
}

/// Encodes an object as canonical JSON.
pub fn encode(object: &CanonicalJsonObject) -> String {
    // Serializing a map of canonical values to a String cannot fail: keys are strings and
    // every value is representable.
    serde_json::to_string(object).expect("canonical JSON always serializes")
}

/// Encodes an object as canonical JSON without the named top-level keys, without cloning the
/// values that stay.
pub fn encode_without(object: &CanonicalJsonObject, skip: &[&str]) -> String {
    let kept: std::collections::BTreeMap<&String, &CanonicalJsonValue> =
        object.iter().filter(|(key, _)| !skip.contains(&key.as_str())).collect();
    serde_json::to_string(&kept).expect("canonical JSON always serializes")
}

/// Canonicalizes arbitrary JSON the lenient way the appendix examples show: a number written
/// as a float (`1e10`, `-0`) is accepted when it is an exact integer in range. Events are never
/// parsed this way; this is for signing JSON that a client or peer built with floats.
pub fn canonicalize_lenient(value: Value) -> Result<CanonicalJsonValue, ProtocolError> {
    let normalized = integral_floats_to_integers(value)?;
    CanonicalJsonValue::try_from(normalized)
        .map_err(|err| ProtocolError::NotCanonical(describe(err)))
}

fn integral_floats_to_integers(value: Value) -> Result<Value, ProtocolError> {
    Ok(match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            let float = number.as_f64().unwrap_or(f64::NAN);
            if float.fract() != 0.0 || float.abs() > MAX_SAFE_INTEGER {
                return Err(ProtocolError::NotCanonical(format!(
                    "{number} is not an integer within ±(2^53 − 1)"
                )));
            }
            // Exact: the value is integral and within the 53-bit mantissa.
            Value::from(float as i64)
        }
        Value::Array(items) => Value::Array(
            items.into_iter().map(integral_floats_to_integers).collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, item)| Ok((key, integral_floats_to_integers(item)?)))
                .collect::<Result<_, ProtocolError>>()?,
        ),
        other => other,
    })
}

fn describe(err: CanonicalJsonError) -> String {
    match err {
        CanonicalJsonError::IntegerOutOfRange => "integer outside ±(2^53 − 1)".to_owned(),
        CanonicalJsonError::InvalidType(kind) => format!("{kind} values are not allowed"),
        other => other.to_string(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversized_input_before_parsing_it() {
        let bytes = vec![b' '; MAX_PDU_BYTES + 1];
        assert_eq!(
            parse_object(&bytes, MAX_PDU_BYTES),
            Err(ProtocolError::TooLarge { size: MAX_PDU_BYTES + 1, limit: MAX_PDU_BYTES })
        );
    }

    #[test]
    fn refuses_floats_and_huge_integers_in_events() {
        assert!(matches!(
            parse_object(br#"{"depth": 1.5}"#, MAX_PDU_BYTES),
            Err(ProtocolError::NotCanonical(_))
        ));
        assert!(matches!(
            parse_object(br#"{"depth": 9007199254740992}"#, MAX_PDU_BYTES),
            Err(ProtocolError::NotCanonical(_))
        ));
        assert!(matches!(parse_object(b"[1]", MAX_PDU_BYTES), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse_object(b"{", MAX_PDU_BYTES), Err(ProtocolError::NotJson(_))));
    }

    #[test]
    fn direct_parsing_agrees_with_parsing_through_serde_json_values() {
        let text =
            br#"{"a":[1,-2,{"b":null,"c":true}],"d":"\u65E5\n","e":{},"a2":9007199254740991}"#;
        let direct = parse_object(text, MAX_PDU_BYTES).unwrap();
        let via_value = object_from_value(serde_json::from_slice(text).unwrap()).unwrap();
        assert_eq!(direct, via_value);
        assert!(matches!(
            parse_object(b"{\"a\":-9007199254740992}", 100),
            Err(ProtocolError::NotCanonical(_))
        ));
        assert!(matches!(parse_object(b"{\"a\":1e3}", 100), Err(ProtocolError::NotCanonical(_))));
        assert!(matches!(parse_object(b"{\"a\":1}x", 100), Err(ProtocolError::NotJson(_))));
        assert!(matches!(parse_object(b"\"text\"", 100), Err(ProtocolError::NotJson(_))));
    }

    #[test]
    fn lenient_canonicalization_takes_integral_floats_only() {
        let ok = canonicalize_lenient(serde_json::json!({"a": -0.0, "b": 1e10})).unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"a":0,"b":10000000000}"#);
        assert!(canonicalize_lenient(serde_json::json!({"a": 0.5})).is_err());
        assert!(canonicalize_lenient(serde_json::json!({"a": 1e300})).is_err());
    }
}
