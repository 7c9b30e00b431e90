//! To-device messages cross servers as `m.direct_to_device` EDUs in `/send` transactions:
//! this is how Megolm room keys reach another server's devices. A message arrives once, even
//! when its transaction is repeated; a message queued for a server that is down is delivered
//! when it is back, and one queued just before the sending server crashed is delivered after
//! it restarts. Transactions over the spec's limits are refused.

use std::time::{Duration, Instant};

use medrix_federation_tests::{FederatingServer, TestNet};
use serde_json::{Value, json};

/// A registered user: token, user ID and device ID.
struct User {
    token: String,
    id: String,
    device: String,
}

async fn register(server: &FederatingServer, localpart: &str) -> User {
    let token = server.server.register(localpart, "pw").await;
    let (_, whoami) =
        server.server.call("GET", "/_matrix/client/v3/account/whoami", Some(&token), None).await;
    User {
        token,
        id: whoami["user_id"].as_str().unwrap().to_owned(),
        device: whoami["device_id"].as_str().unwrap().to_owned(),
    }
}

async fn sync_token(server: &FederatingServer, user: &User) -> String {
    let (status, body) =
        server.server.call("GET", "/_matrix/client/v3/sync", Some(&user.token), None).await;
    assert_eq!(status, 200, "{body}");
    body["next_batch"].as_str().unwrap().to_owned()
}

/// Syncs from `since` until `count` to-device events arrived or `within` passed; returns them
/// all, syncing on once more to be sure no extra copy follows.
async fn to_device_events(
    server: &FederatingServer,
    user: &User,
    since: &str,
    count: usize,
    within: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut since = since.to_owned();
    let mut events = Vec::new();
    let mut settled = false;
    while Instant::now() < deadline {
        let path = format!("/_matrix/client/v3/sync?since={since}&timeout=1000");
        let (status, body) = server.server.call("GET", &path, Some(&user.token), None).await;
        assert_eq!(status, 200, "{body}");
        events.extend(body["to_device"]["events"].as_array().cloned().unwrap_or_default());
        since = body["next_batch"].as_str().unwrap().to_owned();
        if events.len() >= count {
            if settled {
                break;
            }
            settled = true;
        }
    }
    events
}

async fn send_to_device(server: &FederatingServer, from: &User, to: &User, txn: &str, text: &str) {
    let body = json!({"messages": {&to.id: {&to.device: {"body": text}}}});
    let path = format!("/_matrix/client/v3/sendToDevice/m.medrix.test/{txn}");
    let (status, answer) = server.server.call("PUT", &path, Some(&from.token), Some(body)).await;
    assert_eq!(status, 200, "{answer}");
}

fn bodies(events: &[Value]) -> Vec<&str> {
    events.iter().map(|event| event["content"]["body"].as_str().unwrap_or_default()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_to_device_message_reaches_the_other_server_once_even_when_repeated() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let alice = register(&clinic, "alice").await;
    let bob = register(&hospital, "bob").await;
    let since = sync_token(&hospital, &bob).await;

    send_to_device(&clinic, &alice, &bob, "t1", "room key").await;
    // The client retries its request: the same transaction ID sends nothing new.
    send_to_device(&clinic, &alice, &bob, "t1", "room key").await;
    let events = to_device_events(&hospital, &bob, &since, 1, Duration::from_secs(20)).await;
    assert_eq!(bodies(&events), ["room key"], "{events:?}");
    assert_eq!(events[0]["sender"], alice.id);
    assert_eq!(events[0]["type"], "m.medrix.test");

    // The clinic repeats a transaction (it missed the answer), then sends the same message in
    // another one: the hospital delivers it once.
    let since = sync_token(&hospital, &bob).await;
    let edu = json!({"edu_type": "m.direct_to_device", "content": {
        "sender": alice.id, "type": "m.medrix.test", "message_id": "m-repeated",
        "messages": {&bob.id: {"*": {"body": "once"}}},
    }});
    let device_keys = json!({"device_keys": {
        "user_id": bob.id, "device_id": bob.device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
        "keys": {format!("curve25519:{}", bob.device): "c", format!("ed25519:{}", bob.device): "e"},
        "signatures": {},
    }});
    let (status, _) = hospital
        .server
        .call("POST", "/_matrix/client/v3/keys/upload", Some(&bob.token), Some(device_keys))
        .await;
    assert_eq!(status, 200);
    let transaction = |edus: Value| json!({"origin": clinic.server_name, "origin_server_ts": 1, "pdus": [], "edus": edus});
    for txn_id in ["repeat-1", "repeat-1", "repeat-2"] {
        let (status, answer) =
            net.put_transaction(&clinic, &hospital, txn_id, &transaction(json!([edu]))).await;
        assert_eq!(status, 200, "{answer}");
    }
    let events = to_device_events(&hospital, &bob, &since, 1, Duration::from_secs(10)).await;
    assert_eq!(bodies(&events), ["once"], "{events:?}");

    // A server may not speak for another server's users.
    let since = sync_token(&hospital, &bob).await;
    let mut forged = edu.clone();
    forged["content"]["sender"] = json!(format!("@mallory:{}", hospital.server_name));
    forged["content"]["message_id"] = json!("m-forged");
    let (status, _) =
        net.put_transaction(&clinic, &hospital, "forged", &transaction(json!([forged]))).await;
    assert_eq!(status, 200);
    let events = to_device_events(&hospital, &bob, &since, 1, Duration::from_secs(3)).await;
    assert!(events.is_empty(), "{events:?}");

    // The spec's limits: 50 PDUs and 100 EDUs per transaction.
    let typing = json!({"edu_type": "m.typing", "content": {}});
    let too_many_pdus = json!({"origin": clinic.server_name, "origin_server_ts": 1,
        "pdus": vec![json!({}); 51], "edus": []});
    let too_many_edus = transaction(Value::Array(vec![typing; 101]));
    for (txn_id, body) in [("big-1", too_many_pdus), ("big-2", too_many_edus)] {
        let (status, answer) = net.put_transaction(&clinic, &hospital, txn_id, &body).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["errcode"], "M_TOO_LARGE", "{answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_messages_survive_a_dead_peer_and_a_crash_of_the_sender() {
    let net = TestNet::new();
    let mut clinic = net.start("clinic", &[], &["hospital"]).await;
    let mut hospital = net.start("hospital", &[], &["clinic"]).await;
    let alice = register(&clinic, "alice").await;
    let bob = register(&hospital, "bob").await;
    let since = sync_token(&hospital, &bob).await;

    // The hospital goes down; the clinic takes the message, fails to deliver it and backs off.
    assert!(hospital.server.terminate());
    send_to_device(&clinic, &alice, &bob, "t1", "while down").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Another message is acknowledged, then the clinic is killed before it could deliver
    // either (its peer is still down), and restarts on the same data.
    send_to_device(&clinic, &alice, &bob, "t2", "before the crash").await;
    clinic.server.crash_and_restart().await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // The hospital returns and contacts the clinic (a key query for alice): the clinic learns
    // it is up and sends at once rather than after its backoff.
    hospital.server.start_again().await;
    let started = Instant::now();
    let (status, keys) = hospital
        .server
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(&bob.token),
            Some(json!({"device_keys": {&alice.id: []}})),
        )
        .await;
    assert_eq!(status, 200, "{keys}");
    let events = to_device_events(&hospital, &bob, &since, 2, Duration::from_secs(30)).await;
    assert_eq!(bodies(&events), ["while down", "before the crash"], "{events:?}");
    assert!(started.elapsed() < Duration::from_secs(20), "delivered after {:?}", started.elapsed());
}
