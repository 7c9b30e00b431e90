//! The spec's history visibility over real HTTP: what a member joining late, an invitee and a
//! removed member may read under each setting, by every read path (`/messages`, `/event`,
//! `/context`, `/sync`), and what an invitee is shown of a room before joining.

mod support;

use serde_json::{Value, json};
use support::TestServer;

struct Room {
    id: String,
    patient: String,
    doctor: String,
    doctor_id: String,
}

async fn send(server: &TestServer, token: &str, room: &str, body: &str) -> String {
    let txn = format!("t{}", rand_suffix(body));
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, answer) = server
        .call("PUT", &path, Some(token), Some(json!({"msgtype": "m.text", "body": body})))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix(body: &str) -> String {
    body.bytes().map(|b| format!("{b:02x}")).collect()
}

async fn post(server: &TestServer, token: &str, path: &str, body: Value) {
    let (status, answer) = server.call("POST", path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{path}: {answer}");
}

/// A room of the patient's with this history visibility, and a doctor not yet in it.
async fn room_with(server: &TestServer, visibility: &str) -> Room {
    let patient = server.register(&format!("patient-{visibility}"), "pw").await;
    let doctor = server.register(&format!("doctor-{visibility}"), "pw").await;
    let (status, created) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({
                "preset": "private_chat",
                "name": "Blood pressure",
                "topic": "Readings since March",
                "initial_state": [{
                    "type": "m.room.history_visibility", "state_key": "",
                    "content": { "history_visibility": visibility },
                }],
            })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    Room {
        id: created["room_id"].as_str().unwrap().to_owned(),
        patient,
        doctor,
        doctor_id: format!("@doctor-{visibility}:localhost"),
    }
}

/// The bodies of the messages `token`'s user reads back through `/messages`.
async fn readable(server: &TestServer, token: &str, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
    let (status, page) = server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    let mut bodies: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["content"]["body"].as_str().map(ToOwned::to_owned))
        .collect();
    bodies.reverse();
    bodies
}

async fn event_status(server: &TestServer, token: &str, room: &str, event: &str) -> u16 {
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{event}");
    server.call("GET", &path, Some(token), None).await.0
}

async fn context_status(server: &TestServer, token: &str, room: &str, event: &str) -> u16 {
    let path = format!("/_matrix/client/v3/rooms/{room}/context/{event}");
    server.call("GET", &path, Some(token), None).await.0
}

/// The scenario every setting is judged on: a message before the invite, one between the
/// invite and the join, one while joined, one after the kick. Answers the four event IDs.
async fn invite_join_kick(server: &TestServer, room: &Room) -> [String; 4] {
    let before_invite = send(server, &room.patient, &room.id, "before the invite").await;
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", room.id);
    post(server, &room.patient, &invite, json!({ "user_id": room.doctor_id })).await;
    let while_invited = send(server, &room.patient, &room.id, "while invited").await;
    post(server, &room.doctor, &format!("/_matrix/client/v3/join/{}", room.id), json!({})).await;
    let while_joined = send(server, &room.patient, &room.id, "while joined").await;
    [before_invite, while_invited, while_joined, String::new()]
}

async fn kick(server: &TestServer, room: &Room) -> String {
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", room.id);
    post(server, &room.patient, &kick, json!({ "user_id": room.doctor_id })).await;
    send(server, &room.patient, &room.id, "after the kick").await
}

#[tokio::test]
async fn a_member_joining_late_reads_shared_history_but_not_joined_or_invited_history() {
    let server = support::start().await;
    for (visibility, expected) in [
        ("shared", vec!["before the invite", "while invited", "while joined"]),
        ("invited", vec!["while invited", "while joined"]),
        ("joined", vec!["while joined"]),
    ] {
        let room = room_with(&server, visibility).await;
        let [before_invite, while_invited, while_joined, _] =
            invite_join_kick(&server, &room).await;
        assert_eq!(readable(&server, &room.doctor, &room.id).await, expected, "{visibility}");

        // `/event` and `/context` agree with `/messages`, event by event.
        for (id, body) in [
            (&before_invite, "before the invite"),
            (&while_invited, "while invited"),
            (&while_joined, "while joined"),
        ] {
            let shown = expected.contains(&body);
            let want = if shown { 200 } else { 404 };
            assert_eq!(
                event_status(&server, &room.doctor, &room.id, id).await,
                want,
                "{visibility} {body}"
            );
            assert_eq!(
                context_status(&server, &room.doctor, &room.id, id).await,
                want,
                "{visibility} {body}"
            );
        }

        // The patient reads everything, always.
        let all = readable(&server, &room.patient, &room.id).await;
        assert_eq!(all, ["before the invite", "while invited", "while joined"], "{visibility}");
    }
}

#[tokio::test]
async fn a_kicked_member_reads_nothing_sent_after_the_kick_under_any_setting() {
    let server = support::start().await;
    for visibility in ["shared", "invited", "joined", "world_readable"] {
        let room = room_with(&server, visibility).await;
        let [_, _, while_joined, _] = invite_join_kick(&server, &room).await;
        let after = kick(&server, &room).await;
        let read = readable(&server, &room.doctor, &room.id).await;
        if visibility == "world_readable" {
            // Readable by anyone, as the room's owner chose.
            assert!(read.contains(&"after the kick".to_owned()), "{read:?}");
            continue;
        }
        assert!(read.contains(&"while joined".to_owned()), "{visibility}: {read:?}");
        assert!(!read.contains(&"after the kick".to_owned()), "{visibility}: {read:?}");
        // Shared history before the join closes with the kick too: the doctor is no longer
        // joined, so only what they saw as a member stays theirs.
        assert!(!read.contains(&"before the invite".to_owned()), "{visibility}: {read:?}");
        assert_eq!(event_status(&server, &room.doctor, &room.id, &after).await, 404);
        assert_eq!(event_status(&server, &room.doctor, &room.id, &while_joined).await, 200);
    }
}

#[tokio::test]
async fn sync_shows_a_late_joiner_the_history_the_setting_allows() {
    let server = support::start().await;
    for (visibility, shows_before) in [("shared", true), ("joined", false)] {
        let room = room_with(&server, visibility).await;
        invite_join_kick(&server, &room).await;
        let (status, sync) = server
            .call(
                "GET",
                "/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D",
                Some(&room.doctor),
                None,
            )
            .await;
        assert_eq!(status, 200, "{sync}");
        let bodies: Vec<&str> = sync["rooms"]["join"][&room.id]["timeline"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|event| event["content"]["body"].as_str())
            .collect();
        assert_eq!(bodies.contains(&"before the invite"), shows_before, "{visibility}: {bodies:?}");
        assert!(bodies.contains(&"while joined"), "{visibility}: {bodies:?}");
    }
}

#[tokio::test]
async fn rooms_made_with_a_preset_get_the_specs_history_visibility() {
    let server = support::start().await;
    let patient = server.register("patient", "pw").await;
    for preset in ["private_chat", "trusted_private_chat", "public_chat"] {
        let (status, created) = server
            .call(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&patient),
                Some(json!({ "preset": preset })),
            )
            .await;
        assert_eq!(status, 200, "{created}");
        let room = created["room_id"].as_str().unwrap();
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/");
        let (status, content) = server.call("GET", &path, Some(&patient), None).await;
        assert_eq!(status, 200, "{content}");
        assert_eq!(content["history_visibility"], "shared", "{preset}");
    }
}

#[tokio::test]
async fn an_invitee_is_shown_the_rooms_stripped_state_and_nothing_of_its_members() {
    let server = support::start().await;
    let room = room_with(&server, "shared").await;
    let nurse = server.register("nurse", "pw").await;
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", room.id);
    post(&server, &room.patient, &invite, json!({ "user_id": "@nurse:localhost" })).await;
    post(&server, &nurse, &format!("/_matrix/client/v3/join/{}", room.id), json!({})).await;
    let kick = format!("/_matrix/client/v3/rooms/{}/kick", room.id);
    post(
        &server,
        &room.patient,
        &kick,
        json!({ "user_id": "@nurse:localhost", "reason": "left the practice" }),
    )
    .await;
    post(&server, &room.patient, &invite, json!({ "user_id": room.doctor_id })).await;

    let (status, sync) =
        server.call("GET", "/_matrix/client/v3/sync", Some(&room.doctor), None).await;
    assert_eq!(status, 200, "{sync}");
    let events = sync["rooms"]["invite"][&room.id]["invite_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no invite in {sync}"));
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for kind in ["m.room.create", "m.room.join_rules", "m.room.name", "m.room.topic"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    // The member events are the doctor's own invite and the inviter's membership (clients
    // need to know who invited them, as Synapse shows it): not the nurse's (nor the kick's
    // reason).
    let members: Vec<&Value> = events.iter().filter(|e| e["type"] == "m.room.member").collect();
    let invite = members.iter().find(|e| e["state_key"] == room.doctor_id.as_str());
    assert_eq!(invite.map(|e| &e["content"]["membership"]), Some(&json!("invite")), "{members:?}");
    let inviter = invite.and_then(|e| e["sender"].as_str()).unwrap();
    let others: Vec<&&Value> =
        members.iter().filter(|e| e["state_key"] != room.doctor_id.as_str()).collect();
    assert_eq!(others.len(), 1, "{members:?}");
    assert_eq!(others[0]["state_key"], inviter);
    assert!(!members.iter().any(|e| e["state_key"] == "@nurse:localhost"), "{members:?}");
    assert!(!sync.to_string().contains("left the practice"));
    // Nor can the invitee read the room's messages or state before joining.
    let path = format!("/_matrix/client/v3/rooms/{}/state", room.id);
    assert_eq!(server.call("GET", &path, Some(&room.doctor), None).await.0, 403);
}
