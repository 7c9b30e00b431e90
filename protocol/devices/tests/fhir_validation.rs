//! Readings of every characteristic, with their flags and special values, mapped to FHIR R4
//! Observations and run through the pinned validator (`tests/fhir/validate.mjs`: structure,
//! required bindings, and the core vital-signs profiles each Observation claims). Needs
//! `./dev setup` (or `bash tests/fhir/setup`).

use std::path::{Path, PathBuf};

use medrix_devices::fhir::{ObservationContext, observations};
use medrix_devices::{Characteristic, decode};
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

#[path = "../../../tests/fhir/validate.rs"]
mod fhir_validator;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

/// Payloads covering each characteristic's units, optional fields and special values.
const READINGS: &[(Characteristic, &str, &str)] = &[
    (Characteristic::HeartRateMeasurement, "0055", "heart rate"),
    (Characteristic::HeartRateMeasurement, "1048 0004 0002", "heart rate with RR intervals"),
    (Characteristic::BloodPressureMeasurement, "00 7800 5000 5d00", "mmHg"),
    (Characteristic::BloodPressureMeasurement, "01 a3f2 6bf0 b2f0", "kPa"),
    (Characteristic::BloodPressureMeasurement, "00 7800 5000 ff07", "no mean pressure"),
    (Characteristic::BloodPressureMeasurement, "00 fe07 5000 5d00", "systolic above range"),
    (
        Characteristic::BloodPressureMeasurement,
        "06 7800 5000 a5f3 e807 03 05 07 1e 00 4000",
        "time stamp and pulse",
    ),
    (Characteristic::TemperatureMeasurement, "06b00e00fedc070c050b321b04", "Celsius, typed"),
    (Characteristic::TemperatureMeasurement, "01 ffff7f00", "Fahrenheit, NaN"),
    (Characteristic::WeightMeasurement, "00 1437", "kg"),
    (Characteristic::WeightMeasurement, "08 1437 f500 0d07", "kg with BMI and height"),
    (Characteristic::WeightMeasurement, "09 6e3d f500 c502", "lb with BMI and height"),
    (Characteristic::WeightMeasurement, "00 ffff", "unsuccessful"),
    (Characteristic::GlucoseMeasurement, "03 0100 e807 01 02 08 00 00 0500 5fb0 11", "kg/L"),
    (Characteristic::GlucoseMeasurement, "06 0200 e807 01 02 08 00 00 36c0 12", "mol/L plasma"),
    (Characteristic::GlucoseMeasurement, "02 0300 e807 01 02 08 00 00 5fb0 19", "ISF"),
    (Characteristic::GlucoseMeasurement, "1b0100e307021b0b0a1efbff1e00120501", "published"),
    (Characteristic::PlxSpotCheckMeasurement, "00 6200 4800", "spot check"),
    (Characteristic::PlxSpotCheckMeasurement, "01 6200 4800 e807 03 05 07 1e 00", "time stamp"),
    (Characteristic::PlxSpotCheckMeasurement, "0facf3bef5e8070b1d1708392040220000 66e3", "all"),
    (Characteristic::PlxSpotCheckMeasurement, "00 fe07 0208", "+INF and -INF"),
    (Characteristic::PlxContinuousMeasurement, "1c5f005a00200000000057f0", "continuous"),
    (Characteristic::CgmMeasurement, "0fe3d2e405000214ff02f0e5f38e3f", "CGM"),
];

fn context() -> ObservationContext {
    ObservationContext {
        subject: "Patient/p1".to_owned(),
        device: Some("Device/sensor-1".to_owned()),
        received_at: OffsetDateTime::from_unix_timestamp(1_733_572_800).unwrap(),
        device_clock_offset: UtcOffset::from_hms(-5, -30, 0).unwrap(),
        cgm_session_start: None,
    }
}

#[test]
fn every_observation_a_reading_becomes_is_valid_r4_against_the_profile_it_claims() {
    // One collection Bundle, validated entry by entry in one run of the validator (a run per
    // Observation costs a Node start each); `sources` names each entry's reading.
    let mut entries = Vec::new();
    let mut sources = Vec::new();
    for (characteristic, payload, what) in READINGS {
        let reading = decode(*characteristic, &hex(payload))
            .unwrap_or_else(|err| panic!("{characteristic:?} {what}: {err}"));
        let found = observations(&reading, &context());
        assert!(!found.is_empty(), "{characteristic:?} {what}: no Observation");
        for text in found {
            let observation: Value = serde_json::from_str(&text)
                .unwrap_or_else(|err| panic!("{characteristic:?} {what}: {err}\n{text}"));
            entries.push(serde_json::json!({ "resource": observation }));
            sources.push(format!("entry[{}] is {characteristic:?} {what}", sources.len()));
        }
    }
    // A minute of heart rates batched into one SampledData Observation.
    let singles: Vec<serde_json::Map<String, Value>> = [0i64, 1, 3]
        .iter()
        .map(|second| {
            let mut at = context();
            at.received_at += time::Duration::seconds(*second);
            let reading = decode(Characteristic::HeartRateMeasurement, &hex("0048")).unwrap();
            serde_json::from_str(&observations(&reading, &at)[0]).unwrap()
        })
        .collect();
    let (batch, single) = medrix_devices::sampled::sampled_minute(singles).unwrap();
    assert!(single.is_empty());
    entries.push(serde_json::json!({ "resource": batch }));
    sources.push(format!("entry[{}] is a minute of heart rates (SampledData)", sources.len()));
    // Open mHealth data points of every schema read.
    let at = serde_json::json!({"date_time": "2024-03-05T07:30:00Z"});
    let day = serde_json::json!({"time_interval": {
        "start_date_time": "2024-03-05T00:00:00Z", "end_date_time": "2024-03-06T00:00:00Z"}});
    let points = [
        serde_json::json!({"heart_rate": {"value": 72, "unit": "beats/min"}, "effective_time_frame": at}),
        serde_json::json!({"systolic_blood_pressure": {"value": 120, "unit": "mmHg"},
            "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"}, "effective_time_frame": at}),
        serde_json::json!({"body_weight": {"value": 67.5, "unit": "kg"}, "effective_time_frame": at}),
        serde_json::json!({"oxygen_saturation": {"value": 97, "unit": "%"}, "effective_time_frame": at}),
        serde_json::json!({"body_temperature": {"value": 37.2, "unit": "C"}, "effective_time_frame": at}),
        serde_json::json!({"blood_glucose": {"value": 98, "unit": "mg/dL"},
            "specimen_source": "interstitial fluid", "effective_time_frame": at}),
        serde_json::json!({"step_count": {"value": 3214, "unit": "steps"}, "effective_time_frame": day}),
    ];
    let omh = medrix_devices::omh::Context { subject: "Patient/p1", device: Some("Device/watch") };
    for point in points {
        let observation = medrix_devices::omh::observation(&point, &omh).unwrap();
        entries.push(serde_json::json!({ "resource": observation }));
        sources.push(format!("entry[{}] is Open mHealth {point}", sources.len()));
    }
    assert!(entries.len() > READINGS.len(), "{}", entries.len());
    let bundle =
        serde_json::json!({ "resourceType": "Bundle", "type": "collection", "entry": entries });
    if let Err(problems) = fhir_validator::validate_fhir(&repo_root(), &bundle) {
        panic!("{problems}\n{}", sources.join("\n"));
    }
}

#[test]
fn a_reading_with_a_number_never_loses_it_and_a_special_never_becomes_one() {
    for (characteristic, payload, what) in READINGS {
        let reading = decode(*characteristic, &hex(payload)).unwrap();
        for text in observations(&reading, &context()) {
            let observation: Value = serde_json::from_str(&text).unwrap();
            let parts: Vec<&Value> = match observation["component"].as_array() {
                Some(components) => components.iter().collect(),
                None => vec![&observation],
            };
            for part in parts {
                let has_value = part.get("valueQuantity").is_some();
                let has_reason = part.get("dataAbsentReason").is_some();
                assert!(has_value != has_reason, "{what}: exactly one of value and reason: {part}");
            }
        }
    }
}

#[test]
fn the_observations_enter_a_record_as_medrix_cli_reads_them() {
    // What `medrix-device decode --fhir | medrix-cli record add` does with each line: one
    // NDJSON parse, a class by category, a clinical time from effectiveDateTime.
    let mut ndjson = String::new();
    for (characteristic, payload, _) in READINGS {
        let reading = decode(*characteristic, &hex(payload)).unwrap();
        for text in observations(&reading, &context()) {
            ndjson.push_str(&text);
            ndjson.push('\n');
        }
    }
    let resources = medrix_records::fhir::bundle::parse_resources(&ndjson).unwrap();
    assert_eq!(resources.len(), ndjson.lines().count());
    for resource in &resources {
        let class = medrix_records::fhir::route::route(resource).unwrap();
        let category = resource["category"][0]["coding"][0]["code"].as_str().unwrap();
        assert_eq!(class.as_str(), category, "{resource}");
        let at = medrix_records::fhir::clinical_time::clinical_time_ms(resource).unwrap();
        assert!(at.is_some(), "{resource}");
    }
}
