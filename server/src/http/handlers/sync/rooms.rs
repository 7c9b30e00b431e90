//! The room sections of `/sync` (`rooms.join`, `rooms.invite`, `rooms.leave`) and the
//! account data that rides along. A timeline holds at most the filter's limit of events;
//! when more happened, it is `limited`, carries a `prev_batch` to page back from, and the
//! state changes in the gap come in `state`.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{EventId, OwnedRoomId, RoomId, UserId};
use serde_json::{Map, Value, json};

use super::{Window, ephemeral};
use crate::{
    http::error::ApiError,
    service::{
        Services,
        rooms::{position_from, visibility},
    },
    storage::{catalogue as cf, compound_key},
};

/// Events read per incremental sync; past this, the client syncs again from `next_batch`.
const MAX_EVENTS_PER_SYNC: usize = 1000;

/// A visible event with its stream position.
type Positioned = (u64, Value);

/// The room sections and account data, and whether they carry anything.
pub(super) fn room_sections(window: &Window<'_>) -> Result<(Value, bool), ApiError> {
    match window.since {
        None => initial(window).map(|body| (body, true)),
        Some(since) => incremental(window, since),
    }
}

fn empty_response(next_batch: u64) -> Value {
    json!({
        "next_batch": format!("s{next_batch}"),
        "rooms": { "join": {}, "invite": {}, "leave": {} },
        "presence": { "events": [] },
        "account_data": { "events": [] },
    })
}

fn initial(window: &Window<'_>) -> Result<Value, ApiError> {
    let (services, user, upto) = (window.services, window.user, window.upto);
    let mut response = empty_response(upto);
    for (room_id, membership) in services.rooms.memberships(user)? {
        match membership.as_str() {
            "join" => {
                let (timeline, limited) =
                    recent_visible(services, &room_id, user, upto, window.timeline_limit)?;
                let mut state = current_state(services, &room_id)?;
                let summary = summary(&state, user);
                state.retain(|event| {
                    !timeline.iter().any(|(_, e)| e["event_id"] == event["event_id"])
                });
                let mut room = joined_room(state, timeline, limited, None);
                room["summary"] = summary;
                room["ephemeral"]["events"] =
                    json!(ephemeral::current(services, &room_id, user, upto)?);
                response["rooms"]["join"][room_id.as_str()] = room;
            }
            "invite" => {
                response["rooms"]["invite"][room_id.as_str()] =
                    invited_room(services, &room_id, user)?;
            }
            _ => {}
        }
    }
    let all = services.user_data.all_account_data(user)?;
    add_account_data(&mut response, all.into_iter());
    Ok(response)
}

fn incremental(window: &Window<'_>, since: u64) -> Result<(Value, bool), ApiError> {
    let (services, user) = (window.services, window.user);
    let rows = services.storage.scan_range(
        cf::POSITION_ROOMEVENT,
        &(since + 1).to_be_bytes(),
        &window.upto.to_be_bytes(),
        MAX_EVENTS_PER_SYNC,
    )?;
    let next_batch = rows
        .last()
        .filter(|_| rows.len() == MAX_EVENTS_PER_SYNC)
        .map_or(window.upto, |(key, _)| position_from(key));
    let mut response = empty_response(next_batch);
    let mut per_room: BTreeMap<OwnedRoomId, Vec<Positioned>> = BTreeMap::new();
    for (key, value) in rows {
        let position = position_from(&key);
        let Some(split) = value.iter().position(|b| *b == 0xFF) else { continue };
        let (Ok(room_id), Ok(event_id)) = (
            RoomId::parse(String::from_utf8_lossy(&value[..split]).as_ref()),
            EventId::parse(String::from_utf8_lossy(&value[split + 1..]).as_ref()),
        ) else {
            continue;
        };
        let Some(event) = services.rooms.event_json(&event_id)? else { continue };
        if visibility::may_see_event(&services.storage, &room_id, user, position, &event)? {
            per_room.entry(room_id).or_default().push((position, client_event(&event_id, event)));
        }
    }
    let mut anything = !per_room.is_empty();
    let memberships: BTreeMap<_, _> = services.rooms.memberships(user)?.into_iter().collect();
    for (room_id, events) in per_room {
        match memberships.get(&room_id).map(String::as_str) {
            Some("join") => {
                response["rooms"]["join"][room_id.as_str()] =
                    joined_incremental(window, &room_id, since, events)?;
            }
            Some("invite") => {
                response["rooms"]["invite"][room_id.as_str()] =
                    invited_room(services, &room_id, user)?;
            }
            // Left, kicked or banned: what they saw up to leaving (visibility stops there).
            Some(_) => {
                let (timeline, limited) = last_n(events, window.timeline_limit);
                response["rooms"]["leave"][room_id.as_str()] = json!({
                    "timeline": { "events": timeline, "limited": limited },
                    "state": { "events": [] },
                });
            }
            None => {} // forgotten
        }
    }

    let joined: BTreeSet<OwnedRoomId> = memberships
        .iter()
        .filter(|(_, membership)| membership.as_str() == "join")
        .map(|(room, _)| room.clone())
        .collect();
    for (room_id, events) in ephemeral::changed(services, user, &joined, since, next_batch)? {
        anything = true;
        let room = ensure_joined_entry(&mut response, &room_id);
        room["ephemeral"]["events"] = json!(events);
    }

    let changed = services.user_data.changed_account_data(user, since, next_batch)?;
    let mut entries = Vec::new();
    for (room, kind) in changed {
        let room_id = (!room.is_empty()).then(|| RoomId::parse(&room).ok()).flatten();
        if !room.is_empty() && room_id.as_ref().is_none_or(|id| !joined.contains(id)) {
            continue;
        }
        if let Some(content) = services.user_data.account_data(user, room_id.as_deref(), &kind)? {
            if let Some(room_id) = &room_id {
                ensure_joined_entry(&mut response, room_id);
            }
            entries.push((room, kind, content));
        }
    }
    anything |= !entries.is_empty();
    add_account_data(&mut response, entries.into_iter());
    Ok((response, anything))
}

/// A joined room's incremental section.
fn joined_incremental(
    window: &Window<'_>,
    room_id: &RoomId,
    since: u64,
    events: Vec<Positioned>,
) -> Result<Value, ApiError> {
    let user = json!(window.user);
    // A room joined since the token: the client knows nothing of it yet (not even that it is
    // encrypted), so it gets the whole state the timeline does not carry.
    let newly_joined = events.iter().any(|(_, event)| {
        event["type"] == "m.room.member"
            && event["state_key"] == user
            && event["content"]["membership"] == "join"
    });
    let total = events.len();
    let keep = total.min(window.timeline_limit);
    let mut events = events;
    let shown = events.split_off(total - keep);
    let gap = events;
    let limited = !gap.is_empty();
    let prev_batch = match shown.first() {
        Some((first, _)) if limited => first.saturating_sub(1),
        _ => since,
    };
    let in_timeline = |event: &Value| shown.iter().any(|(_, e)| e["event_id"] == event["event_id"]);
    let members_changed =
        gap.iter().chain(&shown).any(|(_, event)| event["type"] == "m.room.member");
    let room_summary = if newly_joined || members_changed {
        Some(summary(&current_state(window.services, room_id)?, window.user))
    } else {
        None
    };
    let state = if newly_joined {
        let mut state = current_state(window.services, room_id)?;
        state.retain(|event| !in_timeline(event));
        state
    } else {
        gap_state(&gap, &shown)
    };
    let mut room = joined_room(state, shown, limited, Some(format!("s{prev_batch}")));
    if let Some(room_summary) = room_summary {
        room["summary"] = room_summary;
    }
    Ok(room)
}

/// The room summary clients name rooms by: joined and invited counts, and up to five other
/// members (the "heroes"), from the room's current state in the client format.
fn summary(state: &[Value], user: &UserId) -> Value {
    let members = state.iter().filter(|event| event["type"] == "m.room.member");
    let (mut joined, mut invited, mut heroes) = (0, 0, Vec::new());
    for member in members {
        let membership = member["content"]["membership"].as_str().unwrap_or_default();
        match membership {
            "join" => joined += 1,
            "invite" => invited += 1,
            _ => continue,
        }
        if let Some(id) = member["state_key"].as_str().filter(|id| *id != user.as_str()) {
            heroes.push(id.to_owned());
        }
    }
    heroes.sort();
    heroes.truncate(5);
    json!({
        "m.joined_member_count": joined,
        "m.invited_member_count": invited,
        "m.heroes": heroes,
    })
}

/// The state events of a gap the timeline skipped: the last one per slot, unless the shown
/// timeline changes that slot again itself.
fn gap_state(gap: &[Positioned], shown: &[Positioned]) -> Vec<Value> {
    let slot = |event: &Value| -> Option<(String, String)> {
        Some((event["type"].as_str()?.to_owned(), event["state_key"].as_str()?.to_owned()))
    };
    let shown_slots: BTreeSet<_> = shown.iter().filter_map(|(_, e)| slot(e)).collect();
    let mut latest: BTreeMap<(String, String), Value> = BTreeMap::new();
    for (_, event) in gap {
        if let Some(key) = slot(event).filter(|key| !shown_slots.contains(key)) {
            latest.insert(key, event.clone());
        }
    }
    latest.into_values().collect()
}

fn last_n(mut events: Vec<Positioned>, n: usize) -> (Vec<Value>, bool) {
    let limited = events.len() > n;
    let shown = events.split_off(events.len().saturating_sub(n));
    (shown.into_iter().map(|(_, e)| e).collect(), limited)
}

fn ensure_joined_entry<'r>(response: &'r mut Value, room_id: &RoomId) -> &'r mut Value {
    if response["rooms"]["join"].get(room_id.as_str()).is_none() {
        response["rooms"]["join"][room_id.as_str()] = joined_room(vec![], vec![], false, None);
    }
    &mut response["rooms"]["join"][room_id.as_str()]
}

/// Puts account data into the response: global ones at the top, room ones in joined rooms.
fn add_account_data(response: &mut Value, entries: impl Iterator<Item = (String, String, Value)>) {
    for (room, kind, content) in entries {
        let event = json!({ "type": kind, "content": content });
        let list = if room.is_empty() {
            &mut response["account_data"]["events"]
        } else if response["rooms"]["join"].get(&room).is_some() {
            &mut response["rooms"]["join"][&room]["account_data"]["events"]
        } else {
            continue;
        };
        match list.as_array_mut() {
            Some(list) => list.push(event),
            None => *list = json!([event]),
        }
    }
}

/// The latest events of a room the user may see (at most `limit`, oldest first), and whether
/// more visible events came before them.
fn recent_visible(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    upto: u64,
    limit: usize,
) -> Result<(Vec<Positioned>, bool), ApiError> {
    let prefix = compound_key(&[room_id.as_bytes(), b""]);
    // Read a bounded window back from `upto`; events hidden from the user only shorten it.
    let rows = services.storage.scan_back(
        cf::ROOMPOSITION_EVENTID,
        &prefix,
        &upto.to_be_bytes(),
        4 * limit + 1,
    )?;
    let mut events = Vec::new();
    let mut limited = false;
    for (key, event_id) in &rows {
        let position = position_from(key);
        let Ok(event_id) = EventId::parse(String::from_utf8_lossy(event_id).as_ref()) else {
            continue;
        };
        let Some(event) = services.rooms.event_json(&event_id)? else { continue };
        if visibility::may_see_event(&services.storage, room_id, user, position, &event)? {
            if events.len() == limit {
                limited = true;
                break;
            }
            events.push((position, client_event(&event_id, event)));
        }
    }
    events.reverse();
    Ok((events, limited))
}

fn joined_room(
    state: Vec<Value>,
    timeline: Vec<Positioned>,
    limited: bool,
    prev_batch: Option<String>,
) -> Value {
    let first_position = timeline.first().map(|(position, _)| *position);
    let events: Vec<Value> = timeline.into_iter().map(|(_, event)| event).collect();
    let mut timeline = json!({ "events": events, "limited": limited });
    match (prev_batch, first_position) {
        (Some(token), _) => timeline["prev_batch"] = json!(token),
        (None, Some(first)) => {
            timeline["prev_batch"] = json!(format!("s{}", first.saturating_sub(1)))
        }
        (None, None) => {}
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
fn invited_room(services: &Services, room_id: &RoomId, user: &UserId) -> Result<Value, ApiError> {
    let own = services.rooms.server_name();
    let version = match services.rooms.version(room_id)? {
        Some(version) if services.rooms.server_may_read(room_id, own, None)? => version,
        // A room on another server (or one this server has no member in any more, whose
        // copy here is stale): the state its invite carried.
        _ => {
            let invite = services.rooms.remote_invite_state(room_id, user)?.unwrap_or_default();
            let events = invite["events"].as_array().cloned().unwrap_or_default();
            return Ok(json!({ "invite_state": { "events": events } }));
        }
    };
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

/// The room's current state events in the client format.
pub fn current_state(services: &Services, room_id: &RoomId) -> Result<Vec<Value>, ApiError> {
    let version =
        services.rooms.version(room_id)?.ok_or_else(|| ApiError::not_found("unknown room"))?;
    let mut state = Vec::new();
    for (event_id, _) in services.rooms.current_state_events(room_id, version)? {
        if let Some(event) = services.rooms.event_json(&event_id)? {
            state.push(client_event(&event_id, event));
        }
    }
    Ok(state)
}

/// The client format of a stored event: the envelope fields clients use, plus its ID.
pub fn client_event(event_id: &EventId, event: Map<String, Value>) -> Value {
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
