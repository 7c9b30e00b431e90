//! PLX Spot-Check Measurement (0x2A5E) and PLX Continuous Measurement (0x2A5F), the two
//! readings of the Pulse Oximeter Service.

use crate::date_time::DateTime;
use crate::error::DecodeError;
use crate::json::Object;
use crate::medfloat::Sfloat;
use crate::wire::{Reader, Writer, flag, is_set};

/// An SpO2 (percent) and pulse rate (beats per minute) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spo2Pr {
    /// Oxygen saturation, percent.
    pub spo2: Sfloat,
    /// Pulse rate, beats per minute.
    pub pulse_rate: Sfloat,
}

impl Spo2Pr {
    fn read(reader: &mut Reader<'_>, name: &str) -> Result<Self, DecodeError> {
        let spo2 = reader.sfloat(&format!("{name} SpO2"))?;
        let pulse_rate = reader.sfloat(&format!("{name} PR"))?;
        Ok(Spo2Pr { spo2, pulse_rate })
    }

    fn write(self, writer: &mut Writer) {
        writer.sfloat(self.spo2).sfloat(self.pulse_rate);
    }
}

/// The statuses both readings may carry, as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statuses {
    /// Measurement Status bits (ongoing, early estimate, validated, questionable, ...).
    pub measurement_status: Option<u16>,
    /// Device and Sensor Status bits, 24 of them (low perfusion, sensor displaced, ...).
    pub device_and_sensor_status: Option<u32>,
    /// Pulse amplitude index, percent.
    pub pulse_amplitude_index: Option<Sfloat>,
}

impl Statuses {
    /// Reads the three optional fields in wire order; `bits` are the flag bits announcing
    /// each (they differ between the two characteristics).
    fn read(reader: &mut Reader<'_>, flags: u8, bits: [u8; 3]) -> Result<Self, DecodeError> {
        let [status_bit, device_bit, index_bit] = bits;
        let measurement_status =
            is_set(flags, status_bit).then(|| reader.u16("Measurement Status")).transpose()?;
        let device_and_sensor_status = is_set(flags, device_bit)
            .then(|| reader.u24("Device and Sensor Status"))
            .transpose()?;
        let pulse_amplitude_index =
            is_set(flags, index_bit).then(|| reader.sfloat("Pulse Amplitude Index")).transpose()?;
        Ok(Statuses { measurement_status, device_and_sensor_status, pulse_amplitude_index })
    }

    fn flags(&self, bits: [u8; 3]) -> u8 {
        let [status_bit, device_bit, index_bit] = bits;
        flag(self.measurement_status.is_some(), status_bit)
            | flag(self.device_and_sensor_status.is_some(), device_bit)
            | flag(self.pulse_amplitude_index.is_some(), index_bit)
    }

    fn write(&self, writer: &mut Writer) {
        if let Some(status) = self.measurement_status {
            writer.u16(status);
        }
        if let Some(status) = self.device_and_sensor_status {
            writer.u24(status);
        }
        if let Some(index) = self.pulse_amplitude_index {
            writer.sfloat(index);
        }
    }

    fn write_json(&self, object: &mut Object) {
        if let Some(status) = self.measurement_status {
            object.integer("measurement_status", status);
        }
        if let Some(status) = self.device_and_sensor_status {
            object.integer("device_and_sensor_status", status);
        }
        if let Some(index) = self.pulse_amplitude_index {
            object.medfloat("pulse_amplitude_index", index.value());
        }
    }
}

const SPOT_TIME_STAMP_PRESENT: u8 = 0;
const SPOT_STATUS_BITS: [u8; 3] = [1, 2, 3];
const SPOT_DEVICE_CLOCK_NOT_SET: u8 = 4;

/// One 0x2A5E value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlxSpotCheckMeasurement {
    /// The spot-check SpO2 and pulse rate.
    pub reading: Spo2Pr,
    /// When the measurement was taken, in the device's time.
    pub time_stamp: Option<DateTime>,
    /// The measurement, device and sensor statuses and the pulse amplitude index.
    pub statuses: Statuses,
    /// Flags bit 4: the device's clock is not set, so its time stamps are not meaningful.
    pub device_clock_not_set: bool,
}

impl PlxSpotCheckMeasurement {
    /// Decodes a 0x2A5E value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let reading = Spo2Pr::read(&mut reader, "SpO2PR-Spot-Check")?;
        let time_stamp = is_set(flags, SPOT_TIME_STAMP_PRESENT)
            .then(|| reader.date_time("Timestamp"))
            .transpose()?;
        let statuses = Statuses::read(&mut reader, flags, SPOT_STATUS_BITS)?;
        reader.finish()?;
        Ok(PlxSpotCheckMeasurement {
            reading,
            time_stamp,
            statuses,
            device_clock_not_set: is_set(flags, SPOT_DEVICE_CLOCK_NOT_SET),
        })
    }

    /// The value as a device sends it.
    pub fn encode(&self) -> Vec<u8> {
        let flags = flag(self.time_stamp.is_some(), SPOT_TIME_STAMP_PRESENT)
            | self.statuses.flags(SPOT_STATUS_BITS)
            | flag(self.device_clock_not_set, SPOT_DEVICE_CLOCK_NOT_SET);
        let mut writer = Writer::default();
        writer.u8(flags);
        self.reading.write(&mut writer);
        if let Some(stamp) = self.time_stamp {
            writer.date_time(stamp);
        }
        self.statuses.write(&mut writer);
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let mut object = Object::new();
        object
            .medfloat("spo2", self.reading.spo2.value())
            .medfloat("pulse_rate", self.reading.pulse_rate.value());
        if let Some(stamp) = self.time_stamp {
            object.string("timestamp", &stamp.to_string());
        }
        self.statuses.write_json(&mut object);
        object.boolean("device_clock_not_set", self.device_clock_not_set);
        object.finish()
    }
}

const CONTINUOUS_FAST_PRESENT: u8 = 0;
const CONTINUOUS_SLOW_PRESENT: u8 = 1;
const CONTINUOUS_STATUS_BITS: [u8; 3] = [2, 3, 4];

/// One 0x2A5F value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlxContinuousMeasurement {
    /// SpO2 and pulse rate averaged normally.
    pub normal: Spo2Pr,
    /// Averaged over a shorter time.
    pub fast: Option<Spo2Pr>,
    /// Averaged over a longer time.
    pub slow: Option<Spo2Pr>,
    /// The measurement, device and sensor statuses and the pulse amplitude index.
    pub statuses: Statuses,
}

impl PlxContinuousMeasurement {
    /// Decodes a 0x2A5F value.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(payload);
        let flags = reader.u8("Flags")?;
        let normal = Spo2Pr::read(&mut reader, "SpO2PR-Normal")?;
        let fast = is_set(flags, CONTINUOUS_FAST_PRESENT)
            .then(|| Spo2Pr::read(&mut reader, "SpO2PR-Fast"))
            .transpose()?;
        let slow = is_set(flags, CONTINUOUS_SLOW_PRESENT)
            .then(|| Spo2Pr::read(&mut reader, "SpO2PR-Slow"))
            .transpose()?;
        let statuses = Statuses::read(&mut reader, flags, CONTINUOUS_STATUS_BITS)?;
        reader.finish()?;
        Ok(PlxContinuousMeasurement { normal, fast, slow, statuses })
    }

    /// The value as a device sends it.
    pub fn encode(&self) -> Vec<u8> {
        let flags = flag(self.fast.is_some(), CONTINUOUS_FAST_PRESENT)
            | flag(self.slow.is_some(), CONTINUOUS_SLOW_PRESENT)
            | self.statuses.flags(CONTINUOUS_STATUS_BITS);
        let mut writer = Writer::default();
        writer.u8(flags);
        for pair in [Some(self.normal), self.fast, self.slow].into_iter().flatten() {
            pair.write(&mut writer);
        }
        self.statuses.write(&mut writer);
        writer.into_bytes()
    }

    /// The reading as one JSON object (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let mut object = Object::new();
        object
            .medfloat("spo2", self.normal.spo2.value())
            .medfloat("pulse_rate", self.normal.pulse_rate.value());
        if let Some(fast) = self.fast {
            object
                .medfloat("spo2_fast", fast.spo2.value())
                .medfloat("pulse_rate_fast", fast.pulse_rate.value());
        }
        if let Some(slow) = self.slow {
            object
                .medfloat("spo2_slow", slow.spo2.value())
                .medfloat("pulse_rate_slow", slow.pulse_rate.value());
        }
        self.statuses.write_json(&mut object);
        object.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{PlxContinuousMeasurement, PlxSpotCheckMeasurement};
    use crate::error::DecodeError;

    // 98 % and 72 bpm; 97.5 % (exponent -1) and 75 bpm; 99 % and 70 bpm.
    const NORMAL: [u8; 4] = [0x62, 0x00, 0x48, 0x00];
    const FAST: [u8; 4] = [0xCF, 0xF3, 0x4B, 0x00];
    const SLOW: [u8; 4] = [0x63, 0x00, 0x46, 0x00];
    const STAMP: [u8; 7] = [0xE8, 0x07, 0x03, 0x01, 0x07, 0x00, 0x00];
    const STATUSES: [u8; 7] = [0x20, 0x00, 0x40, 0x00, 0x00, 0x57, 0xF0];

    fn spot(flags: u8) -> Vec<u8> {
        let mut payload = vec![flags];
        payload.extend_from_slice(&NORMAL);
        if flags & 0b1 != 0 {
            payload.extend_from_slice(&STAMP);
        }
        push_statuses(&mut payload, flags >> 1);
        payload
    }

    fn continuous(flags: u8) -> Vec<u8> {
        let mut payload = vec![flags];
        payload.extend_from_slice(&NORMAL);
        if flags & 0b1 != 0 {
            payload.extend_from_slice(&FAST);
        }
        if flags & 0b10 != 0 {
            payload.extend_from_slice(&SLOW);
        }
        push_statuses(&mut payload, flags >> 2);
        payload
    }

    /// The statuses whose bits are set in the low three bits of `present`.
    fn push_statuses(payload: &mut Vec<u8>, present: u8) {
        for (bit, range) in [(0, 0..2), (1, 2..5), (2, 5..7)] {
            if present & (1 << bit) != 0 {
                payload.extend_from_slice(&STATUSES[range]);
            }
        }
    }

    fn check_statuses(json: &str, present: u8) {
        assert_eq!(json.contains(r#""measurement_status": 32"#), present & 0b1 != 0, "{json}");
        assert_eq!(json.contains(r#""device_and_sensor_status": 64"#), present & 0b10 != 0);
        assert_eq!(json.contains(r#""pulse_amplitude_index": 8.7"#), present & 0b100 != 0);
    }

    fn reason(result: Result<impl std::fmt::Debug, DecodeError>) -> String {
        result.unwrap_err().reason().to_owned()
    }

    #[test]
    fn every_spot_check_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..32 {
            let json = PlxSpotCheckMeasurement::decode(&spot(flags)).unwrap().to_json();
            assert!(json.starts_with(r#"{"spo2": 98, "pulse_rate": 72"#), "{json}");
            assert_eq!(json.contains(r#""timestamp": "2024-03-01T07:00:00""#), flags & 0b1 != 0);
            check_statuses(&json, flags >> 1);
            let clock = if flags & 0b1_0000 != 0 { "true" } else { "false" };
            assert!(json.ends_with(&format!(r#""device_clock_not_set": {clock}}}"#)), "{json}");
        }
    }

    #[test]
    fn every_continuous_flag_combination_decodes_the_fields_it_promises() {
        for flags in 0u8..32 {
            let json = PlxContinuousMeasurement::decode(&continuous(flags)).unwrap().to_json();
            assert!(json.starts_with(r#"{"spo2": 98, "pulse_rate": 72"#), "{json}");
            let fast = r#""spo2_fast": 97.5, "pulse_rate_fast": 75"#;
            assert_eq!(json.contains(fast), flags & 0b1 != 0, "{json}");
            let slow = r#""spo2_slow": 99, "pulse_rate_slow": 70"#;
            assert_eq!(json.contains(slow), flags & 0b10 != 0, "{json}");
            check_statuses(&json, flags >> 2);
        }
    }

    #[test]
    fn every_special_value_is_kept_distinct() {
        let payload = [0x08, 0xFF, 0x07, 0x00, 0x08, 0x01, 0x08];
        assert_eq!(
            PlxSpotCheckMeasurement::decode(&payload).unwrap().to_json(),
            r#"{"spo2": "NaN", "pulse_rate": "NRes", "pulse_amplitude_index": "RESERVED", "device_clock_not_set": false}"#
        );
        let payload = [0x01, 0xFE, 0x07, 0x02, 0x08, 0xFF, 0x07, 0xFF, 0x07];
        assert_eq!(
            PlxContinuousMeasurement::decode(&payload).unwrap().to_json(),
            r#"{"spo2": "+INF", "pulse_rate": "-INF", "spo2_fast": "NaN", "pulse_rate_fast": "NaN"}"#
        );
    }

    #[test]
    fn each_missing_spot_check_field_is_refused_by_name() {
        assert_eq!(reason(PlxSpotCheckMeasurement::decode(&[])), "empty payload");
        for (flags, cut, field) in [
            (0x00, 2, "SpO2PR-Spot-Check SpO2"),
            (0x00, 4, "SpO2PR-Spot-Check PR"),
            (0x01, 6, "Timestamp"),
            (0x02, 6, "Measurement Status"),
            (0x04, 7, "Device and Sensor Status"),
            (0x08, 6, "Pulse Amplitude Index"),
        ] {
            let full = spot(flags);
            let reason = reason(PlxSpotCheckMeasurement::decode(&full[..cut]));
            assert!(reason.contains(field), "{flags:#04x}: {reason}");
        }
    }

    #[test]
    fn each_missing_continuous_field_is_refused_by_name() {
        assert_eq!(reason(PlxContinuousMeasurement::decode(&[])), "empty payload");
        for (flags, cut, field) in [
            (0x00, 3, "SpO2PR-Normal PR"),
            (0x01, 6, "SpO2PR-Fast SpO2"),
            (0x02, 8, "SpO2PR-Slow PR"),
            (0x03, 10, "SpO2PR-Slow SpO2"),
            (0x04, 6, "Measurement Status"),
            (0x08, 7, "Device and Sensor Status"),
            (0x10, 6, "Pulse Amplitude Index"),
        ] {
            let full = continuous(flags);
            let reason = reason(PlxContinuousMeasurement::decode(&full[..cut]));
            assert!(reason.contains(field), "{flags:#04x}: {reason}");
        }
    }

    #[test]
    fn trailing_octets_are_refused() {
        let mut long = spot(0x1F);
        long.push(0);
        assert!(reason(PlxSpotCheckMeasurement::decode(&long)).contains("1 trailing octet"));
        let mut long = continuous(0x1F);
        long.extend_from_slice(&[0, 0]);
        assert!(reason(PlxContinuousMeasurement::decode(&long)).contains("2 trailing octets"));
    }
}
