//! Reading a room's history and members: `/messages`, `/event`, `/context`, `/members`,
//! `/joined_members`, `/joined_rooms`. The access service decides and reads; these only
//! translate to the client format.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use ruma::{
    EventId, RoomId,
    api::client::{
        context::get_context,
        membership::{get_member_events, joined_members, joined_rooms},
        message::get_message_events,
        room::get_room_event,
    },
};
use serde_json::{Map, Value, json};

use super::sync::parse_token;
use crate::{
    http::{error::ApiError, handlers::sync::client_event, ruma_request::Ruma},
    service::{
        Services,
        access::{TimelinePoint, VisibleEvent},
    },
};

/// An event as a client is shown it outside `/sync`, which names the room around it.
fn room_client_event(room_id: &RoomId, event_id: &EventId, event: Map<String, Value>) -> Value {
    let mut out = client_event(event_id, event);
    out["room_id"] = json!(room_id);
    out
}

fn room_client_events(room_id: &RoomId, events: Vec<VisibleEvent>) -> Vec<Value> {
    events.into_iter().map(|e| room_client_event(room_id, &e.event_id, e.event)).collect()
}

pub async fn messages(
    State(services): State<Services>,
    request: Ruma<get_message_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let reader = request.session().log_reader();
    let request = request.body;
    let from = request.from.as_deref().map(parse_page_token).transpose()?;
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(usize::MAX);
    let read = || services.access.messages(&user, &request.room_id, request.dir, from, limit);
    let mut page = read()?;
    // Read back to the start of what this server has: what came before its join is on the
    // other servers of the room. Asked for once, then the page read again.
    if page.peek().reached_start
        && let Some(federation) = &services.federation
        && federation.rooms.backfill(&request.room_id).await
    {
        page = read()?;
    }
    let page = services.access.log(&reader, page).await?;
    let mut body = json!({
        "chunk": room_client_events(&request.room_id, page.chunk),
        "start": page.start.token(),
        "state": [],
    });
    if let Some(end) = page.end {
        body["end"] = json!(end.token());
    }
    Ok(Json(body))
}

/// A `/messages` token: a history slot (`h<slot>`) or a sync token (a live position).
fn parse_page_token(token: &str) -> Result<TimelinePoint, ApiError> {
    match TimelinePoint::parse_history(token) {
        Some(Some(point)) => Ok(point),
        Some(None) => Err(ApiError::invalid_param("`from` is not a token this server gave")),
        None => parse_token(token).map(TimelinePoint::Live),
    }
}

pub async fn event(
    State(services): State<Services>,
    request: Ruma<get_room_event::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let reader = request.session().log_reader();
    let request = request.body;
    let event = services.access.event_for_user(&user, &request.room_id, &request.event_id)?;
    services
        .access
        .log(&reader, event)
        .await?
        .map(|e| Json(room_client_event(&request.room_id, &e.event_id, e.event)))
        .ok_or_else(|| ApiError::not_found("event not found"))
}

/// `/context`: an event with the visible events before and after it.
pub async fn context(
    State(services): State<Services>,
    request: Ruma<get_context::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let reader = request.session().log_reader();
    let request = request.body;
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(usize::MAX);
    let context = services.access.context(&user, &request.room_id, &request.event_id, limit)?;
    let context = services
        .access
        .log(&reader, context)
        .await?
        .ok_or_else(|| ApiError::not_found("event not found"))?;
    let room_id = &request.room_id;
    let state: Vec<Value> = context
        .state
        .into_iter()
        .map(|(id, event)| room_client_event(room_id, &id, event))
        .collect();
    let event = context.event;
    Ok(Json(json!({
        "event": room_client_event(room_id, &event.event_id, event.event),
        "events_before": room_client_events(room_id, context.before),
        "events_after": room_client_events(room_id, context.after),
        "state": state,
        "start": context.start.token(),
        "end": format!("s{}", context.end),
    })))
}

pub async fn members(
    State(services): State<Services>,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    let wanted = request.membership.as_ref().map(|m| m.to_string());
    let unwanted = request.not_membership.as_ref().map(|m| m.to_string());
    let chunk: Vec<Value> = services
        .access
        .members(&user, &request.room_id)?
        .into_iter()
        .map(|(id, event)| room_client_event(&request.room_id, &id, event))
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
    for (_, event) in services.access.members(&user, &request.body.room_id)? {
        let content = event.get("content").cloned().unwrap_or_default();
        if content["membership"] == "join"
            && let Some(member) = event.get("state_key").and_then(Value::as_str)
        {
            joined.insert(
                member.to_owned(),
                json!({
                    "display_name": content["displayname"],
                    "avatar_url": content["avatar_url"],
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
        .access
        .memberships(&request.session().user_id)?
        .into_iter()
        .filter(|(_, membership)| membership == "join")
        .map(|(room, _)| room.to_string())
        .collect();
    Ok(Json(json!({ "joined_rooms": rooms })))
}
