//! `/sync`: long-polls until something the user may see arrives, then answers with what
//! changed since the token. Tokens are `s<stream position>`. Every event passes the
//! visibility service first.
//!
//! The response is assembled as JSON rather than ruma's `sync_events::v3::Response`: most of
//! its sections are still empty here, and the E2EE sections must always be present.

use std::{collections::BTreeMap, time::Duration};

use axum::{Json, extract::State};
use ruma::{OwnedRoomId, RoomId, UserId, api::client::sync::sync_events};
use serde_json::{Map, Value, json};

use super::keys;
use crate::{
    http::{error::ApiError, ruma_request::Ruma},
    service::{
        Services,
        rooms::{position_from, visibility},
    },
    storage::{catalogue as cf, compound_key},
};

/// The longest a client may make the server hold a sync.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeline events per room in an initial sync.
const INITIAL_TIMELINE: usize = 20;
/// Events read per incremental sync; past this, the client syncs again from `next_batch`.
const MAX_EVENTS_PER_SYNC: usize = 1000;

pub async fn sync(
    State(services): State<Services>,
    request: Ruma<sync_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let device = request.session().device_id.clone();
    let request = request.body;
    let since = match request.since.as_deref() {
        Some(token) => Some(
            token
                .strip_prefix('s')
                .and_then(|p| p.parse::<u64>().ok())
                .ok_or_else(|| ApiError::invalid_param("unknown since token"))?,
        ),
        None => None,
    };
    let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);

    let body = match since {
        None => {
            let mut body = initial_sync(&services, &user)?;
            let upto = position_of(&body);
            let (e2ee, _) = keys::sync_sections(&services, &user, &device, None, upto).await?;
            merge(&mut body, e2ee);
            body
        }
        Some(since) => {
            // Answer as soon as something for this user arrives: wake on every new position
            // and re-check, until the timeout.
            let deadline = tokio::time::Instant::now() + timeout;
            let mut from = since;
            loop {
                let upto = services.rooms.stream.visible();
                if upto > from || tokio::time::Instant::now() >= deadline {
                    let (body, anything) =
                        incremental(&services, &user, &device, since, upto).await?;
                    if anything || tokio::time::Instant::now() >= deadline {
                        break body;
                    }
                    from = upto;
                }
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                services.rooms.stream.wait_past(from, remaining).await;
            }
        }
    };
    Ok(Json(body))
}

/// An incremental response with its E2EE sections, and whether it carries anything.
async fn incremental(
    services: &Services,
    user: &UserId,
    device: &ruma::DeviceId,
    since: u64,
    upto: u64,
) -> Result<(Value, bool), ApiError> {
    let (mut body, rooms_changed) = incremental_sync(services, user, since, upto)?;
    let (e2ee, e2ee_changed) =
        keys::sync_sections(services, user, device, Some(since), position_of(&body)).await?;
    merge(&mut body, e2ee);
    // Someone who newly joined a shared room: the client must fetch their devices.
    let mut joined: Vec<Value> = Vec::new();
    if let Some(rooms) = body["rooms"]["join"].as_object() {
        for room in rooms.values() {
            for event in room["timeline"]["events"].as_array().into_iter().flatten() {
                if event["type"] == "m.room.member"
                    && event["content"]["membership"] == "join"
                    && event["state_key"] != json!(user)
                {
                    joined.push(event["state_key"].clone());
                }
            }
        }
    }
    if let Some(changed) = body["device_lists"]["changed"].as_array_mut() {
        for user in joined {
            if !changed.contains(&user) {
                changed.push(user);
            }
        }
    }
    Ok((body, rooms_changed || e2ee_changed))
}

fn position_of(body: &Value) -> u64 {
    body["next_batch"]
        .as_str()
        .and_then(|t| t.strip_prefix('s'))
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn merge(body: &mut Value, sections: Value) {
    if let (Some(body), Value::Object(sections)) = (body.as_object_mut(), sections) {
        body.extend(sections);
    }
}

/// Users joined to any room `user` is joined to (including `user`).
pub fn users_sharing_rooms_with(
    services: &Services,
    user: &UserId,
) -> Result<Vec<String>, ApiError> {
    let mut users = vec![user.to_string()];
    for (room_id, membership) in services.rooms.memberships(user)? {
        if membership != "join" {
            continue;
        }
        let Some(version) = services.rooms.version(&room_id)? else { continue };
        for (_, pdu) in services.rooms.current_state_events(&room_id, version)? {
            if pdu.kind().to_string() == "m.room.member"
                && crate::service::rooms::membership_of(&pdu).as_deref() == Some("join")
                && let Some(member) = pdu.state_key()
                && !users.iter().any(|u| u == member)
            {
                users.push(member.to_owned());
            }
        }
    }
    Ok(users)
}

fn empty_response(next_batch: u64) -> Value {
    json!({
        "next_batch": format!("s{next_batch}"),
        "rooms": { "join": {}, "invite": {}, "leave": {} },
        "presence": { "events": [] },
        "account_data": { "events": [] },
        "to_device": { "events": [] },
        "device_lists": { "changed": [], "left": [] },
        "device_one_time_keys_count": {},
        "device_unused_fallback_key_types": [],
    })
}

fn initial_sync(services: &Services, user: &UserId) -> Result<Value, ApiError> {
    let upto = services.rooms.stream.visible();
    let mut response = empty_response(upto);
    for (room_id, membership) in services.rooms.memberships(user)? {
        match membership.as_str() {
            "join" => {
                let (timeline, prev_batch) = recent_visible(services, &room_id, user, upto)?;
                let state = current_state(services, &room_id)?;
                response["rooms"]["join"][room_id.as_str()] =
                    joined_room(state, timeline, false, prev_batch);
            }
            "invite" => {
                response["rooms"]["invite"][room_id.as_str()] = invited_room(services, &room_id)?;
            }
            _ => {}
        }
    }
    let all = services.user_data.all_account_data(user)?;
    add_account_data(&mut response, all.into_iter());
    Ok(response)
}

/// Puts account data into the response: global ones at the top, room ones in joined rooms.
fn add_account_data(response: &mut Value, entries: impl Iterator<Item = (String, String, Value)>) {
    for (room, kind, content) in entries {
        let event = json!({ "type": kind, "content": content });
        if room.is_empty() {
            push_event(&mut response["account_data"]["events"], event);
        } else if response["rooms"]["join"].get(&room).is_some() {
            push_event(&mut response["rooms"]["join"][&room]["account_data"]["events"], event);
        }
    }
}

fn push_event(list: &mut Value, event: Value) {
    if let Some(list) = list.as_array_mut() {
        list.push(event);
    } else {
        *list = json!([event]);
    }
}

/// Returns the response and whether it carries anything for the user.
fn incremental_sync(
    services: &Services,
    user: &UserId,
    since: u64,
    upto: u64,
) -> Result<(Value, bool), ApiError> {
    let rows = services.storage.scan_range(
        cf::POSITION_ROOMEVENT,
        &(since + 1).to_be_bytes(),
        &upto.to_be_bytes(),
        MAX_EVENTS_PER_SYNC,
    )?;
    let next_batch = rows
        .last()
        .filter(|_| rows.len() == MAX_EVENTS_PER_SYNC)
        .map_or(upto, |(key, _)| position_from(key));
    let mut response = empty_response(next_batch);
    let mut per_room: BTreeMap<OwnedRoomId, Vec<Value>> = BTreeMap::new();
    let mut anything = false;
    for (key, value) in rows {
        let position = position_from(&key);
        let Some(split) = value.iter().position(|b| *b == 0xFF) else { continue };
        let (Ok(room_id), Ok(event_id)) = (
            RoomId::parse(String::from_utf8_lossy(&value[..split]).as_ref()),
            ruma::EventId::parse(String::from_utf8_lossy(&value[split + 1..]).as_ref()),
        ) else {
            continue;
        };
        let Some(event) = services.rooms.event_json(&event_id)? else { continue };
        if !visibility::may_see_event(&services.storage, &room_id, user, position, &event)? {
            continue;
        }
        anything = true;
        per_room.entry(room_id).or_default().push(client_event(&event_id, event));
    }
    let memberships: BTreeMap<_, _> = services.rooms.memberships(user)?.into_iter().collect();
    for (room_id, events) in per_room {
        match memberships.get(&room_id).map(String::as_str) {
            Some("join") => {
                // A room joined since the token: the client knows nothing of it yet (not even
                // that it is encrypted), so it gets the state the timeline does not carry.
                let newly_joined = events.iter().any(|event| {
                    event["type"] == "m.room.member"
                        && event["state_key"] == json!(user)
                        && event["content"]["membership"] == "join"
                });
                let state = if newly_joined {
                    let mut state = current_state(services, &room_id)?;
                    state
                        .retain(|event| !events.iter().any(|e| e["event_id"] == event["event_id"]));
                    state
                } else {
                    vec![]
                };
                response["rooms"]["join"][room_id.as_str()] =
                    joined_room(state, events, false, None);
            }
            Some("invite") => {
                response["rooms"]["invite"][room_id.as_str()] = invited_room(services, &room_id)?;
            }
            _ => {
                response["rooms"]["leave"][room_id.as_str()] = json!({ "timeline": { "events": events, "limited": false }, "state": { "events": [] } });
            }
        }
    }
    let changed = services.user_data.changed_account_data(user, since, next_batch)?;
    if !changed.is_empty() {
        anything = true;
        let mut entries = Vec::new();
        for (room, kind) in changed {
            let room_id = (!room.is_empty()).then(|| RoomId::parse(&room).ok()).flatten();
            if !room.is_empty() && room_id.is_none() {
                continue;
            }
            if let Some(content) =
                services.user_data.account_data(user, room_id.as_deref(), &kind)?
            {
                if let Some(room_id) = &room_id
                    && response["rooms"]["join"].get(room_id.as_str()).is_none()
                    && memberships.get(room_id).map(String::as_str) == Some("join")
                {
                    response["rooms"]["join"][room_id.as_str()] =
                        joined_room(vec![], vec![], false, None);
                }
                entries.push((room, kind, content));
            }
        }
        add_account_data(&mut response, entries.into_iter());
    }
    Ok((response, anything))
}

/// The room's current state events in the client format.
fn current_state(services: &Services, room_id: &RoomId) -> Result<Vec<Value>, ApiError> {
    let version =
        services.rooms.version(room_id)?.ok_or_else(|| ApiError::internal("room without head"))?;
    let mut state = Vec::new();
    for (event_id, _) in services.rooms.current_state_events(room_id, version)? {
        if let Some(event) = services.rooms.event_json(&event_id)? {
            state.push(client_event(&event_id, event));
        }
    }
    Ok(state)
}

/// The latest events of a room the user may see, oldest first, and the token before them.
fn recent_visible(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    upto: u64,
) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let prefix = compound_key(&[room_id.as_bytes(), b""]);
    // Read a bounded window back from `upto`; events hidden from the user only shorten it.
    let rows = services.storage.scan_back(
        cf::ROOMPOSITION_EVENTID,
        &prefix,
        &upto.to_be_bytes(),
        4 * INITIAL_TIMELINE,
    )?;
    let mut events = Vec::new();
    let mut first_position = None;
    for (key, event_id) in &rows {
        let position = position_from(key);
        if events.len() == INITIAL_TIMELINE {
            break;
        }
        let Ok(event_id) = ruma::EventId::parse(String::from_utf8_lossy(event_id).as_ref()) else {
            continue;
        };
        let Some(event) = services.rooms.event_json(&event_id)? else { continue };
        if visibility::may_see_event(&services.storage, room_id, user, position, &event)? {
            events.push(client_event(&event_id, event));
            first_position = Some(position);
        }
    }
    events.reverse();
    Ok((events, first_position.map(|p| format!("s{}", p.saturating_sub(1)))))
}

fn joined_room(
    state: Vec<Value>,
    timeline: Vec<Value>,
    limited: bool,
    prev_batch: Option<String>,
) -> Value {
    let mut timeline = json!({ "events": timeline, "limited": limited });
    if let Some(prev_batch) = prev_batch {
        timeline["prev_batch"] = json!(prev_batch);
    }
    json!({
        "state": { "events": state },
        "timeline": timeline,
        "ephemeral": { "events": [] },
        "account_data": { "events": [] },
        "unread_notifications": { "notification_count": 0, "highlight_count": 0 },
        "summary": {},
    })
}

/// An invite with the stripped state a client needs to show it.
fn invited_room(services: &Services, room_id: &RoomId) -> Result<Value, ApiError> {
    let version =
        services.rooms.version(room_id)?.ok_or_else(|| ApiError::internal("room without head"))?;
    let mut stripped = Vec::new();
    for (event_id, pdu) in services.rooms.current_state_events(room_id, version)? {
        let kind = pdu.kind().to_string();
        if matches!(
            kind.as_str(),
            "m.room.create"
                | "m.room.name"
                | "m.room.join_rules"
                | "m.room.encryption"
                | "m.room.member"
                | "m.room.topic"
        ) && let Some(event) = services.rooms.event_json(&event_id)?
        {
            stripped.push(json!({
                "type": event["type"], "state_key": event["state_key"],
                "content": event["content"], "sender": event["sender"],
            }));
        }
    }
    Ok(json!({ "invite_state": { "events": stripped } }))
}

/// The client format of a stored event: the envelope fields clients use, plus its ID.
pub fn client_event(event_id: &ruma::EventId, event: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("event_id".to_owned(), json!(event_id));
    for field in
        ["content", "origin_server_ts", "sender", "type", "state_key", "redacts", "unsigned"]
    {
        if let Some(value) = event.get(field) {
            out.insert(field.to_owned(), value.clone());
        }
    }
    Value::Object(out)
}
