//! An adversarial client against every endpoint family: bodies that are not JSON, JSON of the
//! wrong shape, JSON nested past any parser's patience, bodies far over the size limit, and
//! fields of the wrong type. Each answer must be a Matrix error (a 4xx with an `errcode`, or
//! user-interactive auth's 401), never a 5xx or a dropped connection; the server must stay up;
//! and nothing stored may change (the user's whole `/sync`, devices, profile, key backup and
//! keys read the same before and after).

mod support;

use serde_json::{Value, json};
use support::TestServer;

/// The endpoints, as (method, path); `{room}` stands for a room the user is in.
const ENDPOINTS: &[(&str, &str)] = &[
    ("POST", "/_matrix/client/v3/register"),
    ("POST", "/_matrix/client/v3/login"),
    ("POST", "/_matrix/client/v3/account/password"),
    ("POST", "/_matrix/client/v3/account/deactivate"),
    ("PUT", "/_matrix/client/v3/devices/NOSUCHDEVICE"),
    ("POST", "/_matrix/client/v3/delete_devices"),
    ("POST", "/_matrix/client/v3/createRoom"),
    ("PUT", "/_matrix/client/v3/rooms/{room}/send/m.room.message/adv"),
    ("PUT", "/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
    ("POST", "/_matrix/client/v3/rooms/{room}/invite"),
    ("POST", "/_matrix/client/v3/rooms/{room}/kick"),
    ("POST", "/_matrix/client/v3/rooms/{room}/ban"),
    ("POST", "/_matrix/client/v3/rooms/{room}/unban"),
    ("POST", "/_matrix/client/v3/rooms/{room}/leave"),
    ("POST", "/_matrix/client/v3/join/{room}"),
    ("PUT", "/_matrix/client/v3/rooms/{room}/redact/$nosuchevent/adv"),
    ("POST", "/_matrix/client/v3/rooms/{room}/receipt/m.read/$nosuchevent"),
    ("POST", "/_matrix/client/v3/rooms/{room}/read_markers"),
    ("PUT", "/_matrix/client/v3/rooms/{room}/typing/@patient:localhost"),
    ("PUT", "/_matrix/client/v3/directory/room/%23adv:localhost"),
    ("PUT", "/_matrix/client/v3/profile/@patient:localhost/displayname"),
    ("PUT", "/_matrix/client/v3/profile/@patient:localhost/avatar_url"),
    ("POST", "/_matrix/client/v3/user/@patient:localhost/filter"),
    ("PUT", "/_matrix/client/v3/user/@patient:localhost/account_data/org.example.adv"),
    ("PUT", "/_matrix/client/v3/user/@patient:localhost/rooms/{room}/account_data/org.example.adv"),
    ("PUT", "/_matrix/client/v3/user/@patient:localhost/rooms/{room}/tags/adv"),
    ("POST", "/_matrix/client/v3/room_keys/version"),
    ("PUT", "/_matrix/client/v3/room_keys/keys?version=1"),
    ("POST", "/_matrix/client/v3/keys/upload"),
    ("POST", "/_matrix/client/v3/keys/query"),
    ("POST", "/_matrix/client/v3/keys/claim"),
    ("POST", "/_matrix/client/v3/keys/device_signing/upload"),
    ("POST", "/_matrix/client/v3/keys/signatures/upload"),
    ("PUT", "/_matrix/client/v3/sendToDevice/m.room.encrypted/adv"),
];

/// Bodies no endpoint accepts.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}{}", "{\"a\":".repeat(20_000), "}".repeat(20_000));
    let huge = format!("{{\"a\":\"{}\"}}", "x".repeat(4 * 1024 * 1024));
    vec![
        ("not JSON", b"{\"msgtype\": ".to_vec()),
        ("not UTF-8", vec![0x7b, 0xff, 0xfe, 0x7d]),
        ("an array", b"[]".to_vec()),
        ("a string", b"\"hello\"".to_vec()),
        ("a number", b"5".to_vec()),
        ("null", b"null".to_vec()),
        ("deeply nested", deep.into_bytes()),
        ("over the size limit", huge.into_bytes()),
    ]
}

/// A body of the right kind (an object) with a field the endpoint knows of the wrong type.
/// (Unknown fields are ignored by design, so only known ones make a body wrong.)
fn wrong_types(path: &str) -> Value {
    let families: &[(&str, Value)] = &[
        ("/register", json!({ "username": 5, "password": [] })),
        ("/login", json!({ "type": {}, "password": false })),
        ("/account/password", json!({ "new_password": 5 })),
        ("/account/deactivate", json!({ "auth": 5 })),
        ("/devices/", json!({ "display_name": 5 })),
        ("/delete_devices", json!({ "devices": "x" })),
        ("/createRoom", json!({ "preset": 5, "invite": "x", "initial_state": {} })),
        ("/invite", json!({ "user_id": 5 })),
        ("/kick", json!({ "user_id": 5 })),
        ("/ban", json!({ "user_id": 5 })),
        ("/unban", json!({ "user_id": [] })),
        ("/leave", json!({ "reason": [] })),
        ("/join/", json!({ "reason": 5 })),
        ("/receipt/", json!({ "thread_id": 5 })),
        ("/read_markers", json!({ "m.fully_read": 5 })),
        ("/typing/", json!({ "typing": "yes", "timeout": "long" })),
        ("/directory/room/", json!({ "room_id": 5 })),
        ("/displayname", json!({ "displayname": 5 })),
        ("/avatar_url", json!({ "avatar_url": 5 })),
        ("/filter", json!({ "room": 5, "event_fields": "x" })),
        ("/tags/", json!({ "order": "first" })),
        ("/room_keys/version", json!({ "algorithm": 5, "auth_data": [] })),
        ("/room_keys/keys", json!({ "rooms": 5 })),
        ("/keys/upload", json!({ "one_time_keys": [], "device_keys": "x" })),
        ("/keys/query", json!({ "device_keys": 5 })),
        ("/keys/claim", json!({ "one_time_keys": [1, 2] })),
        ("/keys/device_signing/upload", json!({ "master_key": 5 })),
        ("/keys/signatures/upload", json!({ "@patient:localhost": 5 })),
        ("/sendToDevice/", json!({ "messages": 5 })),
    ];
    families
        .iter()
        .find(|(part, _)| path.contains(part))
        .map(|(_, body)| body.clone())
        .unwrap_or_else(|| panic!("no wrong-typed body for {path}"))
}

/// Endpoints that take any JSON object as content: a wrong-typed object is a valid body.
fn takes_any_object(path: &str) -> bool {
    ["/send/", "/state/", "/account_data/", "/redact/"].iter().any(|part| path.contains(part))
}

/// The answer must be a Matrix error: 4xx with an `errcode`, or UIA's 401 with `flows`.
fn assert_matrix_error(what: &str, status: u16, body: &Value) {
    assert!((400..500).contains(&status), "{what}: {status} {body}");
    let errcode = body["errcode"].as_str().unwrap_or_default();
    let uia = status == 401 && body.get("flows").is_some();
    assert!(errcode.starts_with("M_") || uia, "{what}: {status} {body}");
}

/// Sends a request; `None` if the connection closed before an answer came.
async fn request(
    server: &TestServer,
    token: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> Option<(u16, Value)> {
    let response = reqwest::Client::new()
        .request(method.parse().unwrap(), server.url(path))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Everything of the user's that the server stores and shows back.
async fn snapshot(server: &TestServer, token: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for path in [
        "/_matrix/client/v3/sync",
        "/_matrix/client/v3/devices",
        "/_matrix/client/v3/profile/@patient:localhost",
        "/_matrix/client/v3/room_keys/version",
        "/_matrix/client/v3/joined_rooms",
    ] {
        let (status, body) = server.call("GET", path, Some(token), None).await;
        out.push(json!({ "path": path, "status": status, "body": body }));
    }
    let (_, keys) = server
        .call(
            "POST",
            "/_matrix/client/v3/keys/query",
            Some(token),
            Some(json!({ "device_keys": { "@patient:localhost": [] } })),
        )
        .await;
    out.push(keys);
    out
}

#[tokio::test]
async fn malformed_requests_get_matrix_errors_and_change_nothing() {
    let server = support::start().await;
    let token = server.register("patient", "pw-patient").await;
    let (status, created) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&token),
            Some(json!({ "preset": "private_chat", "name": "Records" })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let before = snapshot(&server, &token).await;

    for (method, template) in ENDPOINTS {
        let path = template.replace("{room}", &room);
        for (what, body) in bad_bodies() {
            let what = format!("{method} {path} with {what}");
            match request(&server, &token, method, &path, body).await {
                Some((status, answer)) => assert_matrix_error(&what, status, &answer),
                // The server answers 413 as soon as the declared length is over the limit,
                // without reading a body it will refuse; a client still writing it may see
                // the connection close first (curl, which waits for `100 Continue`, reads
                // the 413). Any other body must be answered.
                None => assert!(what.ends_with("over the size limit"), "{what}: no answer"),
            }
        }
        if takes_any_object(&path) {
            continue;
        }
        let body = wrong_types(&path);
        let what = format!("{method} {path} with {body}");
        let (status, answer) =
            request(&server, &token, method, &path, body.to_string().into_bytes())
                .await
                .unwrap_or_else(|| panic!("{what}: no answer"));
        assert_matrix_error(&what, status, &answer);
    }

    // Still up, and nothing of the user's changed.
    let (status, _) = server.call("GET", "/_matrix/client/versions", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(snapshot(&server, &token).await, before);
}
