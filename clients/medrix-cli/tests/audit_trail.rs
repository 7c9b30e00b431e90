//! The audit trail end to end: a patient's record read by a provider under a contract,
//! exported with `medrix-cli audit export`, and checked by the independent verifier (the
//! `medrix-verify` binary and `medrix-cli audit verify`, the same library). An untouched export
//! is valid; each tampering is found and placed: a byte of an event changed, an event removed
//! from the DAG, a read-log entry dropped, two entries swapped, and a log rewritten
//! consistently (hashes recomputed) to claim a contract that did not allow the read.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Person, fixture};
use medrix_records::{ChainHead, ReadBasis, ReadEntry};
use medrix_tests::{REGISTRATION_TOKEN, TestServer, medrix_binary};
use serde_json::Value;

/// The `medrix-verify` binary, built beside `medrix-cli` by the workspace's test build.
fn verifier() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_medrix-cli")).with_file_name("medrix-verify")
}

/// Runs `medrix-verify` on an export: its exit code and output.
fn verify(file: &Path) -> (i32, String) {
    let output = Command::new(verifier()).arg(file).output().expect("medrix-verify runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

fn tampered(
    person: &Person,
    name: &str,
    export: &Value,
    change: impl FnOnce(&mut Value),
) -> PathBuf {
    let mut copy = export.clone();
    change(&mut copy);
    let path = person.file(name);
    std::fs::write(&path, copy.to_string()).unwrap();
    path
}

/// The exported room whose events include this record class's `org.medrix.record`.
fn room_of_class<'a>(export: &'a mut Value, class: &str) -> &'a mut Value {
    export["rooms"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|room| {
            room["events"].as_array().unwrap().iter().any(|event| {
                event["type"] == "org.medrix.record" && event["content"]["class"] == class
            })
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_record_verifies_and_every_tampering_is_found_and_placed() {
    // Checkpoints every second, so the logs read below are anchored in their rooms.
    let flags = [
        "--registration-token",
        REGISTRATION_TOKEN,
        "--no-rate-limits",
        "--audit-checkpoint-every-secs",
        "1",
    ];
    let server = TestServer::start_with(&medrix_binary(), &flags).await;
    let patient = Person::registered(&server, "patient");
    let doctor = Person::registered(&server, "doctor");
    patient.json(&["record", "create"]);
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    let granted =
        patient.json_line("grant doctor --classes laboratory --purpose TREAT --until +1d");
    let contract_id = granted["contract_id"].as_str().unwrap().to_owned();
    doctor.json(&["record", "list", "--patient", "patient"]);
    // The executor anchors the grown logs; then the doctor reads the checkpoint too.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    doctor.json(&["record", "list", "--patient", "patient"]);

    let file = patient.file("export.json");
    let written = patient.json(&["audit", "export", "--out", file.to_str().unwrap()]);
    assert_eq!(written["rooms"], 11, "the space and ten class rooms: {written}");
    let (code, said) = verify(&file);
    assert_eq!(code, 0, "{said}");
    assert!(said.starts_with("valid: 11 room(s)"), "{said}");
    let checked = patient.json(&["audit", "verify", file.to_str().unwrap()]);
    assert_eq!(checked["valid"], true, "{checked}");
    assert!(checked["checkpoints"].as_u64().unwrap() >= 1, "the logs were anchored: {checked}");
    let export: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let mut lab = export.clone();
    let lab_log = room_of_class(&mut lab, "laboratory")["read_log"].as_array().unwrap().clone();
    assert!(
        lab_log.iter().any(|entry| entry["basis"]["contract_id"] == contract_id.as_str()),
        "the doctor's reads are in the export"
    );
    assert!(lab_log.len() >= 2);

    // One byte of an encrypted entry's ciphertext.
    let changed = tampered(&patient, "byte.json", &export, |export| {
        let room = room_of_class(export, "laboratory");
        let entry = room["events"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|event| event["type"] == "m.room.encrypted")
            .unwrap();
        let ciphertext = entry["content"]["ciphertext"].as_str().unwrap().to_owned();
        let flipped = if ciphertext.starts_with('A') { "B" } else { "A" };
        entry["content"]["ciphertext"] = Value::from(format!("{flipped}{}", &ciphertext[1..]));
    });
    let (code, said) = verify(&changed);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("does not match its content hash"), "{said}");

    // An event removed from the DAG: the doctor's join to the laboratory room.
    let removed = tampered(&patient, "removed.json", &export, |export| {
        let events = room_of_class(export, "laboratory")["events"].as_array_mut().unwrap();
        let at = events
            .iter()
            .position(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == "@doctor:localhost"
                    && e["content"]["membership"] == "join"
            })
            .unwrap();
        events.remove(at);
    });
    let (code, said) = verify(&removed);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("which is not in the room"), "{said}");

    // A read-log entry dropped, then two swapped: the chain breaks where it was changed.
    let dropped = tampered(&patient, "dropped.json", &export, |export| {
        room_of_class(export, "laboratory")["read_log"].as_array_mut().unwrap().remove(0);
    });
    let (code, said) = verify(&dropped);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("read log entry 0: carries index 1"), "{said}");
    let swapped = tampered(&patient, "swapped.json", &export, |export| {
        room_of_class(export, "laboratory")["read_log"].as_array_mut().unwrap().swap(0, 1);
    });
    let (code, said) = verify(&swapped);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("read log entry 0"), "{said}");

    // A log rewritten consistently (every hash recomputed) so a read names a contract that
    // never allowed it: the chain holds, the contract check does not.
    let rewritten = tampered(&patient, "rewritten.json", &export, |export| {
        let log = room_of_class(export, "laboratory")["read_log"].as_array_mut().unwrap();
        let mut head = ChainHead::default();
        for value in log.iter_mut() {
            let mut entry = ReadEntry::from_json(value).unwrap();
            entry.prev_hash = head.hash.clone();
            if let ReadBasis::Contract { contract_id, .. } = &mut entry.basis {
                *contract_id = "c-never-agreed".to_owned();
            }
            head = entry.head_after();
            *value = entry.to_json();
        }
    });
    let (code, said) = verify(&rewritten);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("c-never-agreed"), "{said}");
    assert!(!said.contains("carries index"), "the chain itself holds: {said}");
    let refused = patient.run(&["audit", "verify", rewritten.to_str().unwrap()]);
    assert!(!refused.success && refused.stdout.contains("invalid"), "{refused:?}");

    // A checkpoint forged after the fact: its content no longer matches what was signed.
    let forged = tampered(&patient, "forged.json", &export, |export| {
        let room = room_of_class(export, "laboratory");
        let checkpoint = room["events"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|event| event["type"] == "org.medrix.audit.checkpoint")
            .unwrap();
        let anchored = checkpoint["content"]["count"].as_u64().unwrap();
        checkpoint["content"]["count"] = Value::from(anchored + 7);
    });
    let (code, said) = verify(&forged);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("does not match its content hash"), "{said}");

    // A log rewritten on the server after a checkpoint was sent (an entry removed, the chain
    // rebuilt so it holds): the checkpoint in the DAG contradicts it.
    let rewritten_after = tampered(&patient, "after.json", &export, |export| {
        let log = room_of_class(export, "laboratory")["read_log"].as_array_mut().unwrap();
        log.remove(0);
        let mut head = ChainHead::default();
        for value in log.iter_mut() {
            let mut entry = ReadEntry::from_json(value).unwrap();
            entry.index = head.count;
            entry.prev_hash = head.hash.clone();
            head = entry.head_after();
            *value = entry.to_json();
        }
    });
    let (code, said) = verify(&rewritten_after);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("checkpoint") && said.contains("rewritten after it"), "{said}");
    assert!(!said.contains("carries index"), "the rebuilt chain itself holds: {said}");

    // The doctor may not export the patient's record.
    assert!(!doctor.run(&["audit", "export", "--out", "/dev/null"]).success);
    for path in [file, changed, removed, dropped, swapped, rewritten, forged, rewritten_after] {
        let _ = std::fs::remove_file(path);
    }
}

/// Waits until the executor has joined `room` (it answers break-glass knocks there).
async fn wait_for_executor(server: &TestServer, patient: &Person, room: &str) {
    let path =
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@medrix-contracts:localhost");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, content) = server.call("GET", &path, Some(&patient.access_token()), None).await;
        if content["membership"] == "join" {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the executor did not join: {content}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Two providers (one revoked) and a break-glass: the accounting of disclosures lists exactly
/// their three, the recipients add who holds access now, and every read is a valid FHIR R4
/// AuditEvent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disclosures_and_recipients_list_exactly_who_received_what_and_why() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let alice = Person::registered(&server, "alice");
    let bob = Person::registered(&server, "bob");
    let medic = Person::registered(&server, "medic");
    let space = patient.json(&["record", "create"])["space"].as_str().unwrap().to_owned();
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    let to_alice =
        patient.json_line("grant alice --classes laboratory --purpose TREAT --until +1d");
    let to_bob = patient.json_line("grant bob --classes vital-signs --purpose CAREMGT --until +1d");
    alice.json(&["record", "list", "--patient", "patient"]);
    bob.json(&["record", "list", "--patient", "patient"]);
    patient.json(&["revoke", "bob"]);
    wait_for_executor(&server, &patient, &space).await;
    patient.json_line(
        "emergency-contract localhost --classes allergies --until +1d --window-minutes 60",
    );
    let glass = medic.json(&[
        "break-glass",
        "@patient:localhost",
        "--space",
        &space,
        "--reason",
        "found unconscious",
    ]);
    medic.json(&["record", "list", "--patient", "patient"]);

    let listed = patient.json(&["disclosures"]);
    let disclosures = listed["disclosures"].as_array().unwrap();
    let summary: Vec<(String, String, String, bool)> = disclosures
        .iter()
        .map(|d| {
            (
                d["recipient"].as_str().unwrap().to_owned(),
                d["contract_id"].as_str().unwrap().to_owned(),
                d["purpose"].as_str().unwrap().to_owned(),
                d["break_glass"].as_bool().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("@alice:localhost", to_alice["contract_id"].as_str().unwrap(), "TREAT", false),
        ("@bob:localhost", to_bob["contract_id"].as_str().unwrap(), "CAREMGT", false),
        ("@medic:localhost", glass["contract_id"].as_str().unwrap(), "BTG", true),
    ]
    .map(|(r, c, p, g)| (r.to_owned(), c.to_owned(), p.to_owned(), g));
    assert_eq!(summary, expected, "{listed}");
    for (disclosure, class) in disclosures.iter().zip(["laboratory", "vital-signs", "allergies"]) {
        assert!(
            disclosure["classes"].as_array().unwrap().contains(&Value::from(class)),
            "{disclosure}"
        );
        assert!(disclosure["events"].as_u64().unwrap() >= 1, "{disclosure}");
    }
    // The changes beside the reads: who granted, who removed whom and why, who broke the
    // glass (the rooms' DAGs, as the patient's audit lists them).
    let audit = patient.json(&["audit"]);
    let changes = audit["changes"].as_array().unwrap();
    let changed = |sender: &str, kind: &str, says: &str| {
        changes.iter().any(|c| {
            c["sender"] == sender
                && c["type"] == kind
                && c["summary"].as_str().unwrap_or_default().contains(says)
        })
    };
    let executor = "@medrix-contracts:localhost";
    let alice_contract = to_alice["contract_id"].as_str().unwrap();
    assert!(changed("@patient:localhost", "org.medrix.grant", alice_contract), "{audit}");
    // Revocation: the patient's client removes the grantee (the executor does on expiry).
    assert!(changed("@patient:localhost", "m.room.member", "leave @bob:localhost"), "{audit}");
    assert!(changed(executor, "org.medrix.grant", "(BTG)"), "the break-glass contract: {audit}");
    assert!(changed("@medic:localhost", "m.room.member", "join @medic:localhost"), "{audit}");
    let medics = patient.json(&["audit", "--who", "medic"]);
    assert!(
        medics["changes"].as_array().unwrap().iter().all(|c| c["sender"] == "@medic:localhost")
    );
    let later = patient.json(&["disclosures", "--since", "+1h"]);
    assert!(later["disclosures"].as_array().unwrap().is_empty(), "{later}");

    // The recipients: the three who received data (bob's access ended), and the medic's
    // organisation, which holds the standing emergency contract and has received nothing.
    let recipients = patient.json(&["recipients"]);
    let holding: Vec<(String, bool, bool)> = recipients["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["recipient"].as_str().unwrap().to_owned(),
                r["holds_access"].as_bool().unwrap(),
                r["first_ms"].is_u64(),
            )
        })
        .collect();
    assert_eq!(
        holding,
        [
            ("@alice:localhost".to_owned(), true, true),
            ("@bob:localhost".to_owned(), false, true),
            ("@medic:localhost".to_owned(), true, true),
            ("localhost".to_owned(), true, false),
        ],
        "{recipients}"
    );

    // A carer the patient names reads the whole trail, with no access to the record itself;
    // named no more, nothing.
    let carer = Person::registered(&server, "carer");
    assert!(!carer.run(&["audit", "--space", &space]).success, "not before being named");
    patient.json(&["audit", "delegate", "carer"]);
    let seen = carer.json(&["audit", "--space", &space]);
    for reader in ["@alice:localhost", "@bob:localhost", "@medic:localhost"] {
        assert!(
            seen["reads"].as_array().unwrap().iter().any(|r| r["reader"]["user_id"] == reader),
            "{reader}'s reads: {seen}"
        );
    }
    assert!(carer.fails(&["record", "list", "--patient", "patient"]).contains("not shared"));
    patient.json(&["audit", "delegate", "carer", "--remove"]);
    assert!(!carer.run(&["audit", "--space", &space]).success, "no longer named");

    // Every read as a FHIR R4 AuditEvent, valid.
    let out = patient.file("audit-events.json");
    let written = patient.json(&["audit", "fhir", "--out", out.to_str().unwrap()]);
    assert!(written["audit_events"].as_u64().unwrap() >= 3, "{written}");
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    if let Err(messages) = common::validate_fhir(&bundle) {
        panic!("the audit events are not valid FHIR R4:\n{messages}");
    }
    let glass_events = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["resource"]["agent"][0]["purposeOfUse"][0]["coding"][0]["code"] == "BTG")
        .count();
    assert!(glass_events >= 1, "the break-glass reads are flagged");
    let _ = std::fs::remove_file(out);
}
