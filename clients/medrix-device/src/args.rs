//! The arguments' own parsers: characteristics, hex payloads, FHIR references, instants and
//! UTC offsets, each into its type with a one-line complaint.

use medrix_devices::Characteristic;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// `2A35`, `2a35`, `0x2A35`: four hex digits naming a characteristic this tool decodes.
pub fn parse_characteristic(text: &str) -> Result<Characteristic, String> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    let uuid = Some(digits)
        .filter(|digits| digits.len() == 4 && digits.chars().all(|c| c.is_ascii_hexdigit()))
        .and_then(|digits| u16::from_str_radix(digits, 16).ok())
        .ok_or_else(|| format!("not a 16-bit UUID in hex such as 2A35: `{text}`"))?;
    Characteristic::from_uuid(uuid).ok_or_else(|| {
        let known: Vec<String> =
            Characteristic::ALL.iter().map(|known| format!("{:04X}", known.uuid())).collect();
        format!("0x{uuid:04X} is not a characteristic this tool decodes ({})", known.join(", "))
    })
}

/// `Type/id`: a FHIR relative reference (a resource type, then an id of 1-64 letters, digits,
/// `-` and `.`).
pub fn parse_reference(text: &str) -> Result<String, String> {
    let valid = text.split_once('/').is_some_and(|(kind, id)| {
        kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphabetic())
            && (1..=64).contains(&id.len())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("not a FHIR reference such as Patient/p1: `{text}`"))
    }
}

pub fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("not an RFC 3339 time such as 2024-03-05T07:30:00Z: `{text}`"))
}

/// `+01:00`, `-05:30`, `Z`.
pub fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let bad = || format!("not a UTC offset such as +01:00: `{text}`");
    if text == "Z" {
        return Ok(UtcOffset::UTC);
    }
    let (sign, rest) = match text.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: i8 = hours.parse().map_err(|_| bad())?;
    let minutes: i8 = minutes.parse().map_err(|_| bad())?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad())
}

/// Hex digits, whitespace between them ignored, into bytes.
pub fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit() && !c.is_ascii_whitespace()) {
        return Err(format!("HEX has a character that is not a hex digit: `{bad}`"));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("HEX has an odd number of digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|error| error.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|error| error.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{parse_characteristic, parse_hex};
    use medrix_devices::Characteristic;

    #[test]
    fn characteristics_are_four_hex_digits_with_an_optional_prefix() {
        for text in ["2A35", "2a35", "0x2a35", "0X2A35"] {
            assert_eq!(parse_characteristic(text), Ok(Characteristic::BloodPressureMeasurement));
        }
        assert!(parse_characteristic("2A3").is_err());
        assert!(parse_characteristic("0x").is_err());
        assert!(parse_characteristic("+2A3").is_err());
        assert!(parse_characteristic("2A00").unwrap_err().contains("2A37, 2A35"));
    }

    #[test]
    fn hex_may_have_spaces_but_not_odd_digits_or_other_characters() {
        assert_eq!(parse_hex("00 78 00\t50"), Ok(vec![0x00, 0x78, 0x00, 0x50]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert!(parse_hex("007").unwrap_err().contains("odd"));
        assert!(parse_hex("0g").unwrap_err().contains("`g`"));
        assert!(parse_hex("é0").unwrap_err().contains("`é`"));
    }
}
