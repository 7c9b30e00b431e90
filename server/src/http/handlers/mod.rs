//! Request handlers: short functions from a typed request to a typed response. Decisions live
//! in the services.

pub mod account;
pub mod aliases;
pub mod devices;
pub mod discovery;
pub mod key_backup;
pub mod keys;
pub mod media;
mod password_auth;
pub mod room_ephemeral;
pub mod room_reads;
pub mod rooms;
pub mod session;
pub mod sync;
pub mod user_data;

use ruma::{RoomId, UserId};

use crate::{
    http::error::{ApiError, ErrorCode},
    service::{Services, accounts::Session},
};

/// The session of a request to an endpoint the spec leaves open (profiles, the room
/// directory), if it carries an access token; a token it carries must be valid.
pub struct MaybeSession(pub Option<Session>);

impl axum::extract::FromRequestParts<Services> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        services: &Services,
    ) -> Result<Self, ApiError> {
        crate::http::ruma_request::authenticate(parts, services, false).map(MaybeSession)
    }
}

impl MaybeSession {
    /// The user on whose behalf this server may ask another one. Such a request goes out
    /// signed by this server to a host the caller names, so nobody unauthenticated may
    /// cause one (it would make the server a free proxy into any network it reaches).
    fn requester(&self) -> Result<&UserId, ApiError> {
        self.0.as_ref().map(|session| session.user_id.as_ref()).ok_or_else(|| {
            ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                ErrorCode::MissingToken,
                "looking up another server's users or aliases needs an access token",
            )
        })
    }
}

/// Refuses unless `user` is joined to the room now (reads of a room left or never joined
/// are refused: nothing after a kick).
fn require_joined(services: &Services, room_id: &RoomId, user: &UserId) -> Result<(), ApiError> {
    if services.rooms.is_joined(room_id, user)? {
        Ok(())
    } else {
        Err(ApiError::forbidden("you are not joined to this room"))
    }
}
