//! Reading a room's history and members: `/messages`, `/event`, `/context`, `/members`,
//! `/joined_members`. Every event returned passes the visibility service, so a kicked or
//! never-joined user gets nothing newer than their access.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use ruma::{
    OwnedEventId, RoomId, UserId,
    api::{
        Direction,
        client::{
            context::get_context,
            membership::{get_member_events, joined_members, joined_rooms},
            message::get_message_events,
            room::get_room_event,
        },
    },
};
use serde_json::{Value, json};

use crate::{
    http::{error::ApiError, handlers::sync::client_event, ruma_request::Ruma},
    service::{
        Services,
        rooms::{position_from, visibility},
    },
    storage::{catalogue as cf, compound_key},
};

/// The most events one `/messages` page returns.
const MAX_PAGE: usize = 1000;

/// Whether the user has ever had a membership in the room (joined, invited, left...).
fn ever_member(services: &Services, room_id: &RoomId, user: &UserId) -> Result<bool, ApiError> {
    Ok(services.rooms.membership(room_id, user)?.is_some())
}

use super::sync::parse_token;

/// Reads an event of this room by ID, if it may be shown to `user`. The room is checked
/// against where the event was stored, not taken from the request: visibility is decided
/// per room, so an event of another room must never be judged by this one's memberships.
pub fn visible_event_at(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &ruma::EventId,
) -> Result<Option<(u64, Value)>, ApiError> {
    let Some(position) = services
        .storage
        .get(cf::EVENTID_POSITION, event_id.as_bytes())?
        .filter(|bytes| bytes.len() == 8)
        .map(|bytes| position_from(&bytes))
    else {
        return Ok(None);
    };
    let stored_in = services.storage.get(cf::POSITION_ROOMEVENT, &position.to_be_bytes())?;
    if stored_in != Some(compound_key(&[room_id.as_bytes(), event_id.as_bytes()])) {
        return Ok(None);
    }
    Ok(visible_event(services, room_id, user, event_id, position)?.map(|event| (position, event)))
}

/// Reads an event and its membership state key, if it may be shown to `user`.
fn visible_event(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &ruma::EventId,
    position: u64,
) -> Result<Option<Value>, ApiError> {
    let Some(event) = services.rooms.event_json(event_id)? else { return Ok(None) };
    if !visibility::may_see_event(&services.storage, room_id, user, position, &event)? {
        return Ok(None);
    }
    let mut event = client_event(event_id, event);
    event["room_id"] = json!(room_id);
    Ok(Some(event))
}

pub async fn messages(
    State(services): State<Services>,
    request: Ruma<get_message_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    let room_id = &request.room_id;
    if !ever_member(&services, room_id, &user)? {
        return Err(ApiError::forbidden("you have never been in this room"));
    }
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let visible_upto = services.rooms.stream.visible();
    let prefix = compound_key(&[room_id.as_bytes(), b""]);
    let at = |position: u64| compound_key(&[room_id.as_bytes(), &position.to_be_bytes()]);

    let mut chunk = Vec::new();
    let mut last_position = None;
    match request.dir {
        Direction::Backward => {
            let from = request
                .from
                .as_deref()
                .map(parse_token)
                .transpose()?
                .unwrap_or(visible_upto)
                .min(visible_upto);
            // Walk back from `from` a batch at a time, skipping what the user may not see.
            let mut upper = from;
            loop {
                let rows = services.storage.scan_back(
                    cf::ROOMPOSITION_EVENTID,
                    &prefix,
                    &upper.to_be_bytes(),
                    limit,
                )?;
                last_position = fill_page(&services, room_id, &user, &rows, &mut chunk, limit)?
                    .or(last_position);
                if chunk.len() == limit {
                    break;
                }
                match last_position {
                    Some(last) if rows.len() == limit && last > 0 => upper = last - 1,
                    _ => break,
                }
            }
            let mut body = json!({ "chunk": chunk, "start": format!("s{from}"), "state": [] });
            if chunk_is_full(&body, limit)
                && let Some(last) = last_position.filter(|last| *last > 0)
            {
                body["end"] = json!(format!("s{}", last - 1));
            }
            Ok(Json(body))
        }
        Direction::Forward => {
            let from = request.from.as_deref().map(parse_token).transpose()?.unwrap_or(0);
            // Read forward a page at a time; never more rows at once than a page holds.
            let mut lower = from + 1;
            while lower <= visible_upto {
                let rows = services.storage.scan_range(
                    cf::ROOMPOSITION_EVENTID,
                    &at(lower),
                    &at(visible_upto),
                    limit,
                )?;
                let Some(last) = fill_page(&services, room_id, &user, &rows, &mut chunk, limit)?
                else {
                    break;
                };
                last_position = Some(last);
                if chunk.len() == limit || rows.len() < limit {
                    break;
                }
                lower = last + 1;
            }
            let mut body = json!({ "chunk": chunk, "start": format!("s{from}"), "state": [] });
            if chunk_is_full(&body, limit)
                && let Some(last) = last_position
            {
                body["end"] = json!(format!("s{last}"));
            }
            Ok(Json(body))
        }
    }
}

/// Appends the visible events of `rows` to `chunk` until it holds `limit`; returns the
/// position of the last row looked at.
fn fill_page(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    rows: &[crate::storage::Entry],
    chunk: &mut Vec<Value>,
    limit: usize,
) -> Result<Option<u64>, ApiError> {
    let mut last = None;
    for (key, event_id) in rows {
        let position = position_from(key);
        last = Some(position);
        if let Some(event) = event_at(services, room_id, user, event_id, position)? {
            chunk.push(event);
            if chunk.len() == limit {
                break;
            }
        }
    }
    Ok(last)
}

fn chunk_is_full(body: &Value, limit: usize) -> bool {
    body["chunk"].as_array().is_some_and(|chunk| chunk.len() == limit)
}

fn event_at(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &[u8],
    position: u64,
) -> Result<Option<Value>, ApiError> {
    let Ok(event_id) = ruma::EventId::parse(String::from_utf8_lossy(event_id).as_ref()) else {
        return Ok(None);
    };
    visible_event(services, room_id, user, &event_id, position)
}

pub async fn event(
    State(services): State<Services>,
    request: Ruma<get_room_event::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    visible_event_at(&services, &request.room_id, &user, &request.event_id)?
        .map(|(_, event)| Json(event))
        .ok_or_else(|| ApiError::not_found("event not found"))
}

/// The most events `/context` returns around its event.
const MAX_CONTEXT: usize = 100;

/// `/context`: an event with the visible events before and after it. The `state` is the
/// current state for a member joined now, and empty otherwise: handing a former member the
/// current state would show them changes made after they lost access.
pub async fn context(
    State(services): State<Services>,
    request: Ruma<get_context::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    let room_id = &request.room_id;
    let (position, event) = visible_event_at(&services, room_id, &user, &request.event_id)?
        .ok_or_else(|| ApiError::not_found("event not found"))?;
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(MAX_CONTEXT).min(MAX_CONTEXT);
    let (before_limit, after_limit) = (limit / 2, limit - limit / 2);
    let prefix = compound_key(&[room_id.as_bytes(), b""]);
    let at = |position: u64| compound_key(&[room_id.as_bytes(), &position.to_be_bytes()]);

    let mut before = Vec::new();
    let mut start = position.saturating_sub(1);
    if before_limit > 0 && position > 0 {
        let rows = services.storage.scan_back(
            cf::ROOMPOSITION_EVENTID,
            &prefix,
            &(position - 1).to_be_bytes(),
            4 * before_limit,
        )?;
        if let Some(last) = fill_page(&services, room_id, &user, &rows, &mut before, before_limit)?
        {
            start = last.saturating_sub(1);
        }
    }
    let mut after = Vec::new();
    let mut end = position;
    let visible_upto = services.rooms.stream.visible();
    if after_limit > 0 && position < visible_upto {
        let rows = services.storage.scan_range(
            cf::ROOMPOSITION_EVENTID,
            &at(position + 1),
            &at(visible_upto),
            4 * after_limit,
        )?;
        if let Some(last) = fill_page(&services, room_id, &user, &rows, &mut after, after_limit)? {
            end = last;
        }
    }
    let state = if services.rooms.is_joined(room_id, &user)? {
        current_state_json(&services, room_id)?
    } else {
        vec![]
    };
    Ok(Json(json!({
        "event": event, "events_before": before, "events_after": after, "state": state,
        "start": format!("s{start}"), "end": format!("s{end}"),
    })))
}

fn current_state_json(services: &Services, room_id: &RoomId) -> Result<Vec<Value>, ApiError> {
    let mut state = super::sync::current_state(services, room_id)?;
    for event in &mut state {
        event["room_id"] = json!(room_id);
    }
    Ok(state)
}

/// Current member events, for a user joined now.
fn current_members(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
) -> Result<Vec<(OwnedEventId, Value)>, ApiError> {
    let joined = services
        .rooms
        .memberships(user)?
        .into_iter()
        .any(|(room, m)| room == room_id && m == "join");
    if !joined {
        return Err(ApiError::forbidden("you are not joined to this room"));
    }
    let version =
        services.rooms.version(room_id)?.ok_or_else(|| ApiError::not_found("unknown room"))?;
    let mut members = Vec::new();
    for (event_id, pdu) in services.rooms.current_state_events(room_id, version)? {
        if pdu.kind().to_string() == "m.room.member"
            && let Some(event) = services.rooms.event_json(&event_id)?
        {
            let mut event = client_event(&event_id, event);
            event["room_id"] = json!(room_id);
            members.push((event_id, event));
        }
    }
    Ok(members)
}

pub async fn members(
    State(services): State<Services>,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    let wanted = request.membership.as_ref().map(|m| m.to_string());
    let unwanted = request.not_membership.as_ref().map(|m| m.to_string());
    let chunk: Vec<Value> = current_members(&services, &request.room_id, &user)?
        .into_iter()
        .map(|(_, event)| event)
        .filter(|event| {
            let membership = event["content"]["membership"].as_str().map(ToOwned::to_owned);
            (wanted.is_none() || membership == wanted)
                && (unwanted.is_none() || membership != unwanted)
        })
        .collect();
    Ok(Json(json!({ "chunk": chunk })))
}

pub async fn joined_members(
    State(services): State<Services>,
    request: Ruma<joined_members::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let mut joined = BTreeMap::new();
    for (_, event) in current_members(&services, &request.body.room_id, &user)? {
        if event["content"]["membership"] == "join"
            && let Some(member) = event["state_key"].as_str()
        {
            joined.insert(
                member.to_owned(),
                json!({
                    "display_name": event["content"]["displayname"],
                    "avatar_url": event["content"]["avatar_url"],
                }),
            );
        }
    }
    Ok(Json(json!({ "joined": joined })))
}

pub async fn joined_rooms(
    State(services): State<Services>,
    request: Ruma<joined_rooms::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let rooms: Vec<String> = services
        .rooms
        .memberships(&request.session().user_id)?
        .into_iter()
        .filter(|(_, membership)| membership == "join")
        .map(|(room, _)| room.to_string())
        .collect();
    Ok(Json(json!({ "joined_rooms": rooms })))
}
