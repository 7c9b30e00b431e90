//! Reading a room's DAG, for servers in the room: one event, the state at an event (as IDs
//! or whole), an event's auth chain, history before some events (`/backfill`), and the
//! events between two points (`get_missing_events`). A server reads only what it could see:
//! it must have a member joined at that point of the DAG or now.

use axum::{Json, extract::State};
use medrix_protocol::RoomVersion;
use ruma::{
    EventId, OwnedEventId, RoomId, ServerName,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    },
};
use serde_json::{Value, json};

use super::{auth::Federated, membership::events_json};
use crate::{http::error::ApiError, service::Services};

/// The most events one `/backfill` or `get_missing_events` answer carries.
const MAX_EVENTS: usize = 100;

fn readable_room(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    at: Option<&EventId>,
) -> Result<RoomVersion, ApiError> {
    let version =
        services.rooms.version(room_id)?.ok_or_else(|| ApiError::not_found("unknown room"))?;
    let may = match at {
        Some(event_id) => services.rooms.server_may_read(room_id, origin, Some(event_id))?,
        None => false,
    } || services.rooms.server_may_read(room_id, origin, None)?;
    if may { Ok(version) } else { Err(ApiError::forbidden("the server is not in the room")) }
}

/// The room an event belongs to, from its stored JSON.
fn room_of(
    services: &Services,
    event_id: &EventId,
) -> Result<(ruma::OwnedRoomId, Value), ApiError> {
    let event = events_json(services, &[event_id.to_owned()])?
        .pop()
        .ok_or_else(|| ApiError::not_found("unknown event"))?;
    let room_id = event["room_id"]
        .as_str()
        .and_then(|id| RoomId::parse(id).ok())
        .ok_or_else(|| ApiError::internal("stored event without room"))?;
    Ok((room_id, event))
}

fn envelope(services: &Services, pdus: Vec<Value>) -> Json<Value> {
    Json(json!({
        "origin": services.config.server_name,
        "origin_server_ts": crate::clock::now_ms(),
        "pdus": pdus,
    }))
}

/// `GET /event/{eventId}`.
pub async fn event(
    State(services): State<Services>,
    request: Federated<get_event::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let (room_id, event) = room_of(&services, &request.body.event_id)?;
    readable_room(&services, &request.origin, &room_id, Some(&request.body.event_id))?;
    Ok(envelope(&services, vec![event]))
}

/// The state before `event_id` and its auth chain, as IDs.
fn state_and_auth_ids(
    services: &Services,
    version: RoomVersion,
    event_id: &EventId,
) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>), ApiError> {
    let state = services
        .rooms
        .state_before_event(event_id)?
        .ok_or_else(|| ApiError::not_found("the state at this event is not known here"))?;
    let state_ids: Vec<OwnedEventId> = state.values().cloned().collect();
    let auth = services.rooms.auth_chain_of(version, &state_ids)?;
    Ok((state_ids, auth))
}

/// `GET /state_ids/{roomId}?event_id=`: the state before the event.
pub async fn state_ids(
    State(services): State<Services>,
    request: Federated<get_room_state_ids::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let version = readable_room(&services, &request.origin, &body.room_id, Some(&body.event_id))?;
    let (state, auth) = state_and_auth_ids(&services, version, &body.event_id)?;
    Ok(Json(json!({ "pdu_ids": state, "auth_chain_ids": auth })))
}

/// `GET /state/{roomId}?event_id=`: the same, whole events.
pub async fn state(
    State(services): State<Services>,
    request: Federated<get_room_state::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let version = readable_room(&services, &request.origin, &body.room_id, Some(&body.event_id))?;
    let (state, auth) = state_and_auth_ids(&services, version, &body.event_id)?;
    Ok(Json(json!({
        "pdus": events_json(&services, &state)?,
        "auth_chain": events_json(&services, &auth)?,
    })))
}

/// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
pub async fn event_auth(
    State(services): State<Services>,
    request: Federated<get_event_authorization::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let version = readable_room(&services, &request.origin, &body.room_id, Some(&body.event_id))?;
    let chain = services.rooms.auth_chain_of(version, std::slice::from_ref(&body.event_id))?;
    Ok(Json(json!({ "auth_chain": events_json(&services, &chain)? })))
}

/// `GET /backfill/{roomId}?v=&limit=`: history before (and including) the given events.
pub async fn backfill(
    State(services): State<Services>,
    request: Federated<get_backfill::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let version =
        readable_room(&services, &request.origin, &body.room_id, body.v.first().map(|v| &**v))?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
    let pdus = services.rooms.walk_back(version, &body.v, &[], 0, limit, true)?;
    let visible = visible_to(&services, &request.origin, &body.room_id, pdus)?;
    Ok(envelope(&services, visible))
}

/// `POST /get_missing_events/{roomId}`: events before `latest_events` back to
/// `earliest_events`, oldest first.
pub async fn missing_events(
    State(services): State<Services>,
    request: Federated<get_missing_events::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let version = readable_room(
        &services,
        &request.origin,
        &body.room_id,
        body.latest_events.first().map(|v| &**v),
    )?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(10).min(MAX_EVENTS);
    let mut pdus = services.rooms.walk_back(
        version,
        &body.latest_events,
        &body.earliest_events,
        u64::from(body.min_depth),
        limit,
        false,
    )?;
    pdus.sort_by_key(|pdu| pdu.depth());
    let visible = visible_to(&services, &request.origin, &body.room_id, pdus)?;
    Ok(Json(json!({ "events": visible })))
}

/// The events `origin` could see, as JSON.
fn visible_to(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    pdus: Vec<medrix_protocol::Pdu>,
) -> Result<Vec<Value>, ApiError> {
    let mut ids = Vec::with_capacity(pdus.len());
    for pdu in pdus {
        if services.rooms.server_may_read(room_id, origin, Some(pdu.event_id()))? {
            ids.push(pdu.event_id().to_owned());
        }
    }
    events_json(services, &ids)
}
