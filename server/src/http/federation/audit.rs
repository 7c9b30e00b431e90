//! `GET /_medrix/federation/v1/rooms/{roomId}/read_log?from=&limit=`: this server's read log
//! of a record room (its own users' reads there), for the server of the record's patient
//! only (`spec/audit.md` §4). The access service decides.

use std::collections::HashMap;

use axum::{
    Json,
    extract::{Path, Query, Request, State},
};
use ruma::RoomId;
use serde_json::Value;

use super::auth::authenticate;
use crate::{
    http::error::ApiError,
    service::{Services, access::MAX_LISTED},
};

pub async fn read_log(
    State(services): State<Services>,
    Path(room_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let request = authenticate(request, &services).await?;
    let room_id = RoomId::parse(&room_id).map_err(|_| ApiError::invalid_param("not a room ID"))?;
    let query: Query<HashMap<String, String>> = Query::try_from_uri(&request.parts.uri)
        .map_err(|_| ApiError::invalid_param("unreadable query string"))?;
    let number = |key: &str, default: u64| -> Result<u64, ApiError> {
        query.get(key).map_or(Ok(default), |value| {
            value.parse().map_err(|_| ApiError::invalid_param(format!("`{key}` must be a number")))
        })
    };
    let from = number("from", 0)?;
    let limit = number("limit", MAX_LISTED as u64)?.clamp(1, MAX_LISTED as u64) as usize;
    let page =
        services.access.read_log_for_patients_server(&request.origin, &room_id, from, limit)?;
    Ok(Json(crate::http::handlers::audit::page_json(&page)))
}
