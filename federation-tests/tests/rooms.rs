//! Rooms spanning servers, over plain client HTTP: an invite across servers, a join through
//! the inviting server (`make_join`/`send_join`), messages both ways through transactions,
//! and a kick that cuts the removed server off from what follows.

use std::time::{Duration, Instant};

use medrix_federation_tests::{FederatingServer, TestNet};
use serde_json::{Value, json};

/// Syncs `token` on `server` from `since` until an event in `room` satisfies `wanted`;
/// answers the next batch token.
async fn sync_until(
    server: &FederatingServer,
    token: &str,
    since: Option<&str>,
    room: &str,
    wanted: impl Fn(&Value) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut since = since.map(ToOwned::to_owned);
    let mut seen = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "never saw the event in {room}; saw {seen:?}");
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=1000&since={since}"),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let (status, body) = server.server.call("GET", &path, Some(token), None).await;
        assert_eq!(status, 200, "{body}");
        if std::env::var("SHOW_SYNC").is_ok() {
            eprintln!("SYNC {}", body["rooms"]);
        }
        for section in ["join", "invite", "leave"] {
            let room_body = &body["rooms"][section][room];
            let events = room_body["timeline"]["events"]
                .as_array()
                .into_iter()
                .chain(room_body["invite_state"]["events"].as_array())
                .flatten();
            for event in events {
                if wanted(event) {
                    return body["next_batch"].as_str().unwrap().to_owned();
                }
                seen.push(event["type"].clone());
            }
        }
        since = body["next_batch"].as_str().map(ToOwned::to_owned);
    }
}

async fn send_text(server: &FederatingServer, token: &str, room: &str, body: &str) -> String {
    // A transaction ID per body (the bodies in these tests differ).
    let txn: String = body.chars().filter(char::is_ascii_alphanumeric).collect();
    let (status, answer) = server
        .server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            Some(json!({ "msgtype": "m.text", "body": body })),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

fn is_text(body: &'static str) -> impl Fn(&Value) -> bool {
    move |event| event["content"]["body"] == body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_10_room_spans_two_servers() {
    room_spans_two_servers_and_a_kick_cuts_the_removed_server_off("10").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_11_room_spans_two_servers() {
    room_spans_two_servers_and_a_kick_cuts_the_removed_server_off("11").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_12_room_spans_two_servers() {
    room_spans_two_servers_and_a_kick_cuts_the_removed_server_off("12").await;
}

/// Invite, join through the inviting server, messages both ways, a kick that cuts the
/// removed server off, and a ban that keeps it out, in a room of `version`.
async fn room_spans_two_servers_and_a_kick_cuts_the_removed_server_off(version: &str) {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let doctor_id = format!("@doctor:{}", hospital.server_name);

    let (status, created) = clinic
        .server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({ "preset": "private_chat", "name": "Records", "room_version": version })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();

    let (status, body) = clinic
        .server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&patient),
            Some(json!({ "user_id": doctor_id })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let doctor_since = sync_until(&hospital, &doctor, None, &room, |event| {
        event["type"] == "m.room.name" || event["content"]["membership"] == "invite"
    })
    .await;

    let (status, body) = hospital
        .server
        .call(
            "POST",
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&doctor),
            Some(json!({ "reason": "consultation" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The patient's server learns of the join, reason and all; a message goes from clinic
    // to hospital.
    sync_until(&clinic, &patient, None, &room, |event| {
        event["state_key"] == doctor_id.as_str()
            && event["content"]["membership"] == "join"
            && event["content"]["reason"] == "consultation"
    })
    .await;
    let first = send_text(&clinic, &patient, &room, "blood pressure 120/80").await;
    let doctor_since = sync_until(
        &hospital,
        &doctor,
        Some(&doctor_since),
        &room,
        is_text("blood pressure 120/80"),
    )
    .await;

    // And from hospital to clinic.
    send_text(&hospital, &doctor, &room, "noted, thank you").await;
    sync_until(&clinic, &patient, None, &room, is_text("noted, thank you")).await;

    // The state both servers hold agrees.
    let (_, clinic_members) = clinic
        .server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(&patient),
            None,
        )
        .await;
    let (_, hospital_members) = hospital
        .server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(clinic_members["joined"].as_object().unwrap().len(), 2, "{clinic_members}");
    assert_eq!(
        clinic_members["joined"].as_object().unwrap().keys().collect::<Vec<_>>(),
        hospital_members["joined"].as_object().unwrap().keys().collect::<Vec<_>>()
    );

    // The patient revokes the doctor's access: the kick reaches the hospital...
    let (status, body) = clinic
        .server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            Some(&patient),
            Some(json!({ "user_id": doctor_id, "reason": "access revoked" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let doctor_since = sync_until(&hospital, &doctor, Some(&doctor_since), &room, |event| {
        event["state_key"] == doctor_id.as_str() && event["content"]["membership"] == "leave"
    })
    .await;

    // ...and nothing after it does: the clinic no longer sends to the hospital, and the
    // hospital's server can no longer read the room over federation.
    let secret = send_text(&clinic, &patient, &room, "after the revocation").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, after) = hospital
        .server
        .call(
            "GET",
            &format!("/_matrix/client/v3/sync?timeout=0&since={doctor_since}"),
            Some(&doctor),
            None,
        )
        .await;
    assert!(!after.to_string().contains("after the revocation"), "{after}");
    let event = |id: &str| format!("/_matrix/federation/v1/event/{id}");
    let (status, body) = net.signed_request(&hospital, &clinic, "GET", &event(&secret), None).await;
    assert_eq!(status, 403, "{body}");
    // While the event before the kick is still readable by the server that was in the room.
    let (status, body) = net.signed_request(&hospital, &clinic, "GET", &event(&first), None).await;
    assert_eq!(status, 200, "{body}");

    // A ban keeps the doctor out: the clinic refuses the join template their server asks for.
    let (status, body) = clinic
        .server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/ban"),
            Some(&patient),
            Some(json!({ "user_id": doctor_id })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sync_until(&hospital, &doctor, Some(&doctor_since), &room, |event| {
        event["state_key"] == doctor_id.as_str() && event["content"]["membership"] == "ban"
    })
    .await;
    let rejoin = format!("/_matrix/client/v3/join/{room}?via={}", clinic.server_name);
    let (status, body) =
        hospital.server.call("POST", &rejoin, Some(&doctor), Some(json!({}))).await;
    assert_ne!(status, 200, "a banned user joined again: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invite_from_another_server_is_rejected_through_that_server() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let doctor_id = hospital.user_id("doctor");
    let (_, created) = clinic
        .server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({ "preset": "private_chat", "invite": [doctor_id] })),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let since = sync_until(&hospital, &doctor, None, &room, |event| {
        event["content"]["membership"] == "invite"
    })
    .await;

    let (status, body) = hospital
        .server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&doctor),
            Some(json!({ "reason": "not my patient" })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The inviting server has the doctor's leave in the room, with the reason given...
    sync_until(&clinic, &patient, None, &room, |event| {
        event["state_key"] == doctor_id.as_str()
            && event["content"]["membership"] == "leave"
            && event["content"]["reason"] == "not my patient"
    })
    .await;
    // ...and the doctor's own sync moves the room from invites to left rooms.
    sync_until(&hospital, &doctor, Some(&since), &room, |event| {
        event["content"]["membership"] == "leave"
    })
    .await;
    let (_, rooms) =
        hospital.server.call("GET", "/_matrix/client/v3/joined_rooms", Some(&doctor), None).await;
    assert_eq!(rooms["joined_rooms"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_outlives_a_key_rotation_events_signed_before_it_still_verify() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital", "lab"]).await;
    let mut hospital = net.start("hospital", &[], &["clinic", "lab"]).await;
    let lab = net.start("lab", &[], &["clinic", "hospital"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let tech = lab.server.register("tech", "pw").await;
    let (doctor_id, tech_id) = (hospital.user_id("doctor"), lab.user_id("tech"));
    let (_, created) = clinic
        .server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({ "preset": "private_chat", "invite": [doctor_id, tech_id] })),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{room}");
    let (status, body) = hospital.server.call("POST", &join, Some(&doctor), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");

    // The hospital rotates its signing key: the doctor's join stays signed by the old one.
    let (binary, name) = (hospital.server.binary().to_owned(), hospital.server_name.clone());
    hospital
        .server
        .restart_with(|data_dir| {
            let status = std::process::Command::new(&binary)
                .args(["keys", "rotate", "--data-dir", data_dir.to_str().unwrap()])
                .args(["--server-name", &name])
                .status()
                .unwrap();
            assert!(status.success());
        })
        .await;

    // The lab joins later: the room state it is given holds the doctor's join, which it can
    // verify only with the hospital's former key (published with its expiry).
    let (status, body) = lab.server.call("POST", &join, Some(&tech), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let (_, members) = lab
        .server
        .call("GET", &format!("/_matrix/client/v3/rooms/{room}/joined_members"), Some(&tech), None)
        .await;
    let joined = members["joined"].as_object().unwrap();
    assert!(joined.contains_key(&doctor_id), "{members}");
    assert_eq!(joined.len(), 3, "{members}");
}
