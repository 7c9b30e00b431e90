//! Applying an accepted redaction to the event it names. Authorization lets any member send
//! a redaction event; whether the target's content is actually removed is the server's
//! separate check (the spec's rule): the redaction's sender sent the target, or has at
//! least the room's `redact` power level. The redaction event itself stays in the DAG either
//! way, and the redacted target keeps its event ID (the reference hash covers only what
//! redaction keeps), so the audit trail is intact.

use medrix_protocol::{
    EventLookup, Pdu, RoomVersion, StateMap,
    canonical::{MAX_PDU_BYTES, encode, parse_object},
    redaction::redact,
};
use ruma::{CanonicalJsonObject, OwnedEventId, RoomId, UserId, events::StateEventType};
use serde_json::Value;

use super::RoomError;
use crate::storage::{Storage, StorageError, catalogue as cf};

/// The target's stored JSON after redaction, if the redaction applies. `state` is the room's
/// state the redaction is judged against (whose power levels count), `state_events` lends its
/// events. Local and received redactions alike come through here, in the write that stores
/// the redaction.
pub fn redacted_target(
    storage: &Storage,
    room_id: &RoomId,
    version: RoomVersion,
    state: &StateMap,
    state_events: &impl EventLookup,
    redaction: &Pdu,
    redaction_json: &CanonicalJsonObject,
) -> Result<Option<(OwnedEventId, Vec<u8>)>, RoomError> {
    let Some(target_id) = redaction.redacts() else { return Ok(None) };
    let Some(bytes) = storage.get(cf::EVENTID_PDU, target_id.as_bytes())? else {
        return Ok(None);
    };
    let target = parse_object(&bytes, MAX_PDU_BYTES)
        .map_err(|err| StorageError::Corrupt(format!("stored event: {err}")))?;
    let in_room = target.get("room_id").and_then(|id| id.as_str()) == Some(room_id.as_str());
    let target_sender = target.get("sender").and_then(|s| s.as_str()).unwrap_or_default();
    let sender = redaction.sender();
    if !in_room
        || (target_sender != sender.as_str()
            && !has_redact_power(version, state, state_events, sender))
    {
        return Ok(None);
    }
    let redacted = redact(target, version, Some(redaction_json.clone()))
        .map_err(|err| RoomError::Invalid(err.to_string()))?;
    Ok(Some((target_id.to_owned(), encode(&redacted).into_bytes())))
}

/// Whether `user`'s power level reaches the room's `redact` level (creators in v12 always do).
fn has_redact_power(
    version: RoomVersion,
    state: &StateMap,
    state_events: &impl EventLookup,
    user: &UserId,
) -> bool {
    let content_of = |kind: StateEventType| -> Option<Value> {
        let id = state.get(&(kind, String::new()))?;
        serde_json::from_str(state_events.get_pdu(id)?.content().get()).ok()
    };
    let create = state
        .get(&(StateEventType::RoomCreate, String::new()))
        .and_then(|id| state_events.get_pdu(id));
    let is_creator = create.is_some_and(|create| create.sender() == user);
    if version >= RoomVersion::V12 {
        let additional = content_of(StateEventType::RoomCreate)
            .and_then(|c| c.get("additional_creators").cloned())
            .and_then(|list| list.as_array().cloned())
            .unwrap_or_default();
        if is_creator || additional.iter().any(|u| u.as_str() == Some(user.as_str())) {
            return true;
        }
    }
    let Some(levels) = content_of(StateEventType::RoomPowerLevels) else {
        return is_creator; // without power levels the creator has 100, everyone else 0
    };
    let number = |v: Option<&Value>, default: i64| {
        v.and_then(|v| v.as_i64().or_else(|| v.as_str()?.parse().ok())).unwrap_or(default)
    };
    let user_level =
        number(levels["users"].get(user.as_str()), number(levels.get("users_default"), 0));
    user_level >= number(levels.get("redact"), 50)
}
