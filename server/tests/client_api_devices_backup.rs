//! Account management and key backup over real HTTP: the devices API with its password
//! step, password change, deactivation, and `/room_keys` versions and keys.

mod support;

use serde_json::{Value, json};
use support::TestServer;

async fn login(server: &TestServer, user: &str, password: &str, device: &str) -> (u16, Value) {
    server
        .call(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user}, "password": password,
            "device_id": device, "initial_device_display_name": format!("{device} phone")})),
        )
        .await
}

fn password_auth(user: &str, password: &str, session: &Value) -> Value {
    json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
        "password": password, "session": session})
}

#[tokio::test]
async fn devices_are_listed_renamed_and_deleted_only_with_the_password() {
    let server = support::start().await;
    server.register("alice", "pw-alice").await;
    let (_, first) = login(&server, "alice", "pw-alice", "PHONE").await;
    let (_, second) = login(&server, "alice", "pw-alice", "LAPTOP").await;
    let phone = first["access_token"].as_str().unwrap();
    let laptop = second["access_token"].as_str().unwrap();

    let (status, body) = server.call("GET", "/_matrix/client/v3/devices", Some(phone), None).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"PHONE") && ids.contains(&"LAPTOP"), "{body}");

    let (status, _) = server
        .call(
            "PUT",
            "/_matrix/client/v3/devices/LAPTOP",
            Some(phone),
            Some(json!({"display_name": "work laptop"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) =
        server.call("GET", "/_matrix/client/v3/devices/LAPTOP", Some(phone), None).await;
    assert_eq!(body["display_name"], "work laptop");
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/devices/NOPE", Some(phone), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));

    // Deleting asks for the password first, refuses a wrong one, then deletes.
    let (status, challenge) = server
        .call("DELETE", "/_matrix/client/v3/devices/LAPTOP", Some(phone), Some(json!({})))
        .await;
    assert_eq!(status, 401, "{challenge}");
    assert_eq!(challenge["flows"][0]["stages"][0], "m.login.password");
    let session = &challenge["session"];
    let (status, body) = server
        .call(
            "DELETE",
            "/_matrix/client/v3/devices/LAPTOP",
            Some(phone),
            Some(json!({"auth": password_auth("alice", "wrong", session)})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_FORBIDDEN")));
    let (status, _) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(laptop), None).await;
    assert_eq!(status, 200, "the laptop is still logged in");
    let (status, body) = server
        .call(
            "DELETE",
            "/_matrix/client/v3/devices/LAPTOP",
            Some(phone),
            Some(json!({"auth": password_auth("@alice:localhost", "pw-alice", session)})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(laptop), None).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));

    // Bulk delete, same rule; unknown devices are skipped.
    let (_, third) = login(&server, "alice", "pw-alice", "TABLET").await;
    let (status, challenge) = server
        .call(
            "POST",
            "/_matrix/client/v3/delete_devices",
            Some(phone),
            Some(json!({"devices": ["TABLET", "GONE"]})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = server
        .call(
            "POST",
            "/_matrix/client/v3/delete_devices",
            Some(phone),
            Some(json!({"devices": ["TABLET", "GONE"],
            "auth": password_auth("alice", "pw-alice", &challenge["session"])})),
        )
        .await;
    assert_eq!(status, 200);
    let tablet = third["access_token"].as_str().unwrap();
    let (status, _) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(tablet), None).await;
    assert_eq!(status, 401);
    let (_, body) = server.call("GET", "/_matrix/client/v3/devices", Some(phone), None).await;
    // Left: the device registration made, and the phone.
    assert_eq!(body["devices"].as_array().unwrap().len(), 2, "{body}");
}

#[tokio::test]
async fn password_change_logs_out_other_devices_and_deactivation_closes_the_account() {
    let server = support::start().await;
    let first = server.register("bob", "old-password").await;
    let (_, other) = login(&server, "bob", "old-password", "OTHER").await;
    let other = other["access_token"].as_str().unwrap();
    let carol = server.register("carol", "pw-carol").await;
    let (_, room) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&carol),
            Some(json!({"preset": "public_chat"})),
        )
        .await;
    let room_id = room["room_id"].as_str().unwrap();
    let (status, _) = server
        .call("POST", &format!("/_matrix/client/v3/join/{room_id}"), Some(&first), Some(json!({})))
        .await;
    assert_eq!(status, 200);

    let (status, challenge) = server
        .call(
            "POST",
            "/_matrix/client/v3/account/password",
            Some(&first),
            Some(json!({"new_password": "new-password"})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/account/password",
            Some(&first),
            Some(json!({"new_password": "new-password",
            "auth": password_auth("bob", "old-password", &challenge["session"])})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(&first), None).await.0,
        200
    );
    assert_eq!(
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(other), None).await.0,
        401
    );
    assert_eq!(login(&server, "bob", "old-password", "X").await.0, 403);
    assert_eq!(login(&server, "bob", "new-password", "Y").await.0, 200);

    let (status, challenge) = server
        .call("POST", "/_matrix/client/v3/account/deactivate", Some(&first), Some(json!({})))
        .await;
    assert_eq!(status, 401);
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/account/deactivate",
            Some(&first),
            Some(json!({"auth": password_auth("bob", "new-password", &challenge["session"])})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    assert_eq!(
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(&first), None).await.0,
        401
    );
    assert_eq!(login(&server, "bob", "new-password", "Z").await.0, 403);
    // The user ID stays taken, and the user left the room.
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "bob", "password": "x",
            "auth": {"type": "m.login.registration_token", "token": support::REGISTRATION_TOKEN}})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_USER_IN_USE")));
    let (_, members) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room_id}/joined_members"),
            Some(&carol),
            None,
        )
        .await;
    assert!(members["joined"].get("@bob:localhost").is_none(), "{members}");
}

fn backup_key(index: u64, verified: bool, ciphertext: &str) -> Value {
    json!({"first_message_index": index, "forwarded_count": 0, "is_verified": verified,
        "session_data": {"ephemeral": "ZXBo", "ciphertext": ciphertext, "mac": "bWFj"}})
}

#[tokio::test]
async fn key_backup_keeps_the_better_copy_and_only_accepts_the_current_version() {
    let server = support::start().await;
    let alice = server.register("alice", "pw").await;
    let algorithm = json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "cHVibGlj", "signatures": {}}});

    let (status, body) =
        server.call("GET", "/_matrix/client/v3/room_keys/version", Some(&alice), None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")));
    let (status, body) = server
        .call("POST", "/_matrix/client/v3/room_keys/version", Some(&alice), Some(algorithm.clone()))
        .await;
    assert_eq!(status, 200, "{body}");
    let first = body["version"].as_str().unwrap().to_owned();

    let keys_path = format!("/_matrix/client/v3/room_keys/keys?version={first}");
    let (status, body) = server
        .call(
            "PUT",
            &keys_path,
            Some(&alice),
            Some(json!({"rooms": {"!r:localhost": {"sessions": {
            "S1": backup_key(5, false, "first"), "S2": backup_key(0, false, "two")}}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"], 2);
    let etag = body["etag"].clone();
    // A worse copy (later index) is ignored; a better one (verified) replaces.
    let session_path = format!("/_matrix/client/v3/room_keys/keys/!r:localhost/S1?version={first}");
    let (_, body) =
        server.call("PUT", &session_path, Some(&alice), Some(backup_key(9, false, "worse"))).await;
    assert_eq!((body["count"].clone(), body["etag"].clone()), (json!(2), etag));
    let (_, body) =
        server.call("PUT", &session_path, Some(&alice), Some(backup_key(7, true, "better"))).await;
    assert_eq!(body["count"], 2);
    let (status, body) = server.call("GET", &session_path, Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(body["session_data"]["ciphertext"], "better");
    let (_, body) = server.call("GET", &keys_path, Some(&alice), None).await;
    assert_eq!(body["rooms"]["!r:localhost"]["sessions"].as_object().unwrap().len(), 2, "{body}");
    let (_, body) =
        server.call("GET", "/_matrix/client/v3/room_keys/version", Some(&alice), None).await;
    assert_eq!((body["version"].as_str(), body["count"].clone()), (Some(first.as_str()), json!(2)));

    // A new version becomes current: writes to the old one are refused with the new number.
    let (_, body) = server
        .call("POST", "/_matrix/client/v3/room_keys/version", Some(&alice), Some(algorithm.clone()))
        .await;
    let second = body["version"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    let (status, body) =
        server.call("PUT", &session_path, Some(&alice), Some(backup_key(0, true, "x"))).await;
    assert_eq!(status, 403);
    assert_eq!(body["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(body["current_version"], second.as_str());

    // The algorithm of a version cannot change; deleting removes it and its keys.
    let (status, body) = server
        .call(
            "PUT",
            &format!("/_matrix/client/v3/room_keys/version/{second}"),
            Some(&alice),
            Some(json!({"algorithm": "other", "auth_data": {}})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_PARAM")));
    let (status, _) = server
        .call(
            "DELETE",
            &format!("/_matrix/client/v3/room_keys/version/{first}"),
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.call("GET", &keys_path, Some(&alice), None).await;
    assert_eq!(status, 404);

    // Another user sees none of it, and the backup survives a crash.
    let bob = server.register("bob", "pw").await;
    let (status, _) =
        server.call("GET", "/_matrix/client/v3/room_keys/version", Some(&bob), None).await;
    assert_eq!(status, 404);
    let mut server = server;
    server.crash_and_restart().await;
    let (_, body) =
        server.call("GET", "/_matrix/client/v3/room_keys/version", Some(&alice), None).await;
    assert_eq!(body["version"].as_str(), Some(second.as_str()));
}
