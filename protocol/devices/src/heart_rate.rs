//! Heart Rate Measurement, characteristic 0x2A37 of the Heart Rate Service.

use crate::decimal::Decimal;
use crate::error::DecodeError;
use crate::json::{self, Object};
use crate::wire::{Reader, Writer, flag, is_set};

const VALUE_IS_UINT16: u8 = 0;
const CONTACT_DETECTED: u8 = 1;
const CONTACT_SUPPORTED: u8 = 2;
const ENERGY_EXPENDED_PRESENT: u8 = 3;
const RR_INTERVALS_PRESENT: u8 = 4;

/// One 0x2A37 value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartRateMeasurement {
    /// Beats per minute, in the width the device chose.
    pub heart_rate: HeartRate,
    /// Whether the sensor touches the skin, if it can tell.
    pub sensor_contact: SensorContact,
    /// Energy expended since the last reset, in kilojoules.
    pub energy_expended_kj: Option<u16>,
    /// RR-intervals in units of 1/1024 s, oldest first; empty when absent.
    pub rr_intervals: Vec<u16>,
}

/// The heart rate and the width it travels in (flags bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartRate {
    /// An 8-bit value.
    Uint8(u8),
    /// A 16-bit value.
    Uint16(u16),
}

impl HeartRate {
    /// Beats per minute.
    pub fn bpm(self) -> u16 {
        match self {
            HeartRate::Uint8(bpm) => u16::from(bpm),
            HeartRate::Uint16(bpm) => bpm,
        }
    }
}

/// Sensor contact status (flags bits 1 and 2: bit 2 says the sensor can tell, bit 1 what it
/// tells; bit 1 means nothing without bit 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SensorContact {
    /// The sensor cannot detect contact.
    NotSupported,
    /// Supported, and the sensor has no contact.
    NotDetected,
    /// Supported, and the sensor has contact.
    Detected,
}

impl SensorContact {
    fn name(self) -> &'static str {
        match self {
            SensorContact::NotSupported => "not_supported",
            SensorContact::NotDetected => "not_detected",
            SensorContact::Detected => "detected",
        }
    }
}

/// An RR-interval in seconds, exactly: 1/1024 s is 0.0009765625 s.
pub fn rr_interval_seconds(units: u16) -> Decimal {
    // n / 1024 = n × 5^10 / 10^10, which fits an i64 for every u16.
    Decimal::new(i64::from(units) * 9_765_625, -10).normalized()
}

impl HeartRateMeasurement {
    /// Decodes a 0x2A37 value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let heart_rate = if is_set(flags, VALUE_IS_UINT16) {
            HeartRate::Uint16(reader.u16("Heart Rate Measurement Value")?)
        } else {
            HeartRate::Uint8(reader.u8("Heart Rate Measurement Value")?)
        };
        let sensor_contact =
            match (is_set(flags, CONTACT_SUPPORTED), is_set(flags, CONTACT_DETECTED)) {
                (false, _) => SensorContact::NotSupported,
                (true, false) => SensorContact::NotDetected,
                (true, true) => SensorContact::Detected,
            };
        let energy_expended_kj = if is_set(flags, ENERGY_EXPENDED_PRESENT) {
            Some(reader.u16("Energy Expended")?)
        } else {
            None
        };
        let mut rr_intervals = Vec::new();
        if is_set(flags, RR_INTERVALS_PRESENT) {
            // The flag promises at least one; the rest of the value is RR-intervals.
            rr_intervals.push(reader.u16("RR-Interval")?);
            while reader.remaining() >= 2 {
                rr_intervals.push(reader.u16("RR-Interval")?);
            }
        }
        reader.finish()?;
        Ok(HeartRateMeasurement { heart_rate, sensor_contact, energy_expended_kj, rr_intervals })
    }

    /// The value as a device sends it.
    pub fn encode(&self) -> Vec<u8> {
        let flags = flag(matches!(self.heart_rate, HeartRate::Uint16(_)), VALUE_IS_UINT16)
            | flag(self.sensor_contact == SensorContact::Detected, CONTACT_DETECTED)
            | flag(self.sensor_contact != SensorContact::NotSupported, CONTACT_SUPPORTED)
            | flag(self.energy_expended_kj.is_some(), ENERGY_EXPENDED_PRESENT)
            | flag(!self.rr_intervals.is_empty(), RR_INTERVALS_PRESENT);
        let mut writer = Writer::default();
        writer.u8(flags);
        match self.heart_rate {
            HeartRate::Uint8(bpm) => writer.u8(bpm),
            HeartRate::Uint16(bpm) => writer.u16(bpm),
        };
        if let Some(energy) = self.energy_expended_kj {
            writer.u16(energy);
        }
        for &rr in &self.rr_intervals {
            writer.u16(rr);
        }
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let mut object = Object::new();
        object
            .integer("heart_rate", self.heart_rate.bpm())
            .string("sensor_contact", self.sensor_contact.name());
        if let Some(energy) = self.energy_expended_kj {
            object.integer("energy_expended_kj", energy);
        }
        if !self.rr_intervals.is_empty() {
            let seconds = self.rr_intervals.iter().map(|&rr| rr_interval_seconds(rr).to_string());
            object.raw("rr_intervals_s", &json::array(seconds));
        }
        object.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{HeartRate, HeartRateMeasurement, SensorContact, rr_interval_seconds};

    fn reason(payload: &[u8]) -> String {
        HeartRateMeasurement::decode(payload).unwrap_err().reason().to_owned()
    }

    #[test]
    fn every_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..32 {
            let mut payload = vec![flags];
            let wide = flags & 0b1 != 0;
            payload.extend_from_slice(if wide { &[0x2C, 0x01][..] } else { &[0x48][..] });
            if flags & 0b1000 != 0 {
                payload.extend_from_slice(&[0x10, 0x27]);
            }
            if flags & 0b1_0000 != 0 {
                payload.extend_from_slice(&[0x00, 0x04, 0x00, 0x02]);
            }
            let reading = HeartRateMeasurement::decode(&payload).unwrap();
            assert_eq!(reading.heart_rate.bpm(), if wide { 300 } else { 72 }, "{flags:#04x}");
            let contact = match flags & 0b110 {
                0b110 => SensorContact::Detected,
                0b100 => SensorContact::NotDetected,
                _ => SensorContact::NotSupported,
            };
            assert_eq!(reading.sensor_contact, contact, "{flags:#04x}");
            assert_eq!(reading.energy_expended_kj.is_some(), flags & 0b1000 != 0);
            let json = reading.to_json();
            assert_eq!(json.contains("energy_expended_kj"), flags & 0b1000 != 0, "{json}");
            if flags & 0b1_0000 != 0 {
                assert!(json.ends_with(r#""rr_intervals_s": [1, 0.5]}"#), "{json}");
            } else {
                assert!(!json.contains("rr_intervals_s"), "{json}");
            }
        }
    }

    #[test]
    fn the_json_of_a_full_reading_has_every_key() {
        let payload = [0x1F, 0x2C, 0x01, 0x10, 0x27, 0x01, 0x00];
        assert_eq!(
            HeartRateMeasurement::decode(&payload).unwrap().to_json(),
            r#"{"heart_rate": 300, "sensor_contact": "detected", "energy_expended_kj": 10000, "rr_intervals_s": [0.0009765625]}"#
        );
    }

    #[test]
    fn rr_intervals_print_as_exact_seconds() {
        assert_eq!(rr_interval_seconds(1024).to_string(), "1");
        assert_eq!(rr_interval_seconds(512).to_string(), "0.5");
        assert_eq!(rr_interval_seconds(1).to_string(), "0.0009765625");
        assert_eq!(rr_interval_seconds(0).to_string(), "0");
        assert_eq!(rr_interval_seconds(u16::MAX).to_string(), "63.9990234375");
    }

    #[test]
    fn a_missing_field_is_refused_by_name() {
        assert_eq!(reason(&[]), "empty payload");
        assert_eq!(
            reason(&[0x00]),
            "payload ends before Heart Rate Measurement Value (1 octets at offset 1, 0 left)"
        );
        assert!(reason(&[0x01, 0x48]).contains("Heart Rate Measurement Value"));
        assert!(reason(&[0x08, 0x48, 0x10]).contains("Energy Expended"));
        assert!(reason(&[0x10, 0x48]).contains("RR-Interval"), "the flag promises one");
    }

    #[test]
    fn trailing_octets_are_refused() {
        assert!(reason(&[0x00, 0x48, 0x00]).contains("1 trailing octet"));
        assert!(reason(&[0x10, 0x48, 0x00, 0x04, 0x00]).contains("1 trailing octet"));
        assert!(reason(&[0x08, 0x48, 0x10, 0x27, 0x00, 0x04]).contains("2 trailing octets"));
    }

    #[test]
    fn encoding_gives_the_canonical_flags() {
        let reading = HeartRateMeasurement {
            heart_rate: HeartRate::Uint16(72),
            sensor_contact: SensorContact::NotDetected,
            energy_expended_kj: None,
            rr_intervals: vec![1024],
        };
        assert_eq!(reading.encode(), vec![0x15, 0x48, 0x00, 0x00, 0x04]);
        assert_eq!(HeartRateMeasurement::decode(&reading.encode()).unwrap(), reading);
    }
}
