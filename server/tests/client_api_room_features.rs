//! Room features beyond send and read, over real HTTP: limited sync timelines with
//! `prev_batch`, receipts and typing delivered by `/sync`, tags, `/context`, redaction, and
//! forgetting a room.

mod support;

use serde_json::{Value, json};
use support::TestServer;

async fn sync(server: &TestServer, token: &str, query: &str) -> Value {
    let (status, body) =
        server.call("GET", &format!("/_matrix/client/v3/sync?{query}"), Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn send(server: &TestServer, token: &str, room: &str, txn: &str, body: &str) -> String {
    let (status, reply) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            Some(json!({"msgtype": "m.text", "body": body})),
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    reply["event_id"].as_str().unwrap().to_owned()
}

/// A room `owner` created with `member` joined; returns its ID.
async fn shared_room(server: &TestServer, owner: &str, member: &str) -> String {
    let (_, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(owner),
            Some(json!({"preset": "public_chat"})),
        )
        .await;
    let room = body["room_id"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call("POST", &format!("/_matrix/client/v3/join/{room}"), Some(member), Some(json!({})))
        .await;
    assert_eq!(status, 200);
    room
}

fn timeline_bodies(room: &Value) -> Vec<String> {
    room["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(ToOwned::to_owned))
        .collect()
}

#[tokio::test]
async fn a_busy_room_gives_a_limited_timeline_that_pages_back_without_gaps() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = shared_room(&server, &alice, &bob).await;
    let since = sync(&server, &bob, "").await["next_batch"].as_str().unwrap().to_owned();
    // A topic change in the gap must still reach the client as state.
    let (status, _) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            Some(&alice),
            Some(json!({"topic": "results"})),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..12 {
        send(&server, &alice, &room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let filter = r#"{"room":{"timeline":{"limit":5}}}"#;
    let body = sync(&server, &bob, &format!("since={since}&filter={}", urlencode(filter))).await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    assert_eq!(timeline_bodies(joined), ["m7", "m8", "m9", "m10", "m11"]);
    let state = joined["state"]["events"].as_array().unwrap();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.topic"),
        "gap state carries the topic: {state:?}"
    );

    // Paging back from prev_batch returns exactly the skipped messages.
    let prev_batch = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (_, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=7&from={prev_batch}"),
            Some(&bob),
            None,
        )
        .await;
    let older: Vec<&str> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(older, ["m6", "m5", "m4", "m3", "m2", "m1", "m0"]);

    // A quiet room is not limited; a stored filter ID works like inline JSON.
    let (_, created) = server
        .call(
            "POST",
            "/_matrix/client/v3/user/@bob:localhost/filter",
            Some(&bob),
            Some(json!({"room": {"timeline": {"limit": 50}}})),
        )
        .await;
    let next = body["next_batch"].as_str().unwrap();
    send(&server, &alice, &room, "t-late", "late").await;
    let body = sync(
        &server,
        &bob,
        &format!("since={next}&filter={}", created["filter_id"].as_str().unwrap()),
    )
    .await;
    let joined = &body["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], false);
    assert_eq!(timeline_bodies(joined), ["late"]);
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn ephemeral<'a>(body: &'a Value, room: &str, kind: &str) -> Option<&'a Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
}

#[tokio::test]
async fn receipts_and_typing_reach_other_members_through_a_waiting_sync() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = shared_room(&server, &alice, &bob).await;
    let event = send(&server, &alice, &room, "t1", "hello").await;
    let since = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();

    // Bob reads; Alice's long-poll wakes with his receipt.
    let waiting = {
        let (server_base, alice, since) = (server.base.clone(), alice.clone(), since.clone());
        tokio::spawn(async move {
            let url = format!("{server_base}/_matrix/client/v3/sync?since={since}&timeout=10000");
            let started = std::time::Instant::now();
            let body: Value = reqwest::Client::new()
                .get(url)
                .bearer_auth(alice)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (status, _) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200);
    let (body, waited) = waiting.await.unwrap();
    assert!(waited < std::time::Duration::from_secs(5), "woke on the receipt, after {waited:?}");
    let receipt = ephemeral(&body, &room, "m.receipt").expect("receipt delivered");
    assert!(receipt["content"][&event]["m.read"]["@bob:localhost"]["ts"].is_u64(), "{receipt}");

    // A private receipt and the fully-read marker stay Bob's own.
    let (status, _) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/read_markers"),
            Some(&bob),
            Some(json!({"m.fully_read": event, "m.read.private": event})),
        )
        .await;
    assert_eq!(status, 200);
    let next = body["next_batch"].as_str().unwrap().to_owned();
    let for_alice = sync(&server, &alice, &format!("since={next}")).await;
    assert!(ephemeral(&for_alice, &room, "m.receipt").is_none(), "{for_alice}");
    let for_bob = sync(&server, &bob, "").await;
    let own = ephemeral(&for_bob, &room, "m.receipt").unwrap();
    assert!(own["content"][&event]["m.read.private"]["@bob:localhost"].is_object(), "{own}");
    let fully_read = for_bob["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.fully_read")
        .cloned()
        .unwrap();
    assert_eq!(fully_read["content"]["event_id"], event.as_str());

    // Typing starts, shows, and ends by itself after its timeout.
    let next = for_alice["next_batch"].as_str().unwrap().to_owned();
    let (status, _) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/typing/@bob:localhost"),
            Some(&bob),
            Some(json!({"typing": true, "timeout": 1000})),
        )
        .await;
    assert_eq!(status, 200);
    let body = sync(&server, &alice, &format!("since={next}&timeout=5000")).await;
    let typing = ephemeral(&body, &room, "m.typing").expect("typing delivered");
    assert_eq!(typing["content"]["user_ids"], json!(["@bob:localhost"]));
    let next = body["next_batch"].as_str().unwrap();
    let body = sync(&server, &alice, &format!("since={next}&timeout=5000")).await;
    let typing = ephemeral(&body, &room, "m.typing").expect("typing end delivered");
    assert_eq!(typing["content"]["user_ids"], json!([]));

    // Only members may do either, and only for themselves.
    let carol = server.register("carol", "pw").await;
    let (status, body) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            Some(&carol),
            Some(json!({})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, _) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/typing/@alice:localhost"),
            Some(&bob),
            Some(json!({"typing": true, "timeout": 1000})),
        )
        .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn tags_context_redaction_and_forget_work_and_respect_access() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = shared_room(&server, &alice, &bob).await;
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(send(&server, &alice, &room, &format!("c{i}"), &format!("c{i}")).await);
        }
        ids
    };

    // Tags.
    let tag_path = format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags/u.records");
    assert_eq!(server.call("PUT", &tag_path, Some(&bob), Some(json!({"order": 0.5}))).await.0, 200);
    let (_, tags) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(tags["tags"]["u.records"]["order"], 0.5);
    assert_eq!(server.call("PUT", &tag_path, Some(&alice), Some(json!({}))).await.0, 403);
    assert_eq!(server.call("DELETE", &tag_path, Some(&bob), None).await.0, 200);
    let (_, tags) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(tags["tags"], json!({}));

    // Context around the middle message.
    let (status, context) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=2", ids[2]),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200, "{context}");
    assert_eq!(context["event"]["content"]["body"], "c2");
    assert_eq!(context["events_before"][0]["content"]["body"], "c1");
    assert_eq!(context["events_after"][0]["content"]["body"], "c3");

    // Bob may not redact Alice's message (no power); Alice may, and the content goes.
    let (status, _) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/redact/{}/r1", ids[0]),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "any member may send a redaction event");
    let (_, event) = server
        .call("GET", &format!("/_matrix/client/v3/rooms/{room}/event/{}", ids[0]), Some(&bob), None)
        .await;
    assert_eq!(event["content"]["body"], "c0", "but it does not apply");
    let (status, redaction) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/redact/{}/r2", ids[0]),
            Some(&alice),
            Some(json!({"reason": "wrong patient"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, event) = server
        .call("GET", &format!("/_matrix/client/v3/rooms/{room}/event/{}", ids[0]), Some(&bob), None)
        .await;
    assert_eq!(event["content"], json!({}), "{event}");
    assert_eq!(event["event_id"], ids[0].as_str(), "the ID stays");
    let (_, again) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/rooms/{room}/redact/{}/r2", ids[0]),
            Some(&alice),
            Some(json!({})),
        )
        .await;
    assert_eq!(again["event_id"], redaction["event_id"], "idempotent per transaction");

    // An outsider gets nothing from /context; forgetting needs leaving first.
    let carol = server.register("carol", "pw").await;
    let (status, _) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/context/{}", ids[2]),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let forget = format!("/_matrix/client/v3/rooms/{room}/forget");
    let (status, _) = server.call("POST", &forget, Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 403);
    let before_leave = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let leave = format!("/_matrix/client/v3/rooms/{room}/leave");
    server.call("POST", &leave, Some(&bob), Some(json!({}))).await;
    let body = sync(&server, &alice, &format!("since={before_leave}")).await;
    assert_eq!(body["device_lists"]["left"], json!(["@bob:localhost"]), "stop encrypting for Bob");
    let (status, _) = server.call("POST", &forget, Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call("GET", &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), Some(&bob), None)
        .await;
    assert_eq!(status, 403, "a forgotten room is gone from the user's view");
}

#[tokio::test]
async fn a_refused_initial_state_creates_no_room_at_all() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let (status, body) = server
        .call("POST", "/_matrix/client/v3/createRoom", Some(&alice), Some(json!({
            "name": "half-built?",
            "initial_state": [
                {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
                {"type": "m.room.member", "state_key": "@bob:localhost", "content": {"membership": "join"}},
            ],
        })))
        .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
    let (_, rooms) =
        server.call("GET", "/_matrix/client/v3/joined_rooms", Some(&alice), None).await;
    assert_eq!(rooms["joined_rooms"], json!([]), "no partial room: {rooms}");

    let (status, body) = server
        .call("POST", "/_matrix/client/v3/createRoom", Some(&alice), Some(json!({"initial_state": [
            {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, rooms) =
        server.call("GET", "/_matrix/client/v3/joined_rooms", Some(&alice), None).await;
    assert_eq!(rooms["joined_rooms"], json!([body["room_id"]]));
}

#[tokio::test]
async fn a_flood_of_sends_is_slowed_with_limit_exceeded_and_loses_nothing_accepted() {
    // Rate limits on, as by default: 50 requests in a burst, then 10 per second.
    let server = support::start_with(&["--registration-token", support::REGISTRATION_TOKEN]).await;
    let alice = server.register("alice", "pw").await;
    let (_, room) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&alice), Some(json!({}))).await;
    let room = room["room_id"].as_str().unwrap().to_owned();
    let mut accepted = Vec::new();
    let mut limited = 0;
    for i in 0..80 {
        let (status, body) = server
            .call(
                "PUT",
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/f{i}"),
                Some(&alice),
                Some(json!({"msgtype": "m.text", "body": format!("f{i}")})),
            )
            .await;
        match status {
            200 => accepted.push(body["event_id"].as_str().unwrap().to_owned()),
            429 => {
                assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
                assert!(body["retry_after_ms"].as_u64().unwrap() > 0, "{body}");
                limited += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(limited > 0 && accepted.len() >= 40, "{} accepted, {limited} limited", accepted.len());
    // Every accepted event is stored and readable once the client slows down.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    for event_id in &accepted {
        let (status, _) = server
            .call(
                "GET",
                &format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"),
                Some(&alice),
                None,
            )
            .await;
        if status == 429 {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            continue;
        }
        assert_eq!(status, 200);
    }
}

#[tokio::test]
async fn concurrent_retries_of_one_transaction_store_one_event() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let (_, room) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&alice), Some(json!({}))).await;
    let room = room["room_id"].as_str().unwrap().to_owned();
    // Other sends keep the commit queue busy, so retries meet the first send still queued.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (base, token, room) = (server.base.clone(), alice.clone(), room.clone());
        let txn = if i % 2 == 0 { "same-txn".to_owned() } else { format!("other-{i}") };
        tasks.push(tokio::spawn(async move {
            let url = format!("{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
            let response = reqwest::Client::new()
                .put(url)
                .bearer_auth(token)
                .json(&json!({"msgtype": "m.text", "body": txn}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200);
            let body: Value = response.json().await.unwrap();
            (txn, body["event_id"].as_str().unwrap().to_owned())
        }));
    }
    let mut same = std::collections::BTreeSet::new();
    for task in tasks {
        let (txn, event_id) = task.await.unwrap();
        if txn == "same-txn" {
            same.insert(event_id);
        }
    }
    assert_eq!(same.len(), 1, "every retry got the first send's event: {same:?}");
    let (_, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
            Some(&alice),
            None,
        )
        .await;
    let stored = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["content"]["body"] == "same-txn")
        .count();
    assert_eq!(stored, 1, "one event stored for the transaction");
}

/// Sends a whole request over a raw socket and hangs up before any answer, as a client whose
/// connection drops mid-request.
fn hang_up_after_sending(server: &TestServer, method: &str, path: &str, token: &str, body: &str) {
    use std::io::Write as _;
    let address = server.base.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).unwrap();
}

#[tokio::test]
async fn clients_hanging_up_mid_request_never_stall_sync_for_others() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let room = shared_room(&server, &alice, &bob).await;
    let event = send(&server, &alice, &room, "t1", "first").await;
    let mut since = sync(&server, &alice, "").await["next_batch"].as_str().unwrap().to_owned();

    // Each of these takes a stream position before its commit; the hang-up drops the request
    // while it waits for the fsync.
    for i in 0..150 {
        let data = format!("/_matrix/client/v3/user/@bob:localhost/account_data/m.test.{i}");
        hang_up_after_sending(&server, "PUT", &data, &bob, r#"{"n":1}"#);
        let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}");
        hang_up_after_sending(&server, "POST", &receipt, &bob, "{}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    send(&server, &bob, &room, "t2", "after the hang-ups").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = sync(&server, &alice, &format!("since={since}&timeout=2000")).await;
        let joined = &body["rooms"]["join"][&room];
        if joined.is_object() && timeline_bodies(joined).contains(&"after the hang-ups".to_owned())
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Bob's message never reached Alice's sync");
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
}
