//! Contracts survive the trip to FHIR `Consent` and back unchanged, and so does their event
//! content; the mapping puts each field where `spec/records.md` says.

mod common;

use common::{arb_grant, user};
use medrix_records::fhir::consent::{
    MATRIX_USER_ID_SYSTEM, RECORD_CLASS_SYSTEM, from_consent, to_consent,
};
use medrix_records::{Grant, Status};
use proptest::prelude::*;
use serde_json::json;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn a_contract_round_trips_through_consent(grant in arb_grant(), recorded_at in 0u64..4_000_000_000_000) {
        let patient = user("@patient:home.example");
        let consent = to_consent(&grant, &patient, recorded_at);
        let imported = from_consent(&consent).unwrap();
        prop_assert_eq!(imported.grant, grant);
        prop_assert_eq!(imported.patient, patient);
        prop_assert_eq!(imported.recorded_at_ms, Some(recorded_at as i64));
    }

    #[test]
    fn a_contract_round_trips_through_its_event_content(grant in arb_grant()) {
        let content = grant.to_content();
        prop_assert_eq!(Grant::from_event(&grant.state_key(), &content).unwrap(), grant);
    }
}

#[test]
fn the_consent_says_who_what_why_and_when() {
    let grant = common::lab_grant();
    let consent = to_consent(&grant, &user("@patient:home.example"), 1_704_000_000_000);
    assert_eq!(consent["status"], "active");
    assert_eq!(consent["id"], "c-lab-2024");
    assert_eq!(consent["patient"]["identifier"]["system"], MATRIX_USER_ID_SYSTEM);
    assert_eq!(consent["patient"]["identifier"]["value"], "@patient:home.example");
    assert_eq!(consent["scope"]["coding"][0]["code"], "patient-privacy");
    assert_eq!(consent["category"][0]["coding"][0]["code"], "59284-0");
    let provision = &consent["provision"];
    assert_eq!(provision["type"], "permit");
    // Exclusive ends become inclusive ones, 1 ms earlier.
    assert_eq!(
        provision["period"],
        json!({"start": "2024-01-01T00:00:00.000Z", "end": "2024-12-31T23:59:59.999Z"})
    );
    assert_eq!(
        provision["dataPeriod"],
        json!({"start": "2023-01-01T00:00:00.000Z", "end": "2023-12-31T23:59:59.999Z"})
    );
    assert_eq!(provision["actor"][0]["role"]["coding"][0]["code"], "IRCP");
    assert_eq!(provision["actor"][0]["reference"]["identifier"]["value"], "@dr.lee:clinic.example");
    assert_eq!(provision["action"][0]["coding"][0]["code"], "access");
    assert_eq!(provision["action"].as_array().unwrap().len(), 1);
    assert_eq!(
        provision["purpose"][0],
        json!({
        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT", "display": "treatment"})
    );
    assert_eq!(provision["class"][0]["system"], RECORD_CLASS_SYSTEM);
    assert_eq!(provision["class"][0]["code"], "vital-signs");
    assert_eq!(provision["class"][1]["code"], "laboratory");
}

#[test]
fn revoked_and_expired_are_both_inactive_and_told_apart_by_an_extension() {
    for status in [Status::Revoked, Status::Expired] {
        let grant = Grant { status, ..common::lab_grant() };
        let consent = to_consent(&grant, &user("@p:h.example"), 0);
        assert_eq!(consent["status"], "inactive");
        assert_eq!(consent["extension"][0]["valueCode"], status.as_str());
    }
}

#[test]
fn a_consent_from_elsewhere_imports_by_its_fhir_meaning() {
    // Second-precision inclusive ends, no Medrix extension, terms only in the narrative.
    let consent = json!({
        "resourceType": "Consent",
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Share labs &amp; vitals</p></div>"},
        "identifier": [{"system": "https://medrix.org/fhir/sid/contract-id", "value": "ext-1"}],
        "status": "inactive",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"identifier": {"system": MATRIX_USER_ID_SYSTEM, "value": "@p:h.example"}},
        "provision": {
            "type": "permit",
            "period": {"start": "2024-01-01", "end": "2024-12-31"},
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"identifier": {"system": MATRIX_USER_ID_SYSTEM, "value": "@dr:c.example"}}}],
            "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "correct"}]}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "COC"}],
            "class": [{"system": RECORD_CLASS_SYSTEM, "code": "laboratory"}],
            "dataPeriod": {"end": "2023-06-30T23:59:59Z"}
        }
    });
    let imported = from_consent(&consent).unwrap();
    let grant = imported.grant;
    assert_eq!(grant.status, Status::Revoked);
    assert_eq!(grant.text, "Share labs & vitals");
    assert_eq!(grant.valid.start(), 1_704_067_200_000);
    assert_eq!(grant.valid.end(), 1_735_689_600_000, "2024-12-31 includes the whole day");
    assert_eq!(grant.data_period.start(), None);
    assert_eq!(grant.data_period.end(), Some(1_688_169_600_000));
    assert_eq!(grant.mode, medrix_records::Mode::Contribute);
    assert_eq!(imported.recorded_at_ms, None);

    let mut unknown_class = consent.clone();
    unknown_class["provision"]["class"] =
        json!([{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}]);
    let err = from_consent(&unknown_class).unwrap_err();
    assert!(err.to_string().starts_with("Consent.provision.class"), "{err}");

    let mut deny = consent;
    deny["provision"]["type"] = json!("deny");
    assert!(from_consent(&deny).is_err());
}
