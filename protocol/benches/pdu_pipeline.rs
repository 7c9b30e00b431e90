//! Events verified + hashed + auth-checked per second on one core, beside the raw ed25519-dalek
//! verify rate measured in the same run, printed as a ratio. Events go through in 50-PDU
//! transactions (federation's shape) and, for v12, also one at a time.
//!
//! Run: `cargo bench -p medrix-protocol --bench pdu_pipeline`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, black_box};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
use medrix_protocol::{
    RoomVersion,
    canonical::encode,
    decide,
    incoming::{check_incoming_batch, check_incoming_pdu},
    keys::ServerSigningKey,
    local_room::LocalRoom,
};
use ruma::UserId;
use serde_json::json;

const EVENTS: usize = 256;

struct Workload {
    version: RoomVersion,
    wire: Vec<Vec<u8>>,
    room: LocalRoom,
    keys: medrix_protocol::keys::VerifyKeys,
}

/// A room with `EVENTS` encrypted record entries, each as the bytes a peer would send.
fn workload(version: RoomVersion) -> Workload {
    let key = ServerSigningKey::from_seed("patient.example", "1", &[1; 32]).unwrap();
    let patient = UserId::parse("@patient:patient.example").unwrap();
    let room_id = (version < RoomVersion::V12)
        .then(|| ruma::RoomId::parse("!record:patient.example").unwrap());
    let mut room =
        LocalRoom::private_chat(version, &key, &patient, room_id.as_deref(), 1_764_000_000_000)
            .unwrap();
    let base = room.state().clone();
    let mut wire = Vec::new();
    for i in 0..EVENTS {
        // Drafted against the setup state, as a burst of entries from one device would be.
        let content = json!({
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "A".repeat(300) + &i.to_string(),
            "device_id": "RECORDPHONE",
            "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
            "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
        });
        let signed = room
            .send(&key, &patient, "m.room.encrypted", None, content, 1_764_000_000_100 + i as u64)
            .unwrap();
        wire.push(encode(&signed.json).into_bytes());
    }
    assert_eq!(&base, room.state(), "messages do not change state");
    Workload { version, wire, keys: key.verify_keys(), room }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pdu");
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.measurement_time(Duration::from_secs(5));

    // Raw verify over messages of the same size as the signed (redacted) events.
    let key = SigningKey::from_bytes(&[9; 32]);
    let verifying = key.verifying_key();
    let messages: Vec<(Vec<u8>, Signature)> = (0..EVENTS)
        .map(|i| {
            let message = vec![b'a' + (i % 26) as u8; 620];
            let signature = key.sign(&message);
            (message, signature)
        })
        .collect();
    group.bench_function("raw_ed25519_verify", |b| {
        b.iter(|| {
            for (message, signature) in &messages {
                verifying.verify(black_box(message), signature).unwrap();
            }
        })
    });

    for version in RoomVersion::ALL {
        let work = workload(version);
        group.bench_function(format!("verify_hash_auth_v{}", version.as_str()), |b| {
            b.iter(|| run_pipeline(&work))
        });
        if version == RoomVersion::V12 {
            group.bench_function("verify_hash_auth_v12_one_at_a_time", |b| {
                b.iter(|| run_single(&work))
            });
        }
    }
    group.finish();
}

/// Median time per event of `run` over `rounds` rounds, each round timing every event once.
fn median_per_event(rounds: &mut [f64]) -> f64 {
    rounds.sort_by(f64::total_cmp);
    rounds[rounds.len() / 2]
}

/// The ratio, measured with raw verification and the pipeline in alternating rounds, so that
/// the drift of a shared virtual machine's speed hits both sides alike.
fn interleaved_ratios() {
    const ROUNDS: usize = 41;
    let key = SigningKey::from_bytes(&[9; 32]);
    let verifying = key.verifying_key();
    let messages: Vec<(Vec<u8>, Signature)> = (0..EVENTS)
        .map(|i| {
            let message = vec![b'a' + (i % 26) as u8; 620];
            (message.clone(), key.sign(&message))
        })
        .collect();
    let works: Vec<Workload> = RoomVersion::ALL.into_iter().map(workload).collect();
    let mut raw_rounds = Vec::new();
    let mut pipeline_rounds = vec![Vec::new(); works.len()];
    let mut single_rounds = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for (message, signature) in &messages {
            verifying.verify(black_box(message), signature).unwrap();
        }
        raw_rounds.push(start.elapsed().as_secs_f64() / EVENTS as f64);
        for (work, rounds) in works.iter().zip(&mut pipeline_rounds) {
            let start = Instant::now();
            run_pipeline(work);
            rounds.push(start.elapsed().as_secs_f64() / EVENTS as f64);
        }
        let start = Instant::now();
        run_single(works.last().expect("v12 workload"));
        single_rounds.push(start.elapsed().as_secs_f64() / EVENTS as f64);
    }
    let raw = median_per_event(&mut raw_rounds);
    println!("\ninterleaved, {ROUNDS} rounds of {EVENTS} events, medians, one core:");
    println!("{:<28} {:>12} {:>10}", "", "events/s", "vs raw");
    println!("{:<28} {:>12.0} {:>10}", "raw ed25519-dalek verify", 1.0 / raw, "1.00");
    for (work, rounds) in works.iter().zip(&mut pipeline_rounds) {
        let per_event = median_per_event(rounds);
        println!(
            "{:<28} {:>12.0} {:>10.2}",
            format!("verify_hash_auth_v{}", work.version.as_str()),
            1.0 / per_event,
            raw / per_event
        );
    }
    let per_event = median_per_event(&mut single_rounds);
    println!(
        "{:<28} {:>12.0} {:>10.2}",
        "  v12, one event at a time",
        1.0 / per_event,
        raw / per_event
    );
}

/// One event at a time, as a client send or a lone federated event arrives.
fn run_single(work: &Workload) {
    for bytes in &work.wire {
        let checked = check_incoming_pdu(black_box(bytes), work.version, &work.keys).unwrap();
        authorize(work, &checked.pdu);
    }
}

/// In transactions of 50 PDUs, the most a federation `/send` carries.
fn run_pipeline(work: &Workload) {
    for transaction in work.wire.chunks(50) {
        for checked in check_incoming_batch(black_box(transaction), work.version, &work.keys) {
            authorize(work, &checked.unwrap().pdu);
        }
    }
}

fn authorize(work: &Workload, pdu: &medrix_protocol::Pdu) {
    let decision = decide(work.version, pdu, work.room.events(), work.room.state(), None);
    assert!(matches!(decision.verdict, medrix_protocol::Verdict::Accepted));
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
    interleaved_ratios();
}
