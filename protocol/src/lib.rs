//! Medrix protocol core: the signed, hash-linked event DAG of a Matrix room, as pure functions.
//!
//! Nothing here does I/O, reads a clock or draws randomness: time, keys and stored events are
//! passed in by the caller. That keeps every rule testable in isolation and lets the homeserver,
//! the clients and the independent audit verifier share exactly one implementation.
//!
//! The flow for an event received from anywhere:
//! 1. [`incoming::check_incoming_pdu`]: size, JSON, format, signatures, content hash (redacting
//!    on mismatch) and event ID.
//! 2. [`decide::decide`]: authorization against the event's auth events, the state before it and
//!    the room's current state, giving a [`decide::Verdict`] and the state after the event.
//!
//! A new local event goes through [`build::sign_new_event`] and then the same [`decide::decide`].

pub mod auth_chain;
pub mod build;
pub mod canonical;
pub mod decide;
pub mod error;
pub mod event_format;
pub mod event_signatures;
pub mod history_visibility;
pub mod incoming;
pub mod keys;
pub mod local_room;
pub mod lookup;
pub mod pdu;
pub mod redaction;
pub mod request_signature;
pub mod resolve;
pub mod room_version;
pub mod server_keys;
pub mod vectors;

pub use decide::{Decision, Verdict, decide};
pub use error::ProtocolError;
pub use lookup::EventLookup;
pub use pdu::Pdu;
pub use resolve::{StateMap, resolve_state};
pub use room_version::RoomVersion;

/// Re-exported so callers use the very ruma this crate was built and tested against.
pub use ruma;
