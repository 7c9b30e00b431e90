//! What a test reads of a room through a user's client API on one of the net's servers: the
//! IDs a test needs to build events of its own that cite the room's state and DAG.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::FederatingServer;

/// The ID of a current state event, as `token`'s user on `server` reads it.
pub async fn state_id(
    server: &FederatingServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/state");
    let (status, state) = server.server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{state}");
    let event = state
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == kind && e["state_key"] == key))
        .unwrap_or_else(|| panic!("no {kind} {key} in {state}"));
    event_id_of(event)
}

/// The newest event of the room `token`'s user reads on `server`.
pub async fn newest_event(server: &FederatingServer, token: &str, room: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1");
    let (status, page) = server.server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{page}");
    event_id_of(&page["chunk"][0])
}

/// Waits until `token`'s user on `server` can read `event` of `room`.
pub async fn until_readable(
    server: &FederatingServer,
    token: &str,
    room: &str,
    event: &str,
) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{event}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = server.server.call("GET", &path, Some(token), None).await;
        if status == 200 {
            return body;
        }
        assert!(Instant::now() < deadline, "{event} never reached {}", server.server_name);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn event_id_of(event: &Value) -> String {
    event["event_id"].as_str().unwrap_or_else(|| panic!("no event ID in {event}")).to_owned()
}
