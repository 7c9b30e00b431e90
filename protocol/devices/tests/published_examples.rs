//! Payloads other people published, with what they say the payload holds, decoded here.
//!
//! Sources (the bytes and the expected values are theirs; the JSON shape is ours):
//! - Medrix issue 17: the blood pressure example.
//! - Nordic Semiconductor, Android-BLE-Common-Library, `ble-common/src/test/.../callback/`
//!   `bps/BloodPressureMeasurementDataCallbackTest`, `hr/HeartRateMeasurementDataCallbackTest`,
//!   `ht/TemperatureMeasurementDataCallbackTest`, `glucose/GlucoseMeasurementDataCallbackTest`,
//!   `cgm/ContinuousGlucoseMeasurementDataCallbackTest` (BSD-3-Clause).
//! - Stanford Spezi, SpeziBluetooth, `Tests/SpeziBluetoothServicesTests/PLXTests.swift`
//!   (MIT), and SpeziKt, `WeightDataConverterTest` (MIT).
//!
//! Where a source states a float (Nordic's 18.9 kPa), the decoder here gives the exact
//! decimal the bytes hold; where it states a precision-free number (Spezi's 99), the bytes
//! carry a precision (990 × 10^-1), and the decimal keeps it: 99.0.

use medrix_devices::{Characteristic, decode};

fn bytes(hex: &str) -> Vec<u8> {
    let digits: Vec<char> = hex.chars().filter(|c| !c.is_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(&pair.iter().collect::<String>(), 16).unwrap())
        .collect()
}

fn json(uuid: u16, hex: &str) -> String {
    let characteristic = Characteristic::from_uuid(uuid).unwrap();
    decode(characteristic, &bytes(hex)).unwrap().to_json()
}

fn reason(uuid: u16, hex: &str) -> String {
    let characteristic = Characteristic::from_uuid(uuid).unwrap();
    decode(characteristic, &bytes(hex)).unwrap_err().reason().to_owned()
}

/// Every example decodes to valid JSON, and re-encoding the reading gives the same bytes.
fn check_round_trip(uuid: u16, hex: &str) {
    let characteristic = Characteristic::from_uuid(uuid).unwrap();
    let reading = decode(characteristic, &bytes(hex)).unwrap();
    assert_eq!(reading.encode(), bytes(hex), "{uuid:04X} {hex}");
    serde_json::from_str::<serde_json::Value>(&reading.to_json()).unwrap();
}

#[test]
fn the_issue_blood_pressure_example_is_120_over_80() {
    assert_eq!(
        json(0x2A35, "00780050005d00"),
        r#"{"unit": "mmHg", "systolic": 120, "diastolic": 80, "mean_arterial_pressure": 93}"#
    );
    check_round_trip(0x2A35, "00780050005d00");
}

#[test]
fn nordic_blood_pressure_examples_decode_as_published() {
    // `_full`: 138/88/120 mmHg, year unknown, 17 April 20:41:59, pulse 60, user 1, status
    // bits 0, 1, 2 and 5.
    let full = "1e 8a00 5800 7800 0000 04 11 14 29 3b 3c00 01 2700";
    assert_eq!(
        json(0x2A35, full),
        r#"{"unit": "mmHg", "systolic": 138, "diastolic": 88, "mean_arterial_pressure": 120, "timestamp": "0000-04-17T20:41:59", "pulse_rate": 60, "user_id": 1, "measurement_status": 39}"#
    );
    // `_some`: 18.9/11.0/15.9 kPa, pulse 60, status bits 1 and 4.
    let some = "15 bdf0 0b00 9ff0 3c00 1200";
    assert_eq!(
        json(0x2A35, some),
        r#"{"unit": "kPa", "systolic": 18.9, "diastolic": 11, "mean_arterial_pressure": 15.9, "pulse_rate": 60, "measurement_status": 18}"#
    );
    // `_minimal`: the same pressures in mmHg and nothing else.
    let minimal = "00 bdf0 0b00 9ff0";
    assert_eq!(
        json(0x2A35, minimal),
        r#"{"unit": "mmHg", "systolic": 18.9, "diastolic": 11, "mean_arterial_pressure": 15.9}"#
    );
    for hex in [full, some, minimal] {
        check_round_trip(0x2A35, hex);
    }
    // `onInvalidDataReceived_toShort` and `_noTimestamp`.
    assert!(reason(0x2A35, "010203040506").contains("Mean Arterial Pressure"));
    assert!(reason(0x2A35, "03020304050607").contains("Time Stamp"));
}

#[test]
fn nordic_heart_rate_examples_decode_as_published() {
    assert_eq!(json(0x2A37, "0055"), r#"{"heart_rate": 85, "sensor_contact": "not_supported"}"#);
    assert_eq!(json(0x2A37, "04ff"), r#"{"heart_rate": 255, "sensor_contact": "not_detected"}"#);
    assert_eq!(
        json(0x2A37, "1e 55 3200 2100"),
        r#"{"heart_rate": 85, "sensor_contact": "detected", "energy_expended_kj": 50, "rr_intervals_s": [0.0322265625]}"#
    );
    assert_eq!(
        json(0x2A37, "1f 0101 3201 0100 0201 ffff"),
        r#"{"heart_rate": 257, "sensor_contact": "detected", "energy_expended_kj": 306, "rr_intervals_s": [0.0009765625, 0.251953125, 63.9990234375]}"#
    );
    for hex in ["0055", "04ff", "1e 55 3200 2100", "1f 0101 3201 0100 0201 ffff"] {
        check_round_trip(0x2A37, hex);
    }
    // `onInvalidDataReceived`: the RR flag without an RR-interval.
    assert!(reason(0x2A37, "170101").contains("RR-Interval"));
}

#[test]
fn the_nordic_temperature_example_decodes_as_published() {
    let hex = "06 b00e00fe dc070c050b321b 04";
    assert_eq!(
        json(0x2A1C, hex),
        r#"{"unit": "C", "temperature": 37.60, "timestamp": "2012-12-05T11:50:27", "temperature_type": 4}"#
    );
    check_round_trip(0x2A1C, hex);
    assert!(reason(0x2A1C, "06 b00e00fe dc070c050b321b").contains("Temperature Type"));
}

#[test]
fn the_nordic_glucose_example_decodes_as_published() {
    let hex = "1b 0100 e307021b0b0a1e fbff 1e00 12 0501";
    assert_eq!(
        json(0x2A18, hex),
        r#"{"sequence_number": 1, "base_time": "2019-02-27T11:10:30", "time_offset_minutes": -5, "concentration": 30, "concentration_unit": "kg/L", "glucose_type": 2, "sample_location": 1, "sensor_status": 261, "context_information_follows": true}"#
    );
    check_round_trip(0x2A18, hex);
    // The invalid example lacks the time offset its flags promise: 15 octets, not 17.
    assert!(reason(0x2A18, "1b 0000 e207041a0b091e 1e00 12 0501").contains("Sensor Status"));
}

#[test]
fn nordic_cgm_examples_decode_as_published() {
    // `_full`: 12.34 mg/dL at minute 5, all three annunciation octets, trend 0.2, quality
    // 99.7, and the E2E-CRC 0x3F8E.
    let full = "0f e3 d2e4 0500 02 14 ff 02f0 e5f3 8e3f";
    assert_eq!(
        json(0x2AA7, full),
        r#"{"records": [{"cgm_glucose_concentration": 12.34, "time_offset": 5, "status_octet": 2, "cal_temp_octet": 20, "warning_octet": 255, "cgm_trend_information": 0.2, "cgm_quality": 99.7, "e2e_crc": 16270}]}"#
    );
    // `_small` and `_double`: 120 mg/dL (12 × 10^1), one record and two.
    let small = "06 00 0c10 0600";
    assert_eq!(
        json(0x2AA7, small),
        r#"{"records": [{"cgm_glucose_concentration": 120, "time_offset": 6}]}"#
    );
    let double = "06 00 0c10 0500 06 00 0c10 0600";
    assert_eq!(
        json(0x2AA7, double),
        r#"{"records": [{"cgm_glucose_concentration": 120, "time_offset": 5}, {"cgm_glucose_concentration": 120, "time_offset": 6}]}"#
    );
    for hex in [full, small, double] {
        check_round_trip(0x2AA7, hex);
    }
    // `_crcError`: the record's CRC is 0x6F59; the device sent 0x6F58.
    assert_eq!(
        reason(0x2AA7, "08 00 0c10 0600 586f"),
        "record 1: E2E-CRC is 0x6f58, the record's octets give 0x6f59"
    );
    // `onInvalidDataReceived_tooShort` and `onInvalidDataReceived`.
    assert_eq!(reason(0x2AA7, "06 e3 0c10 06"), "record 1: Size 6 but 5 octets left");
    assert!(reason(0x2AA7, "07 e3 0c10 0600 00").contains("Cal/Temp-Octet"));
}

#[test]
fn spezi_pulse_oximetry_examples_decode_as_published() {
    // testVerySimpleMeasurementCoding: 100 % and 90 bpm, encoded with one decimal and without.
    assert_eq!(json(0x2A5F, "00 e8f3 84f3"), r#"{"spo2": 100.0, "pulse_rate": 90.0}"#);
    assert_eq!(json(0x2A5F, "00 6400 5a00"), r#"{"spo2": 100, "pulse_rate": 90}"#);
    // testSimpleMeasurementCoding: 95 %, 90 bpm, measurement ongoing, PAI 8.7.
    let simple = "1c 5f00 5a00 2000 000000 57f0";
    assert_eq!(
        json(0x2A5F, simple),
        r#"{"spo2": 95, "pulse_rate": 90, "measurement_status": 32, "device_and_sensor_status": 0, "pulse_amplitude_index": 8.7}"#
    );
    // testFullMeasurementCoding: normal 99/97, fast 97/137, slow 98/69, PAI 8.9.
    let full = "1f def3 caf3 caf3 5af5 d4f3 b2f2 2001 000000 7ae3";
    assert_eq!(
        json(0x2A5F, full),
        r#"{"spo2": 99.0, "pulse_rate": 97.0, "spo2_fast": 97.0, "pulse_rate_fast": 137.0, "spo2_slow": 98.0, "pulse_rate_slow": 69.0, "measurement_status": 288, "device_and_sensor_status": 0, "pulse_amplitude_index": 8.90}"#
    );
    // testSpotCheckMeasurementCoding: 94 %, 147 bpm, 2024-11-29 23:08:57, ongoing and
    // questionable, equipment malfunction and low perfusion, PAI 8.7.
    let spot = "0f acf3 bef5 e8070b1d170839 2040 220000 66e3";
    assert_eq!(
        json(0x2A5E, spot),
        r#"{"spo2": 94.0, "pulse_rate": 147.0, "timestamp": "2024-11-29T23:08:57", "measurement_status": 16416, "device_and_sensor_status": 34, "pulse_amplitude_index": 8.70, "device_clock_not_set": false}"#
    );
    for (uuid, hex) in [(0x2A5F, "00 e8f3 84f3"), (0x2A5F, simple), (0x2A5F, full), (0x2A5E, spot)]
    {
        check_round_trip(uuid, hex);
    }
}

#[test]
fn spezi_weight_examples_decode_as_published() {
    // 23.2 kg and 18.0 kg for user 1, with an all-unknown time stamp.
    assert_eq!(
        json(0x2A9D, "06 2012 00000000000000 01"),
        r#"{"unit": "kg", "weight": 23.200, "timestamp": "0000-00-00T00:00:00", "user_id": 1}"#
    );
    assert_eq!(
        json(0x2A9D, "06 100e 00000000000000 01"),
        r#"{"unit": "kg", "weight": 18.000, "timestamp": "0000-00-00T00:00:00", "user_id": 1}"#
    );
    check_round_trip(0x2A9D, "06 2012 00000000000000 01");
}
