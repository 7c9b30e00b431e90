//! Temperature Measurement, characteristic 0x2A1C of the Health Thermometer Service.

use crate::date_time::DateTime;
use crate::error::DecodeError;
use crate::json::Object;
use crate::medfloat::Float;
use crate::wire::{Reader, Writer, flag, is_set};

const UNITS_FAHRENHEIT: u8 = 0;
const TIME_STAMP_PRESENT: u8 = 1;
const TEMPERATURE_TYPE_PRESENT: u8 = 2;

/// One 0x2A1C value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TemperatureMeasurement {
    /// The unit of the temperature.
    pub unit: TemperatureUnit,
    /// The temperature (a 32-bit FLOAT, unlike the other characteristics here).
    pub temperature: Float,
    /// When the measurement was taken, in the device's time.
    pub time_stamp: Option<DateTime>,
    /// Where on the body it was taken, as sent (1 armpit, 2 body, 3 ear, 4 finger,
    /// 5 gastro-intestinal tract, 6 mouth, 7 rectum, 8 toe, 9 tympanum; others reserved).
    pub temperature_type: Option<u8>,
}

/// The unit of a temperature (flags bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemperatureUnit {
    /// Degrees Celsius.
    Celsius,
    /// Degrees Fahrenheit.
    Fahrenheit,
}

impl TemperatureMeasurement {
    /// Decodes a 0x2A1C value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let unit = if is_set(flags, UNITS_FAHRENHEIT) {
            TemperatureUnit::Fahrenheit
        } else {
            TemperatureUnit::Celsius
        };
        let temperature = reader.float("Temperature Measurement Value")?;
        let time_stamp = is_set(flags, TIME_STAMP_PRESENT)
            .then(|| reader.date_time("Time Stamp"))
            .transpose()?;
        let temperature_type = is_set(flags, TEMPERATURE_TYPE_PRESENT)
            .then(|| reader.u8("Temperature Type"))
            .transpose()?;
        reader.finish()?;
        Ok(TemperatureMeasurement { unit, temperature, time_stamp, temperature_type })
    }

    /// The value as a device sends it.
    pub fn encode(&self) -> Vec<u8> {
        let flags = flag(self.unit == TemperatureUnit::Fahrenheit, UNITS_FAHRENHEIT)
            | flag(self.time_stamp.is_some(), TIME_STAMP_PRESENT)
            | flag(self.temperature_type.is_some(), TEMPERATURE_TYPE_PRESENT);
        let mut writer = Writer::default();
        writer.u8(flags).float(self.temperature);
        if let Some(stamp) = self.time_stamp {
            writer.date_time(stamp);
        }
        if let Some(kind) = self.temperature_type {
            writer.u8(kind);
        }
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let unit = match self.unit {
            TemperatureUnit::Celsius => "C",
            TemperatureUnit::Fahrenheit => "F",
        };
        let mut object = Object::new();
        object.string("unit", unit).medfloat("temperature", self.temperature.value());
        if let Some(stamp) = self.time_stamp {
            object.string("timestamp", &stamp.to_string());
        }
        if let Some(kind) = self.temperature_type {
            object.integer("temperature_type", kind);
        }
        object.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::TemperatureMeasurement;

    // 37.60 as a FLOAT: exponent -2, mantissa 3760.
    const TEMPERATURE: [u8; 4] = [0xB0, 0x0E, 0x00, 0xFE];
    const STAMP: [u8; 7] = [0xE8, 0x07, 0x0B, 0x1D, 0x17, 0x08, 0x39];

    fn json(payload: &[u8]) -> String {
        TemperatureMeasurement::decode(payload).unwrap().to_json()
    }

    fn reason(payload: &[u8]) -> String {
        TemperatureMeasurement::decode(payload).unwrap_err().reason().to_owned()
    }

    fn payload(flags: u8) -> Vec<u8> {
        let mut payload = vec![flags];
        payload.extend_from_slice(&TEMPERATURE);
        if flags & 0b10 != 0 {
            payload.extend_from_slice(&STAMP);
        }
        if flags & 0b100 != 0 {
            payload.push(6);
        }
        payload
    }

    #[test]
    fn every_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..8 {
            let json = json(&payload(flags));
            let unit = if flags & 1 != 0 { "F" } else { "C" };
            assert!(json.starts_with(&format!(r#"{{"unit": "{unit}", "temperature": 37.60"#)));
            assert_eq!(json.contains(r#""timestamp": "2024-11-29T23:08:57""#), flags & 0b10 != 0);
            assert_eq!(json.contains(r#""temperature_type": 6"#), flags & 0b100 != 0);
        }
    }

    #[test]
    fn every_special_value_is_kept_distinct() {
        for (bits, name) in [
            (0x007F_FFFFu32, "NaN"),
            (0x0080_0000, "NRes"),
            (0x007F_FFFE, "+INF"),
            (0x0080_0002, "-INF"),
            (0x0080_0001, "RESERVED"),
        ] {
            let mut payload = vec![0x00];
            payload.extend_from_slice(&bits.to_le_bytes());
            assert_eq!(json(&payload), format!(r#"{{"unit": "C", "temperature": "{name}"}}"#));
        }
    }

    #[test]
    fn each_missing_field_is_refused_by_name() {
        assert_eq!(reason(&[]), "empty payload");
        assert!(reason(&[0x00, 0xB0, 0x0E, 0x00]).contains("Temperature Measurement Value"));
        assert!(reason(&payload(0x02)[..8]).contains("Time Stamp"));
        assert!(reason(&payload(0x04)[..5]).contains("Temperature Type"));
        assert!(reason(&payload(0x06)[..12]).contains("Temperature Type"));
    }

    #[test]
    fn trailing_octets_are_refused() {
        let mut long = payload(0x07);
        long.push(0x00);
        assert!(reason(&long).contains("1 trailing octet"));
        assert!(
            reason(&payload(0x04)[..5].iter().chain(&[1, 2]).copied().collect::<Vec<_>>())
                .contains("trailing")
        );
    }
}
