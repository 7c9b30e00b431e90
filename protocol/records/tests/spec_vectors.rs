//! Every records vector file under `spec/vectors/records/` must hold for this implementation.
//! `consent.json` is written from the code (`MEDRIX_WRITE_VECTORS=1` rewrites it); the others
//! are written by hand, their expected values computed independently of this crate.

mod common;

use std::path::{Path, PathBuf};

use medrix_records::fhir::consent::to_consent;
use medrix_records::vectors::check_vector_text;
use serde_json::json;

fn records_vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/vectors/records")
}

fn check(file: &str) -> usize {
    let path = records_vectors().join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    let report = check_vector_text(&text).unwrap_or_else(|err| panic!("{file}: {err}"));
    assert!(report.failures.is_empty(), "{file}:\n{}", report.failures.join("\n"));
    report.passed
}

#[test]
fn evaluation_vectors_hold() {
    assert_eq!(check("evaluation.json"), 26);
}

#[test]
fn grant_parsing_vectors_hold() {
    assert_eq!(check("grant-parsing.json"), 35);
}

#[test]
fn break_glass_vectors_hold() {
    assert_eq!(check("break-glass.json"), 6);
}

#[test]
fn fhir_datetime_vectors_hold() {
    assert_eq!(check("fhir-datetime.json"), 27);
}

#[test]
fn routing_vectors_hold() {
    assert_eq!(check("routing.json"), 19);
}

#[test]
fn consent_vectors_hold() {
    let path = records_vectors().join("consent.json");
    if std::env::var_os("MEDRIX_WRITE_VECTORS").is_some() {
        let patient = common::user("@patient:home.example");
        let cases: Vec<_> = common::sample_grants()
            .into_iter()
            .map(|grant| {
                json!({
                    "name": format!("contract {}", grant.contract_id),
                    "grant": {"state_key": grant.state_key(), "content": grant.to_content()},
                    "patient": patient,
                    "recorded_at": 1_704_000_000_000u64,
                    "expect": to_consent(&grant, &patient, 1_704_000_000_000),
                })
            })
            .collect();
        let file = json!({
            "kind": "records_consent",
            "description": "A contract (org.medrix.grant state key and content), the patient and the moment it was agreed: the FHIR R4 Consent it exports to, exactly. spec/records.md, Consent mapping.",
            "cases": cases,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&file).unwrap() + "\n").unwrap();
    }
    assert_eq!(check("consent.json"), common::sample_grants().len());
}

#[test]
fn every_records_vector_file_is_checked() {
    let mut files: Vec<String> = std::fs::read_dir(records_vectors())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "break-glass.json",
            "consent.json",
            "evaluation.json",
            "fhir-datetime.json",
            "grant-parsing.json",
            "routing.json"
        ]
    );
}
