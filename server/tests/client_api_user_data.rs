//! Profile, filters, account data (and its delivery through /sync), push rules and the
//! key-backup probe, over real HTTP.

mod support;

use std::time::Duration;

use serde_json::{Value, json};

#[tokio::test]
async fn profile_fields_are_set_by_their_owner_only() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let bob = server.register("bob", "pw").await;
    let (status, _) = server
        .call(
            "PUT",
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&alice),
            Some(json!({"displayname": "Alice A."})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .call(
            "PUT",
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&bob),
            Some(json!({"displayname": "hacked"})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")));
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/profile/@alice:localhost", Some(&bob), None).await;
    assert_eq!((status, body["displayname"].as_str()), (200, Some("Alice A.")), "{body}");
    let (status, body) = server
        .call("GET", "/_matrix/client/v3/profile/@alice:localhost/displayname", Some(&bob), None)
        .await;
    assert_eq!((status, body["displayname"].as_str()), (200, Some("Alice A.")), "{body}");
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/profile/@nobody:localhost", Some(&bob), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
}

#[tokio::test]
async fn profiles_are_shown_only_to_logged_in_users() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let (status, _) = server
        .call(
            "PUT",
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&alice),
            Some(json!({"displayname": "Alice A."})),
        )
        .await;
    assert_eq!(status, 200);
    for path in [
        "/_matrix/client/v3/profile/@alice:localhost",
        "/_matrix/client/v3/profile/@alice:localhost/displayname",
        "/_matrix/client/v3/profile/@alice:localhost/avatar_url",
        "/_matrix/client/r0/profile/@alice:localhost",
    ] {
        let (status, body) = server.call("GET", path, None, None).await;
        assert_eq!(
            (status, body["errcode"].as_str()),
            (401, Some("M_MISSING_TOKEN")),
            "{path}: {body}"
        );
        let (status, body) = server.call("GET", path, Some(&alice), None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
}

#[tokio::test]
async fn filters_are_stored_by_id_and_sync_accepts_them_inline_too() {
    let server = support::start().await;
    let token = server.register("filterer", "pw").await;
    let filter = json!({"room": {"timeline": {"limit": 10}}});
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/user/@filterer:localhost/filter",
            Some(&token),
            Some(filter),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let filter_id = body["filter_id"].as_str().unwrap().to_owned();
    let (status, body) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/user/@filterer:localhost/filter/{filter_id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, body["room"]["timeline"]["limit"].as_u64()), (200, Some(10)), "{body}");
    let (status, _) = server
        .call("GET", &format!("/_matrix/client/v3/sync?filter={filter_id}"), Some(&token), None)
        .await;
    assert_eq!(status, 200);
    let inline = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A5%7D%7D%7D";
    let (status, body) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/sync?filter={inline}&_cacheBuster=1"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["device_unused_fallback_key_types"].is_array(), "always present: {body}");
}

#[tokio::test]
async fn account_data_is_stored_and_wakes_a_waiting_sync() {
    let server = support::start().await;
    let token = server.register("carol", "pw").await;
    let since =
        server.call("GET", "/_matrix/client/v3/sync", Some(&token), None).await.1["next_batch"]
            .as_str()
            .unwrap()
            .to_owned();

    let waiting = {
        let (base, token, since) = (server.base.clone(), token.clone(), since.clone());
        tokio::spawn(async move {
            reqwest::Client::new()
                .get(format!("{base}/_matrix/client/v3/sync?since={since}&timeout=20000"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = server
        .call(
            "PUT",
            "/_matrix/client/v3/user/@carol:localhost/account_data/m.secret_storage.default_key",
            Some(&token),
            Some(json!({"key": "abc"})),
        )
        .await;
    assert_eq!(status, 200);
    let response = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("sync woke up")
        .unwrap();
    let events = response["account_data"]["events"].as_array().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.secret_storage.default_key" && e["content"]["key"] == "abc"),
        "{response}"
    );

    let (status, body) = server
        .call(
            "GET",
            "/_matrix/client/v3/user/@carol:localhost/account_data/m.secret_storage.default_key",
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, body["key"].as_str()), (200, Some("abc")));
    let (status, body) = server
        .call(
            "GET",
            "/_matrix/client/v3/user/@carol:localhost/account_data/m.nothing",
            Some(&token),
            None,
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));

    // Per-room account data appears in that room of an initial sync.
    let (_, created) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&token), Some(json!({}))).await;
    let room = created["room_id"].as_str().unwrap();
    let (status, _) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/user/@carol:localhost/rooms/{room}/account_data/m.tag"),
            Some(&token),
            Some(json!({"tags": {"m.favourite": {}}})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, initial) = server.call("GET", "/_matrix/client/v3/sync", Some(&token), None).await;
    let room_data = initial["rooms"]["join"][room]["account_data"]["events"].as_array().unwrap();
    assert!(room_data.iter().any(|e| e["type"] == "m.tag"), "{initial}");
}

#[tokio::test]
async fn push_rules_are_the_spec_defaults_and_no_backup_is_a_404() {
    let server = support::start().await;
    let token = server.register("dave", "pw").await;
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/pushrules/", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    let overrides = body["global"]["override"].as_array().unwrap();
    assert!(overrides.iter().any(|rule| rule["rule_id"] == ".m.rule.master"), "{body}");
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/room_keys/version", Some(&token), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");
}
