//! Access requests and break-glass with medrix-cli, on one `medrix serve`: providers ask by
//! knocking on the patient's record space with terms, the patient lists the requests,
//! approves one as asked (the provider then reads exactly those classes) and declines
//! another; a clinician breaks the glass under the patient's standing emergency contract and
//! is admitted at once, or turned away with the server's reason when there is none; with the
//! patient's custodian holding the emergency classes' keys, the clinician decrypts them while
//! the patient's devices are offline.

mod common;

use std::time::{Duration, Instant};

use common::{Person, fixture, listed_ids};
use medrix_tests::{TestServer, medrix_binary};
use serde_json::{Value, json};

/// `person`'s membership of `user` in `room`, as the server holds it (`null` when none).
async fn membership(server: &TestServer, person: &Person, room: &str, user: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}");
    let (status, content) = server.call("GET", &path, Some(&person.access_token()), None).await;
    if status == 404 { Value::Null } else { content }
}

/// Waits until `user`'s membership in `room` is `state`; its content.
async fn wait_for(
    server: &TestServer,
    person: &Person,
    room: &str,
    user: &str,
    state: &str,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let content = membership(server, person, room, user).await;
        if content["membership"] == state {
            return content;
        }
        assert!(Instant::now() < deadline, "{user} is not `{state}` in {room}: {content}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patient_approves_one_request_as_asked_and_declines_another() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let doctor = Person::registered(&server, "doctor");
    let intern = Person::registered(&server, "intern");
    let visitor = Person::registered(&server, "visitor");
    let created = patient.json(&["record", "create"]);
    let space = created["space"].as_str().unwrap().to_owned();
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);

    // The doctor asks for the laboratory entries since 2024, for a day.
    let asked = doctor.json(&[
        "request",
        "@patient:localhost",
        "--space",
        &space,
        "--classes",
        "laboratory",
        "--purpose",
        "TREAT",
        "--until",
        "+1d",
        "--data-from",
        "2024-01-01",
        "--reason",
        "follow-up of your HbA1c",
    ]);
    assert_eq!(asked["space"], space.as_str());
    let terms = asked["request"].clone();
    assert_eq!(terms["classes"], json!(["laboratory"]));
    assert_eq!(terms["purpose"], "TREAT");
    assert_eq!(terms["mode"], "read");
    assert_eq!(terms["data_period"], json!({"start": 1_704_067_200_000_i64, "end": null}));
    intern.json_line(&format!(
        "request patient --space {space} --classes vital-signs,conditions --purpose TREAT \
         --until +7d --mode contribute"
    ));
    // A standard client's knock carries no terms.
    let path = format!("/_matrix/client/v3/knock/{space}");
    let (status, body) = server
        .call("POST", &path, Some(&visitor.access_token()), Some(json!({"reason": "hello"})))
        .await;
    assert_eq!(status, 200, "{body}");

    let listed = patient.json(&["requests"]);
    let requests = listed["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "{listed}");
    let of = |user: &str| requests.iter().find(|r| r["user"] == user).unwrap().clone();
    assert_eq!(of("@doctor:localhost")["request"], terms);
    assert_eq!(of("@doctor:localhost")["reason"], "follow-up of your HbA1c");
    assert!(of("@doctor:localhost")["knocked_at"].as_u64().unwrap() > 0);
    assert_eq!(of("@intern:localhost")["request"]["mode"], "contribute");
    assert_eq!(of("@visitor:localhost")["request"], Value::Null);
    let text = patient.run(&["requests"]);
    assert!(text.stdout.starts_with("3 pending request(s) on your record"), "{text:?}");
    assert!(text.stdout.contains("@visitor:localhost  knocked without terms (use grant)"));

    // Terms that cannot be asked for are refused before any knock.
    let ask = |space: &str, purpose: &str| {
        let args = ["request", "patient", "--space", space, "--classes", "laboratory"];
        doctor.fails(&[&args[..], &["--purpose", purpose, "--until", "+1d"]].concat())
    };
    assert!(ask("not-a-room", "TREAT").contains("--space"));
    assert!(ask(&space, "BTG").contains("break-glass"));

    // Approved as asked: a contract with exactly those terms, then the grant's invitations.
    let approved = patient.json(&["approve", "doctor"]);
    let contract_id = approved["contract_id"].as_str().unwrap();
    assert!(contract_id.starts_with("c-") && contract_id.len() == 22, "{contract_id}");
    assert_eq!(approved["grantee"], "@doctor:localhost");
    assert_eq!(approved["status"], "active");
    for field in ["purpose", "classes", "data_period", "valid", "mode"] {
        assert_eq!(approved[field], terms[field], "{field}");
    }
    assert_eq!(approved["invited_to"].as_array().unwrap().len(), 2, "the space and one room");
    let seen = doctor.json(&["record", "list", "--patient", "@patient:localhost"]);
    assert_eq!(listed_ids(&seen), ["hba1c-2024"]);

    // A plain knock is not approved as asked: the patient chooses terms with `grant`.
    let refused = patient.fails(&["approve", "visitor"]);
    assert!(refused.contains("grant"), "{refused}");
    let nobody = patient.fails(&["approve", "doctor"]);
    assert!(nobody.contains("no pending request"), "{nobody}");

    // Declined: the intern's knock is removed, with the reason.
    let declined = patient.json(&["decline", "intern", "--reason", "not on my care team"]);
    assert_eq!(declined["declined"], true);
    let left = wait_for(&server, &patient, &space, "@intern:localhost", "leave").await;
    assert_eq!(left["reason"], "not on my care team");
    let pending = patient.json(&["requests"]);
    let users: Vec<&Value> =
        pending["requests"].as_array().unwrap().iter().map(|r| &r["user"]).collect();
    assert_eq!(users, [&json!("@visitor:localhost")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_glass_admits_a_clinician_under_a_standing_contract_and_only_then() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let unprepared = Person::registered(&server, "unprepared");
    let medic = Person::registered(&server, "er-medic");
    let space = patient.json(&["record", "create"])["space"].as_str().unwrap().to_owned();
    let other = unprepared.json(&["record", "create"])["space"].as_str().unwrap().to_owned();
    let executor = "@medrix-contracts:localhost";
    wait_for(&server, &patient, &space, executor, "join").await;
    wait_for(&server, &unprepared, &other, executor, "join").await;

    // The patient's standing emergency contract for the medic's organisation (this server).
    let standing = patient.json(&[
        "emergency-contract",
        "localhost",
        "--classes",
        "allergies,medications",
        "--until",
        "+1d",
        "--window-minutes",
        "1",
    ]);
    assert_eq!(standing["grantee"], "localhost");
    assert_eq!(standing["purpose"], "ETREAT");
    assert_eq!(standing["emergency_access_ms"], 60_000);
    let standing_id = standing["contract_id"].as_str().unwrap().to_owned();
    for (args, complaint) in [
        (
            ["emergency-contract", "not a server", "--classes", "allergies", "--until", "+1d"]
                .as_slice(),
            "server name",
        ),
        (
            &[
                "emergency-contract",
                "localhost",
                "--classes",
                "allergies",
                "--until",
                "+1d",
                "--window-minutes",
                "0",
            ],
            "window-minutes",
        ),
        (
            &["emergency-contract", "localhost", "--classes", "allergies", "--until", "2001-01-01"],
            "--until",
        ),
    ] {
        let refused = patient.fails(args);
        assert!(refused.contains(complaint), "{args:?}: {refused}");
    }

    let started = Instant::now();
    let contract = medic.json(&[
        "break-glass",
        "@patient:localhost",
        "--space",
        &space,
        "--reason",
        "unconscious, allergy check",
    ]);
    assert!(started.elapsed() < Duration::from_secs(15));
    assert_eq!(contract["purpose"], "BTG");
    assert_eq!(contract["grantee"], "@er-medic:localhost");
    assert_eq!(contract["classes"], json!(["medications", "allergies"]));
    assert_eq!(
        contract["break_glass"],
        json!({"standing_contract": standing_id, "reason": "unconscious, allergy check"})
    );
    let window =
        contract["valid"]["end"].as_u64().unwrap() - contract["valid"]["start"].as_u64().unwrap();
    assert_eq!(window, 60_000);
    assert_eq!(contract["joined"].as_array().unwrap().len(), 3, "the space and two rooms");
    assert_eq!(
        membership(&server, &patient, &space, "@er-medic:localhost").await["membership"],
        "join"
    );

    // No standing contract: the patient's server turns the medic away, and says why.
    let refused = medic.fails(&[
        "break-glass",
        "@unprepared:localhost",
        "--space",
        &other,
        "--reason",
        "unconscious",
    ]);
    assert!(refused.starts_with("medrix-cli: break-glass refused: "), "{refused}");
}

/// The patient entrusts their medications and allergies to the server's custodian, then has
/// no device running. A clinician who breaks the glass decrypts exactly those classes: the
/// entries recorded before the custodian was named (handed over with its invitation) and
/// after (shared with it live), and nothing of the other classes. The release is the
/// custodian's invitation and a notice to the patient.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clinician_decrypts_the_emergency_classes_the_custodian_holds() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let custodian = Person::registered(&server, "custodian");
    let medic = Person::registered(&server, "er-medic");
    let created = patient.json(&["record", "create"]);
    let space = created["space"].as_str().unwrap().to_owned();
    let room_of = |class: &str| created["classes"][class][0].as_str().unwrap().to_owned();
    wait_for(&server, &patient, &space, "@medrix-contracts:localhost", "join").await;
    // Recorded before the custodian is named: 2021's vital signs, laboratory, conditions
    // and medications.
    patient.json(&["record", "add", &fixture("period-2021.bundle.json")]);
    let service = custodian.spawn(&["custodian", "run", "--json"]);

    // A custodian must be of the patient's own server.
    let refused = patient.fails(&[
        "emergency-contract",
        "localhost",
        "--classes",
        "allergies",
        "--until",
        "+1d",
        "--custodian",
        "@custodian:elsewhere.example",
    ]);
    assert!(refused.contains("custodian"), "{refused}");
    let standing = patient.json(&[
        "emergency-contract",
        "localhost",
        "--classes",
        "allergies,medications",
        "--until",
        "+1d",
        "--custodian",
        "custodian",
    ]);
    assert_eq!(standing["custodian"], "@custodian:localhost");
    for class in ["allergies", "medications"] {
        wait_for(&server, &patient, &room_of(class), "@custodian:localhost", "join").await;
    }
    // Nothing else is the custodian's: no room of another class.
    let lab = membership(&server, &patient, &room_of("laboratory"), "@custodian:localhost").await;
    assert_eq!(lab, Value::Null, "the custodian holds no laboratory room");
    // Recorded after: 2024's entries, among them a penicillin allergy.
    patient.json(&["record", "add", &fixture("period-2024.ndjson")]);

    // The patient's devices are offline (no medrix-cli of theirs runs): the medic breaks
    // the glass and reads.
    let contract = medic.json(&[
        "break-glass",
        "@patient:localhost",
        "--space",
        &space,
        "--reason",
        "anaphylaxis, unconscious",
    ]);
    assert_eq!(contract["joined"].as_array().unwrap().len(), 3, "the space and two rooms");
    for class in ["allergies", "medications"] {
        let invited_by =
            membership(&server, &patient, &room_of(class), "@er-medic:localhost").await;
        assert_eq!(invited_by["membership"], "join");
    }
    let list = medic.json(&["record", "list", "--patient", "@patient:localhost"]);
    assert_eq!(listed_ids(&list), ["amlodipine-2021", "penicillin-2024"], "{list}");
    assert_eq!(list["unreadable"], json!([]), "every entry the medic holds opens");

    // The release, as the custodian said it and as the patient is told.
    let printed = service.stop();
    let release: Value = printed
        .lines()
        .find_map(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("the custodian printed no release: {printed:?}"));
    assert_eq!(release["clinician"], "@er-medic:localhost");
    assert_eq!(release["contract_id"], contract["contract_id"]);
    assert_eq!(release["rooms_with_keys"], 2);
    let path = format!("/_matrix/client/v3/rooms/{space}/messages?dir=b&limit=50");
    let (status, messages) = server.call("GET", &path, Some(&patient.access_token()), None).await;
    assert_eq!(status, 200);
    let notice = messages["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["content"]["org.medrix.key_release_notice"].is_object())
        .unwrap_or_else(|| panic!("no release notice in the space: {messages}"));
    assert_eq!(notice["sender"], "@custodian:localhost");
    assert_eq!(notice["content"]["msgtype"], "m.notice");
    assert_eq!(
        notice["content"]["org.medrix.key_release_notice"]["clinician"],
        "@er-medic:localhost"
    );

    // The trail: the custodian's reads are logged under the standing contract, and the
    // independent verifier holds every read to the contracts of its moment.
    let reads = patient.json(&["audit", "--who", "@custodian:localhost"]);
    let under: Vec<&Value> = reads["reads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|read| read["basis"].get("contract_id"))
        .collect();
    assert!(!under.is_empty(), "the custodian's reads are logged: {reads}");
    assert!(under.iter().all(|id| **id == standing["contract_id"]), "{reads}");
    let file = patient.file("custody-export.json");
    patient.json(&["audit", "export", "--out", file.to_str().unwrap()]);
    let checked = patient.json(&["audit", "verify", file.to_str().unwrap()]);
    assert_eq!(checked["valid"], true, "{checked}");
}
