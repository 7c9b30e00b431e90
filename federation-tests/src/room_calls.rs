//! What a test does in a room through a user's client API on one of the net's servers:
//! create it, send to it, invite and join.

use serde_json::{Value, json};

use crate::FederatingServer;

/// Creates a room of `token`'s user on `server` (preset `private_chat`, so history is
/// `shared`) with these extra createRoom fields.
pub async fn create_room(server: &FederatingServer, token: &str, extra: Value) -> String {
    let mut body = json!({ "preset": "private_chat" });
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    let (status, created) =
        server.server.call("POST", "/_matrix/client/v3/createRoom", Some(token), Some(body)).await;
    assert_eq!(status, 200, "{created}");
    created["room_id"].as_str().unwrap().to_owned()
}

/// Sends a text message; answers its event ID.
pub async fn send(
    server: &FederatingServer,
    token: &str,
    room: &str,
    txn: &str,
    body: &str,
) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, answer) = server
        .server
        .call("PUT", &path, Some(token), Some(json!({"msgtype": "m.text", "body": body})))
        .await;
    assert_eq!(status, 200, "{answer}");
    answer["event_id"].as_str().unwrap().to_owned()
}

/// A POST that must succeed; answers its body.
pub async fn post(server: &FederatingServer, token: &str, path: &str, body: Value) -> Value {
    let (status, answer) = server.server.call("POST", path, Some(token), Some(body)).await;
    assert_eq!(status, 200, "{path}: {answer}");
    answer
}
