//! Medrix's own client endpoints for the audit trail (`spec/audit.md`):
//! `GET /_medrix/client/v1/rooms/{roomId}/read_log?from=&limit=` pages through a record room's
//! read log, all of it for the patient, a grantee's own reads for them;
//! `GET /_medrix/client/v1/rooms/{roomId}/export` gives the patient the room's whole DAG, its
//! read log and the signing servers' key documents, for the independent verifier. The access
//! service decides; this only translates.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, Request, State},
};
use ruma::{OwnedRoomId, RoomId, ServerName};
use serde_json::{Map, Value, json};

use crate::{
    http::{
        error::ApiError,
        ruma_request::{authenticate, check_rate_limit, missing_token},
    },
    service::{
        Services,
        access::{MAX_LISTED, ReadLogPage},
        accounts::Session,
        federation::read_logs,
    },
};

/// Entries per page when the client does not say.
const DEFAULT_LIMIT: usize = 100;

/// A request to one of these endpoints: its session (authenticated, rate-limited) and room.
fn session_and_room(
    parts: &http::request::Parts,
    services: &Services,
    room_id: &str,
) -> Result<(Session, OwnedRoomId), ApiError> {
    let session = authenticate(parts, services, true)?.ok_or_else(missing_token)?;
    check_rate_limit(parts, services, Some(&session))?;
    let room_id = RoomId::parse(room_id).map_err(|_| ApiError::invalid_param("not a room ID"))?;
    Ok((session, room_id))
}

/// A read-log page's query: `from` and `limit` (at most `MAX_LISTED`), and the rest of it.
pub fn page_query(
    uri: &http::Uri,
    default_limit: usize,
) -> Result<(u64, usize, HashMap<String, String>), ApiError> {
    let Query(query): Query<HashMap<String, String>> =
        Query::try_from_uri(uri).map_err(|_| ApiError::invalid_param("unreadable query string"))?;
    let number = |key: &str, default: u64| -> Result<u64, ApiError> {
        query.get(key).map_or(Ok(default), |value| {
            value.parse().map_err(|_| ApiError::invalid_param(format!("`{key}` must be a number")))
        })
    };
    let from = number("from", 0)?;
    let limit = number("limit", default_limit as u64)?.clamp(1, MAX_LISTED as u64) as usize;
    Ok((from, limit, query))
}

pub async fn read_log(
    State(services): State<Services>,
    Path(room_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, _) = request.into_parts();
    let (session, room_id) = session_and_room(&parts, &services, &room_id)?;
    let (from, limit, query) = page_query(&parts.uri, DEFAULT_LIMIT)?;
    // Another server's log of the room (its users' reads), for the patient: fetched from it.
    if let Some(server) = query.get("server").filter(|s| **s != services.config.server_name) {
        let server = ServerName::parse(server)
            .map_err(|_| ApiError::invalid_param("`server` is not a server name"))?;
        let own = services.access.read_log(&session.user_id, &room_id, 0, 1)?;
        if own.head.is_none() {
            return Err(ApiError::forbidden("only the patient reads other servers' logs"));
        }
        let federation = services
            .federation
            .as_ref()
            .ok_or_else(|| ApiError::not_found("this server does not federate"))?;
        let page =
            read_logs::fetch(&federation.client, &server, room_id, from, limit as u64).await?;
        return Ok(Json(page));
    }
    let page = services.access.read_log(&session.user_id, &room_id, from, limit)?;
    let mut body = page_json(&page);
    // The patient learns which other servers of the room keep a log of their users' reads.
    if page.head.is_some() {
        let own = services.rooms.server_name();
        let servers = services.access.servers_in_room(&room_id, own)?;
        body["servers"] = json!(servers);
    }
    Ok(Json(body))
}

/// A page of a read log as the endpoints answer it: `entries`, `next`, and `head` when given.
pub fn page_json(page: &ReadLogPage) -> Value {
    let mut body = json!({
        "entries": page.entries.iter().map(|entry| entry.to_json()).collect::<Vec<_>>(),
    });
    if let Some(next) = page.next {
        body["next"] = json!(next);
    }
    if let Some(head) = &page.head {
        body["head"] = json!({ "count": head.count, "hash": head.hash });
    }
    if let Some(rooms) = &page.rooms {
        let rooms: serde_json::Map<String, Value> = rooms
            .iter()
            .map(|(class, ids)| {
                let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
                (class.as_str().to_owned(), json!(ids))
            })
            .collect();
        body["rooms"] = Value::Object(rooms);
    }
    body
}

pub async fn export(
    State(services): State<Services>,
    Path(room_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, _) = request.into_parts();
    let (session, room_id) = session_and_room(&parts, &services, &room_id)?;
    let export = services.access.export_room(&session.user_id, &room_id)?;
    let export = services.access.log(&session.log_reader(), export).await?;
    let own = services.config.server_name.as_str();
    let mut keys = Map::new();
    for server in &export.signers {
        let document = if server == own {
            services.server_keys.own_document(crate::clock::now_ms()).ok()
        } else {
            match (&services.federation, ServerName::parse(server)) {
                (Some(federation), Ok(name)) => {
                    federation.remote_keys.document(&name, 0).await.ok()
                }
                _ => None,
            }
        };
        if let Some(document) = document {
            keys.insert(server.clone(), serde_json::to_value(document).unwrap_or(Value::Null));
        }
    }
    // The other servers of the room, whose logs of their own users' reads the patient's
    // client fetches beside this one (`?server=` on the read log).
    let servers = services.access.servers_in_room(&room_id, services.rooms.server_name())?;
    Ok(Json(json!({
        "room_id": room_id,
        "servers": servers,
        "room_version": export.version.as_str(),
        "events": export.events,
        "read_log": export.read_log.iter().map(|entry| entry.to_json()).collect::<Vec<_>>(),
        "server_keys": keys,
    })))
}
