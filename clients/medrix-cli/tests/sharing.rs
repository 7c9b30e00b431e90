//! A patient and a provider, each with medrix-cli, on one `medrix serve`: a grant of two
//! classes (a contract, then invitations), the provider accepting and reading exactly those
//! classes decrypted, contributing an entry, the contract as valid FHIR R4 Consent, and a
//! revocation after which the provider is handed nothing new.

mod common;

use common::{Person, fixture, listed_ids, unreadable_classes, validate_fhir};
use medrix_tests::{TestServer, medrix_binary};
use serde_json::{Value, json};

/// The room of `class` in the record `record create --json` printed.
fn class_room(created: &Value, class: &str) -> String {
    created["classes"][class][0].as_str().unwrap().to_owned()
}

/// The number of encrypted events of `room` the server hands `person` (403 counts as none).
async fn encrypted_events_seen(server: &TestServer, person: &Person, room: &str) -> usize {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
    let (status, page) = server.call("GET", &path, Some(&person.access_token()), None).await;
    if status == 403 {
        return 0;
    }
    assert_eq!(status, 200, "{page}");
    page["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.encrypted").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reads_exactly_the_granted_classes_until_revoked() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let doctor = Person::registered(&server, "doctor");
    let created = patient.json(&["record", "create"]);

    // The contract: two classes, entries from 2024 on, a day, read and contribute.
    let granted = patient.json_line(
        "grant doctor --classes laboratory,vital-signs --purpose TREAT --until +1d \
         --data-from 2024-01-01 --mode contribute",
    );
    let contract_id = granted["contract_id"].as_str().unwrap().to_owned();
    assert!(contract_id.starts_with("c-") && contract_id.len() == 22, "{contract_id}");
    assert_eq!(granted["grantee"], "@doctor:localhost");
    assert_eq!(granted["status"], "active");
    assert_eq!(granted["classes"], json!(["vital-signs", "laboratory"]));
    assert_eq!(granted["data_period"], json!({"start": 1_704_067_200_000_i64, "end": null}));
    assert_eq!(granted["invited_to"].as_array().unwrap().len(), 3, "the space and two rooms");

    let access = patient.json(&["access"]);
    let contracts = access["contracts"].as_array().unwrap();
    assert_eq!(contracts.len(), 1);
    assert_eq!(contracts[0]["contract_id"], contract_id.as_str());
    assert_eq!(contracts[0]["in_force"], true);
    let left = contracts[0]["time_left_ms"].as_u64().unwrap();
    assert!(left > 86_000_000 && left <= 86_400_000, "{left}");

    let consent_file = patient.file("consent.json");
    let written =
        patient.json(&["consent", "export", "doctor", "--out", consent_file.to_str().unwrap()]);
    assert_eq!(written["contract_id"], contract_id.as_str());
    let consent: Value =
        serde_json::from_str(&std::fs::read_to_string(&consent_file).unwrap()).unwrap();
    assert_eq!(
        (consent["resourceType"].clone(), consent["id"].clone()),
        (json!("Consent"), json!(contract_id))
    );
    if let Err(messages) = validate_fhir(&consent) {
        panic!("the exported contract is not valid FHIR R4 Consent:\n{messages}");
    }
    let _ = std::fs::remove_file(consent_file);

    // The doctor accepts (listing the patient's record accepts their invitations).
    let first = doctor.json(&["record", "list", "--patient", "patient"]);
    assert_eq!(first["patient"], "@patient:localhost");
    assert!(first["entries"].as_array().unwrap().is_empty());

    // The patient records over two data periods; the doctor reads exactly the two classes,
    // and of them only what is dated 2024: the 2021 entries' keys were withheld from them.
    patient.json(&["record", "add", &fixture("period-2021.bundle.json")]);
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    let seen = doctor.json(&["record", "list", "--patient", "@patient:localhost"]);
    assert_eq!(listed_ids(&seen), ["hba1c-2024", "weight-2024"]);
    assert_eq!(unreadable_classes(&seen), ["laboratory", "vital-signs"], "{seen}");
    // The patient's own devices hold every key.
    let own = patient.json(&["record", "list"]);
    assert!(own["unreadable"].as_array().unwrap().is_empty(), "{own}");
    let conditions =
        doctor.json(&["record", "list", "--patient", "patient", "--class", "conditions"]);
    assert!(conditions["entries"].as_array().unwrap().is_empty());
    let export = doctor.file("export.json");
    let exported = doctor.json(&[
        "record",
        "export",
        "--patient",
        "patient",
        "--out",
        export.to_str().unwrap(),
    ]);
    assert_eq!(exported["entries"], 2);
    let _ = std::fs::remove_file(export);

    // Contributing: the doctor's result lands in the record as a provider's entry.
    let result = doctor.file("result.json");
    std::fs::write(&result, json!({
        "resourceType": "Observation", "id": "ldl-doctor", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "13457-7", "display": "LDL cholesterol"}]},
        "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-06-01T08:00:00Z",
    }).to_string()).unwrap();
    doctor.json(&["record", "add", "--patient", "patient", result.to_str().unwrap()]);
    let lab = patient.json(&["record", "list", "--class", "laboratory"]);
    let ldl = lab["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["id"] == "ldl-doctor")
        .unwrap();
    assert_eq!(ldl["source"], json!({"kind": "provider", "id": "@doctor:localhost"}));
    let refused = doctor.fails(&[
        "record",
        "add",
        "--patient",
        "patient",
        &fixture("period-2021.bundle.json"),
    ]);
    assert!(refused.contains("no access to the conditions entries"), "{refused}");
    let _ = std::fs::remove_file(result);

    // The audit: the patient sees the doctor's reads, each under the contract; the doctor
    // sees their own reads and nobody else's.
    let audit = patient.json(&["audit", "--who", "doctor"]);
    let reads = audit["reads"].as_array().unwrap();
    assert!(
        reads.iter().any(|read| read["class"] == "laboratory"
            && read["basis"]
                == json!({"kind": "contract", "contract_id": contract_id, "purpose": "TREAT",
                          "break_glass": false})),
        "{audit}"
    );
    assert!(reads.iter().all(|read| read["reader"]["user_id"] == "@doctor:localhost"), "{audit}");
    let everyone = patient.json(&["audit"]);
    assert!(everyone["reads"].as_array().unwrap().len() > reads.len(), "the patient's own too");
    let lab_reads = patient.json(&["audit", "--class", "laboratory", "--who", "doctor"]);
    assert!(
        lab_reads["reads"].as_array().unwrap().iter().all(|read| read["class"] == "laboratory")
    );
    assert!(patient.json(&["audit", "--since", "+1h"])["reads"].as_array().unwrap().is_empty());
    let own = doctor.json(&["audit", "--patient", "patient"]);
    let own = own["reads"].as_array().unwrap();
    assert!(own.len() >= reads.len(), "{own:?}");
    assert!(own.iter().all(|read| read["reader"]["user_id"] == "@doctor:localhost"));

    // The doctor sees the contract they hold (and, being in the space, every other one).
    let held = doctor.json(&["access", "--patient", "patient"]);
    assert_eq!(held["contracts"][0]["contract_id"], contract_id.as_str());

    // Another contract replaces it: one class fewer, but every period. The doctor leaves the
    // vital-signs room, and is invited to the laboratory room again with the keys the open
    // data period now covers: the 2021 result opens to them.
    let narrowed =
        patient.json_line("grant doctor --classes laboratory --purpose TREAT --until +1d");
    assert_eq!(narrowed["removed_from"], json!([class_room(&created, "vital-signs")]));
    assert_eq!(narrowed["invited_to"], json!([class_room(&created, "laboratory")]));
    let contract_id = narrowed["contract_id"].as_str().unwrap().to_owned();
    let seen = doctor.json(&["record", "list", "--patient", "patient"]);
    assert_eq!(listed_ids(&seen), ["glucose-2021", "hba1c-2024", "ldl-doctor"]);

    // Revocation: the contract says so, the doctor is out of every room and is handed
    // nothing the patient records afterwards.
    let lab_room = class_room(&created, "laboratory");
    let before = encrypted_events_seen(&server, &doctor, &lab_room).await;
    let revoked = patient.json(&["revoke", "doctor"]);
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["contract_id"], contract_id.as_str());
    assert_eq!(revoked["removed_from"].as_array().unwrap().len(), 2, "laboratory and the space");
    patient.json(&["record", "add", &fixture("hba1c-2024-corrected.json")]);
    assert!(doctor.fails(&["record", "list", "--patient", "patient"]).contains("has ended"));
    let after = encrypted_events_seen(&server, &doctor, &lab_room).await;
    assert!(after <= before, "the revoked doctor was handed a later entry ({before} → {after})");
    assert!(patient.json(&["access"])["contracts"].as_array().unwrap().is_empty());
    let all = patient.json(&["access", "--all"]);
    assert_eq!(all["contracts"][0]["status"], "revoked");
    assert_eq!(all["contracts"][0]["denial"], "not_active");
}

/// MSC4268: inviting the grantee hands over the keys of what was recorded before the grant.
/// matrix-sdk imports the bundle on accepting only when it knows who invited it, from the
/// inviter's `m.room.member` in the invitation's stripped state, and it must be allowed to
/// download the bundle file the inviter uploaded just before inviting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reads_what_was_recorded_before_the_grant() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let doctor = Person::registered(&server, "doctor");
    patient.json(&["record", "create"]);
    patient.json(&["record", "add", &fixture("period-2021.bundle.json")]);
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    patient.json_line("grant doctor --classes laboratory,vital-signs --purpose TREAT --until +1d");
    let seen = doctor.json(&["record", "list", "--patient", "patient"]);
    assert!(seen["unreadable"].as_array().unwrap().is_empty(), "{seen}");
    assert_eq!(listed_ids(&seen), ["glucose-2021", "hba1c-2024", "hr-2021", "weight-2024"]);

    // A contract bounded to 2024: the bundle holds only the keys of the 2024 entries.
    let nurse = Person::registered(&server, "nurse");
    patient.json_line(
        "grant nurse --classes laboratory,vital-signs --purpose TREAT --until +1d \
         --data-from 2024-01-01",
    );
    let seen = nurse.json(&["record", "list", "--patient", "patient"]);
    assert_eq!(listed_ids(&seen), ["hba1c-2024", "weight-2024"]);
    assert_eq!(unreadable_classes(&seen), ["laboratory", "vital-signs"], "{seen}");
}

/// A contract widened while its grantee is in the rooms: granted again with an earlier data
/// period, the provider reads the entries it now covers (invited again, with their keys),
/// and still nothing of the classes it does not grant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_widened_contract_hands_over_the_newly_covered_entries() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let doctor = Person::registered(&server, "doctor");
    patient.json(&["record", "create"]);
    patient.json_line(
        "grant doctor --classes laboratory,vital-signs --purpose TREAT --until +1d \
         --data-from 2024-01-01",
    );
    doctor.json(&["record", "list", "--patient", "patient"]);
    patient.json(&["record", "add", &fixture("period-2021.bundle.json")]);
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    let narrow = doctor.json(&["record", "list", "--patient", "@patient:localhost"]);
    assert_eq!(listed_ids(&narrow), ["hba1c-2024", "weight-2024"]);

    // Every period now, the same two classes.
    let widened = patient
        .json_line("grant doctor --classes laboratory,vital-signs --purpose TREAT --until +1d");
    assert_eq!(widened["invited_to"].as_array().unwrap().len(), 2, "{widened}");
    let wide = doctor.json(&["record", "list", "--patient", "@patient:localhost"]);
    assert_eq!(listed_ids(&wide), ["glucose-2021", "hba1c-2024", "hr-2021", "weight-2024"]);
    assert!(wide["unreadable"].as_array().unwrap().is_empty(), "{wide}");

    // Granted again with the same terms: nobody is sent away and invited again.
    let same = patient
        .json_line("grant doctor --classes laboratory,vital-signs --purpose TREAT --until +2d");
    assert_eq!(same["invited_to"], json!([]), "{same}");
}
