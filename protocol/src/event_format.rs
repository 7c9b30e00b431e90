//! The event format rules a received PDU must follow in its room version: which fields it
//! has, their types, and the lengths of IDs and of `prev_events` and `auth_events`.
//!
//! ruma's `check_pdu_format` applies the same rules, but first serializes the whole event to
//! measure its size. On the federation ingest path the event is encoded anyway (for its
//! content hash and for storage), so the size is checked on that encoding instead
//! ([`crate::event_signatures::prepare`]) and this check serializes nothing. The property test
//! `own_format_check_agrees_with_ruma` holds the two to the same answers.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, ID_MAX_BYTES, RoomId};

use crate::{ProtocolError, RoomVersion};

/// The most `prev_events` an event may name.
const MAX_PREV_EVENTS: usize = 20;
/// The most `auth_events` an event may name.
const MAX_AUTH_EVENTS: usize = 10;

/// Checks every format rule of `version` except the event's total size.
pub fn check_fields(
    object: &CanonicalJsonObject,
    version: RoomVersion,
) -> Result<(), ProtocolError> {
    let rules = &version.rules().event_format;
    let kind = required_string(object, "type")?;
    required_string(object, "sender")?;
    let room_id = if kind != "m.room.create" || rules.require_room_create_room_id {
        Some(required_string(object, "room_id")?)
    } else {
        None
    };
    if rules.require_event_id {
        required_string(object, "event_id")?;
    }
    optional_string(object, "state_key")?;
    required_array(object, "prev_events", MAX_PREV_EVENTS)?;
    let auth_events = required_array(object, "auth_events", MAX_AUTH_EVENTS)?;
    if !rules.allow_room_create_in_auth_events
        && let Some(room_id) = room_id
    {
        // The room ID is the create event's reference hash; listing the create event among
        // the auth events would name it twice.
        let create_hash = <&RoomId>::try_from(room_id.as_str())
            .map_err(|err| malformed(format!("`room_id`: {err}")))?
            .strip_sigil();
        for id in auth_events {
            let CanonicalJsonValue::String(id) = id else {
                return Err(malformed("`auth_events` holds event IDs (strings)"));
            };
            let hash = id
                .strip_prefix('$')
                .ok_or_else(|| malformed("an event ID in `auth_events` starts with `$`"))?;
            if hash == create_hash {
                return Err(malformed("`auth_events` may not name the create event"));
            }
        }
    }
    match object.get("depth") {
        Some(CanonicalJsonValue::Integer(depth)) if *depth >= ruma::Int::from(0u8) => Ok(()),
        Some(_) => Err(malformed("`depth` must be a non-negative integer")),
        None => Err(malformed("missing `depth`")),
    }
}

fn optional_string<'a>(
    object: &'a CanonicalJsonObject,
    field: &str,
) -> Result<Option<&'a String>, ProtocolError> {
    match object.get(field) {
        None => Ok(None),
        Some(CanonicalJsonValue::String(value)) if value.len() <= ID_MAX_BYTES => Ok(Some(value)),
        Some(CanonicalJsonValue::String(_)) => {
            Err(malformed(format!("`{field}` is longer than {ID_MAX_BYTES} bytes")))
        }
        Some(_) => Err(malformed(format!("`{field}` must be a string"))),
    }
}

fn required_string<'a>(
    object: &'a CanonicalJsonObject,
    field: &str,
) -> Result<&'a String, ProtocolError> {
    optional_string(object, field)?.ok_or_else(|| malformed(format!("missing `{field}`")))
}

fn required_array<'a>(
    object: &'a CanonicalJsonObject,
    field: &str,
    max_len: usize,
) -> Result<&'a [CanonicalJsonValue], ProtocolError> {
    match object.get(field) {
        Some(CanonicalJsonValue::Array(items)) if items.len() <= max_len => Ok(items),
        Some(CanonicalJsonValue::Array(_)) => {
            Err(malformed(format!("`{field}` names more than {max_len} events")))
        }
        Some(_) => Err(malformed(format!("`{field}` must be an array"))),
        None => Err(malformed(format!("missing `{field}`"))),
    }
}

fn malformed(why: impl Into<String>) -> ProtocolError {
    ProtocolError::Malformed(why.into())
}
