//! The real `medrix-device` binary, run as a user runs it.

use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medrix-device")).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[test]
fn the_issue_blood_pressure_example_prints_one_json_object() {
    let output = run(&["decode", "2A35", "00780050005d00"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\"unit\": \"mmHg\", \"systolic\": 120, \"diastolic\": 80, \"mean_arterial_pressure\": 93}\n"
    );
    assert!(stderr(&output).is_empty());
}

#[test]
fn the_characteristic_takes_a_prefix_and_either_case_and_hex_takes_spaces() {
    for args in [
        ["decode", "0x2a35", "00 78 00 50 00 5d 00"].as_slice(),
        &["decode", "0X2A35", "00", "7800", "5000 5D00"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {}", stderr(&output));
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert_eq!(json["systolic"], 120);
    }
}

#[test]
fn numbers_are_printed_as_the_exact_decimals_sent() {
    let output = run(&["decode", "2A35", "01 a3f2 6bf0 b2f0"]);
    assert_eq!(
        stdout(&output),
        "{\"unit\": \"kPa\", \"systolic\": 67.5, \"diastolic\": 10.7, \"mean_arterial_pressure\": 17.8}\n"
    );
    let output = run(&["decode", "2a37", "10 48 0004 0002"]);
    assert_eq!(
        stdout(&output),
        "{\"heart_rate\": 72, \"sensor_contact\": \"not_supported\", \"rr_intervals_s\": [1, 0.5]}\n"
    );
}

#[test]
fn every_characteristic_decodes_through_the_binary() {
    for (uuid, hex, key) in [
        ("2A37", "0055", "heart_rate"),
        ("2A35", "00780050005d00", "systolic"),
        ("2A1C", "06b00e00fedc070c050b321b04", "temperature"),
        ("2A9D", "0620120000000000000001", "weight"),
        ("2A18", "1b0100e307021b0b0a1efbff1e00120501", "concentration"),
        ("2A5E", "0facf3bef5e8070b1d1708392040220000 66e3", "spo2"),
        ("2A5F", "1c5f005a00200000000057f0", "pulse_amplitude_index"),
        ("2AA7", "0fe3d2e405000214ff02f0e5f38e3f", "records"),
    ] {
        let output = run(&["decode", uuid, hex]);
        assert_eq!(output.status.code(), Some(0), "{uuid}: {}", stdout(&output));
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        assert!(json.get(key).is_some(), "{uuid}: {json}");
    }
}

#[test]
fn a_malformed_payload_prints_an_error_object_and_exits_one() {
    for (hex, reason) in [
        ("0078005000", "malformed: payload ends before Mean Arterial Pressure"),
        ("00780050005d0000", "malformed: 1 trailing octet after the last field"),
        ("", "malformed: empty payload"),
    ] {
        let output = run(&["decode", "2A35", hex]);
        assert_eq!(output.status.code(), Some(1), "{hex}");
        let json: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
        let error = json["error"].as_str().unwrap();
        assert!(error.starts_with(reason), "{hex}: {error}");
        assert_eq!(json.as_object().unwrap().len(), 1);
        assert!(stdout(&output).starts_with("{\"error\": \"malformed: "));
    }
}

#[test]
fn bad_arguments_exit_two_with_one_line_on_stderr() {
    for args in [
        ["decode", "2A00", "00"].as_slice(),
        &["decode", "zz", "00"],
        &["decode", "2A35", "0g"],
        &["decode", "2A35", "007"],
        &["decode", "2A35"],
        &["decode"],
        &["frobnicate"],
        &[],
        &["decode", "2A35", "00", "--nope"],
    ] {
        let output = run(args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let message = stderr(&output);
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with("error:"), "{args:?}: {message}");
        assert!(stdout(&output).is_empty(), "{args:?}");
    }
}

#[test]
fn an_unknown_characteristic_names_the_ones_it_knows() {
    let output = run(&["decode", "0x2A00", "00"]);
    let message = stderr(&output);
    assert!(message.contains("0x2A00"), "{message}");
    assert!(message.contains("2A37, 2A35, 2A1C, 2A9D, 2A18, 2A5E, 2A5F, 2AA7"), "{message}");
}

#[test]
fn help_goes_to_stdout_and_succeeds() {
    let output = run(&["decode", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stdout(&output).contains("CHARACTERISTIC"));
}

#[path = "../../../tests/fhir/validate.rs"]
mod fhir_validator;

#[test]
fn fhir_prints_valid_r4_observations_one_per_line() {
    let output = run(&[
        "decode",
        "2A35",
        "06 7800 5000 a5f3 e807 03 05 07 1e 00 4000",
        "--fhir",
        "--patient",
        "Patient/p1",
        "--device",
        "Device/cuff-1",
        "--device-clock-offset",
        "+01:00",
        "--received-at",
        "2024-03-05T06:31:00Z",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines: Vec<String> = stdout(&output).lines().map(ToOwned::to_owned).collect();
    assert_eq!(lines.len(), 2, "the panel and the pulse: {lines:?}");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for line in &lines {
        let observation: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(observation["effectiveDateTime"], "2024-03-05T07:30:00+01:00");
        assert_eq!(observation["subject"]["reference"], "Patient/p1");
        fhir_validator::validate_fhir(&root, &observation)
            .unwrap_or_else(|e| panic!("{e}\n{line}"));
    }
    // The exact decimal, as the JSON text: 93.3, not 93.30000000000001.
    assert!(lines[0].contains("\"value\": 93.3,"), "{}", lines[0]);
}

#[test]
fn fhir_needs_a_patient_and_takes_only_well_formed_times_and_references() {
    let fhir = ["decode", "2A37", "0055", "--fhir", "--patient", "Patient/p1"];
    let with = |more: &[&'static str]| [&fhir[..], more].concat();
    for (args, complaint) in [
        (fhir[..4].to_vec(), "--patient"),
        (vec!["decode", "2A37", "0055", "--fhir", "--patient", "p1"], "FHIR reference"),
        (with(&["--received-at", "yesterday"]), "RFC 3339"),
        (with(&["--device-clock-offset", "+1"]), "UTC offset"),
    ] {
        let output = run(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(stdout(&output).is_empty(), "{args:?}");
        let line = stderr(&output);
        assert!(line.contains(complaint) && line.lines().count() == 1, "{args:?}: {line}");
    }
}

#[test]
fn a_control_solution_reading_prints_no_observation() {
    let output = run(&[
        "decode",
        "2A18",
        "02 0100 e807 01 02 08 00 00 5fb0 1a",
        "--fhir",
        "--patient",
        "Patient/p1",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).is_empty());
}
