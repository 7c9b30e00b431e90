//! Queries other servers make about this one's users.

use axum::extract::State;
use ruma::api::federation::query::{get_profile_information, get_room_information};

use super::auth::Federated;
use crate::{
    http::{error::ApiError, ruma_response::RumaResponse},
    service::Services,
};

/// A local user's profile, for another server's users (display names in shared rooms).
/// Names are personal data: only a server with a member joined to a room the user is joined
/// to gets an answer. Every other asker gets the same `M_NOT_FOUND` an unknown user gets, so
/// it cannot even learn who has an account here.
pub async fn profile(
    State(services): State<Services>,
    request: Federated<get_profile_information::v1::Request>,
) -> Result<RumaResponse<get_profile_information::v1::Response>, ApiError> {
    let user = &request.body.user_id;
    tracing::debug!(origin = %request.origin, "profile query");
    let own = services.rooms.server_name();
    if user.server_name() != own
        || !services.accounts.exists(user)?
        || !services.access.servers_sharing_rooms_with(user, own)?.contains(&request.origin)
    {
        return Err(ApiError::not_found("no such user here"));
    }
    let mut profile = services.user_data.profile(user)?;
    if let Some(field) = &request.body.field {
        profile.retain(|name, _| name == field.as_str());
    }
    Ok(RumaResponse(profile.into_iter().collect()))
}

/// `GET /query/directory?room_alias=`: which room one of this server's aliases names, and
/// the servers to join it through.
pub async fn directory(
    State(services): State<Services>,
    request: Federated<get_room_information::v1::Request>,
) -> Result<RumaResponse<get_room_information::v1::Response>, ApiError> {
    tracing::debug!(origin = %request.origin, "directory query");
    let alias = &request.body.room_alias;
    let (room, servers) = services
        .aliases
        .directory_entry(alias)?
        .ok_or_else(|| ApiError::not_found(format!("no room alias {alias} here")))?;
    Ok(RumaResponse(get_room_information::v1::Response::new(room, servers)))
}
