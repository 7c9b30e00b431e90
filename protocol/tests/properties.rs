//! Property tests of the protocol core: what must hold for every event and every order, and
//! agreement with ruma wherever Medrix computes something itself.

mod support;

use std::collections::{HashMap, HashSet};

use medrix_protocol::{
    Pdu, RoomVersion, StateMap, Verdict,
    auth_chain::conflicted_state_subgraph,
    build::sign_new_event,
    canonical::{MAX_CANONICAL_PDU_BYTES, MAX_PDU_BYTES, encode, parse_object, parse_value},
    decide,
    event_signatures::check_signatures_and_hashes,
    incoming::{check_format, check_incoming_object, check_incoming_pdu, event_id},
    keys::decode_base64,
    local_room::LocalRoom,
    redaction::redact,
    resolve_state,
};
use proptest::prelude::*;
use ruma::{EventId, OwnedEventId, signatures::Verified, state_res};
use serde_json::json;
use support::{arbitrary::event_draft, cast};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_redacted_event_still_verifies_under_the_same_id((version, draft) in event_draft()) {
        let cast = cast();
        let signed = sign_new_event(&draft, version, &cast.patient_server).unwrap();
        let redacted = redact(signed.json.clone(), version, None).unwrap();
        let checked = check_incoming_object(redacted, version, &cast.verify_keys()).unwrap();
        prop_assert_eq!(checked.pdu.event_id(), &*signed.event_id);
    }

    #[test]
    fn an_event_with_any_changed_byte_is_never_accepted_intact(
        (version, draft) in event_draft(),
        position in any::<prop::sample::Index>(),
        replacement in 0x20u8..0x7f,
    ) {
        let cast = cast();
        let signed = sign_new_event(&draft, version, &cast.patient_server).unwrap();
        let mut bytes = encode(&signed.json).into_bytes();
        let at = position.index(bytes.len());
        prop_assume!(bytes[at] != replacement);
        bytes[at] = replacement;
        match check_incoming_pdu(&bytes, version, &cast.verify_keys()) {
            Err(_) => {}
            // Content outside what the signature covers may change, but then the content hash
            // fails and only the (unchanged) redacted form is kept.
            Ok(checked) if checked.redacted_on_receipt => {
                prop_assert_eq!(checked.pdu.event_id(), &*signed.event_id);
            }
            // Otherwise only another spelling of the very same signature may pass: base64's
            // unused trailing bits, which decoders (Synapse's and ours) ignore.
            Ok(checked) => {
                let signature = |json: &serde_json::Value| -> String {
                    let by_server = json["signatures"].as_object().unwrap().values().next().unwrap();
                    by_server.as_object().unwrap().values().next().unwrap().as_str().unwrap().to_owned()
                };
                let original: serde_json::Value = serde_json::from_str(&encode(&signed.json)).unwrap();
                let received: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                let (original, received) = (signature(&original), signature(&received));
                prop_assert_ne!(&original, &received, "a changed byte at {} went unnoticed", at);
                prop_assert_eq!(decode_base64(&original).unwrap(), decode_base64(&received).unwrap());
                prop_assert_eq!(checked.pdu.event_id(), &*signed.event_id);
            }
        }
    }

    #[test]
    fn own_signature_and_hash_checks_agree_with_ruma(
        (version, draft) in event_draft(),
        corruption in 0usize..6,
        position in any::<prop::sample::Index>(),
    ) {
        let cast = cast();
        let signed = sign_new_event(&draft, version, &cast.patient_server).unwrap();
        let mut object = signed.json.clone();
        match corruption {
            0 => {}
            1 => { object.insert("content".into(), parse_object(br#"{"body":"changed"}"#, 100).unwrap().into()); }
            2 => { object.remove("signatures"); }
            3 => { object.insert("depth".into(), ruma::CanonicalJsonValue::Integer(ruma::Int::from(position.index(1000) as u32))); }
            4 => { object.insert("hashes".into(), parse_object(br#"{"sha256":"not base64!"}"#, 100).unwrap().into()); }
            _ => {
                // Flip one character of the signature itself.
                let text = encode(&object);
                let signature_at = text.find("ed25519:1\":\"").unwrap() + 13 + position.index(40);
                let mut bytes = text.into_bytes();
                bytes[signature_at] = if bytes[signature_at] == b'A' { b'B' } else { b'A' };
                object = parse_object(&bytes, MAX_PDU_BYTES).unwrap();
            }
        }
        let keys = cast.verify_keys();
        let ours = check_signatures_and_hashes(&object, version, &keys);
        let theirs = ruma::signatures::verify_event(keys.as_public_key_map(), &object, version.rules());
        match (&ours, &theirs) {
            (Ok(ours), Ok(theirs)) => {
                prop_assert_eq!(ours.content_hash_matches, *theirs == Verified::All);
                prop_assert_eq!(&ours.event_id, &event_id(&object, version).unwrap());
                prop_assert_eq!(encode(&ours.redacted), encode(&redact(object.clone(), version, None).unwrap()));
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "disagreement on corruption {}: ours {:?}, ruma {:?}", corruption, ours.as_ref().map(|c| c.content_hash_matches), theirs),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Medrix checks the event format itself (measuring the size on an encoding made anyway);
    /// ruma's check must agree on every event, however it is broken.
    #[test]
    fn own_format_check_agrees_with_ruma(
        (version, draft) in event_draft(),
        breakage in 0usize..14,
        field in prop::sample::select(vec![
            "type", "sender", "room_id", "event_id", "state_key", "prev_events",
            "auth_events", "depth", "content",
        ]),
        length in 0usize..300,
    ) {
        let cast = cast();
        let signed = sign_new_event(&draft, version, &cast.patient_server).unwrap();
        let mut object = signed.json.clone();
        let string = |n: usize| ruma::CanonicalJsonValue::String("x".repeat(n));
        let ids = |n: usize| ruma::CanonicalJsonValue::Array(
            (0..n).map(|i| ruma::CanonicalJsonValue::String(format!("$event{i}"))).collect());
        match breakage {
            0 => {}
            1 => { object.remove(field); }
            // Lengths just under, at and over the limits.
            2 => { object.insert(field.into(), string(254 + length % 3)); }
            3 => { object.insert(field.into(), ruma::CanonicalJsonValue::Integer(ruma::Int::from(-1))); }
            4 => { object.insert(field.into(), ids(if field == "auth_events" { 9 } else { 19 } + length % 3)); }
            5 => { object.insert(field.into(), ruma::CanonicalJsonValue::Integer(ruma::Int::from(length as u32))); }
            6 => { object.insert("type".into(), ruma::CanonicalJsonValue::String("m.room.create".into())); object.remove("room_id"); }
            7 => {
                // The create event (named by a v12 room ID) among the auth events.
                if let Some(ruma::CanonicalJsonValue::String(room)) = object.get("room_id").cloned() {
                    let create = ruma::CanonicalJsonValue::String(format!("${}", &room[1..]));
                    object.insert("auth_events".into(), ruma::CanonicalJsonValue::Array(vec![create]));
                }
            }
            8 => { object.insert("auth_events".into(), ruma::CanonicalJsonValue::Array(vec![string(5)])); }
            9 => { object.insert("room_id".into(), ruma::CanonicalJsonValue::String("not a room".into())); }
            10 => { object.insert(field.into(), string(length)); }
            // Around the size limit: content that makes the event just under or over it.
            _ => {
                let target = (65_535 + (breakage as isize - 12) * (length as isize % 3)) as usize;
                let mut content = match object.get("content") {
                    Some(ruma::CanonicalJsonValue::Object(content)) => content.clone(),
                    _ => Default::default(),
                };
                content.insert("zzzz_padding".into(), string(0));
                object.insert("content".into(), content.clone().into());
                let padding = target.saturating_sub(encode(&object).len());
                content.insert("zzzz_padding".into(), string(padding));
                object.insert("content".into(), content.into());
                prop_assert!(padding == 0 || encode(&object).len() == target);
            }
        }
        let theirs = state_res::check_pdu_format(&object, &version.rules().event_format);
        let ours = check_format(&object, version)
            .map(|()| encode(&object).len())
            .and_then(|size| if size > MAX_CANONICAL_PDU_BYTES { Err(medrix_protocol::ProtocolError::TooLarge { size, limit: MAX_CANONICAL_PDU_BYTES }) } else { Ok(()) });
        prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "breakage {} of `{}`: ours {:?}, ruma {:?}", breakage, field, ours, theirs);
        // And the whole check, which measures the size on its own encoding, refuses it too.
        if breakage >= 11 && theirs.is_err() {
            let whole = check_incoming_object(object, version, &cast.verify_keys());
            prop_assert!(matches!(whole, Err(medrix_protocol::ProtocolError::TooLarge { .. })), "{:?}", whole.map(|_| ()));
        }
    }
}

/// A room with a common history and three forks that each change state on their own.
fn forked_room(
    version: RoomVersion,
    choices: &[u8],
) -> (HashMap<OwnedEventId, Pdu>, Vec<StateMap>) {
    let cast = cast();
    let (patient, doctor, outsider) = (&cast.patient, &cast.doctor, &cast.outsider);
    let room_id = (version < RoomVersion::V12)
        .then(|| ruma::RoomId::parse("!record:patient.example").unwrap());
    let mut base =
        LocalRoom::private_chat(version, &cast.patient_server, patient, room_id.as_deref(), 1_000)
            .unwrap();
    base.send(
        &cast.patient_server,
        patient,
        "m.room.member",
        Some(doctor.as_str()),
        json!({"membership": "invite"}),
        1_100,
    )
    .unwrap();
    base.send(
        &cast.clinic_server,
        doctor,
        "m.room.member",
        Some(doctor.as_str()),
        json!({"membership": "join"}),
        1_101,
    )
    .unwrap();
    let mut forks: Vec<LocalRoom> = vec![base.clone(), base.clone(), base];
    for (step, choice) in choices.iter().enumerate() {
        let fork = &mut forks[step % 3];
        let ts = 2_000 + step as u64;
        let (sender, key, kind, state_key, content) = match choice % 6 {
            0 => (
                patient,
                &cast.patient_server,
                "m.room.topic",
                "",
                json!({"topic": format!("topic {step}")}),
            ),
            1 => (
                doctor,
                &cast.clinic_server,
                "m.room.topic",
                "",
                json!({"topic": format!("doctor {step}")}),
            ),
            2 => (
                patient,
                &cast.patient_server,
                "m.room.member",
                doctor.as_str(),
                json!({"membership": "ban"}),
            ),
            3 => (
                patient,
                &cast.patient_server,
                "m.room.member",
                outsider.as_str(),
                json!({"membership": "invite"}),
            ),
            4 => (
                patient,
                &cast.patient_server,
                "m.room.join_rules",
                "",
                json!({"join_rule": "public"}),
            ),
            _ => (
                patient,
                &cast.patient_server,
                "m.room.power_levels",
                "",
                json!({"users": {doctor.as_str(): 50}, "state_default": 50, "events_default": 0}),
            ),
        };
        let draft = fork.draft(sender, kind, Some(state_key), content, ts).unwrap();
        fork.append(key, &draft).unwrap();
    }
    let mut events = HashMap::new();
    for fork in &forks {
        events.extend(fork.events().iter().map(|(id, pdu)| (id.clone(), pdu.clone())));
    }
    (events, forks.iter().map(|fork| fork.state().clone()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn state_resolution_gives_the_same_state_for_every_order_of_forks(
        version in support::arbitrary::room_version(),
        choices in prop::collection::vec(any::<u8>(), 1..9),
    ) {
        let (events, forks) = forked_room(version, &choices);
        let orders = [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
        let resolved: Vec<StateMap> = orders
            .iter()
            .map(|order| {
                let forks: Vec<StateMap> = order.iter().map(|&i| forks[i].clone()).collect();
                resolve_state(version, &forks, &events).unwrap()
            })
            .collect();
        for state in &resolved[1..] {
            prop_assert_eq!(state, &resolved[0]);
        }
        // The create event and the patient's own membership survive any resolution.
        prop_assert!(resolved[0].keys().any(|(kind, _)| kind.to_string() == "m.room.create"));
    }

    #[test]
    fn conflicted_state_subgraph_matches_its_definition(
        version in support::arbitrary::room_version(),
        choices in prop::collection::vec(any::<u8>(), 1..9),
    ) {
        let (events, forks) = forked_room(version, &choices);
        let mut conflicted: HashSet<&EventId> = HashSet::new();
        for slot in forks.iter().flat_map(|fork| fork.keys()).collect::<HashSet<_>>() {
            let ids: HashSet<_> = forks.iter().map(|fork| fork.get(slot)).collect();
            if ids.len() > 1 {
                conflicted.extend(ids.into_iter().flatten().map(|id| &**id));
            }
        }
        let ours = conflicted_state_subgraph(&events, conflicted.iter().copied());
        prop_assert_eq!(ours, brute_force_subgraph(&events, &conflicted));
    }

    #[test]
    fn decisions_match_running_every_ruma_check(
        version in support::arbitrary::room_version(),
        choices in prop::collection::vec(any::<u8>(), 1..9),
        pick in any::<prop::sample::Index>(),
    ) {
        // Judge each fork's events against another fork's state, so that the "state before"
        // and "current state" checks really differ from the auth-events check.
        let (events, forks) = forked_room(version, &choices);
        let mut ids: Vec<&OwnedEventId> = events.keys().collect();
        ids.sort();
        let pdu = &events[ids[pick.index(ids.len())]];
        for (before, current) in [(0, 1), (1, 2), (2, 0)] {
            let ours = decide(version, pdu, &events, &forks[before], Some(&forks[current])).verdict;
            let naive = naive_verdict(version, pdu, &events, &forks[before], &forks[current]);
            prop_assert_eq!(std::mem::discriminant(&ours), std::mem::discriminant(&naive), "ours {:?}, naive {:?}", ours, naive);
        }
    }
}

/// The definition, literally: x is in the subgraph if some conflicted c1 reaches x and x
/// reaches some conflicted c2 along `auth_events` (a path of length zero counts).
fn brute_force_subgraph(
    events: &HashMap<OwnedEventId, Pdu>,
    conflicted: &HashSet<&EventId>,
) -> HashSet<OwnedEventId> {
    let reachable_from = |start: &EventId| -> HashSet<OwnedEventId> {
        let mut seen = HashSet::from([start.to_owned()]);
        let mut stack = vec![start.to_owned()];
        while let Some(id) = stack.pop() {
            for next in events.get(&id).map(|pdu| pdu.auth_events()).unwrap_or(&[]) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let mut result = HashSet::new();
    for &c1 in conflicted {
        for x in reachable_from(c1) {
            if reachable_from(&x).iter().any(|y| conflicted.contains(&**y)) {
                result.insert(x);
            }
        }
    }
    result
}

/// Every check of the spec run with ruma directly, with no shortcuts.
fn naive_verdict(
    version: RoomVersion,
    pdu: &Pdu,
    events: &HashMap<OwnedEventId, Pdu>,
    before: &StateMap,
    current: &StateMap,
) -> Verdict {
    let rules = &version.rules().authorization;
    if let Err(reason) =
        state_res::check_state_independent_auth_rules(rules, pdu, |id| events.get(id))
    {
        return Verdict::Rejected(reason);
    }
    let mut auth_state: HashMap<_, &Pdu> = pdu
        .auth_events()
        .iter()
        .filter_map(|id| events.get(id))
        .filter_map(|auth| auth.state_slot().map(|slot| (slot, auth)))
        .collect();
    if version == RoomVersion::V12
        && let Some(room_id) = pdu.room_id()
    {
        let create = medrix_protocol::incoming::create_event_id_from_room_id(room_id).unwrap();
        auth_state
            .insert((ruma::events::StateEventType::RoomCreate, String::new()), &events[&create]);
    }
    let fetch_in = |state: &StateMap| {
        let state = state.clone();
        move |kind: &ruma::events::StateEventType, key: &str| {
            state.get(&(kind.clone(), key.to_owned())).and_then(|id| events.get(id))
        }
    };
    if let Err(reason) = state_res::check_state_dependent_auth_rules(rules, pdu, |kind, key| {
        auth_state.get(&(kind.clone(), key.to_owned())).copied()
    }) {
        return Verdict::Rejected(reason);
    }
    if let Err(reason) = state_res::check_state_dependent_auth_rules(rules, pdu, fetch_in(before)) {
        return Verdict::Rejected(reason);
    }
    match state_res::check_state_dependent_auth_rules(rules, pdu, fetch_in(current)) {
        Ok(()) => Verdict::Accepted,
        Err(reason) => Verdict::SoftFailed(reason),
    }
}

/// The case the changed-byte property found: the last character of an unpadded base64
/// signature carries bits no byte uses, so a sibling character spells the same signature.
/// It is the same event, accepted under the same ID.
#[test]
fn a_signature_spelled_with_other_trailing_bits_is_the_same_signature() {
    let cast = cast();
    let room = LocalRoom::create(
        RoomVersion::V12,
        &cast.patient_server,
        &cast.patient,
        None,
        1_700_000_000_000,
    )
    .unwrap();
    let signed = room.signed_events()[0].clone();
    let mut json: serde_json::Value = serde_json::from_str(&encode(&signed.json)).unwrap();
    let by_key = json["signatures"].as_object_mut().unwrap().values_mut().next().unwrap();
    let signature = by_key.as_object_mut().unwrap().values_mut().next().unwrap();
    let text = signature.as_str().unwrap().to_owned();
    // 64 bytes are 86 characters: the last holds 2 bits of the signature and 4 unused ones.
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let last = alphabet.find(text.chars().last().unwrap()).unwrap();
    let sibling = alphabet.as_bytes()[(last & !0b1111) | (!last & 0b1111)] as char;
    let respelled = format!("{}{sibling}", &text[..text.len() - 1]);
    assert_ne!(respelled, text);
    *signature = serde_json::json!(respelled);
    let bytes = serde_json::to_vec(&json).unwrap();
    let checked = check_incoming_pdu(&bytes, RoomVersion::V12, &cast.verify_keys()).unwrap();
    assert!(!checked.redacted_on_receipt);
    assert_eq!(checked.pdu.event_id(), &*signed.event_id);
}

/// JSON text as a peer might send it: numbers of every shape (floats, exponents, `-0`,
/// integers just outside the canonical range, beyond 64 bits), repeated keys, escapes and
/// whitespace; and sometimes cut short.
fn json_text() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        (-(1i64 << 53) + 1..(1i64 << 53)).prop_map(|n| n.to_string()),
        Just("9007199254740992".to_owned()),
        Just("-9007199254740992".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-0".to_owned()),
        Just("1.5".to_owned()),
        Just("1e3".to_owned()),
        Just("2E-2".to_owned()),
    ];
    let string = "\\PC{0,8}".prop_map(|s| serde_json::to_string(&s).unwrap());
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("false".to_owned()),
        number,
        string,
        Just(r#""\u00e9\n\ud83d\ude00""#.to_owned()),
    ];
    let value = leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((prop::sample::select(vec!["a", "b", "a"]), inner), 0..4)
                .prop_map(|fields| {
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(key, value)| format!("\"{key}\" : {value}"))
                        .collect();
                    format!("{{ {} }}", fields.join(","))
                }),
        ]
    });
    (value, any::<prop::sample::Index>(), any::<bool>()).prop_map(|(text, cut, truncate)| {
        if truncate && !text.is_empty() {
            let at = cut.index(text.len());
            // Cut on a character boundary: the input stays UTF-8, as serde_json requires.
            let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
            text[..at].to_owned()
        } else {
            text
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn the_direct_canonical_parser_agrees_with_parsing_through_serde_json_values(
        text in json_text()
    ) {
        let direct = parse_value(text.as_bytes(), MAX_PDU_BYTES);
        let via_value = serde_json::from_str::<serde_json::Value>(&text)
            .map_err(|_| "not JSON")
            .and_then(|value| ruma::CanonicalJsonValue::try_from(value).map_err(|_| "not canonical"));
        match (&direct, &via_value) {
            (Ok(direct), Ok(via_value)) => prop_assert_eq!(direct, via_value),
            (Err(medrix_protocol::ProtocolError::NotJson(_)), Err("not JSON")) => {}
            (Err(medrix_protocol::ProtocolError::NotCanonical(_)), Err("not canonical")) => {}
            _ => prop_assert!(false, "{text:?}: direct {direct:?}, via a Value {via_value:?}"),
        }
    }
}
