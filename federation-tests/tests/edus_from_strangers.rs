//! Device-list and signing-key EDUs about users who share no room with this server's users
//! are ignored: nothing is recorded (the key-change stream does not move), so a server
//! cannot grow another's storage with news of made-up users.

use medrix_federation_tests::{FederatingServer, TestNet};
use serde_json::json;

async fn next_batch(server: &FederatingServer, token: &str, since: Option<&str>) -> String {
    let path = match since {
        Some(since) => format!("/_matrix/client/v3/sync?since={since}&timeout=0"),
        None => "/_matrix/client/v3/sync".to_owned(),
    };
    let (status, body) = server.server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_lists"]["changed"], json!([]), "{body}");
    body["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_of_users_sharing_no_room_are_not_recorded() {
    let net = TestNet::new();
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let bob = hospital.server.register("bob", "pw").await;
    let before = next_batch(&hospital, &bob, None).await;

    let mut edus = Vec::new();
    for index in 0..20 {
        let stranger = clinic.user_id(&format!("stranger{index}"));
        edus.push(json!({"edu_type": "m.device_list_update", "content": {
            "user_id": stranger, "device_id": "DEVICE", "stream_id": 1, "prev_id": [],
            "deleted": false,
        }}));
        edus.push(json!({"edu_type": "m.signing_key_update", "content": {"user_id": stranger}}));
    }
    let transaction = json!({
        "origin": clinic.server_name, "origin_server_ts": 1, "pdus": [], "edus": edus,
    });
    let (status, answer) = net.put_transaction(&clinic, &hospital, "strangers", &transaction).await;
    assert_eq!(status, 200, "{answer}");
    let after = next_batch(&hospital, &bob, Some(&before)).await;
    assert_eq!(after, before, "the hospital recorded key changes of strangers");
}
