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
        access::{PendingReads, VisibleEvent},
    },
};

/// Events read per incremental sync; past this, the client syncs again from `next_batch`.
const MAX_EVENTS_PER_SYNC: usize = 1000;

/// A visible event with its stream position.
type Positioned = (u64, Value);

/// The room sections and account data, and whether they carry anything; the reads of record
/// data in them are added to `pending`, to be logged before the response goes out.
pub(super) fn room_sections(
    window: &Window<'_>,
    pending: &mut PendingReads,
) -> Result<(Value, bool), ApiError> {
    match window.since {
        None => initial(window, pending).map(|body| (body, true)),
        Some(since) => incremental(window, since, pending),
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

fn initial(window: &Window<'_>, pending: &mut PendingReads) -> Result<Value, ApiError> {
    let (services, user, upto) = (window.services, window.user, window.upto);
    let mut response = empty_response(upto);
    for (room_id, membership) in services.access.memberships(user)? {
        match membership.as_str() {
            "join" => {
                // One view of the room decides both the timeline and the state.
                let recent = services
                    .access
                    .recent_with_state(user, &room_id, upto, window.timeline_limit)?
                    .defer(pending);
                let (timeline, limited, state) = (recent.events, recent.limited, recent.state);
                let timeline = positioned(timeline);
                let mut state: Vec<Value> = state
                    .into_iter()
                    .map(|(event_id, event)| client_event(&event_id, event))
                    .collect();
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

fn incremental(
    window: &Window<'_>,
    since: u64,
    pending: &mut PendingReads,
) -> Result<(Value, bool), ApiError> {
    let (services, user) = (window.services, window.user);
    let batch =
        services.access.since(user, since, window.upto, MAX_EVENTS_PER_SYNC)?.defer(pending);
    let next_batch = batch.next_batch;
    let mut response = empty_response(next_batch);
    let per_room: BTreeMap<OwnedRoomId, Vec<Positioned>> =
        batch.rooms.into_iter().map(|(room, events)| (room, positioned(events))).collect();
    let mut anything = !per_room.is_empty();
    let memberships: BTreeMap<_, _> = services.access.memberships(user)?.into_iter().collect();
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
    // Read once for both: each read decides again what the user may see.
    let current = if newly_joined || members_changed {
        Some(current_state(window.services, window.user, room_id)?)
    } else {
        None
    };
    let room_summary = current.as_deref().map(|state| summary(state, window.user));
    let state = match current {
        Some(mut state) if newly_joined => {
            state.retain(|event| !in_timeline(event));
            state
        }
        _ => gap_state(&gap, &shown),
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

/// Visible events as the timeline shows them, with their stream positions.
fn positioned(events: Vec<VisibleEvent>) -> Vec<Positioned> {
    events.into_iter().map(|e| (e.position, client_event(&e.event_id, e.event))).collect()
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
    Ok(json!({ "invite_state": { "events": services.access.invite_state(user, room_id)? } }))
}

/// The room's current state events in the client format, for a member joined now.
fn current_state(
    services: &Services,
    user: &UserId,
    room_id: &RoomId,
) -> Result<Vec<Value>, ApiError> {
    Ok(services
        .access
        .current_state(user, room_id)?
        .into_iter()
        .map(|(event_id, event)| client_event(&event_id, event))
        .collect())
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
