//! The verifier's speed (issue 16's benchmark): a record whose laboratory room holds 100,000
//! signed events and a read log of 1,000,000 entries (each a provider's read under a
//! contract), verified whole on one core: events per second (signatures, hashes, DAG,
//! authorization replayed) beside the raw ed25519 verify rate measured in the same run, and
//! log entries per second (chain, basis under the contract rules).
//!
//! Run: `cargo bench -p medrix-verify --bench verify_export` (sizes from
//! `MEDRIX_BENCH_EVENTS` and `MEDRIX_BENCH_ENTRIES`).

use std::time::{Duration, Instant};

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use medrix_protocol::{
    RoomVersion, canonical::encode, keys::ServerSigningKey, local_room::LocalRoom, ruma::UserId,
    server_keys::own_key_document,
};
use medrix_records::{ChainHead, LogReader, ReadBasis, ReadEntry, ReadPath};
use medrix_verify::{Export, RoomExport, verify};
use serde_json::{Value, json};

const SERVER: &str = "patient.example";

fn size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn wire(room: &LocalRoom) -> Vec<Value> {
    room.signed_events()
        .iter()
        .map(|event| serde_json::from_str(&encode(&event.json)).unwrap())
        .collect()
}

fn main() {
    let (events, entries) =
        (size("MEDRIX_BENCH_EVENTS", 100_000), size("MEDRIX_BENCH_ENTRIES", 1_000_000));
    let key = ServerSigningKey::from_seed(SERVER, "1", &[7; 32]).unwrap();
    let patient = UserId::parse(format!("@patient:{SERVER}")).unwrap();
    let doctor = UserId::parse(format!("@doctor:{SERVER}")).unwrap();
    let t0 = 1_764_000_000_000u64;

    let started = Instant::now();
    let mut space = LocalRoom::private_chat(RoomVersion::V12, &key, &patient, None, t0).unwrap();
    let space_id = space.room_id().to_string();
    space
        .send(
            &key,
            &patient,
            "org.medrix.record",
            Some(""),
            json!({"patient": patient, "classes": {}}),
            t0 + 1,
        )
        .unwrap();
    let grant = json!({
        "contract_id": "c-lab", "grantee": doctor, "purpose": "TREAT", "classes": ["laboratory"],
        "data_period": {"start": null, "end": null}, "valid": {"start": 0, "end": 253_402_300_799_999u64},
        "mode": "read", "text": "My doctor reads my laboratory results.", "status": "active",
    });
    space
        .send(&key, &patient, "org.medrix.grant", Some(&format!("user:{doctor}")), grant, t0 + 2)
        .unwrap();

    let mut lab = LocalRoom::private_chat(RoomVersion::V12, &key, &patient, None, t0 + 3).unwrap();
    let lab_id = lab.room_id().to_string();
    lab.send(
        &key,
        &patient,
        "org.medrix.record",
        Some(""),
        json!({"patient": patient, "class": "laboratory", "space": space_id}),
        t0 + 4,
    )
    .unwrap();
    lab.send(
        &key,
        &patient,
        "m.room.member",
        Some(doctor.as_str()),
        json!({"membership": "invite"}),
        t0 + 5,
    )
    .unwrap();
    lab.send(
        &key,
        &doctor,
        "m.room.member",
        Some(doctor.as_str()),
        json!({"membership": "join"}),
        t0 + 6,
    )
    .unwrap();
    let mut ids = Vec::new();
    while lab.signed_events().len() < events {
        let content = json!({
            "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "A".repeat(300),
            "device_id": "PHONE", "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
            "session_id": format!("s{}", ids.len()),
        });
        let signed = lab
            .send(&key, &patient, "m.room.encrypted", None, content, t0 + 10 + ids.len() as u64)
            .unwrap();
        ids.push(signed.event_id.to_string());
    }
    let mut head = ChainHead::default();
    let mut log = Vec::with_capacity(entries);
    for n in 0..entries {
        let entry = ReadEntry::next(
            &head,
            &lab_id,
            t0 + 1_000_000 + n as u64,
            LogReader::User { user_id: doctor.to_string(), device_id: Some("DOCDEVICE".into()) },
            ReadPath::Messages,
            vec![ids[n % ids.len()].clone(), ids[(n + 1) % ids.len()].clone()],
            ReadBasis::Contract {
                contract_id: "c-lab".into(),
                purpose: "TREAT".into(),
                break_glass: false,
            },
        );
        head = entry.head_after();
        log.push(entry.to_json());
    }
    let document = own_key_document(&key, &[], 253_402_300_799_999).unwrap();
    let export = Export {
        patient: patient.to_string(),
        rooms: vec![
            RoomExport {
                room_id: space_id,
                version: RoomVersion::V12,
                events: wire(&space),
                read_log: vec![],
                remote_logs: Default::default(),
            },
            RoomExport {
                room_id: lab_id,
                version: RoomVersion::V12,
                events: wire(&lab),
                read_log: log,
                remote_logs: Default::default(),
            },
        ],
        server_keys: [(SERVER.to_owned(), encode(&document))].into_iter().collect(),
    };
    eprintln!(
        "built {} events and {entries} log entries in {:.1} s",
        events,
        started.elapsed().as_secs_f64()
    );

    let raw = raw_verify_per_second();
    let started = Instant::now();
    let report = verify(&export);
    let took = started.elapsed();
    assert!(report.is_valid(), "{:?}", report.problems.first());
    let per_event_share = events_share(&export, took, report.log_entries);
    println!(
        "verified {} events and {} log entries in {:.2} s",
        report.events,
        report.log_entries,
        took.as_secs_f64()
    );
    println!("raw ed25519 verify on one core: {raw:.0}/s");
    println!(
        "events: {:.0}/s = {:.2} of raw verify (log entries checked at {:.0}/s alongside)",
        per_event_share.0,
        per_event_share.0 / raw,
        per_event_share.1
    );
}

/// Events per second and log entries per second, timing the two parts apart.
fn events_share(export: &Export, whole: Duration, entries: usize) -> (f64, f64) {
    let events_only = Export {
        patient: export.patient.clone(),
        rooms: export
            .rooms
            .iter()
            .map(|room| RoomExport {
                room_id: room.room_id.clone(),
                version: room.version,
                events: room.events.clone(),
                read_log: vec![],
                remote_logs: Default::default(),
            })
            .collect(),
        server_keys: export.server_keys.clone(),
    };
    let started = Instant::now();
    let report = verify(&events_only);
    let events_time = started.elapsed();
    let log_time = whole.saturating_sub(events_time).max(Duration::from_millis(1));
    (report.events as f64 / events_time.as_secs_f64(), entries as f64 / log_time.as_secs_f64())
}

/// Signatures verified per second by ed25519-dalek alone, on one core.
fn raw_verify_per_second() -> f64 {
    let key = SigningKey::from_bytes(&[3; 32]);
    let message = vec![7u8; 600];
    let signature: Signature = key.sign(&message);
    let verifying = key.verifying_key();
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(2) {
        for _ in 0..256 {
            verifying.verify(&message, &signature).unwrap();
        }
        n += 256;
    }
    n as f64 / started.elapsed().as_secs_f64()
}
