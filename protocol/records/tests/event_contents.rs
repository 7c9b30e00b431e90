//! Medrix event contents parsed at the edge: what is accepted, and for what is not, whether
//! the server answers M_BAD_JSON (shape) or M_INVALID_PARAM (value), with a message naming
//! the field.

mod common;

use common::{id, user};
use medrix_records::{
    AccessRequest, Action, BreakGlassError, DataClass, Denial, Entry, Error, Grant, Mode, Purpose,
    RecordRoom, RecordSpace, SourceKind, Status, break_glass_grant, break_glass_window, evaluate,
};
use serde_json::{Value, json};

const DR: &str = "@dr.lee:clinic.example";
/// The state key of a contract for `DR`.
const DR_KEY: &str = "user:@dr.lee:clinic.example";

/// A change to a valid grant content, and the message its error must have.
type Case = (fn(&mut Value), &'static str);

fn grant_content() -> Value {
    json!({
        "contract_id": "c-1",
        "grantee": DR,
        "purpose": "TREAT",
        "classes": ["laboratory", "vital-signs"],
        "data_period": {"start": 1_672_531_200_000i64, "end": null},
        "valid": {"start": 1_704_067_200_000i64, "end": 1_735_689_600_000i64},
        "mode": "read",
        "text": "Dr Lee may read my labs and vitals for my care in 2024.",
        "status": "active",
    })
}

fn parse_with(change: impl FnOnce(&mut Value)) -> Result<Grant, Error> {
    let mut content = grant_content();
    change(&mut content);
    Grant::from_event(DR_KEY, &content)
}

fn expect_error(result: Result<Grant, Error>, kind: &str, message: &str) {
    let err = result.expect_err("refused");
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(err.to_string(), message);
}

#[test]
fn a_well_formed_grant_parses_and_ignores_unknown_fields() {
    let grant = parse_with(|c| c["future_field"] = json!(1)).unwrap();
    assert_eq!(grant.contract_id.as_str(), "c-1");
    assert_eq!(grant.purpose, Purpose::Treatment);
    assert_eq!(grant.classes.len(), 2);
    assert_eq!(grant.data_period.end(), None);
    assert_eq!(grant.mode, Mode::Read);
    assert_eq!(grant.status, Status::Active);
    assert_eq!(grant.state_key(), DR_KEY);
}

#[test]
fn shape_errors_name_the_field_and_answer_bad_json() {
    let cases: [Case; 9] = [
        (|c| c.as_object_mut().unwrap().clear(), "`contract_id` is missing"),
        (|c| c["valid"].as_object_mut().unwrap().clear(), "`valid.start` is missing"),
        (|c| c["valid"]["end"] = json!("2025"), "`valid.end` must be an integer"),
        (|c| c["valid"]["end"] = json!(1.5), "`valid.end` must be an integer"),
        (|c| c["classes"] = json!("laboratory"), "`classes` must be an array"),
        (|c| c["classes"] = json!([1]), "`classes` must be an array of strings"),
        (
            |c| {
                c["data_period"].as_object_mut().unwrap().remove("end");
            },
            "`data_period.end` is missing",
        ),
        (|c| c["status"] = json!(null), "`status` must be a string"),
        (|c| c["data_period"] = json!([]), "`data_period` must be a JSON object"),
    ];
    for (change, message) in cases {
        let err = parse_with(change).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.matrix_errcode(), "M_BAD_JSON", "{message}");
    }
    assert_eq!(Grant::from_event(DR_KEY, &json!([])).unwrap_err().matrix_errcode(), "M_BAD_JSON");
}

#[test]
fn a_shape_error_wins_over_a_value_error() {
    expect_error(
        parse_with(|c| {
            c["purpose"] = json!("SHOPPING");
            c.as_object_mut().unwrap().remove("text");
        }),
        "shape",
        "`text` is missing",
    );
}

#[test]
fn value_errors_name_the_field_and_answer_invalid_param() {
    let cases: [Case; 14] = [
        (
            |c| c["valid"]["end"] = c["valid"]["start"].clone(),
            "`valid.end` must be later than `valid.start`",
        ),
        (|c| c["valid"]["start"] = json!(-1), "`valid.start` must not be negative"),
        (
            |c| c["data_period"] = json!({"start": 10, "end": 5}),
            "`data_period.end` must be later than `data_period.start`",
        ),
        (
            |c| c["classes"] = json!(["vitals"]),
            "`classes` names `vitals`, which is not a record class",
        ),
        (|c| c["classes"] = json!([]), "`classes` must name at least one class"),
        (|c| c["classes"] = json!(["notes", "notes"]), "`classes` names `notes` twice"),
        (
            |c| c["purpose"] = json!("SHOPPING"),
            "`purpose` names `SHOPPING`, which is not an HL7 v3 PurposeOfUse code",
        ),
        (
            |c| c["grantee"] = json!("@someone.else:clinic.example"),
            "`grantee` must be the one the event's state key names",
        ),
        (
            |c| c["grantee"] = json!("dr.lee"),
            "`grantee` must be a Matrix user ID (the state key names a user)",
        ),
        (|c| c["mode"] = json!("write"), "`mode` must be \"read\" or \"contribute\""),
        (
            |c| c["status"] = json!("paused"),
            "`status` must be \"active\", \"revoked\" or \"expired\"",
        ),
        (
            |c| c["contract_id"] = json!("has space"),
            "`contract_id` must be 1 to 64 characters from A-Z a-z 0-9 - .",
        ),
        (|c| c["text"] = json!("  "), "`text` must state the terms (it is empty)"),
        (
            |c| c["emergency_access_ms"] = json!(60000),
            "`emergency_access_ms` is only for a standing emergency contract, whose grantee is a server",
        ),
    ];
    for (change, message) in cases {
        let err = parse_with(change).unwrap_err();
        assert_eq!(err.to_string(), message);
        assert_eq!(err.matrix_errcode(), "M_INVALID_PARAM", "{message}");
    }
}

#[test]
fn btg_is_only_given_by_break_glass() {
    expect_error(
        parse_with(|c| c["purpose"] = json!("BTG")),
        "value",
        "`purpose` BTG is given only by break-glass under a standing emergency contract",
    );
}

fn standing_content() -> Value {
    let mut content = grant_content();
    content["grantee"] = json!("hospital.example");
    content["purpose"] = json!("ETREAT");
    content["classes"] = json!(["allergies", "medications"]);
    content["data_period"] = json!({"start": null, "end": null});
    content["emergency_access_ms"] = json!(3_600_000);
    content
}

#[test]
fn a_standing_emergency_contract_is_keyed_by_server_name() {
    let standing = Grant::from_event("hospital.example", &standing_content()).unwrap();
    assert!(standing.is_standing_emergency());
    assert_eq!(standing.emergency_access_ms, Some(3_600_000));

    let mut missing = standing_content();
    missing.as_object_mut().unwrap().remove("emergency_access_ms");
    let err = Grant::from_event("hospital.example", &missing).unwrap_err();
    assert_eq!(err.kind(), "value");
    let mut treat = standing_content();
    treat["purpose"] = json!("TREAT");
    let err = Grant::from_event("hospital.example", &treat).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`purpose` must be ETREAT (or ERTREAT) for a standing emergency contract"
    );
    let mut too_long = standing_content();
    too_long["emergency_access_ms"] = json!(86_400_001);
    assert!(Grant::from_event("hospital.example", &too_long).is_err());
}

#[test]
fn break_glass_admits_a_clinician_of_that_server_for_the_fixed_time() {
    let standing = Grant::from_event("hospital.example", &standing_content()).unwrap();
    let clinician = user("@er.doc:hospital.example");
    let at = 1_710_000_000_000;

    let window = break_glass_window(&standing, &clinician, at).unwrap();
    assert_eq!((window.from_ms, window.until_ms), (at, at + 3_600_000));
    // Near the end of the standing contract, the access stops with it.
    let late = standing.valid.end() - 10;
    assert_eq!(
        break_glass_window(&standing, &clinician, late).unwrap().until_ms,
        standing.valid.end()
    );

    let outsider = user("@doc:elsewhere.example");
    assert_eq!(break_glass_window(&standing, &outsider, at), Err(Denial::NotGrantee));
    assert_eq!(
        break_glass_window(&standing, &clinician, standing.valid.end()),
        Err(Denial::Expired)
    );
    let revoked = Grant { status: Status::Revoked, ..standing.clone() };
    assert_eq!(break_glass_window(&revoked, &clinician, at), Err(Denial::NotActive));
    assert_eq!(
        break_glass_window(&common::lab_grant(), &clinician, at),
        Err(Denial::NotGrantee),
        "a personal contract is not a standing one"
    );

    let grant =
        break_glass_grant(&standing, &clinician, at, id("btg-1"), "Unconscious in the ER").unwrap();
    assert_eq!(grant.purpose, Purpose::BreakTheGlass);
    assert_eq!(grant.break_glass.as_ref().unwrap().standing_contract, standing.contract_id);
    let read = Action::Read { class: DataClass::Allergies, clinical_time_ms: None };
    assert!(evaluate(&grant, &read, at).is_allowed());
    assert!(evaluate(&grant, &read, at + 3_599_999).is_allowed());
    assert_eq!(evaluate(&grant, &read, at + 3_600_000).denial(), Some(Denial::Expired));
    assert_eq!(
        evaluate(&grant, &Action::Hold { class: DataClass::Laboratory }, at).denial(),
        Some(Denial::ClassNotGranted)
    );
    // It is an ordinary contract event, stored under the clinician's user ID.
    assert_eq!(Grant::from_event(&grant.state_key(), &grant.to_content()).unwrap(), grant);

    assert!(matches!(
        break_glass_grant(&standing, &clinician, at, id("btg-2"), " "),
        Err(BreakGlassError::Invalid(_))
    ));
}

#[test]
fn an_approved_request_becomes_a_contract_with_the_requested_terms() {
    let knock = json!({
        "membership": "knock",
        "reason": "Follow-up of your blood tests",
        "org.medrix.request": {
            "purpose": "TREAT",
            "classes": ["laboratory"],
            "data_period": {"start": 1_672_531_200_000i64, "end": null},
            "valid": {"start": 1_704_067_200_000i64, "end": 1_706_745_600_000i64},
        },
    });
    let request = AccessRequest::from_knock(&knock).unwrap().unwrap();
    assert_eq!(request.mode, Mode::Read);
    assert_eq!(AccessRequest::from_content(&request.to_content()).unwrap(), request);
    let grant =
        request.approve(&user(DR), id("c-approved"), "Dr Lee reads my labs in January.").unwrap();
    assert_eq!(grant.grantee, medrix_records::Grantee::User(user(DR)));
    assert_eq!(grant.classes, request.classes);
    assert_eq!(grant.valid, request.valid);
    assert_eq!(grant.status, Status::Active);
    assert!(request.approve(&user(DR), id("c-x"), "").is_err());

    assert!(AccessRequest::from_knock(&json!({"membership": "knock"})).is_none());
    let mut bad = knock["org.medrix.request"].clone();
    bad["valid"]["end"] = json!(0);
    assert_eq!(AccessRequest::from_content(&bad).unwrap_err().kind(), "value");
    bad.as_object_mut().unwrap().remove("purpose");
    assert_eq!(AccessRequest::from_content(&bad).unwrap_err().to_string(), "`purpose` is missing");
    let mut btg = knock["org.medrix.request"].clone();
    btg["purpose"] = json!("BTG");
    assert!(AccessRequest::from_content(&btg).is_err());
}

#[test]
fn record_state_names_patient_class_and_rooms() {
    let room = json!({"patient": "@p:home.example", "class": "laboratory", "space": "!space:home.example"});
    let parsed = RecordRoom::from_content(&room).unwrap();
    assert_eq!(parsed.class, DataClass::Laboratory);
    assert_eq!(parsed.to_content(), room);
    let bad =
        json!({"patient": "@p:home.example", "class": "labs", "space": "!space:home.example"});
    assert_eq!(RecordRoom::from_content(&bad).unwrap_err().kind(), "value");

    let space = json!({"patient": "@p:home.example", "classes": {
        "laboratory": ["!lab:home.example"], "vital-signs": ["!vit:home.example", "!watch:home.example"]}});
    let parsed = RecordSpace::from_content(&space).unwrap();
    assert_eq!(
        parsed.class_of(&medrix_records::RoomId::parse("!watch:home.example").unwrap()),
        Some(DataClass::VitalSigns)
    );
    assert_eq!(parsed.to_content(), space);
    let unknown = json!({"patient": "@p:home.example", "classes": {"labs": []}});
    assert_eq!(RecordSpace::from_content(&unknown).unwrap_err().kind(), "value");
    let not_list =
        json!({"patient": "@p:home.example", "classes": {"laboratory": "!lab:home.example"}});
    assert_eq!(
        RecordSpace::from_content(&not_list).unwrap_err().to_string(),
        "`classes.laboratory` must be an array"
    );
}

#[test]
fn entries_and_their_corrections() {
    let entry = json!({
        "class": "vital-signs",
        "resource": {"resourceType": "Observation", "status": "final"},
        "source": {"kind": "device", "id": "@scale-bot:home.example"},
    });
    let parsed = Entry::from_content(&entry).unwrap();
    assert_eq!(parsed.source.kind, SourceKind::Device);
    assert_eq!(parsed.resource_type(), "Observation");
    assert_eq!(parsed.to_content(), entry);

    let correction =
        Entry { replaces: Some(medrix_records::EventId::parse("$original").unwrap()), ..parsed };
    let content = correction.to_content();
    assert_eq!(content["m.relates_to"], json!({"rel_type": "m.replace", "event_id": "$original"}));
    assert_eq!(content["m.new_content"]["class"], "vital-signs");
    assert_eq!(Entry::from_content(&content).unwrap(), correction);

    let mut no_type = entry.clone();
    no_type["resource"] = json!({"status": "final"});
    assert_eq!(
        Entry::from_content(&no_type).unwrap_err().to_string(),
        "`resource.resourceType` is missing"
    );
    let mut bad_kind = entry;
    bad_kind["source"]["kind"] = json!("robot");
    assert_eq!(Entry::from_content(&bad_kind).unwrap_err().kind(), "value");
}
