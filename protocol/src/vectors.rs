//! Checks a test-vector file of `spec/vectors/` against this implementation. The formats are
//! described in `spec/vectors/README.md`; this is the reference reading of them, used by the
//! tests and by `medrix vectors verify`.

use std::collections::HashMap;

use ruma::{CanonicalJsonObject, OwnedEventId};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    Pdu, ProtocolError, RoomVersion, StateMap, Verdict,
    build::hash_and_sign,
    canonical::{canonicalize_lenient, encode, object_from_value},
    decide::decide,
    incoming::{check_incoming_object, event_id},
    keys::{ServerSigningKey, VerifyKeys},
    redaction::redact,
};

/// What checking one vector file found.
#[derive(Debug, Default)]
pub struct VectorReport {
    /// Individual checks that held.
    pub passed: usize,
    /// Checks that failed, each described.
    pub failures: Vec<String>,
}

impl VectorReport {
    fn expect(&mut self, holds: bool, what: impl FnOnce() -> String) {
        if holds {
            self.passed += 1;
        } else {
            self.failures.push(what());
        }
    }

    fn expect_eq<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, got: T, want: T) {
        self.expect(got == want, || format!("{what}: got {got:?}, want {want:?}"));
    }
}

/// Checks one vector file, given as parsed JSON. A file that cannot be read as a vector at
/// all is an `Err`; individual failed checks are listed in the report.
pub fn check_vector_file(file: Value) -> Result<VectorReport, String> {
    let kind = file.get("kind").and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut report = VectorReport::default();
    match kind.as_str() {
        "canonical_json" => check_canonical(from_value(file)?, &mut report),
        "signing" => check_signing(from_value(file)?, &mut report)?,
        "event" => check_event(from_value(file)?, &mut report)?,
        "auth_sequence" => check_auth_sequence(from_value(file)?, &mut report)?,
        other => return Err(format!("unknown vector kind {other:?}")),
    }
    Ok(report)
}

fn from_value<T: for<'de> Deserialize<'de>>(value: Value) -> Result<T, String> {
    serde_json::from_value(value).map_err(|err| format!("vector file does not parse: {err}"))
}

fn to_object(value: Value) -> Result<CanonicalJsonObject, String> {
    object_from_value(value).map_err(|err| err.to_string())
}

fn version(id: &str) -> Result<RoomVersion, String> {
    RoomVersion::parse(id).map_err(|err| err.to_string())
}

#[derive(Deserialize)]
struct SigningKeySpec {
    server_name: String,
    key_id: String,
    seed: String,
}

impl SigningKeySpec {
    fn key(&self) -> Result<ServerSigningKey, String> {
        let version = self
            .key_id
            .strip_prefix("ed25519:")
            .ok_or_else(|| format!("key ID {:?} is not ed25519", self.key_id))?;
        ServerSigningKey::from_base64_seed(&self.server_name, version, &self.seed)
            .map_err(|err| err.to_string())
    }
}

#[derive(Deserialize)]
struct CanonicalFile {
    cases: Vec<CanonicalCase>,
}

#[derive(Deserialize)]
struct CanonicalCase {
    input: String,
    canonical: String,
}

fn check_canonical(file: CanonicalFile, report: &mut VectorReport) {
    for case in file.cases {
        let encoded = serde_json::from_str::<Value>(&case.input)
            .map_err(|err| err.to_string())
            .and_then(|value| canonicalize_lenient(value).map_err(|err| err.to_string()))
            .map(|value| serde_json::to_string(&value).expect("canonical values serialize"));
        report.expect_eq(
            &format!("canonical form of {:?}", case.input),
            encoded,
            Ok(case.canonical),
        );
    }
}

#[derive(Deserialize)]
struct SigningFile {
    signing_key: SigningKeySpec,
    json_signing: Vec<SigningCase>,
    event_signing: Vec<EventSigningCase>,
}

#[derive(Deserialize)]
struct SigningCase {
    input: Value,
    signed: Value,
}

#[derive(Deserialize)]
struct EventSigningCase {
    room_version: String,
    input: Value,
    signed: Value,
}

fn check_signing(file: SigningFile, report: &mut VectorReport) -> Result<(), String> {
    let key = file.signing_key.key()?;
    for case in file.json_signing {
        let mut object = to_object(case.input)?;
        key.sign_json(&mut object).map_err(|err| err.to_string())?;
        report.expect_eq("signed JSON", encode(&object), encode(&to_object(case.signed)?));
    }
    for case in file.event_signing {
        let version = version(&case.room_version)?;
        let mut object = to_object(case.input)?;
        hash_and_sign(&mut object, version, &key).map_err(|err| err.to_string())?;
        report.expect_eq("signed event", encode(&object), encode(&to_object(case.signed)?));
    }
    Ok(())
}

#[derive(Deserialize)]
struct EventFile {
    room_version: String,
    signing_key: SigningKeySpec,
    input: Value,
    content_hash: String,
    event_id: String,
    signed: Value,
    redacted: Value,
}

fn check_event(file: EventFile, report: &mut VectorReport) -> Result<(), String> {
    let version = version(&file.room_version)?;
    let key = file.signing_key.key()?;
    let mut object = to_object(file.input)?;
    hash_and_sign(&mut object, version, &key).map_err(|err| err.to_string())?;
    let signed = to_object(file.signed)?;
    report.expect_eq("signed event", encode(&object), encode(&signed));
    let hash = ruma::signatures::content_hash(&signed).map(|hash| hash.encode());
    report.expect_eq("content hash", hash.map_err(|err| err.to_string()), Ok(file.content_hash));
    report.expect_eq(
        "event ID",
        event_id(&signed, version).map(|id| id.to_string()),
        Ok(file.event_id.clone()),
    );
    let redacted = redact(signed.clone(), version, None).map(|object| encode(&object));
    report.expect_eq("redacted form", redacted, Ok(encode(&to_object(file.redacted)?)));

    let keys = key.verify_keys();
    let checked = check_incoming_object(signed, version, &keys);
    report.expect(matches!(&checked, Ok(c) if !c.redacted_on_receipt), || {
        format!("signed event does not verify intact: {checked:?}")
    });
    Ok(())
}

#[derive(Deserialize)]
struct AuthSequenceFile {
    room_version: String,
    verify_keys: HashMap<String, HashMap<String, String>>,
    events: Vec<AuthStep>,
}

#[derive(Deserialize)]
struct AuthStep {
    event: Value,
    event_id: String,
    verdict: String,
    #[serde(default)]
    reason_contains: Option<String>,
}

/// Replays a room in a single line: each event must check in with the stated ID and get the
/// stated verdict against the state the accepted events before it built.
fn check_auth_sequence(file: AuthSequenceFile, report: &mut VectorReport) -> Result<(), String> {
    let version = version(&file.room_version)?;
    let mut keys = VerifyKeys::default();
    for (server, server_keys) in &file.verify_keys {
        for (key_id, public_key) in server_keys {
            keys.insert_base64(server, key_id, public_key).map_err(|err| err.to_string())?;
        }
    }
    let mut events: HashMap<OwnedEventId, Pdu> = HashMap::new();
    let mut state = StateMap::new();
    for (index, step) in file.events.into_iter().enumerate() {
        let checked = match check_incoming_object(to_object(step.event)?, version, &keys) {
            Ok(checked) => checked,
            Err(err) => {
                report.failures.push(format!("event {index} fails its checks: {err}"));
                continue;
            }
        };
        let mut pdu = checked.pdu;
        report.expect_eq(&format!("event {index} ID"), pdu.event_id().as_str(), &step.event_id);
        let decision = decide(version, &pdu, &events, &state, None);
        let (verdict, reason) = match &decision.verdict {
            Verdict::Accepted => ("accepted", ""),
            Verdict::Rejected(reason) => ("rejected", reason.as_str()),
            Verdict::SoftFailed(reason) => ("soft_failed", reason.as_str()),
        };
        report.expect_eq(
            &format!("event {index} verdict ({reason})"),
            verdict,
            step.verdict.as_str(),
        );
        if let Some(expected) = &step.reason_contains {
            report.expect(reason.contains(expected.as_str()), || {
                format!("event {index}: reason {reason:?} does not mention {expected:?}")
            });
        }
        if matches!(decision.verdict, Verdict::Rejected(_)) {
            pdu.set_rejected(true);
        } else {
            state = decision.state_after;
        }
        events.insert(pdu.event_id().to_owned(), pdu);
    }
    Ok(())
}

/// Reads a vector file from JSON text (for callers holding bytes).
pub fn check_vector_text(text: &str) -> Result<VectorReport, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|err| ProtocolError::NotJson(err.to_string()).to_string())?;
    check_vector_file(value)
}
