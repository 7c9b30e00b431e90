//! Signature and hash checks of a received event, on the hot path of federation ingest.
//!
//! ruma's `verify_event` + `reference_hash` + `content_hash` clone the whole event five times
//! and parse each server key on every call. Here the event is redacted once, that redacted
//! form is encoded once (the signed bytes are also the reference-hash input in every room
//! version Medrix speaks), nothing else is cloned, and keys come pre-parsed from
//! [`VerifyKeys`]. The redaction rules themselves stay ruma's. The `ruma_oracle` property tests
//! hold this module to ruma's answers on generated and corrupted events.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier as _};
use ruma::{CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId};
use sha2::{Digest, Sha256};

use crate::{
    ProtocolError, RoomVersion,
    canonical::{MAX_CANONICAL_PDU_BYTES, encode_without},
    incoming::required_signers,
    keys::{VerifyKeys, decode_base64},
    redaction::redact,
};

/// What the signature and hash checks established about an event.
pub struct SignatureCheck {
    /// `$` + the reference hash.
    pub event_id: OwnedEventId,
    /// Whether `hashes.sha256` matches the content; if not, only `redacted` may be kept.
    pub content_hash_matches: bool,
    /// The redacted form, already computed on the way.
    pub redacted: CanonicalJsonObject,
    /// The whole event as canonical JSON, less the sender's `unsigned` (what is stored), also
    /// computed on the way.
    pub whole: String,
}

/// Checks that every server that must sign `object` did so with a known key, and computes
/// the event ID and the content-hash verdict.
pub fn check_signatures_and_hashes(
    object: &CanonicalJsonObject,
    version: RoomVersion,
    keys: &VerifyKeys,
) -> Result<SignatureCheck, ProtocolError> {
    prepare(object, version, keys)?.verify()
}

/// An event whose bytes and hashes are computed and whose signatures are found, waiting for
/// the signature arithmetic. Batching that arithmetic for many events keeps the curve tables
/// in cache: parsing between two verifications evicts them and costs about a fifth of the rate.
pub struct PreparedCheck<'k> {
    signed_bytes: String,
    pending: Vec<(&'k ed25519_dalek::VerifyingKey, Signature, String)>,
    result: SignatureCheck,
}

impl PreparedCheck<'_> {
    /// Runs the pending signature verifications.
    pub fn verify(self) -> Result<SignatureCheck, ProtocolError> {
        for (public_key, signature, who) in &self.pending {
            public_key
                .verify(self.signed_bytes.as_bytes(), signature)
                .map_err(|_| bad_signature(format!("{who}: signature does not verify")))?;
        }
        Ok(self.result)
    }
}

/// Everything of the signature and hash checks except the signature arithmetic.
pub fn prepare<'k>(
    object: &CanonicalJsonObject,
    version: RoomVersion,
    keys: &'k VerifyKeys,
) -> Result<PreparedCheck<'k>, ProtocolError> {
    // The size limit first, before any other work on the event. Its redacted form only lacks
    // fields, so it is never larger and needs no check of its own.
    let WholeAndHashed { whole, whole_len, hashed } = encode_whole_and_hashed(object);
    if whole_len > MAX_CANONICAL_PDU_BYTES {
        return Err(too_large(whole_len));
    }
    let redacted = redact(object.clone(), version, None)?;
    let claimed_hash = match object.get("hashes") {
        Some(CanonicalJsonValue::Object(hashes)) => match hashes.get("sha256") {
            Some(CanonicalJsonValue::String(hash)) => hash,
            _ => return Err(malformed("`hashes.sha256` must be a string")),
        },
        _ => return Err(malformed("`hashes` must be an object")),
    };
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Err(malformed("`signatures` must be an object"));
    };

    // Redaction keeps no top-level `age_ts` in v10-v12, so the bytes the signature covers
    // (without `signatures` and `unsigned`) are exactly the reference-hash input.
    debug_assert!(!redacted.contains_key("age_ts"));
    let signed_bytes = encode_without(&redacted, &["signatures", "unsigned"]);
    let mut pending = Vec::with_capacity(1);
    for server in required_signers(object, version)? {
        find_server_signatures(server.as_str(), signatures, keys, &mut pending)?;
    }

    let event_id = EventId::parse(format!(
        "${}",
        URL_SAFE_NO_PAD.encode(Sha256::digest(signed_bytes.as_bytes()))
    ))
    .map_err(|err| malformed(&err.to_string()))?;

    let content_hash_matches = decode_base64(claimed_hash)
        .is_ok_and(|claimed| claimed == Sha256::digest(&hashed).as_slice());

    Ok(PreparedCheck {
        signed_bytes,
        pending,
        result: SignatureCheck { event_id, content_hash_matches, redacted, whole },
    })
}

/// An event's canonical JSON as it is kept (without the sender's `unsigned`, which no
/// signature covers: a receiver rebuilds its own), the length of the event as received (what
/// the size limit is about), and the event without the fields the content hash leaves out.
struct WholeAndHashed {
    whole: String,
    whole_len: usize,
    hashed: Vec<u8>,
}

/// The fields the content hash does not cover.
const NOT_HASHED: [&str; 3] = ["hashes", "signatures", "unsigned"];

/// Encodes each top-level field once and puts both encodings together from those pieces
/// (the keys of a canonical object come in order, so the pieces' order is canonical too):
/// encoding the event twice over would cost a sixth of the checks besides the signature
/// arithmetic.
fn encode_whole_and_hashed(object: &CanonicalJsonObject) -> WholeAndHashed {
    let mut whole = Vec::with_capacity(1024);
    let mut hashed = Vec::with_capacity(1024);
    let mut piece = Vec::with_capacity(256);
    // `{`, `}` and the pieces with their separators: one comma fewer than pieces, one brace
    // more.
    let mut whole_len = 1;
    whole.push(b'{');
    hashed.push(b'{');
    for (key, value) in object {
        piece.clear();
        // Strings and canonical values always serialize.
        serde_json::to_writer(&mut piece, key).expect("a key serializes");
        piece.push(b':');
        serde_json::to_writer(&mut piece, value).expect("a canonical value serializes");
        whole_len += piece.len() + 1;
        if key == "unsigned" {
            continue; // not kept, and not hashed either
        }
        if whole.len() > 1 {
            whole.push(b',');
        }
        whole.extend_from_slice(&piece);
        if !NOT_HASHED.contains(&key.as_str()) {
            if hashed.len() > 1 {
                hashed.push(b',');
            }
            hashed.extend_from_slice(&piece);
        }
    }
    whole.push(b'}');
    hashed.push(b'}');
    let whole = String::from_utf8(whole).expect("serde_json writes UTF-8");
    WholeAndHashed { whole, whole_len: whole_len.max(2), hashed }
}

/// The spec's rule for one server: every signature made with a key we know must verify, and
/// at least one must be checked. Keys we do not know, and other algorithms, are skipped. The
/// signatures to verify are appended to `pending`.
fn find_server_signatures<'k>(
    server: &str,
    signatures: &CanonicalJsonObject,
    keys: &'k VerifyKeys,
    pending: &mut Vec<(&'k ed25519_dalek::VerifyingKey, Signature, String)>,
) -> Result<(), ProtocolError> {
    let server_signatures = match signatures.get(server) {
        Some(CanonicalJsonValue::Object(entries)) => entries,
        Some(_) => {
            return Err(malformed(&format!("`signatures.{server}` must be an object")));
        }
        None => return Err(bad_signature(format!("no signature from {server}"))),
    };
    let known = keys
        .ed25519_keys(server)
        .ok_or_else(|| bad_signature(format!("no verify keys known for {server}")))?;

    let mut checked = false;
    for (key_id, signature) in server_signatures {
        let Some(public_key) = known.get(key_id) else {
            continue;
        };
        let CanonicalJsonValue::String(signature) = signature else {
            return Err(malformed(&format!("`signatures.{server}.{key_id}` must be a string")));
        };
        let bytes = decode_base64(signature)
            .map_err(|_| bad_signature(format!("{server} {key_id}: signature is not base64")))?;
        let signature = Signature::from_slice(&bytes)
            .map_err(|_| bad_signature(format!("{server} {key_id}: signature is not 64 bytes")))?;
        pending.push((public_key, signature, format!("{server} {key_id}")));
        checked = true;
    }
    if checked {
        Ok(())
    } else {
        Err(bad_signature(format!("no signature from {server} with a known key")))
    }
}

fn too_large(size: usize) -> ProtocolError {
    ProtocolError::TooLarge { size, limit: MAX_CANONICAL_PDU_BYTES }
}

fn malformed(what: &str) -> ProtocolError {
    ProtocolError::Malformed(what.to_owned())
}

fn bad_signature(what: String) -> ProtocolError {
    ProtocolError::BadSignature(what)
}
