//! What a server does with bad events from another server, as the spec orders it: a forged
//! signature is dropped (nothing unverifiable is stored), a content hash mismatch keeps the
//! event redacted, an event that fails authorization is rejected (kept for the audit trail,
//! never shown or built upon), and an event valid where it sits in the DAG but not against
//! the current state is soft-failed (kept, not shown). The events are built and signed here
//! as the hospital's server would, and sent straight to the clinic's `/send`.

use matrix_sdk::ruma::{CanonicalJsonObject, OwnedEventId, OwnedRoomId, OwnedUserId};
use medrix_federation_tests::{FederatingServer, TestNet, room_reads};
use medrix_protocol::{
    RoomVersion,
    build::{EventDraft, sign_new_event},
    canonical::{encode, object_from_value},
    keys::ServerSigningKey,
};
use serde_json::{Value, json};

struct Room {
    id: OwnedRoomId,
    power_levels: OwnedEventId,
    join_rules: OwnedEventId,
    doctor_join: OwnedEventId,
    doctor: OwnedUserId,
}

/// The clinic's view of a state event's ID.
async fn state_id(
    server: &FederatingServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
) -> OwnedEventId {
    room_reads::state_id(server, token, room, kind, key).await.try_into().unwrap()
}

/// The newest event of the room the clinic's user can read.
async fn newest_event(server: &FederatingServer, token: &str, room: &str) -> OwnedEventId {
    room_reads::newest_event(server, token, room).await.try_into().unwrap()
}

fn draft(
    room: &Room,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &OwnedEventId,
    depth: u64,
) -> EventDraft {
    let mut auth_events = vec![room.power_levels.clone(), room.doctor_join.clone()];
    if state_key.is_some() {
        auth_events.push(room.join_rules.clone());
    }
    // v12: the room ID names the create event; it is not listed.
    EventDraft {
        room_id: Some(room.id.clone()),
        sender: room.doctor.clone(),
        kind: kind.to_owned(),
        state_key: state_key.map(ToOwned::to_owned),
        content: object_from_value(content).unwrap(),
        prev_events: vec![prev.clone()],
        auth_events,
        depth,
        origin_server_ts: 1_800_000_000_000,
        redacts: None,
    }
}

/// The room's power levels as `token`'s user reads them on `server`.
async fn power_levels(server: &FederatingServer, token: &str, room_id: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/");
    server.server.call("GET", &path, Some(token), None).await.1
}

fn transaction(origin: &FederatingServer, pdus: Vec<Value>) -> Value {
    json!({ "origin": origin.server_name, "origin_server_ts": 1_800_000_000_000u64, "pdus": pdus })
}

fn wire(json: &CanonicalJsonObject) -> Value {
    serde_json::from_str(&encode(json)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_corrupted_unauthorized_and_outdated_events_are_handled_as_the_spec_says() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor_token = hospital.server.register("doctor", "pw").await;
    let doctor: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();

    let (_, created) = clinic
        .server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({ "preset": "private_chat", "invite": [doctor] })),
        )
        .await;
    let room_id = created["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{room_id}");
    let (status, body) =
        hospital.server.call("POST", &join, Some(&doctor_token), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let room = Room {
        id: room_id.as_str().try_into().unwrap(),
        power_levels: state_id(&clinic, &patient, &room_id, "m.room.power_levels", "").await,
        join_rules: state_id(&clinic, &patient, &room_id, "m.room.join_rules", "").await,
        doctor_join: state_id(&clinic, &patient, &room_id, "m.room.member", doctor.as_str()).await,
        doctor: doctor.clone(),
    };
    let tip = newest_event(&clinic, &patient, &room_id).await;
    let key = hospital.signing_key();
    let version = RoomVersion::V12;
    let mut depth = 100;
    let mut next = |kind: &str,
                    state_key: Option<&str>,
                    content: Value,
                    prev: &OwnedEventId,
                    key: &ServerSigningKey| {
        depth += 1;
        sign_new_event(&draft(&room, kind, state_key, content, prev, depth), version, key).unwrap()
    };

    // 1. A forged signature: signed by a key that is not the hospital's, under its key ID.
    let forger =
        ServerSigningKey::from_seed(&hospital.server_name, &key.key_id()[8..], &[7; 32]).unwrap();
    let forged =
        next("m.room.message", None, json!({"msgtype": "m.text", "body": "forged"}), &tip, &forger);
    // 2. A content hash mismatch: signed, then the content changed.
    let honest =
        next("m.room.message", None, json!({"msgtype": "m.text", "body": "original"}), &tip, &key);
    let mut tampered = wire(&honest.json);
    tampered["content"]["body"] = json!("tampered");
    // 3. An unauthorized event: the doctor (power 0) makes themselves an admin.
    let levels = power_levels(&clinic, &patient, &room_id).await;
    let mut escalated = levels.clone();
    escalated["users"][doctor.as_str()] = json!(100);
    let grab = next("m.room.power_levels", Some(""), escalated, &honest.event_id, &key);

    let (status, answer) = net
        .put_transaction(
            &hospital,
            &clinic,
            "bad-events",
            &transaction(&hospital, vec![wire(&forged.json), tampered, wire(&grab.json)]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let results = &answer["pdus"];
    assert!(
        results[forged.event_id.as_str()]["error"]
            .as_str()
            .is_some_and(|e| e.contains("signature")),
        "{answer}"
    );
    assert_eq!(
        results[honest.event_id.as_str()],
        json!({}),
        "a hash mismatch is kept, redacted: {answer}"
    );
    assert!(
        results[grab.event_id.as_str()]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("rejected")),
        "{answer}"
    );

    let event_path = |id: &OwnedEventId| format!("/_matrix/client/v3/rooms/{room_id}/event/{id}");
    // The forged event was not stored at all.
    let (status, _) =
        clinic.server.call("GET", &event_path(&forged.event_id), Some(&patient), None).await;
    assert_eq!(status, 404);
    // The tampered one is there, with its content stripped: the signature covers only the
    // redacted form, so nothing of the altered content is trusted.
    let (status, kept) =
        clinic.server.call("GET", &event_path(&honest.event_id), Some(&patient), None).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(kept["content"], json!({}), "{kept}");
    // The rejected power grab is not shown, and the power levels did not change.
    let (status, _) =
        clinic.server.call("GET", &event_path(&grab.event_id), Some(&patient), None).await;
    assert_eq!(status, 404);
    let now = power_levels(&clinic, &patient, &room_id).await;
    assert_eq!(now, levels);

    // 4. Soft-fail: the patient removes the doctor; then an event from the doctor arrives
    // that was made before the removal (its prev_events precede it). It is valid where it
    // sits in the DAG, but not against the room's current state.
    let (status, body) = clinic
        .server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room_id}/kick"),
            Some(&patient),
            Some(json!({ "user_id": doctor })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let late = next(
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "late"}),
        &honest.event_id,
        &key,
    );
    let (status, answer) = net
        .put_transaction(
            &hospital,
            &clinic,
            "late-event",
            &transaction(&hospital, vec![wire(&late.json)]),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["pdus"][late.event_id.as_str()]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("soft-failed")),
        "{answer}"
    );
    let (status, _) =
        clinic.server.call("GET", &event_path(&late.event_id), Some(&patient), None).await;
    assert_eq!(status, 404, "a soft-failed event is not served");
}
