//! Blood Pressure Measurement, characteristic 0x2A35 of the Blood Pressure Service.

use crate::date_time::DateTime;
use crate::error::DecodeError;
use crate::json::Object;
use crate::medfloat::Sfloat;
use crate::wire::{Reader, Writer, flag, is_set};

const UNITS_KPA: u8 = 0;
const TIME_STAMP_PRESENT: u8 = 1;
const PULSE_RATE_PRESENT: u8 = 2;
const USER_ID_PRESENT: u8 = 3;
const MEASUREMENT_STATUS_PRESENT: u8 = 4;

/// One 0x2A35 value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BloodPressureMeasurement {
    /// The unit of the three pressures.
    pub unit: PressureUnit,
    /// Systolic pressure.
    pub systolic: Sfloat,
    /// Diastolic pressure.
    pub diastolic: Sfloat,
    /// Mean arterial pressure (NaN when the device does not compute it).
    pub mean_arterial_pressure: Sfloat,
    /// When the measurement was taken, in the device's time.
    pub time_stamp: Option<DateTime>,
    /// Pulse rate in beats per minute.
    pub pulse_rate: Option<Sfloat>,
    /// The device's user index (255: unknown user).
    pub user_id: Option<u8>,
    /// The Measurement Status bits (body movement, cuff fit, irregular pulse, pulse rate
    /// range, measurement position), as sent.
    pub measurement_status: Option<u16>,
}

/// The unit of a blood pressure (flags bit 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PressureUnit {
    /// Millimetres of mercury.
    MmHg,
    /// Kilopascals.
    KPa,
}

impl PressureUnit {
    fn name(self) -> &'static str {
        match self {
            PressureUnit::MmHg => "mmHg",
            PressureUnit::KPa => "kPa",
        }
    }
}

impl BloodPressureMeasurement {
    /// Decodes a 0x2A35 value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let unit = if is_set(flags, UNITS_KPA) { PressureUnit::KPa } else { PressureUnit::MmHg };
        let systolic = reader.sfloat("Systolic")?;
        let diastolic = reader.sfloat("Diastolic")?;
        let mean_arterial_pressure = reader.sfloat("Mean Arterial Pressure")?;
        let time_stamp = is_set(flags, TIME_STAMP_PRESENT)
            .then(|| reader.date_time("Time Stamp"))
            .transpose()?;
        let pulse_rate =
            is_set(flags, PULSE_RATE_PRESENT).then(|| reader.sfloat("Pulse Rate")).transpose()?;
        let user_id = is_set(flags, USER_ID_PRESENT).then(|| reader.u8("User ID")).transpose()?;
        let measurement_status = is_set(flags, MEASUREMENT_STATUS_PRESENT)
            .then(|| reader.u16("Measurement Status"))
            .transpose()?;
        reader.finish()?;
        Ok(BloodPressureMeasurement {
            unit,
            systolic,
            diastolic,
            mean_arterial_pressure,
            time_stamp,
            pulse_rate,
            user_id,
            measurement_status,
        })
    }

    /// The value as a device sends it.
    pub fn encode(&self) -> Vec<u8> {
        let flags = flag(self.unit == PressureUnit::KPa, UNITS_KPA)
            | flag(self.time_stamp.is_some(), TIME_STAMP_PRESENT)
            | flag(self.pulse_rate.is_some(), PULSE_RATE_PRESENT)
            | flag(self.user_id.is_some(), USER_ID_PRESENT)
            | flag(self.measurement_status.is_some(), MEASUREMENT_STATUS_PRESENT);
        let mut writer = Writer::default();
        writer.u8(flags).sfloat(self.systolic).sfloat(self.diastolic);
        writer.sfloat(self.mean_arterial_pressure);
        if let Some(stamp) = self.time_stamp {
            writer.date_time(stamp);
        }
        if let Some(pulse) = self.pulse_rate {
            writer.sfloat(pulse);
        }
        if let Some(user) = self.user_id {
            writer.u8(user);
        }
        if let Some(status) = self.measurement_status {
            writer.u16(status);
        }
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let mut object = Object::new();
        object
            .string("unit", self.unit.name())
            .medfloat("systolic", self.systolic.value())
            .medfloat("diastolic", self.diastolic.value())
            .medfloat("mean_arterial_pressure", self.mean_arterial_pressure.value());
        if let Some(stamp) = self.time_stamp {
            object.string("timestamp", &stamp.to_string());
        }
        if let Some(pulse) = self.pulse_rate {
            object.medfloat("pulse_rate", pulse.value());
        }
        if let Some(user) = self.user_id {
            object.integer("user_id", user);
        }
        if let Some(status) = self.measurement_status {
            object.integer("measurement_status", status);
        }
        object.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::BloodPressureMeasurement;

    const PRESSURES: [u8; 6] = [0x78, 0x00, 0x50, 0x00, 0x5D, 0x00];
    const STAMP: [u8; 7] = [0xE8, 0x07, 0x03, 0x01, 0x09, 0x1E, 0x00];

    fn json(payload: &[u8]) -> String {
        BloodPressureMeasurement::decode(payload).unwrap().to_json()
    }

    fn reason(payload: &[u8]) -> String {
        BloodPressureMeasurement::decode(payload).unwrap_err().reason().to_owned()
    }

    fn payload(flags: u8) -> Vec<u8> {
        let mut payload = vec![flags];
        payload.extend_from_slice(&PRESSURES);
        if flags & 0b10 != 0 {
            payload.extend_from_slice(&STAMP);
        }
        if flags & 0b100 != 0 {
            payload.extend_from_slice(&[0x48, 0x00]);
        }
        if flags & 0b1000 != 0 {
            payload.push(0x02);
        }
        if flags & 0b1_0000 != 0 {
            payload.extend_from_slice(&[0x05, 0x00]);
        }
        payload
    }

    #[test]
    fn every_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..32 {
            let json = json(&payload(flags));
            let unit = if flags & 1 != 0 { "kPa" } else { "mmHg" };
            assert!(json.starts_with(&format!(r#"{{"unit": "{unit}", "systolic": 120, "diastolic": 80, "mean_arterial_pressure": 93"#)), "{json}");
            assert_eq!(json.contains(r#""timestamp": "2024-03-01T09:30:00""#), flags & 0b10 != 0);
            assert_eq!(json.contains(r#""pulse_rate": 72"#), flags & 0b100 != 0);
            assert_eq!(json.contains(r#""user_id": 2"#), flags & 0b1000 != 0);
            assert_eq!(json.contains(r#""measurement_status": 5"#), flags & 0b1_0000 != 0);
        }
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        assert_eq!(json(&[0xE0, 0x78, 0x00, 0x50, 0x00, 0x5D, 0x00]), json(&payload(0)));
    }

    #[test]
    fn every_special_value_is_kept_distinct() {
        let payload = [0x04, 0xFF, 0x07, 0x00, 0x08, 0xFE, 0x07, 0x02, 0x08];
        assert_eq!(
            json(&payload),
            r#"{"unit": "mmHg", "systolic": "NaN", "diastolic": "NRes", "mean_arterial_pressure": "+INF", "pulse_rate": "-INF"}"#
        );
        let reserved = [0x00, 0x01, 0x08, 0x50, 0x00, 0x5D, 0x00];
        assert!(json(&reserved).contains(r#""systolic": "RESERVED""#));
    }

    #[test]
    fn a_decimal_pressure_is_exact() {
        let payload = [0x01, 0xA3, 0xF2, 0x6B, 0xF0, 0xB2, 0xF0];
        assert_eq!(
            json(&payload),
            r#"{"unit": "kPa", "systolic": 67.5, "diastolic": 10.7, "mean_arterial_pressure": 17.8}"#
        );
    }

    #[test]
    fn each_missing_field_is_refused_by_name() {
        assert_eq!(reason(&[]), "empty payload");
        for (flags, cut, field) in [
            (0x00, 1, "Systolic"),
            (0x00, 3, "Diastolic"),
            (0x00, 5, "Mean Arterial Pressure"),
            (0x02, 7, "Time Stamp"),
            (0x04, 7, "Pulse Rate"),
            (0x08, 7, "User ID"),
            (0x10, 7, "Measurement Status"),
            (0x1E, 18, "Measurement Status"),
        ] {
            let full = payload(flags);
            assert!(reason(&full[..cut]).contains(field), "{flags:#04x} cut at {cut}");
        }
    }

    #[test]
    fn trailing_octets_are_refused() {
        let mut long = payload(0x1F);
        long.push(0x00);
        assert!(reason(&long).contains("1 trailing octet"));
    }

    #[test]
    fn a_time_stamp_out_of_range_is_refused() {
        let mut bad = payload(0x02);
        bad[9] = 13;
        assert_eq!(reason(&bad), "Time Stamp: month 13 is out of range");
    }
}
