//! A patient's record and its consent contracts, enforced by the patient's server over real
//! HTTP: the contract executor joins the record's rooms when invited; a malformed contract is
//! refused and changes nothing; nobody joins or is invited into a record room without a
//! contract covering that room's class; a contract's end removes the grantee within seconds
//! (also when it ended while the server was down) and marks it expired; a revocation removes
//! the grantee at once. Every removal is the executor's, with a reason naming the contract.

mod support;

use std::time::Duration;

use medrix_tests::records::{
    contract as grant, contract_key as key_of, create_record, executor_of, get_state, now_ms,
    put_contract, wait_for_membership, whoami,
};
use serde_json::{Value, json};
use support::{TestServer, start};

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
    let executor = executor_of(&server, &patient).await;
    let record = create_record(&server, &patient, &["laboratory", "conditions"]).await;

    // The executor accepts the patient's invitations by itself.
    for room in [&record.space, record.room("laboratory"), record.room("conditions")] {
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
    let (status, body) = invite(&server, &patient, record.room("laboratory"), &doctor_id).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // A contract for the laboratory, ending in 4 s: the doctor is let into the space and the
    // laboratory room, not into the conditions room.
    let end = now_ms() + 4_000;
    let contract = grant("c-lab", &doctor_id, &["laboratory"], end, "active");
    let (status, body) = put_contract(&server, &patient, &record.space, &doctor_id, contract).await;
    assert_eq!(status, 200, "{body}");
    for room in [&record.space, record.room("laboratory")] {
        let (status, body) = invite(&server, &patient, room, &doctor_id).await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = join(&server, &doctor, room).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = invite(&server, &patient, record.room("conditions"), &doctor_id).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // At its end the executor removes the doctor (at most 5 s late) and marks it expired.
    let removed = wait_for_membership(
        &server,
        &patient,
        record.room("laboratory"),
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
    let (status, body) = invite(&server, &patient, record.room("laboratory"), &doctor_id).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    // A long contract for the nurse, then revoked: the nurse is removed at once.
    let contract =
        grant("c-ward", &nurse_id, &["laboratory", "conditions"], now_ms() + 3_600_000, "active");
    let (status, body) = put_contract(&server, &patient, &record.space, &nurse_id, contract).await;
    assert_eq!(status, 200, "{body}");
    for room in [&record.space, record.room("conditions")] {
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
        record.room("conditions"),
        &nurse_id,
        "leave",
        Duration::from_secs(3),
    )
    .await;
    assert!(removed["reason"].as_str().unwrap_or_default().contains("c-ward"), "{removed}");
    let sender = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{}/state", record.room("conditions")),
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
    let executor = executor_of(&server, &patient).await;
    let record = create_record(&server, &patient, &["laboratory", "conditions"]).await;
    wait_for_membership(
        &server,
        &patient,
        record.room("laboratory"),
        &executor,
        "join",
        Duration::from_secs(5),
    )
    .await;

    let end = now_ms() + 2_000;
    let contract = grant("c-short", &doctor_id, &["laboratory"], end, "active");
    let (status, body) = put_contract(&server, &patient, &record.space, &doctor_id, contract).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(invite(&server, &patient, record.room("laboratory"), &doctor_id).await.0, 200);
    assert_eq!(join(&server, &doctor, record.room("laboratory")).await.0, 200);

    // Down (kill -9) before the end, up again after it.
    server.kill();
    tokio::time::sleep(Duration::from_millis(end.saturating_sub(now_ms()) + 500)).await;
    let restarted = now_ms();
    server.start_again().await;
    let removed = wait_for_membership(
        &server,
        &patient,
        record.room("laboratory"),
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
