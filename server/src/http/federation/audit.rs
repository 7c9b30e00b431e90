//! `GET /_medrix/federation/v1/rooms/{roomId}/read_log?from=&limit=`: this server's read log
//! of a record room (its own users' reads there), for the server of the record's patient
//! only (`spec/audit.md` §4). The access service decides.

use axum::{
    Json,
    extract::{Path, Request, State},
};
use ruma::RoomId;
use serde_json::Value;

use super::auth::authenticate;
use crate::{
    http::{error::ApiError, handlers::audit::page_query},
    service::{Services, access::MAX_LISTED},
};

pub async fn read_log(
    State(services): State<Services>,
    Path(room_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let request = authenticate(request, &services).await?;
    let room_id = RoomId::parse(&room_id).map_err(|_| ApiError::invalid_param("not a room ID"))?;
    let (from, limit, _) = page_query(&request.parts.uri, MAX_LISTED)?;
    let page =
        services.access.read_log_for_patients_server(&request.origin, &room_id, from, limit)?;
    Ok(Json(crate::http::handlers::audit::page_json(&page)))
}
