//! The load: a single line of `m.room.message` events from the peer's user, each signed by
//! the peer, packed into signed `/send` transactions, all built before the clock starts; and
//! the yardstick beside it, raw ed25519 verification of the same events' signatures.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};
use http::Method;
use medrix_protocol::{
    build::{EventDraft, SignedEvent, sign_new_event},
    canonical::{encode, encode_without},
    incoming::check_incoming_object,
    keys::decode_base64,
    redaction::redact,
    ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedRoomId, OwnedUserId},
};
use serde::{Deserialize, Serialize};

use super::peer::{Joined, Peer, now_ms};

/// `count` messages after the peer's join, each the only successor of the one before.
pub fn build_events(
    peer: &Peer,
    joined: &Joined,
    count: usize,
) -> Result<Vec<SignedEvent>, String> {
    let room_id = OwnedRoomId::try_from(joined.room_id.as_str()).map_err(|e| e.to_string())?;
    let sender = OwnedUserId::try_from(peer.user_id()).map_err(|e| e.to_string())?;
    let auth_events: Vec<_> = joined
        .create_id
        .iter()
        .chain([&joined.power_levels_id, &joined.join_id])
        .cloned()
        .collect();
    let started = now_ms();
    let mut events = Vec::with_capacity(count);
    let mut prev = joined.join_id.clone();
    for i in 0..count {
        let mut content = CanonicalJsonObject::new();
        content.insert("msgtype".into(), CanonicalJsonValue::String("m.text".into()));
        content.insert("body".into(), CanonicalJsonValue::String(format!("fedload message {i}")));
        let draft = EventDraft {
            room_id: Some(room_id.clone()),
            sender: sender.clone(),
            kind: "m.room.message".to_owned(),
            state_key: None,
            content,
            prev_events: vec![prev],
            auth_events: auth_events.clone(),
            depth: joined.join_depth + 1 + i as u64,
            origin_server_ts: started + i as u64,
            redacts: None,
        };
        let event = sign_new_event(&draft, joined.version, &peer.key).map_err(|e| e.to_string())?;
        prev = event.event_id.clone();
        events.push(event);
    }
    Ok(events)
}

/// One `/send` transaction, ready to go: path, X-Matrix header, body bytes.
pub struct Transaction {
    pub path: String,
    pub authorization: String,
    pub body: Bytes,
    /// The event IDs it carries, in order.
    pub event_ids: Vec<String>,
}

/// Packs `events` into transactions of `per_transaction` PDUs, in order, each signed.
pub fn transactions(
    peer: &Peer,
    events: &[SignedEvent],
    per_transaction: usize,
) -> Result<Vec<Transaction>, String> {
    let ts = now_ms();
    events
        .chunks(per_transaction.max(1))
        .enumerate()
        .map(|(i, chunk)| {
            let path = format!("/_matrix/federation/v1/send/fedload-{ts}-{i}");
            let mut body = CanonicalJsonObject::new();
            body.insert("origin".into(), CanonicalJsonValue::String(peer.server_name.clone()));
            body.insert(
                "origin_server_ts".into(),
                CanonicalJsonValue::Integer((ts as i64).try_into().map_err(|_| "timestamp")?),
            );
            body.insert(
                "pdus".into(),
                CanonicalJsonValue::Array(
                    chunk.iter().map(|e| CanonicalJsonValue::Object(e.json.clone())).collect(),
                ),
            );
            body.insert("edus".into(), CanonicalJsonValue::Array(Vec::new()));
            let authorization = peer.x_matrix(&Method::PUT, &path, Some(&body))?;
            Ok(Transaction {
                path,
                authorization,
                body: Bytes::from(encode(&body)),
                event_ids: chunk.iter().map(|e| e.event_id.to_string()).collect(),
            })
        })
        .collect()
}

/// Single-core rates on this machine, measured in this process over the run's own events.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct VerifyRates {
    /// ed25519-dalek `verify` (what Medrix's `event_signatures` calls), pre-parsed key,
    /// pre-encoded message: the signature arithmetic alone.
    pub verify_per_second: f64,
    /// ed25519-dalek `verify_strict` (rejects small-order and non-canonical points; slower).
    pub verify_strict_per_second: f64,
    /// Medrix's whole per-event check (`incoming::check_incoming_object`: format, redaction,
    /// canonical encoding, content and reference hashes, signature), as `/send` runs it.
    pub protocol_check_per_second: f64,
}

/// How long each rate is measured (whole passes over the events, at least this long).
const MEASURE_FOR: Duration = Duration::from_secs(2);

/// Times the verifications on this thread (call it with nothing else running here).
pub fn measure_rates(
    peer: &Peer,
    joined: &Joined,
    events: &[SignedEvent],
) -> Result<VerifyRates, String> {
    let version = joined.version;
    let public = VerifyingKey::from_bytes(&peer.key.public_key()).map_err(|e| e.to_string())?;
    let key_id = peer.key.key_id();
    let mut signed: Vec<(String, Signature)> = Vec::with_capacity(events.len());
    for event in events {
        let redacted = redact(event.json.clone(), version, None).map_err(|e| e.to_string())?;
        let bytes = encode_without(&redacted, &["signatures", "unsigned"]);
        let signature = signature_of(&event.json, &peer.server_name, &key_id)
            .ok_or("an event without the peer's signature")?;
        signed.push((bytes, signature));
    }

    let verify_per_second = rate(signed.len(), || {
        for (bytes, signature) in &signed {
            public.verify(bytes.as_bytes(), signature).map_err(|_| "a signature did not verify")?;
        }
        Ok(())
    })?;
    let verify_strict_per_second = rate(signed.len(), || {
        for (bytes, signature) in &signed {
            public
                .verify_strict(bytes.as_bytes(), signature)
                .map_err(|_| "a signature did not verify strictly")?;
        }
        Ok(())
    })?;

    let keys = peer.key.verify_keys();
    let mut protocol_seconds = 0.0;
    let mut protocol_checks = 0usize;
    while protocol_seconds < MEASURE_FOR.as_secs_f64() {
        // The check takes the object by value; cloning is outside the clock.
        let objects: Vec<_> = events.iter().map(|e| e.json.clone()).collect();
        let started = Instant::now();
        for object in objects {
            check_incoming_object(object, version, &keys).map_err(|e| e.to_string())?;
        }
        protocol_seconds += started.elapsed().as_secs_f64();
        protocol_checks += events.len();
    }
    Ok(VerifyRates {
        verify_per_second,
        verify_strict_per_second,
        protocol_check_per_second: protocol_checks as f64 / protocol_seconds,
    })
}

/// Runs `pass` (which does `per_pass` operations) until [`MEASURE_FOR`] has passed.
fn rate(
    per_pass: usize,
    mut pass: impl FnMut() -> Result<(), &'static str>,
) -> Result<f64, String> {
    let started = Instant::now();
    let mut done = 0usize;
    while started.elapsed() < MEASURE_FOR {
        pass()?;
        done += per_pass;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

fn signature_of(event: &CanonicalJsonObject, server: &str, key_id: &str) -> Option<Signature> {
    let CanonicalJsonValue::Object(by_server) = event.get("signatures")? else { return None };
    let CanonicalJsonValue::Object(by_key) = by_server.get(server)? else { return None };
    let CanonicalJsonValue::String(signature) = by_key.get(key_id)? else { return None };
    Signature::from_slice(&decode_base64(signature).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use medrix_protocol::{RoomVersion, keys::ServerSigningKey, ruma::OwnedEventId};

    use super::*;

    fn peer() -> Peer {
        let key = ServerSigningKey::from_seed("127.0.0.1:8448", "t", &[7; 32]).unwrap();
        Peer {
            server_name: "127.0.0.1:8448".to_owned(),
            key: std::sync::Arc::new(key),
            destination: "127.0.0.1:8449".to_owned(),
        }
    }

    fn joined() -> Joined {
        let id = |s: &str| OwnedEventId::try_from(format!("${s}")).unwrap();
        Joined {
            room_id: "!room:127.0.0.1:8449".to_owned(),
            version: RoomVersion::parse("10").unwrap(),
            create_id: Some(id("create")),
            power_levels_id: id("power"),
            join_id: id("join"),
            join_depth: 5,
        }
    }

    #[test]
    fn the_chain_passes_medrix_checks_and_links_each_event_to_the_one_before() {
        let (peer, joined) = (peer(), joined());
        let events = build_events(&peer, &joined, 3).unwrap();
        let keys = peer.key.verify_keys();
        let mut prev = joined.join_id.clone();
        for (i, event) in events.iter().enumerate() {
            let checked = check_incoming_object(event.json.clone(), joined.version, &keys).unwrap();
            assert_eq!(checked.pdu.event_id(), event.event_id);
            assert_eq!(event.pdu.prev_events(), [prev.clone()]);
            assert_eq!(event.pdu.depth(), 6 + i as u64);
            prev = event.event_id.clone();
        }
    }

    #[test]
    fn transactions_carry_the_events_in_order_at_most_fifty_each() {
        let (peer, joined) = (peer(), joined());
        let events = build_events(&peer, &joined, 120).unwrap();
        let transactions = transactions(&peer, &events, 50).unwrap();
        let sizes: Vec<usize> = transactions.iter().map(|t| t.event_ids.len()).collect();
        assert_eq!(sizes, [50, 50, 20]);
        let ids: Vec<String> = transactions.iter().flat_map(|t| t.event_ids.clone()).collect();
        let expected: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
        assert_eq!(ids, expected);
        assert!(transactions[0].authorization.starts_with("X-Matrix origin=\"127.0.0.1:8448\""));
    }
}
