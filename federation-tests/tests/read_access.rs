//! What another server may read, and what it may not make this server believe: every
//! federation read goes through the access service, which answers only for events of the
//! room named, gives a server in the room the events its users may not see with their
//! content stripped, and gives a server outside the room nothing. A server that was in a
//! room cannot rewrite a local user's membership, and a redaction another server sends
//! removes the content here too. The hospital's requests and events are signed here with
//! its own key, as its server would.

use std::time::{Duration, Instant};

use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use medrix_federation_tests::{FederatingServer, TestNet};
use medrix_protocol::{
    RoomVersion,
    build::{EventDraft, sign_new_event},
    canonical::{encode, object_from_value},
};
use serde_json::{Value, json};

/// Creates a room of `token`'s user on `server` with these extra createRoom fields.
async fn create_room(server: &FederatingServer, token: &str, extra: Value) -> String {
    let mut body = json!({ "preset": "private_chat" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, created) =
        server.server.call("POST", "/_matrix/client/v3/createRoom", Some(token), Some(body)).await;
    assert_eq!(status, 200, "{created}");
    created["room_id"].as_str().unwrap().to_owned()
}

async fn send(server: &FederatingServer, token: &str, room: &str, txn: &str, body: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, answer) = server
        .server
        .call("PUT", &path, Some(token), Some(json!({"msgtype": "m.text", "body": body})))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

async fn post(server: &FederatingServer, token: &str, path: &str, body: Value) -> Value {
    let (status, answer) = server.server.call("POST", path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}

/// The doctor of `hospital` invited to `room` on `clinic` and joined.
async fn doctor_joins(
    clinic: &FederatingServer,
    patient: &str,
    hospital: &FederatingServer,
    doctor: &str,
    room: &str,
) {
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    post(clinic, patient, &invite, json!({ "user_id": hospital.user_id("doctor") })).await;
    post(hospital, doctor, &format!("/_matrix/client/v3/join/{room}"), json!({})).await;
}

/// The ID of a current state event, as `token`'s user on `server` reads it.
async fn state_id(
    server: &FederatingServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
) -> String {
    let (status, state) = server
        .server
        .call("GET", &format!("/_matrix/client/v3/rooms/{room}/state"), Some(token), None)
        .await;
    assert_eq!(status, 200, "{state}");
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .unwrap_or_else(|| panic!("no {kind} {key} in {state}"))["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The newest event of the room `token`'s user reads on `server`.
async fn newest_event(server: &FederatingServer, token: &str, room: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1");
    let (status, page) = server.server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    page["chunk"][0]["event_id"].as_str().unwrap().to_owned()
}

async fn message_bodies(server: &FederatingServer, token: &str, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
    let (status, page) = server.server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(ToOwned::to_owned))
        .collect()
}

/// Waits until `token`'s user on `server` can read `event` of `room`.
async fn until_readable(server: &FederatingServer, token: &str, room: &str, event: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{event}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.server.call("GET", &path, Some(token), None).await;
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "{event} never reached {}", server.server_name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn refused(status: u16) -> bool {
    status == 403 || status == 404
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_reads_only_the_room_it_names_and_only_what_its_users_may_see() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital", "lab"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let lab = net.start("lab", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;

    // A private room the hospital has no member in, and a shared one it has.
    let private = create_room(&clinic, &patient, json!({ "name": "Private diary" })).await;
    let private_secret = send(&clinic, &patient, &private, "p1", "private diary entry").await;
    let shared = create_room(
        &clinic,
        &patient,
        json!({ "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "",
            "content": { "history_visibility": "joined" },
        }] }),
    )
    .await;
    let before_join =
        send(&clinic, &patient, &shared, "s1", "written before the doctor came").await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &shared).await;
    let after_join = send(&clinic, &patient, &shared, "s2", "for the doctor").await;
    until_readable(&hospital, &doctor, &shared, &after_join).await;

    let get = |from: &'static str, uri: String| {
        let (net, clinic, hospital, lab) = (&net, &clinic, &hospital, &lab);
        async move {
            let origin = if from == "lab" { lab } else { hospital };
            net.signed_request(origin, clinic, "GET", &uri, None).await
        }
    };

    // Control: the hospital reads the state at an event of the shared room.
    let (status, body) =
        get("hospital", format!("/_matrix/federation/v1/state_ids/{shared}?event_id={after_join}"))
            .await;
    assert_eq!(status, 200, "{body}");

    // 1. The private room's state and auth chain, asked under the shared room's ID: refused.
    for uri in [
        format!("/_matrix/federation/v1/state_ids/{shared}?event_id={private_secret}"),
        format!("/_matrix/federation/v1/state/{shared}?event_id={private_secret}"),
        format!("/_matrix/federation/v1/event_auth/{shared}/{private_secret}"),
        format!("/_matrix/federation/v1/state_ids/{private}?event_id={private_secret}"),
        format!("/_matrix/federation/v1/event/{private_secret}"),
        format!("/_matrix/federation/v1/backfill/{shared}?v={private_secret}&limit=10"),
    ] {
        let (status, body) = get("hospital", uri.clone()).await;
        assert!(refused(status), "{uri}: {status} {body}");
        assert!(!body.to_string().contains("private diary entry"), "{uri}: {body}");
    }

    // 2. Under `joined`, what was written before the doctor joined comes to the hospital
    // with its content stripped, by `/event`, `/backfill` and `get_missing_events` alike;
    // what was written after comes whole.
    let (status, event) =
        get("hospital", format!("/_matrix/federation/v1/event/{before_join}")).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["pdus"][0]["content"], json!({}), "{event}");
    let (status, event) =
        get("hospital", format!("/_matrix/federation/v1/event/{after_join}")).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["pdus"][0]["content"]["body"], "for the doctor");
    let (status, history) = get(
        "hospital",
        format!("/_matrix/federation/v1/backfill/{shared}?v={after_join}&limit=50"),
    )
    .await;
    assert_eq!(status, 200, "{history}");
    let text = history.to_string();
    assert!(text.contains("for the doctor"), "{text}");
    assert!(!text.contains("written before the doctor came"), "{text}");
    let (status, missing) = net
        .signed_request(
            &hospital,
            &clinic,
            "POST",
            &format!("/_matrix/federation/v1/get_missing_events/{shared}"),
            Some(&json!({ "earliest_events": [], "latest_events": [after_join], "limit": 50 })),
        )
        .await;
    assert_eq!(status, 200, "{missing}");
    assert!(missing["events"].as_array().is_some_and(|events| events.len() > 3), "{missing}");
    assert!(!missing.to_string().contains("written before the doctor came"), "{missing}");

    // 3. A server that never had a member in the room reads nothing of it.
    for uri in [
        format!("/_matrix/federation/v1/event/{after_join}"),
        format!("/_matrix/federation/v1/state_ids/{shared}?event_id={after_join}"),
        format!("/_matrix/federation/v1/backfill/{shared}?v={after_join}&limit=10"),
    ] {
        let (status, body) = get("lab", uri.clone()).await;
        assert!(refused(status), "{uri}: {status} {body}");
    }
}

/// An `m.room.member` event the hospital signs, as its server would build it.
fn hospital_member_event(
    hospital: &FederatingServer,
    room: &str,
    sender: &OwnedUserId,
    target: &str,
    membership: &str,
    prev: OwnedEventId,
    auth_events: Vec<OwnedEventId>,
) -> (OwnedEventId, Value) {
    let draft = EventDraft {
        room_id: Some(room.try_into().unwrap()),
        sender: sender.clone(),
        kind: "m.room.member".to_owned(),
        state_key: Some(target.to_owned()),
        content: object_from_value(json!({ "membership": membership })).unwrap(),
        prev_events: vec![prev],
        auth_events,
        depth: 50,
        origin_server_ts: 1_800_000_000_000,
        redacts: None,
    };
    let signed = sign_new_event(&draft, RoomVersion::V12, &hospital.signing_key()).unwrap();
    (signed.event_id, serde_json::from_str(&encode(&signed.json)).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cannot_rewrite_a_local_users_membership_through_an_unplaceable_event() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let room = create_room(&clinic, &patient, json!({})).await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &room).await;
    let doctor_id: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();
    let auth = vec![
        state_id(&clinic, &patient, &room, "m.room.power_levels", "").await.try_into().unwrap(),
        state_id(&clinic, &patient, &room, "m.room.member", doctor_id.as_str())
            .await
            .try_into()
            .unwrap(),
    ];

    // The doctor "invites" the joined patient, in an event whose predecessor nobody has:
    // this server cannot place it in the DAG, and the hospital cannot say the state at it.
    let unknown: OwnedEventId = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".try_into().unwrap();
    let patient_id = clinic.user_id("patient");
    let (forged_id, forged) =
        hospital_member_event(&hospital, &room, &doctor_id, &patient_id, "invite", unknown, auth);
    let transaction = json!({
        "origin": hospital.server_name, "origin_server_ts": 1_800_000_000_000u64, "pdus": [forged],
    });
    let (status, answer) = net.put_transaction(&hospital, &clinic, "rewrite", &transaction).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["pdus"][forged_id.as_str()]["error"].is_string(), "{answer}");

    // The patient is still joined, sees no such invite, and keeps using the room.
    let path = format!("/_matrix/client/v3/rooms/{room}/joined_members");
    let (status, members) = clinic.server.call("GET", &path, Some(&patient), None).await;
    assert_eq!(status, 200, "{members}");
    assert!(members["joined"].get(&patient_id).is_some(), "{members}");
    let (status, sync) =
        clinic.server.call("GET", "/_matrix/client/v3/sync", Some(&patient), None).await;
    assert_eq!(status, 200, "{sync}");
    assert!(sync["rooms"]["join"].get(&room).is_some(), "{sync}");
    assert!(sync["rooms"]["invite"].get(&room).is_none(), "{sync}");
    assert!(!sync.to_string().contains(forged_id.as_str()), "{sync}");
    send(&clinic, &patient, &room, "after", "still mine").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_judged_where_it_sits_in_the_dag_not_when_it_arrived() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let nurse = clinic.server.register("nurse", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let room = create_room(
        &clinic,
        &patient,
        json!({ "initial_state": [{
            "type": "m.room.history_visibility", "state_key": "",
            "content": { "history_visibility": "joined" },
        }] }),
    )
    .await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &room).await;
    let doctor_id: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();
    let before_nurse: OwnedEventId =
        newest_event(&clinic, &patient, &room).await.try_into().unwrap();
    let power_levels: OwnedEventId =
        state_id(&clinic, &patient, &room, "m.room.power_levels", "").await.try_into().unwrap();
    let doctor_join: OwnedEventId =
        state_id(&clinic, &patient, &room, "m.room.member", doctor_id.as_str())
            .await
            .try_into()
            .unwrap();

    // The nurse joins; then a message the doctor wrote before that (its predecessor is the
    // room's newest event before the nurse's join) arrives late, as after a partition.
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    post(&clinic, &patient, &invite, json!({ "user_id": clinic.user_id("nurse") })).await;
    post(&clinic, &nurse, &format!("/_matrix/client/v3/join/{room}"), json!({})).await;
    let after_nurse = send(&clinic, &patient, &room, "n1", "welcome, nurse").await;
    let draft = EventDraft {
        room_id: Some(room.as_str().try_into().unwrap()),
        sender: doctor_id.clone(),
        kind: "m.room.message".to_owned(),
        state_key: None,
        content: object_from_value(
            json!({"msgtype": "m.text", "body": "written before the nurse joined"}),
        )
        .unwrap(),
        prev_events: vec![before_nurse],
        auth_events: vec![power_levels, doctor_join],
        depth: 40,
        origin_server_ts: 1_800_000_000_000,
        redacts: None,
    };
    let late = sign_new_event(&draft, RoomVersion::V12, &hospital.signing_key()).unwrap();
    let wire: Value = serde_json::from_str(&encode(&late.json)).unwrap();
    let transaction = json!({
        "origin": hospital.server_name, "origin_server_ts": 1_800_000_000_000u64, "pdus": [wire],
    });
    let (status, answer) = net.put_transaction(&hospital, &clinic, "late", &transaction).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][late.event_id.as_str()], json!({}), "accepted: {answer}");

    // The patient, joined at that point of the DAG, reads it; the nurse, who joined after
    // it, does not, though it reached this server after their join.
    until_readable(&clinic, &patient, &room, late.event_id.as_str()).await;
    let nurse_reads = message_bodies(&clinic, &nurse, &room).await;
    assert!(nurse_reads.contains(&"welcome, nurse".to_owned()), "{nurse_reads:?}");
    assert!(
        !nurse_reads.contains(&"written before the nurse joined".to_owned()),
        "{nurse_reads:?}"
    );
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", late.event_id);
    assert_eq!(clinic.server.call("GET", &path, Some(&nurse), None).await.0, 404);
    let _ = after_nurse;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redaction_from_another_server_removes_the_content_here_too() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let room = create_room(&clinic, &patient, json!({})).await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &room).await;

    let note = send(&hospital, &doctor, &room, "note", "wrong patient's results").await;
    let seen = until_readable(&clinic, &patient, &room, &note).await;
    assert_eq!(seen["content"]["body"], "wrong patient's results");

    let path = format!("/_matrix/client/v3/rooms/{room}/redact/{note}/r1");
    let (status, answer) = hospital
        .server
        .call("PUT", &path, Some(&doctor), Some(json!({ "reason": "wrong record" })))
        .await;
    assert_eq!(status, 200, "{answer}");
    let redaction = answer["event_id"].as_str().unwrap().to_owned();
    until_readable(&clinic, &patient, &room, &redaction).await;

    let path = format!("/_matrix/client/v3/rooms/{room}/event/{note}");
    let (status, redacted) = clinic.server.call("GET", &path, Some(&patient), None).await;
    assert_eq!(status, 200, "{redacted}");
    assert_eq!(redacted["content"], json!({}), "{redacted}");
    assert!(
        !message_bodies(&clinic, &patient, &room)
            .await
            .contains(&"wrong patient's results".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_another_server_puts_in_unsigned_never_reaches_clients() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let room = create_room(&clinic, &patient, json!({})).await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &room).await;
    let doctor_id: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();
    let tip: OwnedEventId = newest_event(&clinic, &patient, &room).await.try_into().unwrap();
    let auth = vec![
        state_id(&clinic, &patient, &room, "m.room.power_levels", "").await.try_into().unwrap(),
        state_id(&clinic, &patient, &room, "m.room.member", doctor_id.as_str())
            .await
            .try_into()
            .unwrap(),
    ];
    let draft = EventDraft {
        room_id: Some(room.as_str().try_into().unwrap()),
        sender: doctor_id,
        kind: "m.room.message".to_owned(),
        state_key: None,
        content: object_from_value(json!({"msgtype": "m.text", "body": "results attached"}))
            .unwrap(),
        prev_events: vec![tip],
        auth_events: auth,
        depth: 40,
        origin_server_ts: 1_800_000_000_000,
        redacts: None,
    };
    let signed = sign_new_event(&draft, RoomVersion::V12, &hospital.signing_key()).unwrap();
    // No signature covers `unsigned`: anyone relaying the event could have written this.
    let mut wire: Value = serde_json::from_str(&encode(&signed.json)).unwrap();
    wire["unsigned"] = json!({
        "transaction_id": "the patient's own",
        "redacted_because": { "type": "m.room.redaction", "sender": "@patient:clinic" },
        "m.relations": { "m.replace": { "event_id": "$forged" } },
    });
    let transaction = json!({
        "origin": hospital.server_name, "origin_server_ts": 1_800_000_000_000u64, "pdus": [wire],
    });
    let (status, answer) = net.put_transaction(&hospital, &clinic, "unsigned", &transaction).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][signed.event_id.as_str()], json!({}), "{answer}");

    let event = until_readable(&clinic, &patient, &room, signed.event_id.as_str()).await;
    assert_eq!(event["content"]["body"], "results attached");
    assert!(
        event.get("unsigned").is_none_or(|unsigned| unsigned.get("transaction_id").is_none()
            && unsigned.get("redacted_because").is_none()
            && unsigned.get("m.relations").is_none()),
        "{event}"
    );
    let (status, sync) =
        clinic.server.call("GET", "/_matrix/client/v3/sync", Some(&patient), None).await;
    assert_eq!(status, 200);
    assert!(!sync.to_string().contains("the patient's own"), "{sync}");
    assert!(!sync.to_string().contains("$forged"), "{sync}");
}
