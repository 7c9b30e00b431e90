//! Weight Measurement, characteristic 0x2A9D of the Weight Scale Service.
//!
//! Weight, BMI and height are unsigned integers in fixed units (0.005 kg or 0.01 lb; 0.1 for
//! BMI; 0.001 m or 0.1 in), not SFLOATs; they print with the places their unit has.

use crate::date_time::DateTime;
use crate::decimal::Decimal;
use crate::error::DecodeError;
use crate::json::Object;
use crate::wire::{Reader, Writer, flag, is_set};

const UNITS_IMPERIAL: u8 = 0;
const TIME_STAMP_PRESENT: u8 = 1;
const USER_ID_PRESENT: u8 = 2;
const BMI_AND_HEIGHT_PRESENT: u8 = 3;

/// The weight value meaning the measurement was unsuccessful.
pub const WEIGHT_UNSUCCESSFUL: u16 = 0xFFFF;

/// One 0x2A9D value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightMeasurement {
    /// SI (kg, m) or imperial (lb, in).
    pub units: WeightUnits,
    /// The weight in units of 0.005 kg or 0.01 lb; [`WEIGHT_UNSUCCESSFUL`] if it failed.
    pub weight: u16,
    /// When the measurement was taken, in the device's time.
    pub time_stamp: Option<DateTime>,
    /// The device's user index (255: unknown user).
    pub user_id: Option<u8>,
    /// BMI and height, which travel together.
    pub bmi_and_height: Option<BmiAndHeight>,
}

/// The BMI (units of 0.1 kg/m²) and the height (units of 0.001 m or 0.1 in).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BmiAndHeight {
    /// BMI in units of 0.1 kg/m².
    pub bmi: u16,
    /// Height in units of 0.001 m or 0.1 in.
    pub height: u16,
}

/// The unit system of a weight measurement (flags bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightUnits {
    /// Kilograms and metres.
    Si,
    /// Pounds and inches.
    Imperial,
}

impl WeightMeasurement {
    /// The weight as an exact decimal in its unit, or `None` if unsuccessful.
    pub fn weight(&self) -> Option<Decimal> {
        (self.weight != WEIGHT_UNSUCCESSFUL).then(|| match self.units {
            WeightUnits::Si => Decimal::new(i64::from(self.weight) * 5, -3),
            WeightUnits::Imperial => Decimal::new(i64::from(self.weight), -2),
        })
    }

    /// The BMI in kg/m², exactly.
    pub fn bmi(&self) -> Option<Decimal> {
        self.bmi_and_height.map(|both| Decimal::new(i64::from(both.bmi), -1))
    }

    /// The height in its unit, exactly.
    pub fn height(&self) -> Option<Decimal> {
        self.bmi_and_height.map(|both| match self.units {
            WeightUnits::Si => Decimal::new(i64::from(both.height), -3),
            WeightUnits::Imperial => Decimal::new(i64::from(both.height), -1),
        })
    }

    /// Decodes a 0x2A9D value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let units =
            if is_set(flags, UNITS_IMPERIAL) { WeightUnits::Imperial } else { WeightUnits::Si };
        let weight = reader.u16("Weight")?;
        let time_stamp = is_set(flags, TIME_STAMP_PRESENT)
            .then(|| reader.date_time("Time Stamp"))
            .transpose()?;
        let user_id = is_set(flags, USER_ID_PRESENT).then(|| reader.u8("User ID")).transpose()?;
        let bmi_and_height = if is_set(flags, BMI_AND_HEIGHT_PRESENT) {
            let bmi = reader.u16("BMI")?;
            let height = reader.u16("Height")?;
            Some(BmiAndHeight { bmi, height })
        } else {
            None
        };
        reader.finish()?;
        Ok(WeightMeasurement { units, weight, time_stamp, user_id, bmi_and_height })
    }

    /// The value as a device sends it.
    pub fn encode(&self) -> Vec<u8> {
        let flags = flag(self.units == WeightUnits::Imperial, UNITS_IMPERIAL)
            | flag(self.time_stamp.is_some(), TIME_STAMP_PRESENT)
            | flag(self.user_id.is_some(), USER_ID_PRESENT)
            | flag(self.bmi_and_height.is_some(), BMI_AND_HEIGHT_PRESENT);
        let mut writer = Writer::default();
        writer.u8(flags).u16(self.weight);
        if let Some(stamp) = self.time_stamp {
            writer.date_time(stamp);
        }
        if let Some(user) = self.user_id {
            writer.u8(user);
        }
        if let Some(both) = self.bmi_and_height {
            writer.u16(both.bmi).u16(both.height);
        }
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let (unit, height_unit) = match self.units {
            WeightUnits::Si => ("kg", "m"),
            WeightUnits::Imperial => ("lb", "in"),
        };
        let mut object = Object::new();
        object.string("unit", unit);
        match self.weight() {
            Some(weight) => object.decimal("weight", weight),
            None => object.string("weight", "UNSUCCESSFUL"),
        };
        if let Some(stamp) = self.time_stamp {
            object.string("timestamp", &stamp.to_string());
        }
        if let Some(user) = self.user_id {
            object.integer("user_id", user);
        }
        if let (Some(bmi), Some(height)) = (self.bmi(), self.height()) {
            object.decimal("bmi", bmi).decimal("height", height).string("height_unit", height_unit);
        }
        object.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::WeightMeasurement;

    const STAMP: [u8; 7] = [0xE8, 0x07, 0x03, 0x01, 0x07, 0x00, 0x00];

    fn json(payload: &[u8]) -> String {
        WeightMeasurement::decode(payload).unwrap().to_json()
    }

    fn reason(payload: &[u8]) -> String {
        WeightMeasurement::decode(payload).unwrap_err().reason().to_owned()
    }

    fn payload(flags: u8) -> Vec<u8> {
        // 14000 units: 70.000 kg or 140.00 lb.
        let mut payload = vec![flags, 0xB0, 0x36];
        if flags & 0b10 != 0 {
            payload.extend_from_slice(&STAMP);
        }
        if flags & 0b100 != 0 {
            payload.push(0x01);
        }
        if flags & 0b1000 != 0 {
            // BMI 229 (22.9), height 1750 (1.750 m or 175.0 in).
            payload.extend_from_slice(&[0xE5, 0x00, 0xD6, 0x06]);
        }
        payload
    }

    #[test]
    fn every_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..16 {
            let json = json(&payload(flags));
            let imperial = flags & 1 != 0;
            let start = if imperial {
                r#"{"unit": "lb", "weight": 140.00"#
            } else {
                r#"{"unit": "kg", "weight": 70.000"#
            };
            assert!(json.starts_with(start), "{json}");
            assert_eq!(json.contains(r#""timestamp": "2024-03-01T07:00:00""#), flags & 0b10 != 0);
            assert_eq!(json.contains(r#""user_id": 1"#), flags & 0b100 != 0);
            let tail = if imperial {
                r#""bmi": 22.9, "height": 175.0, "height_unit": "in"}"#
            } else {
                r#""bmi": 22.9, "height": 1.750, "height_unit": "m"}"#
            };
            assert_eq!(json.ends_with(tail), flags & 0b1000 != 0, "{json}");
        }
    }

    #[test]
    fn the_unsuccessful_weight_is_named() {
        assert_eq!(json(&[0x00, 0xFF, 0xFF]), r#"{"unit": "kg", "weight": "UNSUCCESSFUL"}"#);
        assert_eq!(json(&[0x01, 0xFF, 0xFF]), r#"{"unit": "lb", "weight": "UNSUCCESSFUL"}"#);
        assert_eq!(json(&[0x00, 0xFE, 0xFF]), r#"{"unit": "kg", "weight": 327.670}"#);
    }

    #[test]
    fn the_smallest_steps_are_exact() {
        assert_eq!(json(&[0x00, 0x01, 0x00]), r#"{"unit": "kg", "weight": 0.005}"#);
        assert_eq!(json(&[0x01, 0x01, 0x00]), r#"{"unit": "lb", "weight": 0.01}"#);
    }

    #[test]
    fn each_missing_field_is_refused_by_name() {
        assert_eq!(reason(&[]), "empty payload");
        assert!(reason(&[0x00, 0xB0]).contains("Weight"));
        assert!(reason(&payload(0x02)[..5]).contains("Time Stamp"));
        assert!(reason(&payload(0x04)[..3]).contains("User ID"));
        assert!(reason(&payload(0x08)[..4]).contains("BMI"));
        assert!(reason(&payload(0x08)[..6]).contains("Height"));
    }

    #[test]
    fn trailing_octets_are_refused() {
        let mut long = payload(0x0F);
        long.push(0x00);
        assert!(reason(&long).contains("1 trailing octet"));
    }
}
