//! The end-to-end encryption endpoints over real HTTP: keys upload, query, claim (one-time
//! then fallback), to-device delivery and acknowledgement, device-list changes, and
//! cross-signing with its user-interactive auth.

mod support;

use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
use ed25519_dalek::{Signer as _, SigningKey};
use serde_json::{Value, json};
use support::TestServer;

async fn login_device(server: &TestServer, user: &str, password: &str, device: &str) -> String {
    let (status, body) = server
        .call("POST", "/_matrix/client/v3/login", None, Some(json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user}, "password": password, "device_id": device})))
        .await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("curve25519:{device}"): "curve-key", format!("ed25519:{device}"): "ed-key"},
        "signatures": {user: {format!("ed25519:{device}"): "sig"}},
    })
}

#[tokio::test]
async fn keys_are_uploaded_queried_and_claimed_once() {
    let server = support::start().await;
    server.register("alice", "pw-a").await;
    let bob = server.register("bob", "pw-b").await;
    let alice = login_device(&server, "alice", "pw-a", "ALICEPHONE").await;

    let (status, body) = server
        .call("POST", "/_matrix/client/v3/keys/upload", Some(&alice), Some(json!({
            "device_keys": device_keys("@alice:localhost", "ALICEPHONE"),
            "one_time_keys": {
                "signed_curve25519:AAAA": {"key": "otk1", "signatures": {}},
                "signed_curve25519:AAAB": {"key": "otk2", "signatures": {}},
            },
            "fallback_keys": {"signed_curve25519:FFFF": {"key": "fallback", "fallback": true, "signatures": {}}},
        })))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 2);

    // Keys for another device are refused.
    let (status, _) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            Some(json!({"device_keys": device_keys("@alice:localhost", "OTHER")})),
        )
        .await;
    assert_eq!(status, 400);

    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            Some(json!({"device_keys": {"@alice:localhost": []}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["device_keys"]["@alice:localhost"]["ALICEPHONE"]["keys"]["curve25519:ALICEPHONE"],
        "curve-key"
    );

    let claim = json!({"one_time_keys": {"@alice:localhost": {"ALICEPHONE": "signed_curve25519"}}});
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let (status, body) = server
            .call("POST", "/_matrix/client/v3/keys/claim", Some(&bob), Some(claim.clone()))
            .await;
        assert_eq!(status, 200, "{body}");
        let keys =
            body["one_time_keys"]["@alice:localhost"]["ALICEPHONE"].as_object().unwrap().clone();
        claimed.push(keys.values().next().unwrap()["key"].as_str().unwrap().to_owned());
    }
    // Each one-time key goes out once; then the fallback key, as often as needed.
    let mut first_two = claimed[..2].to_vec();
    first_two.sort();
    assert_eq!(first_two, ["otk1", "otk2"]);
    assert_eq!(claimed[2..], ["fallback", "fallback"]);

    let (_, sync) = server.call("GET", "/_matrix/client/v3/sync", Some(&alice), None).await;
    assert_eq!(
        sync["device_one_time_keys_count"]["signed_curve25519"].as_u64().unwrap_or(0),
        0,
        "{sync}"
    );
    assert_eq!(sync["device_unused_fallback_key_types"], json!([]), "the fallback key was used");

    // Logging out removes the device's keys.
    server.call("POST", "/_matrix/client/v3/logout", Some(&alice), None).await;
    let (_, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            Some(json!({"device_keys": {"@alice:localhost": []}})),
        )
        .await;
    assert_eq!(body["device_keys"]["@alice:localhost"], json!({}), "{body}");
}

#[tokio::test]
async fn to_device_messages_arrive_once_and_go_after_acknowledgement() {
    let server = support::start().await;
    server.register("carol", "pw").await;
    let dan = server.register("dan", "pw").await;
    let carol = login_device(&server, "carol", "pw", "CAROLLAPTOP").await;
    let since =
        server.call("GET", "/_matrix/client/v3/sync", Some(&carol), None).await.1["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();

    let message = json!({"messages": {"@carol:localhost": {"CAROLLAPTOP": {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {}}}}});
    for _ in 0..2 {
        // The same transaction twice: delivered once.
        let (status, _) = server
            .call(
                "PUT",
                "/_matrix/client/v3/sendToDevice/m.room.encrypted/txn1",
                Some(&dan),
                Some(message.clone()),
            )
            .await;
        assert_eq!(status, 200);
    }
    let (_, first) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/sync?since={since}&timeout=5000"),
            Some(&carol),
            None,
        )
        .await;
    let events = first["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{first}");
    assert_eq!(events[0]["sender"], "@dan:localhost");
    assert_eq!(events[0]["type"], "m.room.encrypted");

    // A retried sync (same token) gets it again; the next one, having acknowledged, does not.
    let (_, retried) = server
        .call("GET", &format!("/_matrix/client/v3/sync?since={since}"), Some(&carol), None)
        .await;
    assert_eq!(retried["to_device"]["events"].as_array().unwrap().len(), 1);
    let next = first["next_batch"].as_str().unwrap();
    let (_, after) = server
        .call("GET", &format!("/_matrix/client/v3/sync?since={next}"), Some(&carol), None)
        .await;
    assert_eq!(after["to_device"]["events"], json!([]), "{after}");
}

#[tokio::test]
async fn device_list_changes_reach_room_mates_and_cross_signing_needs_the_password_to_replace() {
    let server = support::start().await;
    let erin = server.register("erin", "pw-erin").await;
    let frank = server.register("frank", "pw-frank").await;
    let (_, created) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&erin),
            Some(json!({"invite": ["@frank:localhost"]})),
        )
        .await;
    let room = created["room_id"].as_str().unwrap();
    server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&frank),
            Some(json!({})),
        )
        .await;
    let since =
        server.call("GET", "/_matrix/client/v3/sync", Some(&frank), None).await.1["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();

    let erin_device = login_device(&server, "erin", "pw-erin", "ERINTABLET").await;
    server
        .call(
            "POST",
            "/_matrix/client/v3/keys/upload",
            Some(&erin_device),
            Some(json!({"device_keys": device_keys("@erin:localhost", "ERINTABLET")})),
        )
        .await;
    let (_, sync) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/sync?since={since}&timeout=5000"),
            Some(&frank),
            None,
        )
        .await;
    assert!(
        sync["device_lists"]["changed"].as_array().unwrap().contains(&json!("@erin:localhost")),
        "{sync}"
    );
    let (_, changes) = server
        .call(
            "GET",
            &format!(
                "/_matrix/client/v3/keys/changes?from={since}&to={}",
                sync["next_batch"].as_str().unwrap()
            ),
            Some(&frank),
            None,
        )
        .await;
    assert!(
        changes["changed"].as_array().unwrap().contains(&json!("@erin:localhost")),
        "{changes}"
    );

    let master = json!({"user_id": "@erin:localhost", "usage": ["master"], "keys": {"ed25519:MASTERKEY": "MASTERKEY"}});
    let user_signing = json!({"user_id": "@erin:localhost", "usage": ["user_signing"], "keys": {"ed25519:USK": "USK"}});
    let upload = "/_matrix/client/v3/keys/device_signing/upload";
    let (status, body) = server
        .call(
            "POST",
            upload,
            Some(&erin),
            Some(json!({"master_key": master, "user_signing_key": user_signing})),
        )
        .await;
    assert_eq!(status, 200, "first upload needs no auth: {body}");
    let (status, body) =
        server.call("POST", upload, Some(&erin), Some(json!({"master_key": master}))).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["flows"][0]["stages"][0], "m.login.password");
    let session = body["session"].clone();
    let wrong = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "erin"}, "password": "nope", "session": session});
    let (status, body) = server
        .call("POST", upload, Some(&erin), Some(json!({"master_key": master, "auth": wrong})))
        .await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{body}");
    let right = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "erin"}, "password": "pw-erin", "session": session});
    let (status, body) = server
        .call("POST", upload, Some(&erin), Some(json!({"master_key": master, "auth": right})))
        .await;
    assert_eq!(status, 200, "{body}");

    let query = json!({"device_keys": {"@erin:localhost": []}});
    let (_, seen_by_frank) = server
        .call("POST", "/_matrix/client/v3/keys/query", Some(&frank), Some(query.clone()))
        .await;
    assert_eq!(
        seen_by_frank["master_keys"]["@erin:localhost"]["keys"]["ed25519:MASTERKEY"],
        "MASTERKEY"
    );
    assert!(
        seen_by_frank["user_signing_keys"].get("@erin:localhost").is_none(),
        "only the owner sees the user-signing key"
    );
    let (_, seen_by_erin) =
        server.call("POST", "/_matrix/client/v3/keys/query", Some(&erin), Some(query)).await;
    assert_eq!(seen_by_erin["user_signing_keys"]["@erin:localhost"]["keys"]["ed25519:USK"], "USK");

    // A signature that is not Erin's own verifiable one is refused, and changes nothing.
    let signed = json!({"@erin:localhost": {"ERINTABLET": {"user_id": "@erin:localhost", "device_id": "ERINTABLET",
        "signatures": {"@erin:localhost": {"ed25519:MASTERKEY": "cross-signature"}}}}});
    let (status, body) = server
        .call("POST", "/_matrix/client/v3/keys/signatures/upload", Some(&erin), Some(signed))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"]["@erin:localhost"]["ERINTABLET"]["errcode"].is_string(), "{body}");
    let (_, keys) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(&frank),
            Some(json!({"device_keys": {"@erin:localhost": ["ERINTABLET"]}})),
        )
        .await;
    let signatures =
        &keys["device_keys"]["@erin:localhost"]["ERINTABLET"]["signatures"]["@erin:localhost"];
    assert_eq!(*signatures, json!({"ed25519:ERINTABLET": "sig"}), "{keys}");
}

fn public(key: &SigningKey) -> String {
    STANDARD_NO_PAD.encode(key.verifying_key().to_bytes())
}

/// A client's signature on a key object: ed25519 over its canonical JSON without
/// `signatures` and `unsigned`.
fn sign(key: &SigningKey, object: &Value) -> String {
    let object = medrix_protocol::canonical::object_from_value(object.clone()).unwrap();
    let message = medrix_protocol::canonical::encode_without(&object, &["signatures", "unsigned"]);
    STANDARD_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes())
}

async fn device_signatures(server: &TestServer, token: &str, user: &str, device: &str) -> Value {
    let query = json!({"device_keys": {user: [device]}});
    let (status, keys) =
        server.call("POST", "/_matrix/client/v3/keys/query", Some(token), Some(query)).await;
    assert_eq!(status, 200, "{keys}");
    keys["device_keys"][user][device]["signatures"].clone()
}

#[tokio::test]
async fn only_the_uploaders_own_verifiable_signatures_are_added_to_keys() {
    let server = support::start().await;
    server.register("alice", "pw-a").await;
    let mallory = server.register("mallory", "pw-m").await;
    let alice = login_device(&server, "alice", "pw-a", "ALICEPHONE").await;
    let (device, master, self_signing) = (
        SigningKey::from_bytes(&[1; 32]),
        SigningKey::from_bytes(&[2; 32]),
        SigningKey::from_bytes(&[3; 32]),
    );
    let mut keys = json!({
        "user_id": "@alice:localhost", "device_id": "ALICEPHONE",
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {"curve25519:ALICEPHONE": "curve", "ed25519:ALICEPHONE": public(&device)},
    });
    keys["signatures"] = json!({"@alice:localhost": {"ed25519:ALICEPHONE": sign(&device, &keys)}});
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            Some(json!({"device_keys": keys})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let master_key = json!({"user_id": "@alice:localhost", "usage": ["master"],
        "keys": {format!("ed25519:{}", public(&master)): public(&master)}});
    let mut self_signing_key = json!({"user_id": "@alice:localhost", "usage": ["self_signing"],
        "keys": {format!("ed25519:{}", public(&self_signing)): public(&self_signing)}});
    self_signing_key["signatures"] = json!({"@alice:localhost":
        {format!("ed25519:{}", public(&master)): sign(&master, &self_signing_key)}});
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            Some(json!({"master_key": master_key, "self_signing_key": self_signing_key})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let upload = "/_matrix/client/v3/keys/signatures/upload";
    let by_self_signing = format!("ed25519:{}", public(&self_signing));

    // Mallory replaces Alice's signatures and adds her own: refused, nothing changes.
    let mut forged = keys.clone();
    forged["signatures"]["@alice:localhost"]["ed25519:ALICEPHONE"] = json!("replaced");
    forged["signatures"]["@alice:localhost"][&by_self_signing] = json!("forged");
    forged["signatures"]["@mallory:localhost"] = json!({"ed25519:MALLORYDEV": "whatever"});
    let (status, body) = server
        .call(
            "POST",
            upload,
            Some(&mallory),
            Some(json!({"@alice:localhost": {"ALICEPHONE": forged}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"]["@alice:localhost"]["ALICEPHONE"]["errcode"].is_string(), "{body}");
    let stored = device_signatures(&server, &mallory, "@alice:localhost", "ALICEPHONE").await;
    assert_eq!(stored, keys["signatures"], "Alice's signatures are untouched");

    // Alice's own signature that does not verify is refused too.
    let mut bad = keys.clone();
    bad["signatures"]["@alice:localhost"][&by_self_signing] = json!(sign(&master, &keys));
    let (_, body) = server
        .call("POST", upload, Some(&alice), Some(json!({"@alice:localhost": {"ALICEPHONE": bad}})))
        .await;
    assert_eq!(
        body["failures"]["@alice:localhost"]["ALICEPHONE"]["errcode"], "M_INVALID_SIGNATURE",
        "{body}"
    );

    // Her self-signing key's real signature is added beside the device's own.
    let mut good = keys.clone();
    good["signatures"]["@alice:localhost"][&by_self_signing] = json!(sign(&self_signing, &keys));
    let (_, body) = server
        .call("POST", upload, Some(&alice), Some(json!({"@alice:localhost": {"ALICEPHONE": good}})))
        .await;
    assert_eq!(body["failures"], json!({}), "{body}");
    let stored = device_signatures(&server, &mallory, "@alice:localhost", "ALICEPHONE").await;
    assert_eq!(stored, good["signatures"]);
}
