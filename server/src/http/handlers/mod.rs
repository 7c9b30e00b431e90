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

/// Refuses unless `user` is joined to the room now (reads of a room left or never joined
/// are refused: nothing after a kick).
fn require_joined(services: &Services, room_id: &RoomId, user: &UserId) -> Result<(), ApiError> {
    if services.rooms.is_joined(room_id, user)? {
        Ok(())
    } else {
        Err(ApiError::forbidden("you are not joined to this room"))
    }
}
