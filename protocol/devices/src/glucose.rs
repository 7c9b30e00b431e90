//! Glucose Measurement, characteristic 0x2A18 of the Glucose Service.

use crate::date_time::DateTime;
use crate::error::DecodeError;
use crate::json::Object;
use crate::medfloat::Sfloat;
use crate::wire::{Reader, Writer, flag, is_set};

const TIME_OFFSET_PRESENT: u8 = 0;
const CONCENTRATION_PRESENT: u8 = 1;
const UNITS_MOL_PER_L: u8 = 2;
const SENSOR_STATUS_PRESENT: u8 = 3;
const CONTEXT_FOLLOWS: u8 = 4;

/// One 0x2A18 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlucoseMeasurement {
    /// The record's sequence number on the meter, for de-duplication.
    pub sequence_number: u16,
    /// The meter's base time of the record.
    pub base_time: DateTime,
    /// Minutes to add to the base time for the user-facing time.
    pub time_offset_minutes: Option<i16>,
    /// The concentration with its unit, type and sample location, which travel together.
    pub concentration: Option<Concentration>,
    /// The Sensor Status Annunciation bits, as sent.
    pub sensor_status: Option<u16>,
    /// Flags bit 4: a Glucose Measurement Context (0x2A34) for this record follows.
    pub context_information_follows: bool,
}

/// A glucose concentration and how it was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concentration {
    /// The concentration, in `unit`.
    pub value: Sfloat,
    /// kg/L or mol/L (flags bit 2).
    pub unit: ConcentrationUnit,
    /// The low nibble of Type-Sample Location: 1 capillary whole blood, 2 capillary plasma,
    /// 3 venous whole blood, 4 venous plasma, 5 arterial whole blood, 6 arterial plasma,
    /// 7 undetermined whole blood, 8 undetermined plasma, 9 interstitial fluid, 10 control
    /// solution; others reserved.
    pub glucose_type: u8,
    /// The high nibble: 1 finger, 2 alternate site test, 3 earlobe, 4 control solution,
    /// 15 not available; others reserved.
    pub sample_location: u8,
}

/// The unit of a glucose concentration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConcentrationUnit {
    /// Kilograms per litre (× 100 000 gives mg/dL).
    KgPerL,
    /// Moles per litre (× 1000 gives mmol/L).
    MolPerL,
}

impl GlucoseMeasurement {
    /// Decodes a 0x2A18 value. The unit flag means something only with a concentration, so
    /// without one it is ignored.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let sequence_number = reader.u16("Sequence Number")?;
        let base_time = reader.date_time("Base Time")?;
        let time_offset_minutes =
            is_set(flags, TIME_OFFSET_PRESENT).then(|| reader.i16("Time Offset")).transpose()?;
        let concentration = if is_set(flags, CONCENTRATION_PRESENT) {
            let value = reader.sfloat("Glucose Concentration")?;
            let type_and_location = reader.u8("Type-Sample Location")?;
            let unit = if is_set(flags, UNITS_MOL_PER_L) {
                ConcentrationUnit::MolPerL
            } else {
                ConcentrationUnit::KgPerL
            };
            Some(Concentration {
                value,
                unit,
                glucose_type: type_and_location & 0x0F,
                sample_location: type_and_location >> 4,
            })
        } else {
            None
        };
        let sensor_status = is_set(flags, SENSOR_STATUS_PRESENT)
            .then(|| reader.u16("Sensor Status Annunciation"))
            .transpose()?;
        reader.finish()?;
        Ok(GlucoseMeasurement {
            sequence_number,
            base_time,
            time_offset_minutes,
            concentration,
            sensor_status,
            context_information_follows: is_set(flags, CONTEXT_FOLLOWS),
        })
    }

    /// The value as a meter sends it. Nibbles above 15 are cut to their low four bits.
    pub fn encode(&self) -> Vec<u8> {
        let mol = self.concentration.is_some_and(|c| c.unit == ConcentrationUnit::MolPerL);
        let flags = flag(self.time_offset_minutes.is_some(), TIME_OFFSET_PRESENT)
            | flag(self.concentration.is_some(), CONCENTRATION_PRESENT)
            | flag(mol, UNITS_MOL_PER_L)
            | flag(self.sensor_status.is_some(), SENSOR_STATUS_PRESENT)
            | flag(self.context_information_follows, CONTEXT_FOLLOWS);
        let mut writer = Writer::default();
        writer.u8(flags).u16(self.sequence_number).date_time(self.base_time);
        if let Some(offset) = self.time_offset_minutes {
            writer.i16(offset);
        }
        if let Some(concentration) = self.concentration {
            writer.sfloat(concentration.value);
            writer.u8((concentration.sample_location << 4) | (concentration.glucose_type & 0x0F));
        }
        if let Some(status) = self.sensor_status {
            writer.u16(status);
        }
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let mut object = Object::new();
        object
            .integer("sequence_number", self.sequence_number)
            .string("base_time", &self.base_time.to_string());
        if let Some(offset) = self.time_offset_minutes {
            object.integer("time_offset_minutes", offset);
        }
        if let Some(concentration) = self.concentration {
            let unit = match concentration.unit {
                ConcentrationUnit::KgPerL => "kg/L",
                ConcentrationUnit::MolPerL => "mol/L",
            };
            object
                .medfloat("concentration", concentration.value.value())
                .string("concentration_unit", unit)
                .integer("glucose_type", concentration.glucose_type)
                .integer("sample_location", concentration.sample_location);
        }
        if let Some(status) = self.sensor_status {
            object.integer("sensor_status", status);
        }
        object.boolean("context_information_follows", self.context_information_follows);
        object.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::GlucoseMeasurement;

    const HEAD: [u8; 9] = [0x07, 0x00, 0xE8, 0x07, 0x03, 0x01, 0x08, 0x00, 0x00];

    fn json(payload: &[u8]) -> String {
        GlucoseMeasurement::decode(payload).unwrap().to_json()
    }

    fn reason(payload: &[u8]) -> String {
        GlucoseMeasurement::decode(payload).unwrap_err().reason().to_owned()
    }

    fn payload(flags: u8) -> Vec<u8> {
        let mut payload = vec![flags];
        payload.extend_from_slice(&HEAD);
        if flags & 0b1 != 0 {
            payload.extend_from_slice(&[0xF1, 0xFF]);
        }
        if flags & 0b10 != 0 {
            // 5.4 mmol/L as mol/L: mantissa 54, exponent -4; capillary plasma at a finger.
            payload.extend_from_slice(&[0x36, 0xC0, 0x12]);
        }
        if flags & 0b1000 != 0 {
            payload.extend_from_slice(&[0x01, 0x00]);
        }
        payload
    }

    #[test]
    fn every_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..32 {
            let json = json(&payload(flags));
            assert!(
                json.starts_with(r#"{"sequence_number": 7, "base_time": "2024-03-01T08:00:00""#),
                "{json}"
            );
            assert_eq!(json.contains(r#""time_offset_minutes": -15"#), flags & 0b1 != 0);
            let unit = if flags & 0b100 != 0 { "mol/L" } else { "kg/L" };
            let concentration = format!(
                r#""concentration": 0.0054, "concentration_unit": "{unit}", "glucose_type": 2, "sample_location": 1"#
            );
            assert_eq!(json.contains(&concentration), flags & 0b10 != 0, "{json}");
            assert_eq!(json.contains("concentration_unit"), flags & 0b10 != 0, "{json}");
            assert_eq!(json.contains(r#""sensor_status": 1"#), flags & 0b1000 != 0);
            let follows = if flags & 0b1_0000 != 0 { "true" } else { "false" };
            assert!(json.ends_with(&format!(r#""context_information_follows": {follows}}}"#)));
        }
    }

    #[test]
    fn every_special_value_is_kept_distinct() {
        for (bits, name) in [
            ([0xFF, 0x07], "NaN"),
            ([0x00, 0x08], "NRes"),
            ([0xFE, 0x07], "+INF"),
            ([0x02, 0x08], "-INF"),
            ([0x01, 0x08], "RESERVED"),
        ] {
            let mut payload = vec![0x02];
            payload.extend_from_slice(&HEAD);
            payload.extend_from_slice(&bits);
            payload.push(0xF9);
            let json = json(&payload);
            assert!(json.contains(&format!(r#""concentration": "{name}""#)), "{json}");
            assert!(json.contains(r#""glucose_type": 9, "sample_location": 15"#), "{json}");
        }
    }

    #[test]
    fn each_missing_field_is_refused_by_name() {
        assert_eq!(reason(&[]), "empty payload");
        assert!(reason(&[0x00, 0x07]).contains("Sequence Number"));
        assert!(reason(&payload(0x00)[..9]).contains("Base Time"));
        assert!(reason(&payload(0x01)[..11]).contains("Time Offset"));
        assert!(reason(&payload(0x02)[..11]).contains("Glucose Concentration"));
        assert!(reason(&payload(0x02)[..12]).contains("Type-Sample Location"));
        assert!(reason(&payload(0x08)[..11]).contains("Sensor Status Annunciation"));
    }

    #[test]
    fn trailing_octets_are_refused() {
        let mut long = payload(0x1F);
        long.push(0x00);
        assert!(reason(&long).contains("1 trailing octet"));
    }

    #[test]
    fn a_base_time_out_of_range_is_refused() {
        let mut bad = payload(0x00);
        bad[7] = 24;
        assert_eq!(reason(&bad), "Base Time: hours 24 is out of range");
    }
}
