//! Redaction: stripping an event down to the fields its room version keeps, which is also the
//! part signatures and the reference hash cover.

use ruma::{CanonicalJsonObject, canonical_json::RedactedBecause};

use crate::{ProtocolError, RoomVersion};

/// Redacts `object` by the rules of `version`, recording the redaction event if given.
pub fn redact(
    object: CanonicalJsonObject,
    version: RoomVersion,
    redacted_because: Option<CanonicalJsonObject>,
) -> Result<CanonicalJsonObject, ProtocolError> {
    ruma::canonical_json::redact(
        object,
        &version.rules().redaction,
        redacted_because.map(RedactedBecause::from_json),
    )
    .map_err(|err| ProtocolError::Malformed(err.to_string()))
}
