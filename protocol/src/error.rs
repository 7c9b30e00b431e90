//! The one error type of the protocol layer. Each variant names what was wrong with the input,
//! in words an operator can act on; the server maps them to Matrix error codes at its edge.

use thiserror::Error;

/// Why a piece of protocol input (an event, a key, a room version) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    /// The bytes are over the size the specification allows.
    #[error("event is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },

    /// The bytes are not JSON at all, or not a JSON object.
    #[error("not valid JSON: {0}")]
    NotJson(String),

    /// JSON, but outside canonical JSON (floats, integers beyond 2^53, ...).
    #[error("not canonical JSON: {0}")]
    NotCanonical(String),

    /// A field is missing or has the wrong type or shape.
    #[error("malformed event: {0}")]
    Malformed(String),

    /// A room version Medrix does not speak.
    #[error("unsupported room version {0:?}: Medrix speaks room versions 10, 11 and 12")]
    UnsupportedRoomVersion(String),

    /// A signature is missing, made with an unknown key, or does not verify.
    #[error("signature check failed: {0}")]
    BadSignature(String),

    /// A signing or verify key could not be used.
    #[error("bad key: {0}")]
    BadKey(String),

    /// State resolution could not run (for example an event it needs is unknown).
    #[error("state resolution failed: {0}")]
    StateResolution(String),
}
