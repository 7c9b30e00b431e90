//! The checks a PDU passes before authorization: size, JSON, format, signatures and hashes.
//! Which servers' keys are needed is answered first, so the server can fetch them.

use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId,
    signatures::required_server_signatures_to_verify_event,
};

use crate::{
    Pdu, ProtocolError, RoomVersion,
    canonical::{MAX_PDU_BYTES, parse_object},
    event_signatures::{PreparedCheck, SignatureCheck, check_signatures_and_hashes, prepare},
    keys::VerifyKeys,
};

/// A PDU whose format, signatures and hashes were checked, ready for authorization.
#[derive(Debug, Clone)]
pub struct CheckedPdu {
    /// The typed event.
    pub pdu: Pdu,
    /// The JSON to store, canonically encoded: the received event, or its redacted form if the
    /// content hash did not match (the spec's rule: keep the event, but only what the
    /// signature covers). Encoded here, on the checking threads, rather than where the room
    /// takes events in one at a time.
    pub json: String,
    /// Whether the content hash mismatched and the event was redacted on receipt.
    pub redacted_on_receipt: bool,
}

/// Runs every pre-authorization check on a PDU received as bytes.
pub fn check_incoming_pdu(
    bytes: &[u8],
    version: RoomVersion,
    keys: &VerifyKeys,
) -> Result<CheckedPdu, ProtocolError> {
    check_incoming_object(parse_object(bytes, MAX_PDU_BYTES)?, version, keys)
}

/// Runs every pre-authorization check on a batch of PDUs received as bytes, giving one result
/// per input in the same order (see [`check_incoming_objects`]).
pub fn check_incoming_batch<B: AsRef<[u8]>>(
    batch: &[B],
    version: RoomVersion,
    keys: &VerifyKeys,
) -> Vec<Result<CheckedPdu, ProtocolError>> {
    let mut parse_errors = Vec::new();
    let mut objects = Vec::with_capacity(batch.len());
    for bytes in batch {
        match parse_object(bytes.as_ref(), MAX_PDU_BYTES) {
            Ok(object) => {
                parse_errors.push(None);
                objects.push(object);
            }
            Err(err) => parse_errors.push(Some(err)),
        }
    }
    let mut checked = check_incoming_objects(objects, version, keys).into_iter();
    parse_errors
        .into_iter()
        .map(|parse_error| match parse_error {
            Some(err) => Err(err),
            None => checked.next().expect("one result per parsed object").map_err(|(err, _)| err),
        })
        .collect()
}

/// Runs every pre-authorization check on a batch of parsed PDUs (part of a federation
/// transaction), giving one result per input in the same order. A refused event is named when
/// it has a computable ID, so a caller reporting per-event results need not keep a copy of
/// every object. Faster per event than one at a time: the signature arithmetic of the whole
/// batch runs back to back, with the curve tables in cache.
pub fn check_incoming_objects(
    objects: Vec<CanonicalJsonObject>,
    version: RoomVersion,
    keys: &VerifyKeys,
) -> Vec<Result<CheckedPdu, (ProtocolError, Option<OwnedEventId>)>> {
    let prepared: Vec<_> = objects
        .into_iter()
        .map(|object| {
            let check =
                check_format(&object, version).and_then(|()| prepare(&object, version, keys));
            (object, check)
        })
        .collect();
    prepared
        .into_iter()
        .map(|(object, check)| match check.and_then(PreparedCheck::verify) {
            Ok(check) => finish(object, check, version).map_err(|err| (err, None)),
            Err(err) => {
                let event_id = event_id(&object, version).ok();
                Err((err, event_id))
            }
        })
        .collect()
}

/// Runs every pre-authorization check on a PDU already parsed as canonical JSON.
pub fn check_incoming_object(
    object: CanonicalJsonObject,
    version: RoomVersion,
    keys: &VerifyKeys,
) -> Result<CheckedPdu, ProtocolError> {
    check_format(&object, version)?;
    let check = check_signatures_and_hashes(&object, version, keys)?;
    finish(object, check, version)
}

/// Keeps the event whole if its content hash matched, else its redacted form, and types it.
fn finish(
    object: CanonicalJsonObject,
    check: SignatureCheck,
    version: RoomVersion,
) -> Result<CheckedPdu, ProtocolError> {
    // The reference hash covers only the redacted form, so the ID is the same either way.
    let (pdu, json, redacted_on_receipt) = if check.content_hash_matches {
        (Pdu::from_canonical(check.event_id, &object, version)?, check.whole, false)
    } else {
        let json = crate::canonical::encode(&check.redacted);
        (Pdu::from_canonical(check.event_id, &check.redacted, version)?, json, true)
    };
    Ok(CheckedPdu { pdu, json, redacted_on_receipt })
}

/// The format rules of the room version (field types, sizes of IDs); the event's own size is
/// checked with its signatures and hashes, on the encoding made there.
pub use crate::event_format::check_fields as check_format;

/// The servers whose signatures the event must carry; their keys must be in the
/// [`VerifyKeys`] given to [`check_incoming_object`].
pub fn required_signers(
    object: &CanonicalJsonObject,
    version: RoomVersion,
) -> Result<Vec<OwnedServerName>, ProtocolError> {
    required_server_signatures_to_verify_event(object, &version.rules().signatures)
        .map(|servers| servers.into_iter().collect())
        .map_err(|err| ProtocolError::Malformed(err.to_string()))
}

/// The event ID: `$` followed by the URL-safe unpadded base64 of the reference hash.
pub fn event_id(
    object: &CanonicalJsonObject,
    version: RoomVersion,
) -> Result<OwnedEventId, ProtocolError> {
    let hash = ruma::signatures::reference_hash(object, version.rules())
        .map_err(|err| ProtocolError::Malformed(err.to_string()))?;
    EventId::parse(format!("${hash}")).map_err(|err| ProtocolError::Malformed(err.to_string()))
}

/// The v12 room ID for a create event's ID: the same hash behind `!` instead of `$`.
pub fn room_id_from_create_event_id(create_event_id: &EventId) -> OwnedRoomId {
    let hash = create_event_id.as_str().trim_start_matches('$');
    RoomId::parse(format!("!{hash}")).expect("an event ID's hash is a valid room ID localpart")
}

/// The create event's ID for a v12 room ID (the inverse of [`room_id_from_create_event_id`]).
pub fn create_event_id_from_room_id(room_id: &RoomId) -> Option<OwnedEventId> {
    EventId::parse(format!("${}", room_id.as_str().trim_start_matches('!'))).ok()
}
