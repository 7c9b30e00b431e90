//! A small JSON writer for readings.
//!
//! Numbers are written from their exact decimal text, so 67.5 stays 67.5 and 2.00 stays
//! 2.00; going through `f64` (as `serde_json` does without `arbitrary_precision`) would not
//! keep either promise. Keys are written in the order the fields travel.

use crate::decimal::Decimal;
use crate::medfloat::Medfloat;

/// A JSON object being written: `{"key": value, ...}`.
pub(crate) struct Object {
    text: String,
}

impl Object {
    pub(crate) fn new() -> Self {
        Object { text: String::from("{") }
    }

    fn key(&mut self, key: &str) -> &mut String {
        if self.text.len() > 1 {
            self.text.push_str(", ");
        }
        push_string(&mut self.text, key);
        self.text.push_str(": ");
        &mut self.text
    }

    /// A value already written as JSON text (a number, an array, a nested object).
    pub(crate) fn raw(&mut self, key: &str, json: &str) -> &mut Self {
        self.key(key).push_str(json);
        self
    }

    pub(crate) fn string(&mut self, key: &str, value: &str) -> &mut Self {
        push_string(self.key(key), value);
        self
    }

    pub(crate) fn integer(&mut self, key: &str, value: impl Into<i64>) -> &mut Self {
        self.raw(key, &value.into().to_string())
    }

    pub(crate) fn boolean(&mut self, key: &str, value: bool) -> &mut Self {
        self.raw(key, if value { "true" } else { "false" })
    }

    pub(crate) fn decimal(&mut self, key: &str, value: Decimal) -> &mut Self {
        self.raw(key, &value.to_string())
    }

    /// A number as its exact decimal, a special value as its name.
    pub(crate) fn medfloat(&mut self, key: &str, value: Medfloat) -> &mut Self {
        match value {
            Medfloat::Number(decimal) => self.decimal(key, decimal),
            special => self.string(key, special.special_name().unwrap_or_default()),
        }
    }

    pub(crate) fn finish(&mut self) -> String {
        let mut text = std::mem::take(&mut self.text);
        text.push('}');
        text
    }
}

/// A JSON array of values already written as JSON text.
pub(crate) fn array(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(", "))
}

/// `value` as a JSON string, escaped.
pub fn string(value: &str) -> String {
    let mut text = String::new();
    push_string(&mut text, value);
    text
}

fn push_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::{Object, array, string};
    use crate::decimal::Decimal;
    use crate::medfloat::Medfloat;

    #[test]
    fn an_object_keeps_the_order_and_the_exact_numbers() {
        let json = Object::new()
            .string("unit", "mmHg")
            .medfloat("systolic", Medfloat::Number(Decimal::new(675, -1)))
            .medfloat("mean_arterial_pressure", Medfloat::NaN)
            .integer("user_id", 3)
            .boolean("device_clock_not_set", false)
            .raw("rr_intervals_s", &array(["1".to_string(), "0.5".to_string()]))
            .finish();
        assert_eq!(
            json,
            r#"{"unit": "mmHg", "systolic": 67.5, "mean_arterial_pressure": "NaN", "user_id": 3, "device_clock_not_set": false, "rr_intervals_s": [1, 0.5]}"#
        );
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
    }

    #[test]
    fn an_empty_object_and_array_are_valid() {
        assert_eq!(Object::new().finish(), "{}");
        assert_eq!(array(Vec::new()), "[]");
    }
}
