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
