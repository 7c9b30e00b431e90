//! Per-user and per-device storage bounds over real HTTP: a device's to-device queue is
//! bounded in bytes as well as in messages, and each user's media uploads in bytes.

mod support;

use serde_json::{Value, json};
use support::{TestServer, start_with_limits};

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
