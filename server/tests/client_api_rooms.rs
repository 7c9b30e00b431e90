//! Rooms over real HTTP: creation, membership as access grants, sends, state, `/sync`, and
//! what a kicked member can no longer read.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::TestServer;

fn joined_timeline<'a>(sync: &'a Value, room: &str) -> Vec<&'a Value> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn bodies(events: &[&Value]) -> Vec<String> {
    events.iter().filter_map(|e| e["content"]["body"].as_str().map(ToOwned::to_owned)).collect()
}

async fn send(server: &TestServer, token: &str, room: &str, txn: &str, body: &str) -> (u16, Value) {
    server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            Some(json!({"msgtype": "m.text", "body": body})),
        )
        .await
}

/// `inviter` invites `user` to `room`, which must succeed.
async fn invite(server: &TestServer, inviter: &str, room: &str, user: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, body) =
        server.call("POST", &path, Some(inviter), Some(json!({ "user_id": user }))).await;
    assert_eq!(status, 200, "{body}");
}

async fn sync(server: &TestServer, token: &str, since: Option<&str>, timeout_ms: u64) -> Value {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout={timeout_ms}"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn a_grant_is_an_invite_and_a_revocation_is_a_kick() {
    let server = support::start().await;
    let patient = server.register("patient", "pw-patient").await;
    let doctor = server.register("doctor", "pw-doctor").await;
    let outsider = server.register("outsider", "pw-outsider").await;

    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({"name": "Lab results", "preset": "private_chat"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().unwrap().to_owned();
    assert!(!room.contains(':'), "a v12 room ID carries no server name: {room}");

    // The outsider can neither join an invite-only room nor write or read it.
    let (status, body) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&outsider),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (status, _) = send(&server, &outsider, &room, "t1", "let me in").await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&outsider),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Grant: invite, then the doctor joins.
    invite(&server, &patient, &room, "@doctor:localhost").await;
    let doctor_sync = sync(&server, &doctor, None, 0).await;
    assert!(
        doctor_sync["rooms"]["invite"][&room]["invite_state"]["events"].as_array().unwrap().len()
            >= 2,
        "{doctor_sync}"
    );
    let (status, body) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&doctor),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!((status, body["name"].as_str()), (200, Some("Lab results")), "{body}");

    // A long-polling sync answers as soon as the message lands.
    let since = sync(&server, &doctor, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let waiting = {
        let (server_base, token, since) = (server.base.clone(), doctor.clone(), since.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let response: Value = reqwest::Client::new()
                .get(format!("{server_base}/_matrix/client/v3/sync?since={since}&timeout=20000"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (started.elapsed(), response)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, first) = send(&server, &patient, &room, "m1", "HbA1c 6.1%").await;
    assert_eq!(status, 200, "{first}");
    let (waited, response) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(10), "sync waited {waited:?}");
    assert_eq!(bodies(&joined_timeline(&response, &room)), ["HbA1c 6.1%"], "{response}");

    // Retrying the same transaction returns the same event, not a second one.
    let (_, again) = send(&server, &patient, &room, "m1", "HbA1c 6.1%").await;
    assert_eq!(again["event_id"], first["event_id"]);

    // While granted, the doctor reads history and members.
    let (status, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"][0]["content"]["body"], "HbA1c 6.1%", "{page}");
    let (status, joined) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["joined"].as_object().unwrap().len(), 2, "{joined}");
    let first_id = first["event_id"].as_str().unwrap();
    let (status, event) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/event/{first_id}"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!((status, event["content"]["body"].as_str()), (200, Some("HbA1c 6.1%")), "{event}");

    // Revoke: kick. The doctor sees the kick, and nothing sent after it.
    let since = response["next_batch"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            Some(&patient),
            Some(json!({"user_id": "@doctor:localhost", "reason": "grant revoked"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    send(&server, &patient, &room, "m2", "after revocation").await;
    let after = sync(&server, &doctor, Some(&since), 0).await;
    let left = &after["rooms"]["leave"][&room]["timeline"]["events"];
    assert!(
        left.as_array().unwrap().iter().any(|e| e["content"]["membership"] == "leave"),
        "{after}"
    );
    assert!(!after.to_string().contains("after revocation"), "{after}");
    let (status, _) = send(&server, &doctor, &room, "d1", "still here?").await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(status, 403, "no state after a kick");
    let later = sync(&server, &doctor, None, 0).await;
    assert!(!later.to_string().contains("after revocation"), "{later}");
    // No read path leaks it: /messages, /event, /members.
    let (status, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.to_string().contains("after revocation"), "{page}");
    assert!(page.to_string().contains("HbA1c 6.1%"), "what was granted stays readable: {page}");
    let (status, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=50"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.to_string().contains("after revocation"), "{page}");
    let hidden = patient_event_ids_with_body(&server, &patient, &room, "after revocation").await;
    let (status, body) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/event/{hidden}"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
    let (status, _) = server
        .call("GET", &format!("/_matrix/client/v3/rooms/{room}/members"), Some(&doctor), None)
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"),
            Some(&outsider),
            None,
        )
        .await;
    assert_eq!(status, 403, "never a member");

    // The patient, of course, sees everything.
    let patient_view = sync(&server, &patient, None, 0).await;
    assert!(
        bodies(&joined_timeline(&patient_view, &room)).contains(&"after revocation".to_owned())
    );
}

async fn patient_event_ids_with_body(
    server: &TestServer,
    token: &str,
    room: &str,
    body: &str,
) -> String {
    let (_, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
            Some(token),
            None,
        )
        .await;
    page["chunk"].as_array().unwrap().iter().find(|e| e["content"]["body"] == body).unwrap()["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn messages_paginate_backwards_and_forwards_without_gaps() {
    let server = support::start().await;
    let token = server.register("pager", "pw").await;
    let (_, body) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&token), Some(json!({}))).await;
    let room = body["room_id"].as_str().unwrap().to_owned();
    for n in 0..7 {
        send(&server, &token, &room, &format!("p{n}"), &format!("entry {n}")).await;
    }
    let mut seen = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let path = match &from {
            Some(from) => {
                format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3&from={from}")
            }
            None => format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=3"),
        };
        let (status, page) = server.call("GET", &path, Some(&token), None).await;
        assert_eq!(status, 200, "{page}");
        seen.extend(bodies(&page["chunk"].as_array().unwrap().iter().collect::<Vec<_>>()));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..7).rev().map(|n| format!("entry {n}")).collect();
    assert_eq!(seen, expected);
    let (_, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"),
            Some(&token),
            None,
        )
        .await;
    let forward = bodies(&page["chunk"].as_array().unwrap().iter().collect::<Vec<_>>());
    assert_eq!(forward, expected.into_iter().rev().collect::<Vec<_>>());
}

#[tokio::test]
async fn a_room_joined_since_the_token_arrives_with_its_state() {
    let server = support::start().await;
    let patient = server.register("patient", "pw-patient").await;
    let doctor = server.register("doctor", "pw-doctor").await;
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({
                "name": "Lab results", "invite": ["@doctor:localhost"],
                "initial_state": [{"type": "m.room.encryption", "state_key": "",
                                   "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
            })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().unwrap().to_owned();
    let since = sync(&server, &doctor, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call("POST", &format!("/_matrix/client/v3/join/{room}"), Some(&doctor), Some(json!({})))
        .await;
    assert_eq!(status, 200, "{body}");

    // Without the state, a client would not know that the room is encrypted, nor who is in it.
    let after = sync(&server, &doctor, Some(&since), 0).await;
    let joined = &after["rooms"]["join"][&room];
    let state = joined["state"]["events"].as_array().unwrap();
    let has =
        |kind: &str, key: &str| state.iter().any(|e| e["type"] == kind && e["state_key"] == key);
    assert!(has("m.room.create", ""), "{joined}");
    assert!(has("m.room.encryption", ""), "{joined}");
    assert!(has("m.room.name", ""), "{joined}");
    assert!(has("m.room.member", "@patient:localhost"), "{joined}");
    // The join itself is in the timeline, and state and timeline do not repeat each other.
    let timeline = joined_timeline(&after, &room);
    assert!(timeline.iter().any(|e| e["state_key"] == "@doctor:localhost"), "{joined}");
    assert!(
        !state.iter().any(|s| timeline.iter().any(|t| t["event_id"] == s["event_id"])),
        "{joined}"
    );

    // Later syncs of the room carry no state again.
    let next = after["next_batch"].as_str().unwrap();
    send(&server, &patient, &room, "m1", "ciphertext stand-in").await;
    let later = sync(&server, &doctor, Some(next), 5000).await;
    assert_eq!(later["rooms"]["join"][&room]["state"]["events"], json!([]), "{later}");
}

#[tokio::test]
async fn unsupported_room_versions_are_refused() {
    let server = support::start().await;
    let token = server.register("rv", "pw").await;
    for (version, ok) in [("9", false), ("10", true), ("11", true), ("12", true), ("13", false)] {
        let (status, body) = server
            .call(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&token),
                Some(json!({"room_version": version})),
            )
            .await;
        if ok {
            assert_eq!(status, 200, "{version}: {body}");
        } else {
            assert_eq!(
                (status, body["errcode"].as_str()),
                (400, Some("M_UNSUPPORTED_ROOM_VERSION")),
                "{version}: {body}"
            );
        }
    }
}

#[tokio::test]
async fn every_acknowledged_event_survives_kill_9_exactly_once() {
    let mut server = support::start().await;
    let token = server.register("writer", "pw").await;
    let (_, body) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&token), Some(json!({}))).await;
    let room = body["room_id"].as_str().unwrap().to_owned();

    // Concurrent senders; the server is killed while they are still sending.
    let mut senders = Vec::new();
    for sender in 0..8 {
        let (base, token, room) = (server.base.clone(), token.clone(), room.clone());
        senders.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acked = Vec::new();
            for n in 0..400 {
                let url = format!(
                    "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/s{sender}-{n}"
                );
                let Ok(response) = client
                    .put(url)
                    .bearer_auth(&token)
                    .json(&json!({"msgtype": "m.text", "body": format!("{sender}-{n}")}))
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(body) = response.json::<Value>().await else { break };
                match body["event_id"].as_str() {
                    Some(id) => acked.push((format!("s{sender}-{n}"), id.to_owned())),
                    None => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    server.crash_and_restart().await;
    let mut acked = Vec::new();
    for sender in senders {
        acked.extend(sender.await.unwrap());
    }
    assert!(!acked.is_empty(), "some sends were acknowledged before the crash");

    // Everything acknowledged is there, once.
    let mut seen = Vec::new();
    let mut from = "s0".to_owned();
    loop {
        let (status, page) = server
            .call(
                "GET",
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100&from={from}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let events = page["chunk"].as_array().unwrap();
        seen.extend(events.iter().filter_map(|e| e["event_id"].as_str().map(ToOwned::to_owned)));
        match page["end"].as_str() {
            Some(end) => from = end.to_owned(),
            None => break,
        }
    }
    for (_, event_id) in &acked {
        assert_eq!(
            seen.iter().filter(|id| *id == event_id).count(),
            1,
            "acknowledged {event_id} present exactly once"
        );
    }
    // Retrying acknowledged transactions after the restart does not duplicate them.
    for (txn, event_id) in acked.iter().take(20) {
        let (status, body) = server
            .call(
                "PUT",
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                Some(&token),
                Some(json!({"msgtype": "m.text", "body": "retry"})),
            )
            .await;
        assert_eq!((status, body["event_id"].as_str()), (200, Some(event_id.as_str())), "{body}");
    }
}

/// `#name:localhost` in a request path (`#` is the fragment marker, so it is escaped).
fn alias_path(name: &str) -> String {
    format!("/_matrix/client/v3/directory/room/%23{name}:localhost")
}

#[tokio::test]
async fn room_aliases_name_rooms_for_their_members_and_survive_a_crash() {
    let mut server = support::start().await;
    let patient = server.register("patient", "pw-patient").await;
    let doctor = server.register("doctor", "pw-doctor").await;
    let outsider = server.register("outsider", "pw-outsider").await;

    // An alias given at creation names the room and is advertised in its state.
    let create = json!({"preset": "private_chat", "room_alias_name": "labs"});
    let (status, body) = server
        .call("POST", "/_matrix/client/v3/createRoom", Some(&patient), Some(create.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"),
            Some(&patient),
            None,
        )
        .await;
    assert_eq!((status, body["alias"].as_str()), (200, Some("#labs:localhost")), "{body}");
    // Resolving needs no account.
    let (status, body) = server.call("GET", &alias_path("labs"), None, None).await;
    assert_eq!((status, body["room_id"].as_str()), (200, Some(room.as_str())), "{body}");
    assert_eq!(body["servers"], json!(["localhost"]));

    // A second room cannot take the name; no room is made.
    let (status, body) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&outsider), Some(create)).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_ROOM_IN_USE")), "{body}");
    assert!(server.call("GET", "/_matrix/client/v3/joined_rooms", Some(&outsider), None).await.1
        ["joined_rooms"]
        .as_array()
        .unwrap()
        .is_empty());

    // Naming a room takes being joined to it; an invited doctor joins by the alias.
    let name_cardio = json!({"room_id": room});
    let (status, body) =
        server.call("PUT", &alias_path("cardio"), Some(&doctor), Some(name_cardio.clone())).await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    invite(&server, &patient, &room, "@doctor:localhost").await;
    let (status, body) = server
        .call("POST", "/_matrix/client/v3/join/%23labs:localhost", Some(&doctor), Some(json!({})))
        .await;
    assert_eq!((status, body["room_id"].as_str()), (200, Some(room.as_str())), "{body}");
    let (status, body) =
        server.call("PUT", &alias_path("cardio"), Some(&doctor), Some(name_cardio.clone())).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        server.call("PUT", &alias_path("cardio"), Some(&patient), Some(name_cardio.clone())).await;
    assert_eq!((status, body["errcode"].as_str()), (409, Some("M_UNKNOWN")), "{body}");
    let (status, body) = server
        .call(
            "PUT",
            "/_matrix/client/v3/directory/room/%23cardio:elsewhere.example",
            Some(&patient),
            Some(name_cardio),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")), "{body}");

    let aliases_path = format!("/_matrix/client/v3/rooms/{room}/aliases");
    let (status, body) = server.call("GET", &aliases_path, Some(&patient), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aliases"], json!(["#cardio:localhost", "#labs:localhost"]));
    let (status, _) = server.call("GET", &aliases_path, Some(&outsider), None).await;
    assert_eq!(status, 403);

    // The room may only advertise aliases that name it.
    let canonical = format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/");
    for (content, expected) in [
        (json!({"alias": "#cardio:localhost", "alt_aliases": ["#nope:localhost"]}), "M_BAD_ALIAS"),
        (json!({"alias": "not an alias"}), "M_INVALID_PARAM"),
    ] {
        let (status, body) = server.call("PUT", &canonical, Some(&patient), Some(content)).await;
        assert_eq!((status, body["errcode"].as_str()), (400, Some(expected)), "{body}");
    }
    let (status, body) = server
        .call(
            "PUT",
            &canonical,
            Some(&patient),
            Some(json!({"alias": "#cardio:localhost", "alt_aliases": ["#labs:localhost"]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Deleting: not by a stranger, nor by a member without the power to change the room's
    // aliases; by the room's creator, whoever made the alias.
    let (status, _) = server.call("DELETE", &alias_path("cardio"), Some(&outsider), None).await;
    assert_eq!(status, 403);
    let (status, _) = server.call("DELETE", &alias_path("labs"), Some(&doctor), None).await;
    assert_eq!(status, 403);
    let (status, body) = server.call("DELETE", &alias_path("cardio"), Some(&patient), None).await;
    assert_eq!(status, 200, "{body}");
    // The room stops advertising it; the other alias stays.
    let (status, body) = server.call("GET", &canonical, Some(&patient), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"alt_aliases": ["#labs:localhost"]}));
    let (status, body) = server.call("GET", &alias_path("cardio"), None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
    let (status, body) = server.call("DELETE", &alias_path("cardio"), Some(&patient), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");

    // Acknowledged alias writes are durable.
    server.crash_and_restart().await;
    let (status, body) = server.call("GET", &alias_path("labs"), None, None).await;
    assert_eq!((status, body["room_id"].as_str()), (200, Some(room.as_str())), "{body}");
    let (status, _) = server.call("GET", &alias_path("cardio"), None, None).await;
    assert_eq!(status, 404);
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/directory/room/no-hash-sign", None, None).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["errcode"].is_string(), "{body}");
}

#[tokio::test]
async fn membership_events_carry_the_members_display_name_and_avatar() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    for (token, user, name) in
        [(&alice, "@alice:localhost", "Dr Alice"), (&bob, "@bob:localhost", "Bob")]
    {
        let path = format!("/_matrix/client/v3/profile/{user}/displayname");
        let (status, _) =
            server.call("PUT", &path, Some(token), Some(json!({"displayname": name}))).await;
        assert_eq!(status, 200);
    }
    let path = "/_matrix/client/v3/profile/@alice:localhost/avatar_url";
    let avatar = "mxc://localhost/alice";
    let (status, _) =
        server.call("PUT", path, Some(&alice), Some(json!({"avatar_url": avatar}))).await;
    assert_eq!(status, 200);
    let (status, created) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            Some(json!({"preset": "private_chat"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap();
    let member = |user: &'static str| {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}");
        let (server, alice) = (&server, &alice);
        async move {
            let (status, content) = server.call("GET", &path, Some(alice), None).await;
            assert_eq!(status, 200, "{content}");
            content
        }
    };
    let join = member("@alice:localhost").await;
    assert_eq!(
        (join["displayname"].as_str(), join["avatar_url"].as_str()),
        (Some("Dr Alice"), Some(avatar))
    );

    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, _) = server
        .call("POST", &invite, Some(&alice), Some(json!({"user_id": "@bob:localhost"})))
        .await;
    assert_eq!(status, 200);
    let invited = member("@bob:localhost").await;
    assert_eq!(
        (invited["membership"].as_str(), invited["displayname"].as_str()),
        (Some("invite"), Some("Bob"))
    );

    let (status, _) = server
        .call("POST", &format!("/_matrix/client/v3/join/{room}"), Some(&bob), Some(json!({})))
        .await;
    assert_eq!(status, 200);
    let joined = member("@bob:localhost").await;
    assert_eq!(
        (joined["membership"].as_str(), joined["displayname"].as_str()),
        (Some("join"), Some("Bob"))
    );
    assert!(joined.get("avatar_url").is_none(), "Bob has no avatar: {joined}");
}
