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

use crate::{http::error::ApiError, service::Services};

/// Refuses unless `user` is joined to the room now (the access service decides).
fn require_joined(services: &Services, room_id: &RoomId, user: &UserId) -> Result<(), ApiError> {
    Ok(services.access.require_joined(room_id, user)?)
}
