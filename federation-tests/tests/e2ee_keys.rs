//! End-to-end encryption keys cross servers: a user's client asks its own server for the
//! device keys of a user on another server and claims one of their one-time keys; its server
//! forwards both over federation. Without this, no encrypted room can span two servers.

use medrix_federation_tests::TestNet;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_keys_and_one_time_keys_are_fetched_from_the_users_server() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;

    let bob_id = format!("@bob:{}", clinic.server_name);
    let bob = clinic.server.register("bob", "pw").await;
    let (_, whoami) =
        clinic.server.call("GET", "/_matrix/client/v3/account/whoami", Some(&bob), None).await;
    let device = whoami["device_id"].as_str().unwrap().to_owned();
    let (status, body) = clinic
        .server
        .call("POST", "/_matrix/client/v3/keys/upload", Some(&bob), Some(json!({
            "device_keys": {
                "user_id": bob_id, "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {format!("curve25519:{device}"): "curve", format!("ed25519:{device}"): "ed"},
                "signatures": {&bob_id: {format!("ed25519:{device}"): "sig"}},
            },
            "one_time_keys": {"signed_curve25519:AAAA": {"key": "otk", "signatures": {}}},
        })))
        .await;
    assert_eq!(status, 200, "{body}");

    let alice = hospital.server.register("alice", "pw").await;
    let (status, keys) = hospital
        .server
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(&alice),
            Some(json!({"device_keys": {&bob_id: []}})),
        )
        .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    assert_eq!(keys["device_keys"][&bob_id][&device]["keys"][format!("ed25519:{device}")], "ed");

    let claim = json!({"one_time_keys": {&bob_id: {&device: "signed_curve25519"}}});
    let (status, claimed) = hospital
        .server
        .call("POST", "/_matrix/client/v3/keys/claim", Some(&alice), Some(claim.clone()))
        .await;
    assert_eq!(status, 200, "{claimed}");
    assert_eq!(claimed["one_time_keys"][&bob_id][&device]["signed_curve25519:AAAA"]["key"], "otk");
    // A one-time key is handed out once.
    let (_, again) = hospital
        .server
        .call("POST", "/_matrix/client/v3/keys/claim", Some(&alice), Some(claim))
        .await;
    assert!(again["one_time_keys"][&bob_id].get(&device).is_none(), "{again}");
}
