//! proptest strategies for events and JSON, shared by the property and fuzz tests.

use medrix_protocol::{RoomVersion, build::EventDraft, canonical::object_from_value};
use proptest::prelude::*;
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

/// Any JSON value canonical JSON allows (integers within ±(2^53 − 1), no floats).
pub fn canonical_json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(Value::from),
        "\\PC{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_.]{1,12}", inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

pub fn room_version() -> impl Strategy<Value = RoomVersion> {
    prop::sample::select(RoomVersion::ALL.to_vec())
}

fn event_id() -> impl Strategy<Value = OwnedEventId> {
    "[A-Za-z0-9_-]{43}".prop_map(|hash| EventId::parse(format!("${hash}")).unwrap())
}

/// A draft event of a type the record rooms use, with arbitrary extra content.
pub fn event_draft() -> impl Strategy<Value = (RoomVersion, EventDraft)> {
    let kinds = prop::sample::select(vec![
        ("m.room.message", None),
        ("m.room.encrypted", None),
        ("org.medrix.reading", None),
        ("m.room.member", Some("@dr.lee:clinic.example")),
        ("m.room.topic", Some("")),
        ("m.room.power_levels", Some("")),
        ("m.room.join_rules", Some("")),
        ("org.medrix.grant", Some("@dr.lee:clinic.example")),
    ]);
    (
        room_version(),
        kinds,
        prop::collection::btree_map("[a-z_]{1,10}", canonical_json_value(), 0..5),
        prop::collection::vec(event_id(), 1..3),
        prop::collection::vec(event_id(), 0..4),
        1u64..1_000_000,
        1_700_000_000_000u64..1_800_000_000_000,
        prop::sample::select(vec!["join", "invite", "leave", "ban"]),
    )
        .prop_map(|(version, (kind, state_key), extra, prev, auth, depth, ts, membership)| {
            let mut content: serde_json::Map<String, Value> = extra.into_iter().collect();
            if kind == "m.room.member" {
                content.insert("membership".into(), json!(membership));
            }
            let draft = EventDraft {
                room_id: Some(RoomId::parse("!record:patient.example").unwrap()),
                sender: UserId::parse("@patient:patient.example").unwrap(),
                kind: kind.to_owned(),
                state_key: state_key.map(ToOwned::to_owned),
                content: object_from_value(Value::Object(content)).unwrap(),
                prev_events: prev,
                auth_events: auth,
                depth,
                origin_server_ts: ts,
                redacts: None,
            };
            (version, draft)
        })
}
