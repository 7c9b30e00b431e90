//! Request handlers: short functions from a typed request to a typed response. Decisions live
//! in the services.

pub mod account;
pub mod aliases;
pub mod audit;
pub mod device_accounts;
pub mod devices;
pub mod discovery;
pub mod key_backup;
pub mod keys;
pub mod knock;
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
/// directory), if it carries an access token (a token it carries must be valid), and the
/// caller's address.
pub struct MaybeSession(pub Option<Session>, String);

impl axum::extract::FromRequestParts<Services> for MaybeSession {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        services: &Services,
    ) -> Result<Self, ApiError> {
        let session = crate::http::ruma_request::authenticate(parts, services, false)?;
        let client = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string());
        Ok(MaybeSession(session, client))
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
                "looking up another server's users needs an access token",
            )
        })
    }

    /// Who a room alias lookup on another server is made for: the signed-in user, or the
    /// caller's address. Alias lookups stay open without a token, because the spec leaves
    /// them open and standard clients (matrix-sdk among them) send none; an anonymous
    /// caller is held to the per-client rate limit instead, and the request can only reach
    /// public addresses, follows no redirect and echoes no detail back.
    fn directory_requester(&self, services: &Services) -> Result<String, ApiError> {
        match &self.0 {
            Some(session) => Ok(session.user_id.to_string()),
            None => {
                services.rate_limits.check(&self.1).map_err(ApiError::limit_exceeded)?;
                Ok(format!("anonymous caller at {}", self.1))
            }
        }
    }
}

/// Refuses unless `user` is joined to the room now (the access service decides).
fn require_joined(services: &Services, room_id: &RoomId, user: &UserId) -> Result<(), ApiError> {
    Ok(services.access.require_joined(room_id, user)?)
}
