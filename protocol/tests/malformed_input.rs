//! Each kind of bad input gets its own clear error value, never a panic.

mod support;

use medrix_protocol::{
    ProtocolError, RoomVersion, Verdict,
    build::sign_new_event,
    canonical::{MAX_CANONICAL_PDU_BYTES, MAX_PDU_BYTES, encode},
    decide,
    incoming::check_incoming_pdu,
    local_room::LocalRoom,
};
use serde_json::{Value, json};
use support::cast;

fn signed_message_bytes(version: RoomVersion, body: &str) -> Vec<u8> {
    let cast = cast();
    let room = LocalRoom::private_chat(
        version,
        &cast.patient_server,
        &cast.patient,
        None.or((version < RoomVersion::V12)
            .then(|| ruma::RoomId::parse("!r:patient.example").unwrap())
            .as_deref()),
        1,
    )
    .unwrap();
    let draft = room
        .draft(
            &cast.patient,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": body}),
            10,
        )
        .unwrap();
    encode(&sign_new_event(&draft, version, &cast.patient_server).unwrap().json).into_bytes()
}

fn with_field(bytes: &[u8], field: &str, value: Value) -> Vec<u8> {
    let mut object: serde_json::Map<String, Value> = serde_json::from_slice(bytes).unwrap();
    object.insert(field.to_owned(), value);
    serde_json::to_vec(&object).unwrap()
}

#[test]
fn invalid_json_is_not_json() {
    let keys = cast().verify_keys();
    for bad in [&b""[..], b"{", b"not json", b"{\"a\":}", b"[]", b"\"event\"", b"{\"a\":1}}"] {
        let err = check_incoming_pdu(bad, RoomVersion::V12, &keys).unwrap_err();
        assert!(
            matches!(err, ProtocolError::NotJson(_)),
            "{:?} gave {err:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn floats_and_oversized_integers_are_not_canonical() {
    let bytes = signed_message_bytes(RoomVersion::V12, "hello");
    let keys = cast().verify_keys();
    for value in [json!(1.5), json!(9_007_199_254_740_992u64)] {
        let err = check_incoming_pdu(&with_field(&bytes, "depth", value), RoomVersion::V12, &keys)
            .unwrap_err();
        assert!(matches!(err, ProtocolError::NotCanonical(_)), "{err:?}");
    }
}

#[test]
fn wrong_field_types_are_malformed() {
    let bytes = signed_message_bytes(RoomVersion::V11, "hello");
    let keys = cast().verify_keys();
    for (field, value) in [
        ("sender", json!(42)),
        ("type", json!(["m.room.message"])),
        ("prev_events", json!("$abc")),
        ("depth", json!(-1)),
        ("content", json!("text")),
        ("hashes", json!("sha256")),
        ("room_id", json!("not a room id")),
    ] {
        let err =
            check_incoming_pdu(&with_field(&bytes, field, value.clone()), RoomVersion::V11, &keys)
                .unwrap_err();
        assert!(
            matches!(err, ProtocolError::Malformed(_) | ProtocolError::BadSignature(_)),
            "{field} = {value}: {err:?}"
        );
        assert!(!err.to_string().is_empty());
    }
}

#[test]
fn events_over_64_kib_are_too_large() {
    let keys = cast().verify_keys();
    let bytes = signed_message_bytes(RoomVersion::V12, "hello");
    // Over the raw limit: refused before parsing.
    let huge = with_field(&bytes, "content", json!({"body": "x".repeat(MAX_PDU_BYTES)}));
    let err = check_incoming_pdu(&huge, RoomVersion::V12, &keys).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLarge { limit: MAX_PDU_BYTES, .. }), "{err:?}");
    // Under the raw limit thanks to whitespace, over it once canonical: refused by the checks.
    let padded =
        with_field(&bytes, "content", json!({"body": "x".repeat(MAX_CANONICAL_PDU_BYTES)}));
    let err = check_incoming_pdu(&padded, RoomVersion::V12, &keys).unwrap_err();
    assert!(matches!(err, ProtocolError::TooLarge { .. }), "{err:?}");
    // A local event that would be too large is refused when signed.
    let cast = cast();
    let room =
        LocalRoom::create(RoomVersion::V12, &cast.patient_server, &cast.patient, None, 1).unwrap();
    let draft = room
        .draft(&cast.patient, "m.room.message", None, json!({"body": "x".repeat(70_000)}), 2)
        .unwrap();
    let err = sign_new_event(&draft, RoomVersion::V12, &cast.patient_server).unwrap_err();
    assert!(
        matches!(err, ProtocolError::TooLarge { limit: MAX_CANONICAL_PDU_BYTES, .. }),
        "{err:?}"
    );
}

#[test]
fn bad_or_missing_signatures_are_refused() {
    let version = RoomVersion::V12;
    let bytes = signed_message_bytes(version, "hello");
    let cast = cast();
    // Known key, wrong signature.
    let mut object: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
    object["signatures"]["patient.example"]["ed25519:1"] = json!("A".repeat(86));
    let err =
        check_incoming_pdu(&serde_json::to_vec(&object).unwrap(), version, &cast.verify_keys())
            .unwrap_err();
    assert!(
        matches!(&err, ProtocolError::BadSignature(why) if why.contains("does not verify")),
        "{err:?}"
    );
    // No key known for the sender's server.
    let err = check_incoming_pdu(&bytes, version, &cast.clinic_server.verify_keys()).unwrap_err();
    assert!(
        matches!(&err, ProtocolError::BadSignature(why) if why.contains("patient.example")),
        "{err:?}"
    );
    // Signed by the wrong server.
    let mut object: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
    let patient_sig = object["signatures"]["patient.example"].take();
    object["signatures"] = json!({"clinic.example": patient_sig});
    let err =
        check_incoming_pdu(&serde_json::to_vec(&object).unwrap(), version, &cast.verify_keys())
            .unwrap_err();
    assert!(matches!(err, ProtocolError::BadSignature(_)), "{err:?}");
}

#[test]
fn unknown_room_versions_are_named_in_the_error() {
    for id in ["1", "9", "13", "org.example.custom"] {
        let err = RoomVersion::parse(id).unwrap_err();
        assert_eq!(err, ProtocolError::UnsupportedRoomVersion(id.to_owned()));
        assert!(err.to_string().contains(id));
    }
}

#[test]
fn a_create_event_naming_an_unknown_room_version_is_rejected() {
    let cast = cast();
    let mut room =
        LocalRoom::private_chat(RoomVersion::V12, &cast.patient_server, &cast.patient, None, 1)
            .unwrap();
    let create = room.signed_events()[0].clone();
    let mut draft = room
        .draft(&cast.patient, "m.room.create", Some(""), json!({"room_version": "99"}), 2)
        .unwrap();
    draft.room_id = None;
    draft.prev_events.clear();
    draft.auth_events.clear();
    let signed = sign_new_event(&draft, RoomVersion::V12, &cast.patient_server).unwrap();
    let decision = decide(RoomVersion::V12, &signed.pdu, room.events(), &Default::default(), None);
    assert!(matches!(decision.verdict, Verdict::Rejected(_)), "{decision:?}");
    // The room itself is unaffected.
    room.send(
        &cast.patient_server,
        &cast.patient,
        "m.room.topic",
        Some(""),
        json!({"topic": "ok"}),
        3,
    )
    .unwrap();
    assert_eq!(room.signed_events()[0].event_id, create.event_id);
}
