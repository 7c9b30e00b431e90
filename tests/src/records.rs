//! A patient's record as the tests build it with plain client-API calls (the convention of
//! `spec/records.md` §2): a space and class rooms, each with `org.medrix.record`, the
//! contract executor invited with power 100; and the patient's consent contracts.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::TestServer;

/// A record's rooms.
pub struct Record {
    pub space: String,
    /// The class rooms, by class.
    pub rooms: BTreeMap<String, String>,
}

impl Record {
    /// The room of `class`.
    pub fn room(&self, class: &str) -> &str {
        &self.rooms[class]
    }
}

/// The logged-in user of `token`.
pub async fn whoami(server: &TestServer, token: &str) -> String {
    let (_, me) = server.call("GET", "/_matrix/client/v3/account/whoami", Some(token), None).await;
    me["user_id"].as_str().unwrap().to_owned()
}

/// The contract executor of the server whose user `token` is.
pub async fn executor_of(server: &TestServer, token: &str) -> String {
    let me = whoami(server, token).await;
    let (_, server_name) = me.split_once(':').unwrap();
    format!("@medrix-contracts:{server_name}")
}

/// Creates the patient's record with a room for each of `classes`.
pub async fn create_record(server: &TestServer, patient: &str, classes: &[&str]) -> Record {
    let executor = executor_of(server, patient).await;
    let me = whoami(server, patient).await;
    let create = |extra: Value| {
        let mut body = json!({
            "preset": "private_chat",
            "power_level_content_override": {"users": {&executor: 100}},
            "invite": [&executor],
        });
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    let path = "/_matrix/client/v3/createRoom";
    // Providers ask for access by knocking on the space (spec/records.md §7).
    let space_body = create(json!({
        "creation_content": {"type": "m.space"},
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
    }));
    let (status, space) = server.call("POST", path, Some(patient), Some(space_body)).await;
    assert_eq!(status, 200, "{space}");
    let space = space["room_id"].as_str().unwrap().to_owned();
    let mut rooms = BTreeMap::new();
    for class in classes {
        let record = json!({"patient": &me, "class": class, "space": &space});
        let body = create(json!({
            "initial_state": [{"type": "org.medrix.record", "state_key": "", "content": record}],
        }));
        let (status, room) = server.call("POST", path, Some(patient), Some(body)).await;
        assert_eq!(status, 200, "{room}");
        rooms.insert((*class).to_owned(), room["room_id"].as_str().unwrap().to_owned());
    }
    let listed: BTreeMap<&String, [&String; 1]> = rooms.iter().map(|(c, r)| (c, [r])).collect();
    let content = json!({"patient": &me, "classes": listed});
    let (status, body) = put_state(server, patient, &space, "org.medrix.record", "", content).await;
    assert_eq!(status, 200, "{body}");
    Record { space, rooms }
}

/// A personal contract's content (purpose TREAT, every data period, valid from 1970 to `end`).
pub fn contract(
    contract_id: &str,
    grantee: &str,
    classes: &[&str],
    end: u64,
    status: &str,
) -> Value {
    json!({
        "contract_id": contract_id, "grantee": grantee, "purpose": "TREAT",
        "classes": classes, "data_period": {"start": null, "end": null},
        "valid": {"start": 0, "end": end}, "mode": "read",
        "text": "My doctor may read these parts of my record for my treatment.", "status": status,
    })
}

/// The state key of a personal contract for `user` (spec/records.md §4).
pub fn contract_key(user: &str) -> String {
    format!("user:{user}")
}

/// Puts the patient's contract for `grantee` into the record's space.
pub async fn put_contract(
    server: &TestServer,
    patient: &str,
    space: &str,
    grantee: &str,
    content: Value,
) -> (u16, Value) {
    put_state(server, patient, space, "org.medrix.grant", &contract_key(grantee), content).await
}

pub async fn put_state(
    server: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
    content: Value,
) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}");
    server.call("PUT", &path, Some(token), Some(content)).await
}

pub async fn get_state(
    server: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
    key: &str,
) -> (u16, Value) {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{key}");
    server.call("GET", &path, Some(token), None).await
}

/// Waits until `member`'s membership in `room`, as `token`'s user reads it, is `membership`;
/// answers the membership event's content.
pub async fn wait_for_membership(
    server: &TestServer,
    token: &str,
    room: &str,
    member: &str,
    membership: &str,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let (_, event) = get_state(server, token, room, "m.room.member", member).await;
        if event["membership"] == membership {
            return event;
        }
        assert!(started.elapsed() < within, "{member} not {membership} in {room}: {event}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}
