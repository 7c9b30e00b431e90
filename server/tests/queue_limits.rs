//! Per-user and per-device storage bounds over real HTTP: a device's to-device queue is
//! bounded in bytes as well as in messages and delivered in bounded pages, and each user's
//! media uploads are bounded in bytes.

mod support;

use serde_json::{Value, json};
use support::{TestServer, start, start_with_limits};

async fn whoami(server: &TestServer, token: &str) -> (String, String) {
    let (_, me) = server.call("GET", "/_matrix/client/v3/account/whoami", Some(token), None).await;
    (me["user_id"].as_str().unwrap().to_owned(), me["device_id"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_devices_to_device_queue_is_bounded_in_bytes() {
    let server = start_with_limits("max_pending_to_device_bytes = 4096").await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, bob_device) = whoami(&server, &bob).await;
    let (status, initial) = server.call("GET", "/_matrix/client/v3/sync", Some(&bob), None).await;
    assert_eq!(status, 200);
    let since = initial["next_batch"].as_str().unwrap().to_owned();

    let send = |txn: &'static str| {
        let body = json!({"messages": {&bob_id: {&bob_device: {"pad": "x".repeat(1500)}}}});
        let path = format!("/_matrix/client/v3/sendToDevice/m.medrix.test/{txn}");
        let (server, alice) = (&server, alice.clone());
        async move { server.call("PUT", &path, Some(&alice), Some(body)).await }
    };
    for txn in ["t1", "t2"] {
        let (status, body) = send(txn).await;
        assert_eq!(status, 200, "{body}");
    }
    // Two messages of 1.5 KB wait; a third would pass 4 KiB (20 small ones would not pass
    // the count).
    let (status, body) = send("t3").await;
    assert_eq!((status, body["errcode"].as_str()), (429, Some("M_LIMIT_EXCEEDED")), "{body}");

    // Once the device has synced them away, there is room again.
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout=0");
    let (_, synced) = server.call("GET", &path, Some(&bob), None).await;
    assert_eq!(synced["to_device"]["events"].as_array().map(Vec::len), Some(2), "{synced}");
    let next = synced["next_batch"].as_str().unwrap();
    let path = format!("/_matrix/client/v3/sync?since={next}&timeout=0");
    server.call("GET", &path, Some(&bob), None).await;
    let (status, body) = send("t4").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_long_to_device_queue_arrives_in_pages_none_lost_none_twice() {
    let server = start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (bob_id, bob_device) = whoami(&server, &bob).await;
    let (_, initial) = server.call("GET", "/_matrix/client/v3/sync", Some(&bob), None).await;
    let mut since = initial["next_batch"].as_str().unwrap().to_owned();

    // Bob's device is offline while 230 messages queue up.
    let sent = 230;
    for n in 0..sent {
        let body = json!({"messages": {&bob_id: {&bob_device: {"n": n}}}});
        let path = format!("/_matrix/client/v3/sendToDevice/m.medrix.test/t{n}");
        let (status, body) = server.call("PUT", &path, Some(&alice), Some(body)).await;
        assert_eq!(status, 200, "{body}");
    }

    // Each sync answers at once with at most a page; the pages add up to every message,
    // each once, in the order sent. A long timeout shows that a token with messages still
    // waiting is answered without waiting for anything new.
    let mut received = Vec::new();
    let mut pages = Vec::new();
    while received.len() < sent {
        let path = format!("/_matrix/client/v3/sync?since={since}&timeout=30000");
        let started = std::time::Instant::now();
        let (status, synced) = server.call("GET", &path, Some(&bob), None).await;
        assert_eq!(status, 200, "{synced}");
        assert!(started.elapsed().as_secs() < 10, "a waiting page was held back");
        let events = synced["to_device"]["events"].as_array().unwrap();
        pages.push(events.len());
        received.extend(events.iter().map(|event| event["content"]["n"].as_u64().unwrap()));
        since = synced["next_batch"].as_str().unwrap().to_owned();
        assert!(pages.len() <= 3, "pages {pages:?}");
    }
    assert_eq!(pages, [100, 100, 30]);
    assert_eq!(received, (0..sent as u64).collect::<Vec<_>>());

    // Acknowledged messages are gone: the next sync (nothing new) brings none of them again.
    let path = format!("/_matrix/client/v3/sync?since={since}&timeout=0");
    let (_, synced) = server.call("GET", &path, Some(&bob), None).await;
    assert_eq!(synced["to_device"]["events"], json!([]), "{synced}");

    // A token carrying a to-device place still works where a plain stream position is
    // wanted: as the start of a `/messages` page (spec: a sync token is one).
    let paged_token = format!("{}_1_0", since.trim_start_matches('s').split('_').next().unwrap());
    let (status, body) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/keys/changes?from=s{paged_token}&to={since}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn upload(server: &TestServer, token: &str, bytes: usize) -> (u16, Value) {
    let response = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; bytes])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn each_users_uploads_are_bounded_by_a_quota_that_survives_a_restart() {
    let mut server = start_with_limits("max_media_bytes_per_user = 3000").await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    assert_eq!(upload(&server, &alice, 2000).await.0, 200);
    let (status, body) = upload(&server, &alice, 1500).await;
    assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{body}");
    // What is left still fits, and the quota is each user's own.
    assert_eq!(upload(&server, &alice, 1000).await.0, 200);
    assert_eq!(upload(&server, &bob, 2500).await.0, 200);
    // The use is stored, not only counted in memory.
    server.crash_and_restart().await;
    let (status, body) = upload(&server, &alice, 1).await;
    assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{body}");
}
