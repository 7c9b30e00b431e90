//! Reading a room's DAG, for servers in the room: one event, the state at an event (as IDs
//! or whole), an event's auth chain, history before some events (`/backfill`), and the
//! events between two points (`get_missing_events`). Every answer comes from the access
//! service, which lets a server read only what one of its users could see.

use axum::{Json, extract::State};
use medrix_records::{LogReader, ReadPath};
use ruma::ServerName;
use ruma::api::federation::{
    authorization::get_event_authorization,
    backfill::get_backfill,
    event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
};
use serde_json::{Map, Value, json};

use super::auth::Federated;
use crate::{
    http::error::ApiError,
    service::{Services, access::HistoryWalk},
};

/// The most events one `/backfill` or `get_missing_events` answer carries.
const MAX_EVENTS: usize = 100;

fn envelope(services: &Services, pdus: Vec<Map<String, Value>>) -> Json<Value> {
    Json(json!({
        "origin": services.config.server_name,
        "origin_server_ts": crate::clock::now_ms(),
        "pdus": pdus,
    }))
}

/// Who reads, for the read log: the calling server.
fn reader(origin: &ServerName) -> LogReader {
    LogReader::Server { server_name: origin.to_string() }
}

/// `GET /event/{eventId}`.
pub async fn event(
    State(services): State<Services>,
    request: Federated<get_event::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let event = services.access.event_for_server(&request.origin, &request.body.event_id)?;
    let event = services.access.log(&reader(&request.origin), event).await?;
    Ok(envelope(&services, vec![event]))
}

/// `GET /state_ids/{roomId}?event_id=`: the state before the event.
pub async fn state_ids(
    State(services): State<Services>,
    request: Federated<get_room_state_ids::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let at = services.access.state_at_for_server(
        &request.origin,
        &body.room_id,
        &body.event_id,
        ReadPath::FederationStateIds,
    )?;
    let at = services.access.log(&reader(&request.origin), at).await?;
    Ok(Json(json!({ "pdu_ids": at.state, "auth_chain_ids": at.auth_chain })))
}

/// `GET /state/{roomId}?event_id=`: the same, whole events.
pub async fn state(
    State(services): State<Services>,
    request: Federated<get_room_state::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let at = services.access.state_at_for_server(
        &request.origin,
        &body.room_id,
        &body.event_id,
        ReadPath::FederationState,
    )?;
    let at = services.access.log(&reader(&request.origin), at).await?;
    Ok(Json(json!({
        "pdus": services.access.events_json(&at.state)?,
        "auth_chain": services.access.events_json(&at.auth_chain)?,
    })))
}

/// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
pub async fn event_auth(
    State(services): State<Services>,
    request: Federated<get_event_authorization::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let chain =
        services.access.auth_chain_for_server(&request.origin, &body.room_id, &body.event_id)?;
    let chain = services.access.log(&reader(&request.origin), chain).await?;
    Ok(Json(json!({ "auth_chain": services.access.events_json(&chain)? })))
}

/// `GET /backfill/{roomId}?v=&limit=`: history before (and including) the given events.
pub async fn backfill(
    State(services): State<Services>,
    request: Federated<get_backfill::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(MAX_EVENTS).min(MAX_EVENTS);
    let walk = HistoryWalk { from: &body.v, stop_at: &[], min_depth: 0, limit, include_from: true };
    let pdus = services.access.history_for_server(
        &request.origin,
        &body.room_id,
        walk,
        ReadPath::FederationBackfill,
    )?;
    let pdus = services.access.log(&reader(&request.origin), pdus).await?;
    Ok(envelope(&services, pdus))
}

/// `POST /get_missing_events/{roomId}`: events before `latest_events` back to
/// `earliest_events`, oldest first.
pub async fn missing_events(
    State(services): State<Services>,
    request: Federated<get_missing_events::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(10).min(MAX_EVENTS);
    let walk = HistoryWalk {
        from: &body.latest_events,
        stop_at: &body.earliest_events,
        min_depth: u64::from(body.min_depth),
        limit,
        include_from: false,
    };
    let events = services.access.history_for_server(
        &request.origin,
        &body.room_id,
        walk,
        ReadPath::FederationMissingEvents,
    )?;
    let events = services.access.log(&reader(&request.origin), events).await?;
    Ok(Json(json!({ "events": events })))
}
