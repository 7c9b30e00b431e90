//! What another server may read, and what it may not make this server believe: every
//! federation read goes through the access service, which answers only for events of the
//! room named, gives a server in the room the events its users may not see with their
//! content stripped, and gives a server outside the room nothing. A server that was in a
//! room cannot rewrite a local user's membership, and a redaction another server sends
//! removes the content here too. The hospital's requests and events are signed here with
//! its own key, as its server would.

use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use medrix_federation_tests::{
    FederatingServer, TestNet,
    room_calls::{create_room, post, send},
    room_reads::{newest_event, state_id, until_readable},
};
use medrix_protocol::{
    RoomVersion,
    build::{EventDraft, sign_new_event},
    canonical::{encode, object_from_value},
};
use serde_json::{Value, json};

/// A room of `token`'s user whose history members see from their join on.
async fn joined_history_room(server: &FederatingServer, token: &str) -> String {
    let visibility = json!({
        "type": "m.room.history_visibility", "state_key": "",
        "content": { "history_visibility": "joined" },
    });
    create_room(server, token, json!({ "initial_state": [visibility] })).await
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

/// A clinic's patient and a hospital's doctor in a room of the patient's.
struct Shared {
    clinic: FederatingServer,
    hospital: FederatingServer,
    patient: String,
    doctor: String,
    room: String,
}

async fn shared_room(net: &TestNet) -> Shared {
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let room = create_room(&clinic, &patient, json!({})).await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &room).await;
    Shared { clinic, hospital, patient, doctor, room }
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
    let shared = joined_history_room(&clinic, &patient).await;
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

/// An event the hospital's server builds and signs: `kind` with `content` (a state event
/// with `state_key`), after `prev`, citing `auth_events`.
struct HospitalEvent<'a> {
    room: &'a str,
    sender: &'a OwnedUserId,
    kind: &'a str,
    state_key: Option<&'a str>,
    content: Value,
    prev: OwnedEventId,
    auth_events: Vec<OwnedEventId>,
}

impl HospitalEvent<'_> {
    /// Signed with the hospital's key: the event's ID and its JSON as sent.
    fn sign(self, hospital: &FederatingServer) -> (OwnedEventId, Value) {
        let draft = EventDraft {
            room_id: Some(self.room.try_into().unwrap()),
            sender: self.sender.clone(),
            kind: self.kind.to_owned(),
            state_key: self.state_key.map(ToOwned::to_owned),
            content: object_from_value(self.content).unwrap(),
            prev_events: vec![self.prev],
            auth_events: self.auth_events,
            depth: 50,
            origin_server_ts: 1_800_000_000_000,
            redacts: None,
        };
        let signed = sign_new_event(&draft, RoomVersion::V12, &hospital.signing_key()).unwrap();
        (signed.event_id, serde_json::from_str(&encode(&signed.json)).unwrap())
    }
}

/// Sends `pdus` to the clinic in one transaction signed as the hospital; answers the
/// per-event results.
async fn send_as_hospital(
    net: &TestNet,
    hospital: &FederatingServer,
    clinic: &FederatingServer,
    txn: &str,
    pdus: Vec<Value>,
) -> Value {
    let transaction = json!({
        "origin": hospital.server_name, "origin_server_ts": 1_800_000_000_000u64, "pdus": pdus,
    });
    let (status, answer) = net.put_transaction(hospital, clinic, txn, &transaction).await;
    assert_eq!(status, 200, "{answer}");
    answer["pdus"].clone()
}

/// The IDs of the room's power levels and of `member`'s membership: what an event of
/// `member`'s cites besides the create event.
async fn auth_events_of(
    clinic: &FederatingServer,
    patient: &str,
    room: &str,
    member: &str,
) -> Vec<OwnedEventId> {
    vec![
        state_id(clinic, patient, room, "m.room.power_levels", "").await.try_into().unwrap(),
        state_id(clinic, patient, room, "m.room.member", member).await.try_into().unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cannot_rewrite_a_local_users_membership_through_an_unplaceable_event() {
    let net = TestNet::new();
    let Shared { clinic, hospital, patient, room, .. } = shared_room(&net).await;
    let doctor_id: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();
    let auth_events = auth_events_of(&clinic, &patient, &room, doctor_id.as_str()).await;

    // The doctor "invites" the joined patient, in an event whose predecessor nobody has:
    // this server cannot place it in the DAG, and the hospital cannot say the state at it.
    let unknown: OwnedEventId = "$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".try_into().unwrap();
    let patient_id = clinic.user_id("patient");
    let (forged_id, forged) = HospitalEvent {
        room: &room,
        sender: &doctor_id,
        kind: "m.room.member",
        state_key: Some(&patient_id),
        content: json!({ "membership": "invite" }),
        prev: unknown,
        auth_events,
    }
    .sign(&hospital);
    let results = send_as_hospital(&net, &hospital, &clinic, "rewrite", vec![forged]).await;
    assert!(results[forged_id.as_str()]["error"].is_string(), "{results}");

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
    let room = joined_history_room(&clinic, &patient).await;
    doctor_joins(&clinic, &patient, &hospital, &doctor, &room).await;
    let doctor_id: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();
    let before_nurse: OwnedEventId =
        newest_event(&clinic, &patient, &room).await.try_into().unwrap();
    let auth_events = auth_events_of(&clinic, &patient, &room, doctor_id.as_str()).await;

    // The nurse joins; then a message the doctor wrote before that (its predecessor is the
    // room's newest event before the nurse's join) arrives late, as after a partition.
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    post(&clinic, &patient, &invite, json!({ "user_id": clinic.user_id("nurse") })).await;
    post(&clinic, &nurse, &format!("/_matrix/client/v3/join/{room}"), json!({})).await;
    send(&clinic, &patient, &room, "n1", "welcome, nurse").await;
    let (late, wire) = HospitalEvent {
        room: &room,
        sender: &doctor_id,
        kind: "m.room.message",
        state_key: None,
        content: json!({"msgtype": "m.text", "body": "written before the nurse joined"}),
        prev: before_nurse,
        auth_events,
    }
    .sign(&hospital);
    let results = send_as_hospital(&net, &hospital, &clinic, "late", vec![wire]).await;
    assert_eq!(results[late.as_str()], json!({}), "accepted: {results}");

    // The patient, joined at that point of the DAG, reads it; the nurse, who joined after
    // it, does not, though it reached this server after their join.
    until_readable(&clinic, &patient, &room, late.as_str()).await;
    let nurse_reads = message_bodies(&clinic, &nurse, &room).await;
    assert!(nurse_reads.contains(&"welcome, nurse".to_owned()), "{nurse_reads:?}");
    assert!(
        !nurse_reads.contains(&"written before the nurse joined".to_owned()),
        "{nurse_reads:?}"
    );
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{late}");
    assert_eq!(clinic.server.call("GET", &path, Some(&nurse), None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redaction_from_another_server_removes_the_content_here_too() {
    let net = TestNet::new();
    let Shared { clinic, hospital, patient, doctor, room } = shared_room(&net).await;

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
    let Shared { clinic, hospital, patient, room, .. } = shared_room(&net).await;
    let doctor_id: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();
    let tip: OwnedEventId = newest_event(&clinic, &patient, &room).await.try_into().unwrap();
    let auth_events = auth_events_of(&clinic, &patient, &room, doctor_id.as_str()).await;
    let (event_id, mut wire) = HospitalEvent {
        room: &room,
        sender: &doctor_id,
        kind: "m.room.message",
        state_key: None,
        content: json!({"msgtype": "m.text", "body": "results attached"}),
        prev: tip,
        auth_events,
    }
    .sign(&hospital);
    // No signature covers `unsigned`: anyone relaying the event could have written this.
    wire["unsigned"] = json!({
        "transaction_id": "the patient's own",
        "redacted_because": { "type": "m.room.redaction", "sender": "@patient:clinic" },
        "m.relations": { "m.replace": { "event_id": "$forged" } },
    });
    let results = send_as_hospital(&net, &hospital, &clinic, "unsigned", vec![wire]).await;
    assert_eq!(results[event_id.as_str()], json!({}), "{results}");

    let event = until_readable(&clinic, &patient, &room, event_id.as_str()).await;
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
