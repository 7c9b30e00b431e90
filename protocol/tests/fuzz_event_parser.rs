//! A fuzz harness on proptest: random bytes and mutated real events go through every entry
//! point that takes untrusted input. Whatever comes in, the answer is a value (an event or an
//! error), never a panic. `MEDRIX_FUZZ_CASES` sets the number of inputs per strategy
//! (default 20,000); the total is printed.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};

use medrix_protocol::{
    StateMap,
    build::sign_new_event,
    canonical::encode,
    decide,
    incoming::{check_incoming_batch, check_incoming_pdu},
};
use proptest::prelude::*;
use support::{
    arbitrary::{canonical_json_value, event_draft},
    cast,
};

static INPUTS: AtomicUsize = AtomicUsize::new(0);

fn cases() -> u32 {
    std::env::var("MEDRIX_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000)
}

/// Feeds one input to every entry point; returns whether it was accepted as an event.
fn feed(bytes: &[u8], version: medrix_protocol::RoomVersion) -> bool {
    INPUTS.fetch_add(1, Ordering::Relaxed);
    let keys = cast().verify_keys();
    let single = check_incoming_pdu(bytes, version, &keys);
    let batch = check_incoming_batch(&[bytes], version, &keys);
    assert_eq!(single.is_ok(), batch[0].is_ok(), "single and batch paths agree");
    if let Ok(checked) = single {
        let events = std::collections::HashMap::new();
        let _ = decide(version, &checked.pdu, &events, &StateMap::new(), None);
        return true;
    }
    false
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: prop::sample::Index, byte: u8 },
    Truncate { at: prop::sample::Index },
    Insert { at: prop::sample::Index, bytes: Vec<u8> },
    ReplaceField { field: prop::sample::Index, value: serde_json::Value },
    Nest { depth: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), any::<u8>())
            .prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        any::<prop::sample::Index>().prop_map(|at| Mutation::Truncate { at }),
        (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<prop::sample::Index>(), canonical_json_value())
            .prop_map(|(field, value)| Mutation::ReplaceField { field, value }),
        (1usize..400).prop_map(|depth| Mutation::Nest { depth }),
    ]
}

fn apply(bytes: &[u8], mutation: &Mutation) -> Vec<u8> {
    let mut out = bytes.to_vec();
    match mutation {
        Mutation::Flip { at, byte } => {
            let at = at.index(out.len());
            out[at] = *byte;
        }
        Mutation::Truncate { at } => out.truncate(at.index(out.len())),
        Mutation::Insert { at, bytes } => {
            let at = at.index(out.len());
            out.splice(at..at, bytes.iter().copied());
        }
        Mutation::ReplaceField { field, value } => {
            let mut object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(bytes).unwrap();
            let keys: Vec<String> = object.keys().cloned().collect();
            object.insert(keys[field.index(keys.len())].clone(), value.clone());
            out = serde_json::to_vec(&object).unwrap();
        }
        Mutation::Nest { depth } => {
            // Deep nesting inside content: must be refused or parsed, never overflow the stack.
            let text = String::from_utf8(out).unwrap();
            let nested = "[".repeat(*depth) + &"]".repeat(*depth);
            out = text
                .replacen("\"content\":{", &format!("\"content\":{{\"deep\":{nested},"), 1)
                .into_bytes();
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), version in support::arbitrary::room_version()) {
        prop_assert!(!feed(&bytes, version));
    }

    #[test]
    fn mutated_events_never_panic((version, draft) in event_draft(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let signed = sign_new_event(&draft, version, &cast().patient_server).unwrap();
        let mut bytes = encode(&signed.json).into_bytes();
        for mutation in &mutations {
            if bytes.is_empty() { break; }
            if matches!(mutation, Mutation::ReplaceField { .. } | Mutation::Nest { .. })
                && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).is_err()
            {
                continue;
            }
            bytes = apply(&bytes, mutation);
        }
        feed(&bytes, version);
    }
}

#[test]
fn zz_report_fuzz_inputs() {
    // Runs last by name in a single-threaded run; in parallel runs the count may be partial.
    println!("fuzzed inputs so far in this process: {}", INPUTS.load(Ordering::Relaxed));
}
