//! Servers recognise each other: published, self-signed keys; requests signed with X-Matrix
//! and verified against the origin's fetched keys; a closed federation refuses outsiders in
//! both directions; forged or unsigned requests are refused. Carried here by the key query,
//! the simplest request one server makes to another for its users that needs no shared
//! room. A profile is answered only to a server sharing a room with its user.

use medrix_federation_tests::{FederatingServer, TestNet};
use medrix_protocol::{
    canonical::object_from_value,
    keys::{VerifyKeys, verify_json},
    ruma::{CanonicalJsonValue, ServerName},
    server_keys::{check_key_document, check_key_object},
};
use serde_json::{Value, json};

async fn post_json(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Whether a key query for `user_id` that `from` makes for one of its users (`token`) is
/// answered by the user's server: a signed request, checked there.
async fn key_query_answered(from: &FederatingServer, token: &str, user_id: &str) -> bool {
    let query = json!({"device_keys": {user_id: []}});
    let (status, body) =
        from.server.call("POST", "/_matrix/client/v3/keys/query", Some(token), Some(query)).await;
    assert_eq!(status, 200, "{body}");
    body["failures"].as_object().is_some_and(|failures| failures.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_verify_each_other_and_a_closed_federation_refuses_outsiders() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital", "outsider"]).await;
    // The hospital runs a closed federation: the clinic only (its name carries its port).
    let hospital_allow = [clinic.server_name.as_str()];
    let hospital = net.start("hospital", &hospital_allow, &["clinic", "outsider"]).await;
    let outsider = net.start("outsider", &[], &["hospital", "clinic"]).await;

    // Each server publishes a self-signed key document over TLS with a certificate for its name.
    let https = net.https_client(&[&hospital, &clinic, &outsider]);
    let body = https
        .get(hospital.federation_url("/_matrix/key/v2/server"))
        .send()
        .await
        .expect("TLS with the CA's certificate")
        .bytes()
        .await
        .unwrap();
    let hospital_name = ServerName::parse(&hospital.server_name).unwrap();
    let keys = check_key_document(&body, &hospital_name).expect("a valid self-signed document");
    assert_eq!(keys.verify_keys.len(), 1);

    // A clinic user looks up a hospital user's keys: the clinic signs the request, the
    // hospital fetches the clinic's keys and verifies it.
    let alice = hospital.server.register("alice", "pw").await;
    let alice_id = format!("@alice:{}", hospital.server_name);
    let bob = clinic.server.register("bob", "pw").await;
    assert!(key_query_answered(&clinic, &bob, &alice_id).await);

    // The hospital, now holding the clinic's keys, vouches for them as a notary: the
    // clinic's document comes back signed by both. It vouches for no server outside its list.
    let (status, notarised) = post_json(
        &https,
        &hospital.federation_url("/_matrix/key/v2/query"),
        json!({"server_keys": {&clinic.server_name: {}, &outsider.server_name: {}}}),
    )
    .await;
    assert_eq!(status, 200, "{notarised}");
    let documents = notarised["server_keys"].as_array().unwrap();
    assert_eq!(documents.len(), 1, "only the clinic: {notarised}");
    let clinic_name = ServerName::parse(&clinic.server_name).unwrap();
    let document = object_from_value(documents[0].clone()).unwrap();
    check_key_object(&document, &clinic_name).expect("the clinic's own signature holds");
    let mut hospital_keys = VerifyKeys::default();
    for (key_id, key) in &keys.verify_keys {
        hospital_keys.insert_base64(&hospital.server_name, key_id, key).unwrap();
    }
    let mut only_hospital = document.clone();
    let signatures = only_hospital.get_mut("signatures").unwrap();
    if let CanonicalJsonValue::Object(signatures) = signatures {
        signatures.retain(|server, _| *server == hospital.server_name);
    }
    verify_json(&only_hospital, &hospital_keys).expect("the hospital's notary signature holds");

    // The outsider is not on the hospital's list: its query is refused...
    let eve = outsider.server.register("eve", "pw").await;
    assert!(!key_query_answered(&outsider, &eve, &alice_id).await, "the outsider learns nothing");
    // ...and the hospital sends nothing to it.
    let eve_id = format!("@eve:{}", outsider.server_name);
    assert!(!key_query_answered(&hospital, &alice, &eve_id).await);

    // Unsigned and forged requests are refused with M_UNAUTHORIZED.
    let query = hospital.federation_url(&format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        alice_id.replace(':', "%3A").replace('@', "%40")
    ));
    let response = https.get(&query).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_UNAUTHORIZED");
    let forged = format!(
        "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:mdx1\",sig=\"{}\"",
        clinic.server_name,
        hospital.server_name,
        "A".repeat(86)
    );
    let response = https.get(&query).header("authorization", forged).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{body}");

    // A large body (its signature checked on the bytes as sent, beside the parse) is held to
    // its signature all the same: one changed byte, and the request is refused.
    let uri = "/_matrix/federation/v1/send/large-1";
    let padded = |text: &str| {
        json!({
            "origin": clinic.server_name, "origin_server_ts": 1, "pdus": [],
            "edus": [{ "edu_type": "org.medrix.test.padding",
                       "content": { "text": text.repeat(20_000) } }],
        })
    };
    let signed = padded("a");
    let header = clinic.x_matrix(&hospital, "PUT", uri, Some(&signed));
    for (body, status) in [(padded("b"), 401), (signed, 200)] {
        let response = https
            .put(hospital.federation_url(uri))
            .header("authorization", &header)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status);
    }
    // Each refusal for a bad signature is counted (the forged header above, the changed body).
    assert_eq!(hospital.bad_signatures_refused().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_picked_up_and_the_old_one_stays_published() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let mut hospital = net.start("hospital", &[], &["clinic"]).await;
    clinic.server.register("bob", "pw").await;
    let bob_id = format!("@bob:{}", clinic.server_name);
    let alice = hospital.server.register("alice", "pw").await;
    // The clinic caches the hospital's first key while verifying this request.
    assert!(key_query_answered(&hospital, &alice, &bob_id).await);

    let (binary, name) = (hospital.server.binary().to_owned(), hospital.server_name.clone());
    hospital
        .server
        .restart_with(|data_dir| {
            let status = std::process::Command::new(&binary)
                .args([
                    "keys",
                    "rotate",
                    "--data-dir",
                    data_dir.to_str().unwrap(),
                    "--server-name",
                    &name,
                ])
                .status()
                .unwrap();
            assert!(status.success());
        })
        .await;

    // Requests now carry the new key ID; the clinic fetches it and accepts them.
    assert!(key_query_answered(&hospital, &alice, &bob_id).await);
    let https = net.https_client(&[&hospital]);
    let body = https
        .get(hospital.federation_url("/_matrix/key/v2/server"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let keys =
        check_key_document(&body, &ServerName::parse(&hospital.server_name).unwrap()).unwrap();
    assert!(keys.verify_keys.contains_key("ed25519:mdx2"), "{keys:?}");
    assert!(keys.old_verify_keys.contains_key("ed25519:mdx1"), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_is_answered_only_to_a_server_sharing_a_room_with_its_user() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let alice = hospital.server.register("alice", "pw").await;
    let alice_id = format!("@alice:{}", hospital.server_name);
    let path = format!("/_matrix/client/v3/profile/{alice_id}/displayname");
    let body = json!({"displayname": "Dr Alice"});
    assert_eq!(hospital.server.call("PUT", &path, Some(&alice), Some(body)).await.0, 200);
    let bob = clinic.server.register("bob", "pw").await;
    let query = format!(
        "/_matrix/federation/v1/query/profile?user_id={}",
        alice_id.replace(':', "%3A").replace('@', "%40")
    );

    // Sharing no room, the clinic learns nothing, not even that Alice has an account.
    let (status, body) = net.signed_request(&clinic, &hospital, "GET", &query, None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
    let nobody = query.replace("alice", "nobody");
    let (_, unknown) = net.signed_request(&clinic, &hospital, "GET", &nobody, None).await;
    assert_eq!(unknown["errcode"], body["errcode"]);

    // Once Bob joins a room Alice is in, the clinic's users see her name.
    let (status, created) = hospital
        .server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            Some(json!({"preset": "public_chat"})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap();
    let join = format!("/_matrix/client/v3/join/{room}?via={}", hospital.server_name);
    let (status, body) = clinic.server.call("POST", &join, Some(&bob), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, profile) = net.signed_request(&clinic, &hospital, "GET", &query, None).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["displayname"], "Dr Alice");
}
