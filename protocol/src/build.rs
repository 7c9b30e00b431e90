//! Building a new local event: fill in the envelope, hash, sign, and compute its ID.

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, Int, OwnedEventId, OwnedRoomId, OwnedUserId,
    signatures::{JsonError, hash_and_sign_event},
};

use crate::{
    Pdu, ProtocolError, RoomVersion, canonical::MAX_CANONICAL_PDU_BYTES, incoming::event_id,
    keys::ServerSigningKey,
};

/// Everything a new event says, before the server hashes and signs it. The caller chooses
/// `prev_events`, `auth_events`, `depth` and the timestamp: nothing here reads a clock.
#[derive(Debug, Clone)]
pub struct EventDraft {
    /// The room; `None` only for a v12 create event, whose ID becomes the room ID.
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub kind: String,
    pub state_key: Option<String>,
    pub content: CanonicalJsonObject,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub depth: u64,
    pub origin_server_ts: u64,
    /// For `m.room.redaction`: the target (placed where the room version wants it).
    pub redacts: Option<OwnedEventId>,
}

/// A freshly signed event: its ID, its wire JSON and its typed form.
#[derive(Debug, Clone)]
pub struct SignedEvent {
    pub event_id: OwnedEventId,
    pub json: CanonicalJsonObject,
    pub pdu: Pdu,
}

/// Hashes and signs `draft` with `key`, returning the event and its ID.
pub fn sign_new_event(
    draft: &EventDraft,
    version: RoomVersion,
    key: &ServerSigningKey,
) -> Result<SignedEvent, ProtocolError> {
    let mut json = unsigned_event_json(draft, version)?;
    hash_and_sign(&mut json, version, key)?;
    let event_id = event_id(&json, version)?;
    let pdu = Pdu::from_canonical(event_id.clone(), &json, version)?;
    Ok(SignedEvent { event_id, json, pdu })
}

/// The event JSON a draft describes, before its content hash and signatures are added.
pub fn unsigned_event_json(
    draft: &EventDraft,
    version: RoomVersion,
) -> Result<CanonicalJsonObject, ProtocolError> {
    let is_create = draft.kind == "m.room.create" && draft.state_key.as_deref() == Some("");
    match (&draft.room_id, version.room_id_is_create_event_hash() && is_create) {
        (Some(_), true) => {
            return Err(ProtocolError::Malformed(format!(
                "a room version {version} create event carries no room_id"
            )));
        }
        (None, false) => return Err(ProtocolError::Malformed("missing room_id".to_owned())),
        _ => {}
    }

    let mut json = CanonicalJsonObject::new();
    let mut content = draft.content.clone();
    if let Some(room_id) = &draft.room_id {
        json.insert("room_id".into(), string(room_id.as_str()));
    }
    if let Some(redacts) = &draft.redacts {
        let target = string(redacts.as_str());
        if version.redacts_in_content() {
            content.insert("redacts".into(), target);
        } else {
            json.insert("redacts".into(), target);
        }
    }
    json.insert("sender".into(), string(draft.sender.as_str()));
    json.insert("type".into(), string(&draft.kind));
    if let Some(state_key) = &draft.state_key {
        json.insert("state_key".into(), string(state_key));
    }
    json.insert("content".into(), CanonicalJsonValue::Object(content));
    json.insert("prev_events".into(), id_array(&draft.prev_events));
    json.insert("auth_events".into(), id_array(&draft.auth_events));
    json.insert("depth".into(), integer(draft.depth, "depth")?);
    json.insert("origin_server_ts".into(), integer(draft.origin_server_ts, "origin_server_ts")?);
    Ok(json)
}

/// Adds the content hash and this server's signature to an event object, in place. This is
/// the low-level step [`sign_new_event`] uses; it also signs events built elsewhere (a join
/// template from a remote server, the specification's examples).
pub fn hash_and_sign(
    json: &mut CanonicalJsonObject,
    version: RoomVersion,
    key: &ServerSigningKey,
) -> Result<(), ProtocolError> {
    hash_and_sign_event(key.server_name().as_str(), key, json, &version.rules().redaction).map_err(
        |err| match err {
            JsonError::PduTooLarge => ProtocolError::TooLarge {
                size: crate::canonical::encode(json).len(),
                limit: MAX_CANONICAL_PDU_BYTES,
            },
            other => ProtocolError::Malformed(other.to_string()),
        },
    )
}

fn string(text: &str) -> CanonicalJsonValue {
    CanonicalJsonValue::String(text.to_owned())
}

fn id_array(ids: &[OwnedEventId]) -> CanonicalJsonValue {
    CanonicalJsonValue::Array(ids.iter().map(|id| string(id.as_str())).collect())
}

fn integer(value: u64, field: &str) -> Result<CanonicalJsonValue, ProtocolError> {
    Int::try_from(value)
        .map(CanonicalJsonValue::Integer)
        .map_err(|_| ProtocolError::Malformed(format!("`{field}` is above 2^53 − 1")))
}
