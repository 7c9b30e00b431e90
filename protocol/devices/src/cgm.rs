//! CGM Measurement, characteristic 0x2AA7 of the Continuous Glucose Monitoring Service.
//!
//! One value carries one or more records, each starting with its own size. Whether a record
//! ends with an E2E-CRC is a feature of the sensor (CGM Feature, 0x2AA8), not a flag, so the
//! size tells: exactly the fields the flags announce, or two octets more for the CRC. A CRC
//! that is present must be right.

use crate::error::{DecodeError, malformed};
use crate::json::{self, Object};
use crate::medfloat::Sfloat;
use crate::wire::{Reader, Writer, flag, is_set};

const TREND_PRESENT: u8 = 0;
const QUALITY_PRESENT: u8 = 1;
const WARNING_OCTET_PRESENT: u8 = 5;
const CAL_TEMP_OCTET_PRESENT: u8 = 6;
const STATUS_OCTET_PRESENT: u8 = 7;

/// Size, Flags, CGM Glucose Concentration and Time Offset: the octets every record has.
const MINIMUM_RECORD_SIZE: usize = 6;

/// One 0x2AA7 value: its records in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgmMeasurement {
    /// At least one record.
    pub records: Vec<CgmRecord>,
}

/// One CGM Measurement record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgmRecord {
    /// Glucose concentration in mg/dL.
    pub glucose_concentration: Sfloat,
    /// Minutes since the session start time.
    pub time_offset_minutes: u16,
    /// Sensor Status Annunciation bits 0–7 (session stopped, battery low, sensor type
    /// incorrect, malfunction, device specific alert, general fault).
    pub status_octet: Option<u8>,
    /// Bits 8–15 (time synchronization required, calibration not allowed, recommended,
    /// required, sensor temperature too high or too low, calibration pending).
    pub cal_temp_octet: Option<u8>,
    /// Bits 16–23 (below patient low, above patient high, below hypo, above hyper, rate of
    /// decrease or increase exceeded, below or above what the device can process).
    pub warning_octet: Option<u8>,
    /// Trend in (mg/dL)/min.
    pub trend_information: Option<Sfloat>,
    /// Quality in percent.
    pub quality: Option<Sfloat>,
    /// Whether the record ends with an E2E-CRC (checked when decoding, computed when
    /// encoding).
    pub e2e_crc: bool,
}

/// CRC-16/MCRF4XX (the CRC-CCITT polynomial, reflected, seed 0xFFFF, no final XOR): the
/// E2E-CRC of the CGM Service.
pub fn e2e_crc(octets: &[u8]) -> u16 {
    octets.iter().fold(0xFFFF, |crc, &octet| {
        (0..8).fold(crc ^ u16::from(octet), |crc, _| {
            if crc & 1 == 1 { (crc >> 1) ^ 0x8408 } else { crc >> 1 }
        })
    })
}

impl CgmRecord {
    /// The octets the flags announce, without a CRC.
    fn size_without_crc(&self) -> usize {
        let octets = [self.status_octet, self.cal_temp_octet, self.warning_octet];
        MINIMUM_RECORD_SIZE
            + octets.iter().flatten().count()
            + 2 * usize::from(self.trend_information.is_some())
            + 2 * usize::from(self.quality.is_some())
    }

    /// Decodes one record, all of whose octets are `record` (its Size field included).
    fn decode(record: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(record);
        reader.u8("Size")?;
        let flags = reader.u8("Flags")?;
        let glucose_concentration = reader.sfloat("CGM Glucose Concentration")?;
        let time_offset_minutes = reader.u16("Time Offset")?;
        // The annunciation's octets travel least significant first.
        let mut octet =
            |bit: u8, name: &str| is_set(flags, bit).then(|| reader.u8(name)).transpose();
        let status_octet = octet(STATUS_OCTET_PRESENT, "Status-Octet")?;
        let cal_temp_octet = octet(CAL_TEMP_OCTET_PRESENT, "Cal/Temp-Octet")?;
        let warning_octet = octet(WARNING_OCTET_PRESENT, "Warning-Octet")?;
        let trend_information = is_set(flags, TREND_PRESENT)
            .then(|| reader.sfloat("CGM Trend Information"))
            .transpose()?;
        let quality =
            is_set(flags, QUALITY_PRESENT).then(|| reader.sfloat("CGM Quality")).transpose()?;
        let has_crc = match reader.remaining() {
            0 => false,
            2 => true,
            _ => {
                let expected = record.len() - reader.remaining();
                return Err(malformed(format!(
                    "Size {} does not match its Flags ({expected} octets, or {} with E2E-CRC)",
                    record.len(),
                    expected + 2
                )));
            }
        };
        if has_crc {
            let sent = reader.u16("E2E-CRC")?;
            let computed = e2e_crc(&record[..record.len() - 2]);
            if sent != computed {
                return Err(malformed(format!(
                    "E2E-CRC is {sent:#06x}, the record's octets give {computed:#06x}"
                )));
            }
        }
        reader.finish()?;
        Ok(CgmRecord {
            glucose_concentration,
            time_offset_minutes,
            status_octet,
            cal_temp_octet,
            warning_octet,
            trend_information,
            quality,
            e2e_crc: has_crc,
        })
    }

    /// The record's octets, Size first and the CRC (if any) last.
    fn octets(&self) -> Vec<u8> {
        let flags = flag(self.trend_information.is_some(), TREND_PRESENT)
            | flag(self.quality.is_some(), QUALITY_PRESENT)
            | flag(self.warning_octet.is_some(), WARNING_OCTET_PRESENT)
            | flag(self.cal_temp_octet.is_some(), CAL_TEMP_OCTET_PRESENT)
            | flag(self.status_octet.is_some(), STATUS_OCTET_PRESENT);
        let size = self.size_without_crc() + if self.e2e_crc { 2 } else { 0 };
        let mut record = Writer::default();
        // At most 6 + 3 + 2 + 2 + 2 = 15 octets.
        record.u8(size as u8).u8(flags).sfloat(self.glucose_concentration);
        record.u16(self.time_offset_minutes);
        for octet in
            [self.status_octet, self.cal_temp_octet, self.warning_octet].into_iter().flatten()
        {
            record.u8(octet);
        }
        for value in [self.trend_information, self.quality].into_iter().flatten() {
            record.sfloat(value);
        }
        let mut octets = record.into_bytes();
        if self.e2e_crc {
            let crc = e2e_crc(&octets);
            octets.extend_from_slice(&crc.to_le_bytes());
        }
        octets
    }

    fn to_json(self) -> String {
        let mut object = Object::new();
        object
            .medfloat("cgm_glucose_concentration", self.glucose_concentration.value())
            .integer("time_offset", self.time_offset_minutes);
        let octets = [
            ("status_octet", self.status_octet),
            ("cal_temp_octet", self.cal_temp_octet),
            ("warning_octet", self.warning_octet),
        ];
        for (key, octet) in octets {
            if let Some(octet) = octet {
                object.integer(key, octet);
            }
        }
        if let Some(trend) = self.trend_information {
            object.medfloat("cgm_trend_information", trend.value());
        }
        if let Some(quality) = self.quality {
            object.medfloat("cgm_quality", quality.value());
        }
        if self.e2e_crc
            && let [.., low, high] = self.octets()[..]
        {
            object.integer("e2e_crc", u16::from_le_bytes([low, high]));
        }
        object.finish()
    }
}

impl CgmMeasurement {
    /// Decodes a 0x2AA7 value: records back to back, each `Size` octets long.
    pub fn decode(payload: &[u8]) -> Result<Self, DecodeError> {
        if payload.is_empty() {
            return Err(malformed("empty payload"));
        }
        let mut records = Vec::new();
        let mut rest = payload;
        while let Some(&size) = rest.first() {
            let number = records.len() + 1;
            let size = usize::from(size);
            let in_record = |reason: String| malformed(format!("record {number}: {reason}"));
            if size < MINIMUM_RECORD_SIZE {
                return Err(in_record(format!(
                    "Size {size} is below the {MINIMUM_RECORD_SIZE}-octet minimum"
                )));
            }
            let Some(record) = rest.get(..size) else {
                return Err(in_record(format!("Size {size} but {} octets left", rest.len())));
            };
            let decoded = CgmRecord::decode(record)
                .map_err(|DecodeError::Malformed(reason)| in_record(reason))?;
            records.push(decoded);
            rest = &rest[size..];
        }
        Ok(CgmMeasurement { records })
    }

    /// The value as a sensor sends it.
    pub fn encode(&self) -> Vec<u8> {
        self.records.iter().flat_map(CgmRecord::octets).collect()
    }

    /// The reading as one JSON object, `{"records": [...]}` (spec/devices.md names the keys).
    pub fn to_json(&self) -> String {
        let records = json::array(self.records.iter().map(|record| record.to_json()));
        Object::new().raw("records", &records).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::{CgmMeasurement, e2e_crc};

    fn json(payload: &[u8]) -> String {
        CgmMeasurement::decode(payload).unwrap().to_json()
    }

    fn reason(payload: &[u8]) -> String {
        CgmMeasurement::decode(payload).unwrap_err().reason().to_owned()
    }

    /// A record with the given flags: 95 mg/dL at minute 10, octets 0x01/0x02/0x04, trend
    /// -1.5, quality 90; with a CRC when `crc`.
    fn record(flags: u8, crc: bool) -> Vec<u8> {
        let mut record = vec![0, flags, 0x5F, 0x00, 0x0A, 0x00];
        for (bit, octet) in [(7, 0x01), (6, 0x02), (5, 0x04)] {
            if flags & (1 << bit) != 0 {
                record.push(octet);
            }
        }
        if flags & 0b1 != 0 {
            record.extend_from_slice(&[0xF1, 0xFF]);
        }
        if flags & 0b10 != 0 {
            record.extend_from_slice(&[0x5A, 0x00]);
        }
        record[0] = (record.len() + if crc { 2 } else { 0 }) as u8;
        if crc {
            let crc = e2e_crc(&record);
            record.extend_from_slice(&crc.to_le_bytes());
        }
        record
    }

    #[test]
    fn the_crc_is_crc16_mcrf4xx() {
        // The catalogue check value of CRC-16/MCRF4XX.
        assert_eq!(e2e_crc(b"123456789"), 0x6F91);
    }

    #[test]
    fn every_flag_combination_decodes_the_fields_it_promises() {
        for flags in (0u8..=255).filter(|flags| flags & 0b1_1100 == 0) {
            for crc in [false, true] {
                let json = json(&record(flags, crc));
                assert!(
                    json.starts_with(
                        r#"{"records": [{"cgm_glucose_concentration": 95, "time_offset": 10"#
                    ),
                    "{json}"
                );
                assert_eq!(json.contains(r#""status_octet": 1"#), flags & 0x80 != 0, "{json}");
                assert_eq!(json.contains(r#""cal_temp_octet": 2"#), flags & 0x40 != 0, "{json}");
                assert_eq!(json.contains(r#""warning_octet": 4"#), flags & 0x20 != 0, "{json}");
                assert_eq!(json.contains(r#""cgm_trend_information": -1.5"#), flags & 1 != 0);
                assert_eq!(json.contains(r#""cgm_quality": 90"#), flags & 0b10 != 0, "{json}");
                assert_eq!(json.contains(r#""e2e_crc": "#), crc, "{json}");
            }
        }
    }

    #[test]
    fn reserved_flag_bits_are_ignored() {
        let mut with_reserved = record(0x00, false);
        with_reserved[1] = 0b1_1100;
        assert_eq!(json(&with_reserved), json(&record(0x00, false)));
    }

    #[test]
    fn several_records_decode_in_order() {
        let mut payload = record(0x00, false);
        payload.extend_from_slice(&record(0xE3, true));
        let reading = CgmMeasurement::decode(&payload).unwrap();
        assert_eq!(reading.records.len(), 2);
        assert!(!reading.records[0].e2e_crc);
        assert!(reading.records[1].e2e_crc);
        assert_eq!(reading.encode(), payload);
    }

    #[test]
    fn every_special_value_is_kept_distinct() {
        let payload = [0x0A, 0x03, 0xFF, 0x07, 0x00, 0x00, 0x00, 0x08, 0xFE, 0x07];
        assert_eq!(
            json(&payload),
            r#"{"records": [{"cgm_glucose_concentration": "NaN", "time_offset": 0, "cgm_trend_information": "NRes", "cgm_quality": "+INF"}]}"#
        );
        let payload = [0x08, 0x01, 0x02, 0x08, 0x00, 0x00, 0x01, 0x08];
        assert!(json(&payload).contains(r#""cgm_glucose_concentration": "-INF""#));
        assert!(json(&payload).contains(r#""cgm_trend_information": "RESERVED""#));
    }

    #[test]
    fn a_wrong_crc_is_refused() {
        let mut payload = record(0x03, true);
        let last = payload.len() - 1;
        payload[last] ^= 0x01;
        assert!(reason(&payload).starts_with("record 1: E2E-CRC is 0x"), "{}", reason(&payload));
    }

    #[test]
    fn sizes_that_do_not_match_the_flags_are_refused() {
        assert_eq!(reason(&[]), "empty payload");
        assert_eq!(reason(&[0x05, 0, 0, 0, 0]), "record 1: Size 5 is below the 6-octet minimum");
        assert_eq!(reason(&[0x07, 0, 0, 0, 0, 0]), "record 1: Size 7 but 6 octets left");
        let mut one_more = record(0x00, false);
        one_more[0] = 7;
        one_more.push(0);
        assert_eq!(
            reason(&one_more),
            "record 1: Size 7 does not match its Flags (6 octets, or 8 with E2E-CRC)"
        );
        let mut short = record(0x03, false);
        short[0] = 8;
        short.truncate(8);
        assert!(reason(&short).contains("CGM Quality"), "{}", reason(&short));
    }

    #[test]
    fn a_broken_second_record_is_named() {
        let mut payload = record(0x00, false);
        payload.extend_from_slice(&[0x06, 0x00, 0x00]);
        assert_eq!(reason(&payload), "record 2: Size 6 but 3 octets left");
    }
}
