//! Medrix's own test vectors (`spec/vectors/events`, `spec/vectors/auth`), built from fixed keys
//! and scenarios. The files are the contract another implementation checks itself against;
//! this test fails if the code and the files ever disagree.
//!
//! Regenerate after an intended change with `MEDRIX_WRITE_VECTORS=1 cargo test -p
//! medrix-protocol --test generated_vectors`, and review the diff.

mod support;

use std::path::{Path, PathBuf};

use medrix_protocol::{
    RoomVersion, Verdict,
    build::{EventDraft, sign_new_event, unsigned_event_json},
    canonical::encode,
    keys::ServerSigningKey,
    local_room::LocalRoom,
    redaction::redact,
};
use ruma::{CanonicalJsonObject, RoomId, UserId};
use serde_json::{Value, json};
use support::{Cast, cast};

const T0: u64 = 1_764_000_000_000;

fn spec_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn key_spec(key: &ServerSigningKey, seed: u8) -> Value {
    use base64::Engine as _;
    json!({
        "server_name": key.server_name().as_str(),
        "key_id": key.key_id(),
        "seed": base64::engine::general_purpose::STANDARD_NO_PAD.encode([seed; 32]),
    })
}

fn as_value(object: &CanonicalJsonObject) -> Value {
    serde_json::from_str(&encode(object)).unwrap()
}

fn room_id_for(version: RoomVersion) -> Option<&'static RoomId> {
    (version < RoomVersion::V12).then(|| <&RoomId>::try_from("!record:patient.example").unwrap())
}

fn event_vector(
    version: RoomVersion,
    description: &str,
    draft: &EventDraft,
    key: &ServerSigningKey,
    seed: u8,
) -> Value {
    let input = unsigned_event_json(draft, version).unwrap();
    let signed = sign_new_event(draft, version, key).unwrap();
    let content_hash = ruma::signatures::content_hash(&signed.json).unwrap().encode();
    let redacted = redact(signed.json.clone(), version, None).unwrap();
    json!({
        "kind": "event",
        "description": description,
        "room_version": version.as_str(),
        "signing_key": key_spec(key, seed),
        "input": as_value(&input),
        "content_hash": content_hash,
        "event_id": signed.event_id.as_str(),
        "signed": as_value(&signed.json),
        "redacted": as_value(&redacted),
    })
}

fn event_vectors(cast: &Cast) -> Vec<(String, Value)> {
    let mut files = Vec::new();
    for version in RoomVersion::ALL {
        let v = version.as_str();
        let room = LocalRoom::private_chat(
            version,
            &cast.patient_server,
            &cast.patient,
            room_id_for(version),
            T0,
        )
        .unwrap();
        let create = &room.signed_events()[0];
        let create_draft = EventDraft {
            room_id: room_id_for(version).map(ToOwned::to_owned),
            sender: cast.patient.clone(),
            kind: "m.room.create".into(),
            state_key: Some(String::new()),
            content: create.json["content"].as_object().unwrap().clone(),
            prev_events: vec![],
            auth_events: vec![],
            depth: 1,
            origin_server_ts: T0,
            redacts: None,
        };
        files.push((
            format!("events/v{v}-create.json"),
            event_vector(version, "The create event of a patient's record room. In v12 it has no room_id; the room ID is `!` + this event's reference hash.", &create_draft, &cast.patient_server, 1),
        ));

        let record = room
            .draft(&cast.patient, "m.room.encrypted", None, json!({
                "algorithm": "m.megolm.v1.aes-sha2",
                "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg2yyOwAtHaZTwyNg37afzg8f3r9IsN9r4RNFg7MaZencUJe4qvELiDiopUjy5wYVDAtqdBzER5bWRD1ceGggAHEqbA",
                "device_id": "RECORDPHONE",
                "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
                "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
            }), T0 + 100)
            .unwrap();
        files.push((
            format!("events/v{v}-encrypted-record.json"),
            event_vector(version, "An end-to-end encrypted record entry: the server hashes and signs ciphertext it cannot read; redaction strips it all.", &record, &cast.patient_server, 1),
        ));

        let mut redaction = room
            .draft(
                &cast.patient,
                "m.room.redaction",
                None,
                json!({"reason": "entered in error"}),
                T0 + 200,
            )
            .unwrap();
        redaction.redacts = Some(room.tip().clone());
        files.push((
            format!("events/v{v}-redaction.json"),
            event_vector(version, "A redaction: `redacts` sits at the top level before v11 and in content from v11 on.", &redaction, &cast.patient_server, 1),
        ));
    }
    files
}

/// Records an auth sequence: every event appended, with the verdict it got.
struct Sequence<'c> {
    cast: &'c Cast,
    room: LocalRoom,
    steps: Vec<Value>,
    ts: u64,
}

impl<'c> Sequence<'c> {
    fn new(cast: &'c Cast, version: RoomVersion) -> Self {
        let room = LocalRoom::private_chat(
            version,
            &cast.patient_server,
            &cast.patient,
            room_id_for(version),
            T0,
        )
        .unwrap();
        let steps = room
            .signed_events()
            .iter()
            .map(|event| json!({"event": as_value(&event.json), "event_id": event.event_id.as_str(), "verdict": "accepted"}))
            .collect();
        Self { cast, room, steps, ts: T0 + 1_000 }
    }

    fn step(
        &mut self,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        want: &str,
    ) {
        self.ts += 1;
        let draft = self.room.draft(sender, kind, state_key, content, self.ts).unwrap();
        let (signed, decision) = self.room.append(self.cast.key_of(sender), &draft).unwrap();
        let (verdict, reason) = match decision.verdict {
            Verdict::Accepted => ("accepted", None),
            Verdict::Rejected(reason) => ("rejected", Some(reason)),
            Verdict::SoftFailed(reason) => ("soft_failed", Some(reason)),
        };
        assert_eq!(verdict, want, "{kind} from {sender}: {reason:?}");
        let mut step = json!({"event": as_value(&signed.json), "event_id": signed.event_id.as_str(), "verdict": verdict});
        if let Some(reason) = reason {
            step["reason"] = json!(reason);
        }
        self.steps.push(step);
    }

    fn finish(self, description: &str) -> Value {
        json!({
            "kind": "auth_sequence",
            "description": description,
            "room_version": self.room.version().as_str(),
            "verify_keys": {
                "patient.example": {"ed25519:1": self.cast.patient_server.public_key_base64()},
                "clinic.example": {"ed25519:1": self.cast.clinic_server.public_key_base64()},
                "elsewhere.example": {"ed25519:1": self.cast.outsider_server.public_key_base64()},
            },
            "events": self.steps,
        })
    }
}

fn auth_vectors(cast: &Cast) -> Vec<(String, Value)> {
    let mut files = Vec::new();
    for version in RoomVersion::ALL {
        let (patient, doctor, outsider) = (&cast.patient, &cast.doctor, &cast.outsider);
        let mut seq = Sequence::new(cast, version);
        let msg = |body: &str| json!({"msgtype": "m.text", "body": body});
        seq.step(
            outsider,
            "m.room.member",
            Some(outsider.as_str()),
            json!({"membership": "join"}),
            "rejected",
        );
        seq.step(doctor, "m.room.message", None, msg("before any grant"), "rejected");
        seq.step(
            patient,
            "m.room.member",
            Some(doctor.as_str()),
            json!({"membership": "invite"}),
            "accepted",
        );
        seq.step(
            doctor,
            "m.room.member",
            Some(doctor.as_str()),
            json!({"membership": "join"}),
            "accepted",
        );
        seq.step(doctor, "m.room.message", None, msg("reviewed the lab results"), "accepted");
        seq.step(
            doctor,
            "m.room.power_levels",
            Some(""),
            json!({"users": {doctor.as_str(): 100}}),
            "rejected",
        );
        seq.step(
            doctor,
            "m.room.member",
            Some(patient.as_str()),
            json!({"membership": "leave"}),
            "rejected",
        );
        seq.step(
            patient,
            "m.room.member",
            Some(doctor.as_str()),
            json!({"membership": "leave", "reason": "grant revoked"}),
            "accepted",
        );
        seq.step(doctor, "m.room.message", None, msg("after revocation"), "rejected");
        seq.step(
            doctor,
            "m.room.member",
            Some(doctor.as_str()),
            json!({"membership": "join"}),
            "rejected",
        );
        seq.step(
            patient,
            "m.room.member",
            Some(doctor.as_str()),
            json!({"membership": "ban"}),
            "accepted",
        );
        seq.step(
            patient,
            "m.room.member",
            Some(doctor.as_str()),
            json!({"membership": "invite"}),
            "rejected",
        );
        files.push((
            format!("auth/v{}-grant-and-revoke.json", version.as_str()),
            seq.finish("A patient's record room: an outsider cannot join, a provider can act only between invite+join (grant) and kick (revoke), cannot raise its own power or remove the patient, and cannot come back without a new invite; a banned provider cannot even be re-invited."),
        ));
    }

    // Room version 12 only: creators hold unlimited power and may not be listed in power levels.
    let mut seq = Sequence::new(cast, RoomVersion::V12);
    seq.step(
        &cast.patient,
        "m.room.power_levels",
        Some(""),
        json!({"users": {cast.patient.as_str(): 100}}),
        "rejected",
    );
    seq.step(
        &cast.patient,
        "m.room.member",
        Some(cast.doctor.as_str()),
        json!({"membership": "invite"}),
        "accepted",
    );
    seq.step(
        &cast.doctor,
        "m.room.member",
        Some(cast.doctor.as_str()),
        json!({"membership": "join"}),
        "accepted",
    );
    seq.step(
        &cast.patient,
        "m.room.power_levels",
        Some(""),
        json!({"users": {cast.doctor.as_str(): 100}, "state_default": 50}),
        "accepted",
    );
    seq.step(
        &cast.doctor,
        "m.room.member",
        Some(cast.patient.as_str()),
        json!({"membership": "ban"}),
        "rejected",
    );
    seq.step(
        &cast.doctor,
        "m.room.power_levels",
        Some(""),
        json!({"users": {cast.doctor.as_str(): 100, cast.patient.as_str(): 0}}),
        "rejected",
    );
    files.push((
        "auth/v12-creator-power.json".to_owned(),
        seq.finish("Room version 12: the creator may not appear in power levels, and even a provider raised to 100 cannot ban or demote the patient who created the room."),
    ));
    files
}

#[test]
fn generated_vectors_match_the_files() {
    let cast = cast();
    let write = std::env::var_os("MEDRIX_WRITE_VECTORS").is_some();
    let mut stale = Vec::new();
    for (name, vector) in event_vectors(&cast).into_iter().chain(auth_vectors(&cast)) {
        let path = spec_dir().join(&name);
        let text = serde_json::to_string_pretty(&vector).unwrap() + "\n";
        if write {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            stale.push(name);
        }
    }
    assert!(
        stale.is_empty(),
        "vector files differ from the code (regenerate and review): {stale:?}"
    );
}
