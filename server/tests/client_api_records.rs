//! A patient's record and its consent contracts, enforced by the patient's server over real
//! HTTP: the contract executor joins the record's rooms when invited; a malformed contract is
//! refused and changes nothing; nobody joins or is invited into a record room without a
//! contract covering that room's class; a contract's end removes the grantee within seconds
//! (also when it ended while the server was down) and marks it expired; a revocation removes
//! the grantee at once. Every removal is the executor's, with a reason naming the contract.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{TestServer, start};

struct Record {
    space: String,
    laboratory: String,
    conditions: String,
}

/// The full user ID of `localpart` on the server of the logged-in `token`'s user.
async fn user(server: &TestServer, token: &str, localpart: &str) -> String {
    let me = whoami(server, token).await;
    let (_, server_name) = me.split_once(':').unwrap();
    format!("@{localpart}:{server_name}")
}

/// The state key of a personal contract for `user` (spec/records.md §4).
fn key_of(user: &str) -> String {
    format!("user:{user}")
}

/// Puts the patient's contract for `grantee` into the record's space.
async fn put_contract(
    server: &TestServer,
    patient: &str,
    space: &str,
    grantee: &str,
    content: Value,
) -> (u16, Value) {
    put_state(server, patient, space, "org.medrix.grant", &key_of(grantee), content).await
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

async fn put_state(
    server: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
    content: Value,
) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}");
    server.call("PUT", &path, Some(token), Some(content)).await
}

async fn get_state(
    server: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}");
    server.call("GET", &path, Some(token), None).await
}

async fn create_record(server: &TestServer, patient: &str) -> Record {
    let executor = user(server, patient, "medrix-contracts").await;
    let me = whoami(server, patient).await;
    let (status, space) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(patient),
            Some(json!({
                "preset": "private_chat",
                "creation_content": {"type": "m.space"},
                "power_level_content_override": {"users": {&executor: 100}},
                "invite": [&executor],
            })),
        )
        .await;
    assert_eq!(status, 200, "{space}");
    let space = space["room_id"].as_str().unwrap().to_owned();
    let mut rooms = Vec::new();
    for class in ["laboratory", "conditions"] {
        let (status, room) = server
            .call(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(patient),
                Some(json!({
                    "preset": "private_chat",
                    "power_level_content_override": {"users": {&executor: 100}},
                    "invite": [&executor],
                    "initial_state": [{
                        "type": "org.medrix.record", "state_key": "",
                        "content": {"patient": &me, "class": class, "space": &space},
                    }],
                })),
            )
            .await;
        assert_eq!(status, 200, "{room}");
        rooms.push(room["room_id"].as_str().unwrap().to_owned());
    }
    let content =
        json!({"patient": &me, "classes": {"laboratory": [&rooms[0]], "conditions": [&rooms[1]]}});
    let (status, body) = put_state(server, patient, &space, "org.medrix.record", "", content).await;
    assert_eq!(status, 200, "{body}");
    Record { space, laboratory: rooms[0].clone(), conditions: rooms[1].clone() }
}

async fn whoami(server: &TestServer, token: &str) -> String {
    let (_, me) = server.call("GET", "/_matrix/client/v3/account/whoami", Some(token), None).await;
    me["user_id"].as_str().unwrap().to_owned()
}

fn grant(contract_id: &str, grantee: &str, classes: &[&str], end: u64, status: &str) -> Value {
    json!({
        "contract_id": contract_id, "grantee": grantee, "purpose": "TREAT",
        "classes": classes, "data_period": {"start": null, "end": null},
        "valid": {"start": 0, "end": end}, "mode": "read",
        "text": "Dr. Who may read my lab results for my treatment.", "status": status,
    })
}

/// The member's membership event in the room, as the patient sees it.
async fn member_event(server: &TestServer, patient: &str, room: &str, member: &str) -> Value {
    get_state(server, patient, room, "m.room.member", member).await.1
}

async fn wait_for_membership(
    server: &TestServer,
    patient: &str,
    room: &str,
    member: &str,
    membership: &str,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let event = member_event(server, patient, room, member).await;
        if event["membership"] == membership {
            return event;
        }
        assert!(started.elapsed() < within, "{member} not {membership} in {room}: {event}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn invite(server: &TestServer, token: &str, room: &str, who: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/invite");
    server.call("POST", &path, Some(token), Some(json!({"user_id": who}))).await
}

async fn join(server: &TestServer, token: &str, room: &str) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/join/{room}");
    server.call("POST", &path, Some(token), Some(json!({}))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_decide_who_joins_and_their_end_or_revocation_removes_the_grantee() {
    let server = start().await;
    let patient = server.register("patient", "pw").await;
    let doctor = server.register("doctor", "pw").await;
    let nurse = server.register("nurse", "pw").await;
    let (doctor_id, nurse_id) = (whoami(&server, &doctor).await, whoami(&server, &nurse).await);
    let executor = user(&server, &patient, "medrix-contracts").await;
    let record = create_record(&server, &patient).await;

    // The executor accepts the patient's invitations by itself.
    for room in [&record.space, &record.laboratory, &record.conditions] {
        wait_for_membership(&server, &patient, room, &executor, "join", Duration::from_secs(5))
            .await;
    }
    // Nobody can log in as it, nor register its name.
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "medrix-contracts"}, "password": ""})),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // Malformed contracts are refused with the field at fault, and change nothing.
    let mut missing = grant("c-1", &doctor_id, &["laboratory"], now_ms() + 60_000, "active");
    missing.as_object_mut().unwrap().remove("valid");
    let (status, body) = put_contract(&server, &patient, &record.space, &doctor_id, missing).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{body}");
    let mut backwards = grant("c-1", &doctor_id, &["laboratory"], now_ms() + 60_000, "active");
    backwards["valid"] = json!({"start": 2_000_000_000_000u64, "end": 1_000_000_000_000u64});
    let (status, body) =
        put_contract(&server, &patient, &record.space, &doctor_id, backwards).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");
    let unknown_class = grant("c-1", &doctor_id, &["astrology"], now_ms() + 60_000, "active");
    let (status, body) =
        put_contract(&server, &patient, &record.space, &doctor_id, unknown_class).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");
    let (status, _) =
        get_state(&server, &patient, &record.space, "org.medrix.grant", &key_of(&doctor_id)).await;
    assert_eq!(status, 404, "no contract was stored");

    // Without a contract, no invitation into the record.
    let (status, body) = invite(&server, &patient, &record.laboratory, &doctor_id).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // A contract for the laboratory, ending in 4 s: the doctor is let into the space and the
    // laboratory room, not into the conditions room.
    let end = now_ms() + 4_000;
    let contract = grant("c-lab", &doctor_id, &["laboratory"], end, "active");
    let (status, body) = put_contract(&server, &patient, &record.space, &doctor_id, contract).await;
    assert_eq!(status, 200, "{body}");
    for room in [&record.space, &record.laboratory] {
        let (status, body) = invite(&server, &patient, room, &doctor_id).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = join(&server, &doctor, room).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = invite(&server, &patient, &record.conditions, &doctor_id).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // At its end the executor removes the doctor (at most 5 s late) and marks it expired.
    let removed = wait_for_membership(
        &server,
        &patient,
        &record.laboratory,
        &doctor_id,
        "leave",
        Duration::from_millis(end.saturating_sub(now_ms()) + 5_000),
    )
    .await;
    let late = now_ms().saturating_sub(end);
    assert!(late <= 5_000, "removed {late} ms after the end");
    assert!(removed["reason"].as_str().unwrap_or_default().contains("c-lab"), "{removed}");
    wait_for_membership(
        &server,
        &patient,
        &record.space,
        &doctor_id,
        "leave",
        Duration::from_secs(5),
    )
    .await;
    let (_, stored) =
        get_state(&server, &patient, &record.space, "org.medrix.grant", &key_of(&doctor_id)).await;
    assert_eq!(stored["status"], "expired", "{stored}");
    // Nor can the doctor come back.
    let (status, body) = invite(&server, &patient, &record.laboratory, &doctor_id).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // A long contract for the nurse, then revoked: the nurse is removed at once.
    let contract =
        grant("c-ward", &nurse_id, &["laboratory", "conditions"], now_ms() + 3_600_000, "active");
    let (status, body) = put_contract(&server, &patient, &record.space, &nurse_id, contract).await;
    assert_eq!(status, 200, "{body}");
    for room in [&record.space, &record.conditions] {
        assert_eq!(invite(&server, &patient, room, &nurse_id).await.0, 200);
        assert_eq!(join(&server, &nurse, room).await.0, 200);
    }
    let revoked =
        grant("c-ward", &nurse_id, &["laboratory", "conditions"], now_ms() + 3_600_000, "revoked");
    let (status, body) = put_contract(&server, &patient, &record.space, &nurse_id, revoked).await;
    assert_eq!(status, 200, "{body}");
    let removed = wait_for_membership(
        &server,
        &patient,
        &record.conditions,
        &nurse_id,
        "leave",
        Duration::from_secs(3),
    )
    .await;
    assert!(removed["reason"].as_str().unwrap_or_default().contains("c-ward"), "{removed}");
    let sender = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{}/state", record.conditions),
            Some(&patient),
            None,
        )
        .await
        .1;
    let kick = sender
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["type"] == "m.room.member" && event["state_key"] == nurse_id.as_str())
        .unwrap();
    assert_eq!(
        kick["sender"],
        executor.as_str(),
        "the executor removed the nurse, not the patient"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_that_ended_while_the_server_was_down_takes_effect_at_its_next_start() {
    let mut server = start().await;
    let patient = server.register("patient", "pw").await;
    let doctor = server.register("doctor", "pw").await;
    let doctor_id = whoami(&server, &doctor).await;
    let executor = user(&server, &patient, "medrix-contracts").await;
    let record = create_record(&server, &patient).await;
    wait_for_membership(
        &server,
        &patient,
        &record.laboratory,
        &executor,
        "join",
        Duration::from_secs(5),
    )
    .await;

    let end = now_ms() + 2_000;
    let contract = grant("c-short", &doctor_id, &["laboratory"], end, "active");
    let (status, body) = put_contract(&server, &patient, &record.space, &doctor_id, contract).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(invite(&server, &patient, &record.laboratory, &doctor_id).await.0, 200);
    assert_eq!(join(&server, &doctor, &record.laboratory).await.0, 200);

    // Down (kill -9) before the end, up again after it.
    server.kill();
    tokio::time::sleep(Duration::from_millis(end.saturating_sub(now_ms()) + 500)).await;
    let restarted = now_ms();
    server.start_again().await;
    let removed = wait_for_membership(
        &server,
        &patient,
        &record.laboratory,
        &doctor_id,
        "leave",
        Duration::from_secs(5),
    )
    .await;
    assert!(now_ms() - restarted <= 5_000 + 2_000);
    assert!(removed["reason"].as_str().unwrap_or_default().contains("c-short"), "{removed}");
    let (_, stored) =
        get_state(&server, &patient, &record.space, "org.medrix.grant", &key_of(&doctor_id)).await;
    assert_eq!(stored["status"], "expired", "{stored}");
}
