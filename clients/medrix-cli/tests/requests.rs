//! Access requests and break-glass with medrix-cli, on one `medrix serve`: providers ask by
//! knocking on the patient's record space with terms, the patient lists the requests,
//! approves one as asked (the provider then reads exactly those classes) and declines
//! another; a clinician breaks the glass under the patient's standing emergency contract and
//! is admitted at once, or turned away with the server's reason when there is none.

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
