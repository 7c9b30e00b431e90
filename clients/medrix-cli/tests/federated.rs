//! The records scenario across two servers (TLS federation on loopback): a patient with
//! medrix-cli on a clinic's server records over two data periods, then grants a doctor on a
//! hospital's server two classes from 2024 on. The doctor's server joins the rooms, pages back
//! into what was recorded before it joined (backfill) and fetches the key bundle the patient
//! uploaded (federated media); the doctor decrypts exactly the granted classes in the granted
//! period, then what the patient adds, until revoked: nothing sent afterwards reaches them.

mod common;

use std::time::{Duration, Instant};

use common::{Person, fixture, listed_ids, unreadable_classes};
use medrix_federation_tests::{FederatingServer, TestNet};
use serde_json::Value;

/// `record list` as the doctor, until it lists `expected` (the invitation, the joins over
/// federation and the key bundle each take a moment to travel).
fn list_until(doctor: &Person, patient: &str, expected: &[&str]) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let seen = doctor.json(&["record", "list", "--patient", patient]);
        if listed_ids(&seen) == expected {
            return seen;
        }
        assert!(Instant::now() < deadline, "the doctor never read {expected:?}: {seen}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How many encrypted events of `room` the doctor's server hands them (none once removed).
async fn encrypted_events_seen(server: &FederatingServer, token: &str, room: &str) -> usize {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
    let (status, page) = server.server.call("GET", &path, Some(token), None).await;
    if status == 403 {
        return 0;
    }
    assert_eq!(status, 200, "{page}");
    page["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.encrypted").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_on_another_server_reads_exactly_the_granted_classes_and_period() {
    let net = TestNet::new();
    // The clinic anchors read logs every second, its own and the hospital's.
    let resolve = ["clinic.test=127.0.0.1".to_owned(), "hospital.test=127.0.0.1".to_owned()];
    let clinic = net
        .start_medrix_with(
            "clinic",
            "clinic.test",
            &[],
            &resolve,
            &["--audit-checkpoint-every-secs", "1"],
        )
        .await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = Person::registered_on(&clinic.server, "patient", &clinic.server_name);
    let doctor = Person::registered_on(&hospital.server, "doctor", &hospital.server_name);

    let created = patient.json(&["record", "create"]);
    patient.json(&["record", "add", &fixture("period-2021.bundle.json")]);
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    let granted = patient.json(&[
        "grant",
        &doctor.user_id,
        "--classes",
        "laboratory,vital-signs",
        "--purpose",
        "TREAT",
        "--until",
        "+1d",
        "--data-from",
        "2024-01-01",
    ]);
    assert_eq!(granted["grantee"], doctor.user_id.as_str());

    // What was recorded before the grant: the 2024 entries of the two classes, decrypted;
    // the 2021 ones of those classes are there but closed; the other classes are not there.
    let seen = list_until(&doctor, &patient.user_id, &["hba1c-2024", "weight-2024"]);
    assert_eq!(unreadable_classes(&seen), ["laboratory", "vital-signs"], "{seen}");

    // Recorded after the grant: read as it comes.
    let laboratory = created["classes"]["laboratory"][0].as_str().unwrap().to_owned();
    let more = patient.file("ldl.json");
    std::fs::write(
        &more,
        serde_json::json!({
            "resourceType": "Observation", "id": "ldl-2025", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "13457-7", "display": "LDL cholesterol"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-03-01T08:00:00Z",
        })
        .to_string(),
    )
    .unwrap();
    patient.json(&["record", "add", more.to_str().unwrap()]);
    list_until(&doctor, &patient.user_id, &["hba1c-2024", "ldl-2025", "weight-2024"]);

    // The clinic logged what it served the hospital's server (the join's state, the history
    // backfilled, events fetched), under the doctor's contract: the patient's audit shows it.
    let contract_id = granted["contract_id"].as_str().unwrap();
    let audit = patient.json(&["audit", "--who", &hospital.server_name]);
    let reads = audit["reads"].as_array().unwrap();
    assert!(
        reads.iter().any(|read| read["class"] == "laboratory"
            && read["path"].as_str().unwrap().starts_with("federation/")
            && read["basis"]["contract_id"] == contract_id),
        "{audit}"
    );
    // What the clinic pushed to the hospital in `/send` transactions (the entry added after
    // the grant) is a disclosure too.
    assert!(
        reads.iter().any(|read| read["class"] == "laboratory"
            && read["path"] == "federation/send"
            && read["basis"]["contract_id"] == contract_id),
        "{audit}"
    );
    // `--who` a server: the server's reads and its users' (the doctor's, below).
    assert!(
        reads.iter().all(|read| read["reader"]["server_name"] == hospital.server_name.as_str()
            || read["reader"]["user_id"] == doctor.user_id.as_str())
    );

    // The hospital logged the doctor's own reads there (sync, messages) and hands its log to
    // the patient's server: the patient's audit shows them, logged by the hospital, under the
    // contract the hospital found in the record's space.
    let audit = patient.json(&["audit", "--who", &doctor.user_id]);
    let reads = audit["reads"].as_array().unwrap();
    assert!(
        reads.iter().any(|read| read["class"] == "laboratory"
            && read["logged_by"] == hospital.server_name.as_str()
            && read["basis"]["contract_id"] == contract_id),
        "{audit}"
    );
    // The clinic anchored the hospital's log of its users' reads too (a checkpoint keyed by
    // the hospital's name); the patient's export carries that log, and the verifier holds it
    // to the checkpoint: a hospital that dropped an entry afterwards is found out.
    std::thread::sleep(Duration::from_millis(2_500));
    let export_file = patient.file("federated-export.json");
    patient.json(&["audit", "export", "--out", export_file.to_str().unwrap()]);
    let checked = patient.json(&["audit", "verify", export_file.to_str().unwrap()]);
    assert_eq!(checked["valid"], true, "{checked}");
    let mut export: Value =
        serde_json::from_str(&std::fs::read_to_string(&export_file).unwrap()).unwrap();
    let hospital_name = hospital.server_name.as_str();
    let lab_room = export["rooms"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|room| room["room_id"] == laboratory.as_str())
        .unwrap();
    assert!(
        lab_room["events"].as_array().unwrap().iter().any(|event| {
            event["type"] == "org.medrix.audit.checkpoint" && event["state_key"] == hospital_name
        }),
        "the hospital's log is anchored in the room: {:?}",
        lab_room["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["type"] == "org.medrix.audit.checkpoint")
            .map(|event| (event["state_key"].clone(), event["content"].clone()))
            .collect::<Vec<_>>()
    );
    let remote = lab_room["remote_logs"][hospital_name].as_array_mut().unwrap();
    assert!(!remote.is_empty(), "the hospital's log is in the export");
    remote.remove(0);
    let mut head = medrix_records::ChainHead::default();
    for value in remote.iter_mut() {
        let mut entry = medrix_records::ReadEntry::from_json(value).unwrap();
        entry.index = head.count;
        entry.prev_hash = head.hash.clone();
        head = entry.head_after();
        *value = entry.to_json();
    }
    std::fs::write(&export_file, export.to_string()).unwrap();
    let run = patient.run(&["audit", "verify", export_file.to_str().unwrap()]);
    assert!(!run.success, "{run:?}");
    assert!(
        run.stdout.contains("rewritten after it") || run.stdout.contains("entries removed"),
        "{}",
        run.stdout
    );
    let _ = std::fs::remove_file(export_file);

    // The doctor's own view, from their server: their reads only.
    let own = doctor.json(&["audit", "--patient", &patient.user_id]);
    let own = own["reads"].as_array().unwrap();
    assert!(!own.is_empty());
    assert!(own.iter().all(|read| read["reader"]["user_id"] == doctor.user_id.as_str()), "{own:?}");

    // Revoked: the doctor's server is out of the rooms and is handed nothing newer.
    let token = doctor.access_token();
    let before = encrypted_events_seen(&hospital, &token, &laboratory).await;
    let revoked = patient.json(&["revoke", &doctor.user_id]);
    assert_eq!(revoked["status"], "revoked");
    patient.json(&["record", "add", &fixture("hba1c-2024-corrected.json")]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let run = doctor.run(&["record", "list", "--patient", &patient.user_id]);
        if !run.success && run.stderr.contains("has ended") {
            break;
        }
        assert!(Instant::now() < deadline, "the doctor still reads: {}", run.stdout);
        std::thread::sleep(Duration::from_millis(500));
    }
    let after = encrypted_events_seen(&hospital, &token, &laboratory).await;
    assert!(after <= before, "the revoked doctor was handed a later entry ({before} → {after})");
    let _ = std::fs::remove_file(more);
}
