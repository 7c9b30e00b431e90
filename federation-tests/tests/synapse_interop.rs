//! Medrix and Synapse, the reference homeserver, federating over TLS on loopback: each fetches
//! and vouches for the other's signing keys, verifies the other's X-Matrix requests, and
//! answers the other's profile and end-to-end-encryption key queries for its users. Both are
//! named `127.0.0.1:<port>` (Synapse resolves names itself; an IP literal needs no DNS), with
//! certificates for that IP from the test net's CA, which each trusts.

use medrix_federation_tests::{FederatingServer, TestNet, synapse::SynapseServer};
use medrix_protocol::{
    canonical::object_from_value,
    keys::{VerifyKeys, verify_json},
    ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName},
    server_keys::{RemoteServerKeys, check_key_document, check_key_object},
};
use serde_json::{Value, json};

/// A server's own key document, fetched over TLS and checked against its name.
async fn own_keys(https: &reqwest::Client, url: &str, server_name: &str) -> RemoteServerKeys {
    let body = https.get(url).send().await.expect("TLS with the net's CA").bytes().await.unwrap();
    check_key_document(&body, &ServerName::parse(server_name).unwrap())
        .unwrap_or_else(|err| panic!("{server_name}'s key document: {err}"))
}

/// Checks a notarised key document: its origin's self-signature and the notary's signature.
fn assert_vouched(document: &Value, origin: &str, notary: &str, notary_keys: &RemoteServerKeys) {
    let document = object_from_value(document.clone()).unwrap();
    check_key_object(&document, &ServerName::parse(origin).unwrap())
        .unwrap_or_else(|err| panic!("{origin}'s own signature: {err}"));
    let mut keys = VerifyKeys::default();
    for (key_id, key) in &notary_keys.verify_keys {
        keys.insert_base64(notary, key_id, key).unwrap();
    }
    verify_json(&only_signed_by(document, notary), &keys)
        .unwrap_or_else(|err| panic!("{notary}'s notary signature on {origin}'s keys: {err}"));
}

/// Asks a notary (`url`, its `/_matrix/key/v2/query`) about one server; returns the one
/// document it answers.
async fn notarised(https: &reqwest::Client, url: &str, query: Value) -> Value {
    let response = https.post(url).json(&query).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let answer: Value = response.json().await.unwrap();
    let documents = answer["server_keys"].as_array().unwrap();
    assert_eq!(documents.len(), 1, "{answer}");
    documents[0].clone()
}

fn only_signed_by(mut document: CanonicalJsonObject, server: &str) -> CanonicalJsonObject {
    if let Some(CanonicalJsonValue::Object(signatures)) = document.get_mut("signatures") {
        assert!(signatures.contains_key(server), "no signature by {server}");
        signatures.retain(|signer, _| signer == server);
    }
    document
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medrix_and_synapse_fetch_and_vouch_for_each_others_keys() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;
    let https = net.https_client(&[]);
    let medrix_keys =
        own_keys(&https, &medrix.federation_url("/_matrix/key/v2/server"), &medrix.server_name)
            .await;
    let synapse_keys =
        own_keys(&https, &synapse.federation_url("/_matrix/key/v2/server"), &synapse.server_name)
            .await;

    // Medrix, asked as a notary, fetches Synapse's keys from Synapse over TLS and signs them.
    let query = json!({"server_keys": {&synapse.server_name: {}}});
    let document = notarised(&https, &medrix.federation_url("/_matrix/key/v2/query"), query).await;
    assert_vouched(&document, &synapse.server_name, &medrix.server_name, &medrix_keys);

    // Synapse, asked as a notary for Medrix's current key, fetches it from Medrix and signs it.
    // (Asked for "all keys" with no key ID, Synapse answers from its cache alone; and it
    // insists on `minimum_valid_until_ts` in the criteria.)
    let key_id = medrix_keys.verify_keys.keys().next().unwrap();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as u64;
    let criteria = json!({key_id: {"minimum_valid_until_ts": now_ms}});
    let query = json!({"server_keys": {&medrix.server_name: criteria}});
    let document = notarised(&https, &synapse.federation_url("/_matrix/key/v2/query"), query).await;
    assert_vouched(&document, &medrix.server_name, &synapse.server_name, &synapse_keys);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_looked_up_across_medrix_and_synapse() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let alice_id = medrix.user_id("alice");
    let alice = medrix.server.register("alice", "pw").await;
    let path = format!("/_matrix/client/v3/profile/{alice_id}/displayname");
    let body = json!({"displayname": "Dr Alice"});
    assert_eq!(medrix.server.call("PUT", &path, Some(&alice), Some(body)).await.0, 200);
    let bob = synapse.register("bob", "a long password").await;
    let path = format!("/_matrix/client/v3/profile/{}/displayname", bob.user_id);
    let body = json!({"displayname": "Bob at Synapse"});
    let (status, answer) = synapse.call("PUT", &path, Some(&bob.access_token), Some(body)).await;
    assert_eq!(status, 200, "{answer}");

    // Synapse signs a profile query to Medrix, which answers only servers sharing a room
    // with the user: none yet, so Synapse's user learns nothing.
    let (status, profile) = synapse
        .call(
            "GET",
            &format!("/_matrix/client/v3/profile/{alice_id}"),
            Some(&bob.access_token),
            None,
        )
        .await;
    assert_eq!(status, 404, "{profile}");

    // Medrix signs one to Synapse; Synapse fetches Medrix's keys to verify it.
    let (status, profile) = medrix
        .server
        .call("GET", &format!("/_matrix/client/v3/profile/{}", bob.user_id), Some(&alice), None)
        .await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["displayname"], "Bob at Synapse");

    // A user who does not exist is a 404 either way, not an error of the federation.
    let nobody = medrix.user_id("nobody");
    let (status, body) = synapse
        .call("GET", &format!("/_matrix/client/v3/profile/{nobody}"), Some(&bob.access_token), None)
        .await;
    assert_eq!(status, 404, "{body}");
    let nobody = synapse.user_id("nobody");
    let (status, body) = medrix
        .server
        .call("GET", &format!("/_matrix/client/v3/profile/{nobody}"), Some(&alice), None)
        .await;
    assert_eq!(status, 404, "{body}");
}

/// A device's keys and one one-time key (the server does not check their cryptography; the
/// clients that use them do).
fn key_upload(user_id: &str, device_id: &str, tag: &str) -> Value {
    json!({
        "device_keys": {
            "user_id": user_id, "device_id": device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                format!("curve25519:{device_id}"): format!("{tag}-curve"),
                format!("ed25519:{device_id}"): format!("{tag}-ed"),
            },
            "signatures": {user_id: {format!("ed25519:{device_id}"): format!("{tag}-sig")}},
        },
        "one_time_keys": {
            "signed_curve25519:AAAAAQ": {"key": format!("{tag}-otk"), "signatures": {}},
        },
    })
}

async fn medrix_device(medrix: &FederatingServer, token: &str) -> String {
    let (status, whoami) =
        medrix.server.call("GET", "/_matrix/client/v3/account/whoami", Some(token), None).await;
    assert_eq!(status, 200, "{whoami}");
    whoami["device_id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_keys_and_one_time_keys_cross_between_medrix_and_synapse() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let alice_id = medrix.user_id("alice");
    let alice = medrix.server.register("alice", "pw").await;
    let alice_device = medrix_device(&medrix, &alice).await;
    let upload = key_upload(&alice_id, &alice_device, "alice");
    let (status, body) = medrix
        .server
        .call("POST", "/_matrix/client/v3/keys/upload", Some(&alice), Some(upload))
        .await;
    assert_eq!(status, 200, "{body}");
    let bob = synapse.register("bob", "a long password").await;
    let upload = key_upload(&bob.user_id, &bob.device_id, "bob");
    let (status, body) = synapse
        .call("POST", "/_matrix/client/v3/keys/upload", Some(&bob.access_token), Some(upload))
        .await;
    assert_eq!(status, 200, "{body}");

    // Bob's client asks Synapse for Alice's devices; Synapse asks Medrix.
    let query = |user_id: &str| json!({"device_keys": {user_id: []}});
    let (status, keys) = synapse
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(&bob.access_token),
            Some(query(&alice_id)),
        )
        .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    let device = &keys["device_keys"][&alice_id][&alice_device];
    assert_eq!(device["keys"][format!("ed25519:{alice_device}")], "alice-ed", "{keys}");

    // Alice's client asks Medrix for Bob's; Medrix asks Synapse.
    let (status, keys) = medrix
        .server
        .call("POST", "/_matrix/client/v3/keys/query", Some(&alice), Some(query(&bob.user_id)))
        .await;
    assert_eq!(status, 200, "{keys}");
    assert_eq!(keys["failures"], json!({}), "{keys}");
    let device = &keys["device_keys"][&bob.user_id][&bob.device_id];
    assert_eq!(device["keys"][format!("ed25519:{}", bob.device_id)], "bob-ed", "{keys}");

    // Each claims the other's one-time key through its own server.
    let claim = |user_id: &str, device_id: &str| json!({"one_time_keys": {user_id: {device_id: "signed_curve25519"}}});
    let (status, claimed) = synapse
        .call(
            "POST",
            "/_matrix/client/v3/keys/claim",
            Some(&bob.access_token),
            Some(claim(&alice_id, &alice_device)),
        )
        .await;
    assert_eq!(status, 200, "{claimed}");
    let key = &claimed["one_time_keys"][&alice_id][&alice_device]["signed_curve25519:AAAAAQ"];
    assert_eq!(key["key"], "alice-otk", "{claimed}");
    let (status, claimed) = medrix
        .server
        .call(
            "POST",
            "/_matrix/client/v3/keys/claim",
            Some(&alice),
            Some(claim(&bob.user_id, &bob.device_id)),
        )
        .await;
    assert_eq!(status, 200, "{claimed}");
    let key = &claimed["one_time_keys"][&bob.user_id][&bob.device_id]["signed_curve25519:AAAAAQ"];
    assert_eq!(key["key"], "bob-otk", "{claimed}");
}
