//! EDUs about members of rooms spanning servers: a device-list change of a user on one server
//! shows in the `/sync` `device_lists.changed` of a user on another they share a room with,
//! and typing crosses too.

use std::time::{Duration, Instant};

use medrix_federation_tests::TestNet;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_list_changes_and_typing_reach_members_on_other_servers() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let alice = clinic.server.register("alice", "pw").await;
    let alice_id = format!("@alice:{}", clinic.server_name);
    let bob = hospital.server.register("bob", "pw").await;
    let bob_id = format!("@bob:{}", hospital.server_name);

    let (status, created) = clinic
        .server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            Some(json!({"invite": [bob_id]})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{room}?via={}", clinic.server_name);
    let (status, joined) = hospital.server.call("POST", &join, Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 200, "{joined}");
    let (_, sync) = hospital.server.call("GET", "/_matrix/client/v3/sync", Some(&bob), None).await;
    let mut since = sync["next_batch"].as_str().unwrap().to_owned();

    let (_, whoami) =
        clinic.server.call("GET", "/_matrix/client/v3/account/whoami", Some(&alice), None).await;
    let device = whoami["device_id"].as_str().unwrap();
    let (status, _) = clinic
        .server
        .call(
            "POST",
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            Some(json!({
                "device_keys": {
                    "user_id": alice_id, "device_id": device,
                    "algorithms": ["m.megolm.v1.aes-sha2"],
                    "keys": {format!("ed25519:{device}"): "ed"}, "signatures": {},
                },
            })),
        )
        .await;
    assert_eq!(status, 200);
    let typing = format!("/_matrix/client/v3/rooms/{room}/typing/{alice_id}");
    let (status, _) = clinic
        .server
        .call("PUT", &typing, Some(&alice), Some(json!({"typing": true, "timeout": 30000})))
        .await;
    assert_eq!(status, 200);

    let (mut keys_changed, mut typing_seen) = (false, false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(keys_changed && typing_seen) && Instant::now() < deadline {
        let path = format!("/_matrix/client/v3/sync?since={since}&timeout=1000");
        let (status, body) = hospital.server.call("GET", &path, Some(&bob), None).await;
        assert_eq!(status, 200, "{body}");
        keys_changed |= body["device_lists"]["changed"]
            .as_array()
            .is_some_and(|users| users.contains(&json!(alice_id)));
        let ephemeral = &body["rooms"]["join"][&room]["ephemeral"]["events"];
        typing_seen |= ephemeral.as_array().is_some_and(|events| {
            events.iter().any(|event: &Value| {
                event["type"] == "m.typing" && event["content"]["user_ids"] == json!([alice_id])
            })
        });
        since = body["next_batch"].as_str().unwrap().to_owned();
    }
    assert!(keys_changed, "alice's new device keys were not reported to bob");
    assert!(typing_seen, "alice's typing did not reach bob");
}
