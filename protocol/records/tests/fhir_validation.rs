//! Medrix's FHIR exports through a real FHIR R4 validator (Medplum's, pinned in
//! `tests/fhir/`, installed by `./dev setup`): contracts as `Consent` and a record's
//! `collection` Bundle must be valid, and a broken Consent must not be, so the check can fail.

mod common;

use std::path::{Path, PathBuf};

use medrix_records::fhir::bundle::{collection_bundle, parse_resources};
use medrix_records::fhir::clinical_time::clinical_time_ms;
use medrix_records::fhir::consent::{from_consent, to_consent};
use medrix_records::fhir::route::route;
use medrix_records::{DataClass, UserId};
use serde_json::{Value, json};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[path = "../../../tests/fhir/validate.rs"]
mod fhir_validator;

/// Runs the validator on `resource`: `Ok(())` when valid, else its messages.
fn validate(resource: &Value) -> Result<(), String> {
    fhir_validator::validate_fhir(&repo_root(), resource)
}

fn patient() -> UserId {
    UserId::parse("@patient:home.example").unwrap()
}

#[test]
fn exported_consents_are_valid_fhir_r4_and_import_back() {
    let consents: Vec<Value> = common::sample_grants()
        .iter()
        .map(|grant| to_consent(grant, &patient(), 1_709_600_000_000))
        .collect();
    for (consent, grant) in consents.iter().zip(common::sample_grants()) {
        assert_eq!(from_consent(consent).unwrap().grant, grant);
    }
    let bundle = collection_bundle(&consents, 1_709_700_000_000);
    if let Err(messages) = validate(&bundle) {
        panic!("exported Consents are not valid R4:\n{messages}");
    }
}

#[test]
fn a_record_export_of_routed_resources_is_a_valid_collection() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sample-resources.ndjson"),
    )
    .unwrap();
    let resources = parse_resources(&text).unwrap();
    let classes: Vec<DataClass> = resources.iter().map(|r| route(r).unwrap()).collect();
    assert_eq!(
        classes,
        [
            DataClass::VitalSigns,
            DataClass::VitalSigns,
            DataClass::Laboratory,
            DataClass::Laboratory,
            DataClass::Documents,
            DataClass::Conditions,
            DataClass::Medications,
            DataClass::Allergies,
            DataClass::Immunizations,
            DataClass::Procedures,
            DataClass::Documents,
            DataClass::Consultations,
        ]
    );
    for resource in &resources {
        assert!(clinical_time_ms(resource).unwrap().is_some(), "{resource}");
    }
    let bundle = collection_bundle(&resources, 1_709_700_000_000);
    if let Err(messages) = validate(&bundle) {
        panic!("the record export is not valid R4:\n{messages}");
    }
    // What another record imports from the export is every resource, unchanged.
    assert_eq!(parse_resources(&bundle.to_string()).unwrap(), resources);
}

#[test]
fn the_validator_reports_broken_consents() {
    let good = to_consent(&common::sample_grants()[0], &patient(), 1_709_600_000_000);
    assert_eq!(validate(&good), Ok(()));

    let mut no_status = good.clone();
    no_status.as_object_mut().unwrap().remove("status");
    let messages = validate(&no_status).expect_err("a Consent without status is invalid");
    assert!(messages.contains("Consent.status"), "{messages}");

    let mut bad_status = good.clone();
    bad_status["status"] = json!("approved");
    let messages = validate(&bad_status).expect_err("a status outside consent-state-codes");
    assert!(messages.contains("consent-state-codes"), "{messages}");

    let mut no_policy = good.clone();
    no_policy.as_object_mut().unwrap().remove("policyRule");
    let messages = validate(&no_policy).expect_err("R4 requires policy or policyRule");
    assert!(messages.contains("ppc-1"), "{messages}");

    let mut bad_period = good;
    bad_period["provision"]["period"]["start"] = json!("2024-13-01");
    let messages = validate(&bad_period).expect_err("a malformed dateTime");
    assert!(messages.contains("period"), "{messages}");
}
