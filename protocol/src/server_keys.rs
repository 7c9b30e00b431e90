//! Server key documents (`/_matrix/key/v2/server`): building this server's self-signed answer,
//! and checking another server's. A remote document is trusted only if it names the server
//! asked and carries a valid signature by one of the keys it lists; the caller decides for
//! how long to use it (`valid_until_ts`) with its own clock.

use std::collections::BTreeMap;

use ruma::{CanonicalJsonObject, CanonicalJsonValue, ServerName};
use serde::Deserialize;

use crate::{
    ProtocolError,
    canonical::parse_object,
    keys::{ServerSigningKey, VerifyKeys, decode_base64, verify_json},
};

/// The largest key document accepted (a server lists a handful of keys).
pub const MAX_KEY_DOCUMENT_BYTES: usize = 64 * 1024;

/// A key this server used before, published so old signatures still verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldVerifyKey {
    pub key_id: String,
    pub public_key_base64: String,
    pub expired_ts: u64,
}

/// This server's key document, signed with its current key.
pub fn own_key_document(
    current: &ServerSigningKey,
    old_keys: &[OldVerifyKey],
    valid_until_ts: u64,
) -> Result<CanonicalJsonObject, ProtocolError> {
    let mut verify_keys = CanonicalJsonObject::new();
    verify_keys.insert(
        current.key_id(),
        object([("key", CanonicalJsonValue::String(current.public_key_base64()))]),
    );
    let mut old_verify_keys = CanonicalJsonObject::new();
    for old in old_keys {
        old_verify_keys.insert(
            old.key_id.clone(),
            object([
                ("key", CanonicalJsonValue::String(old.public_key_base64.clone())),
                ("expired_ts", integer(old.expired_ts)?),
            ]),
        );
    }
    let mut document = CanonicalJsonObject::new();
    document.insert("server_name".into(), current.server_name().as_str().into());
    document.insert("valid_until_ts".into(), integer(valid_until_ts)?);
    document.insert("verify_keys".into(), CanonicalJsonValue::Object(verify_keys));
    document.insert("old_verify_keys".into(), CanonicalJsonValue::Object(old_verify_keys));
    current.sign_json(&mut document)?;
    Ok(document)
}

/// Another server's keys, from a checked key document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteServerKeys {
    /// Current keys: key ID → unpadded base64 public key.
    pub verify_keys: BTreeMap<String, String>,
    /// Former keys: key ID → (public key, when it stopped being used).
    pub old_verify_keys: BTreeMap<String, (String, u64)>,
    pub valid_until_ts: u64,
}

#[derive(Deserialize)]
struct KeyDocument {
    server_name: String,
    valid_until_ts: u64,
    #[serde(default)]
    verify_keys: BTreeMap<String, KeyEntry>,
    #[serde(default)]
    old_verify_keys: BTreeMap<String, OldKeyEntry>,
}

#[derive(Deserialize)]
struct KeyEntry {
    key: String,
}

#[derive(Deserialize)]
struct OldKeyEntry {
    key: String,
    expired_ts: u64,
}

/// Checks a key document `server` published about itself.
pub fn check_key_document(
    bytes: &[u8],
    server: &ServerName,
) -> Result<RemoteServerKeys, ProtocolError> {
    let object = parse_object(bytes, MAX_KEY_DOCUMENT_BYTES)?;
    check_key_object(&object, server)
}

/// [`check_key_document`] for an already parsed document (as found in notary answers).
pub fn check_key_object(
    object: &CanonicalJsonObject,
    server: &ServerName,
) -> Result<RemoteServerKeys, ProtocolError> {
    let value =
        serde_json::to_value(object).map_err(|err| ProtocolError::Malformed(err.to_string()))?;
    let document: KeyDocument = serde_json::from_value(value)
        .map_err(|err| ProtocolError::Malformed(format!("key document: {err}")))?;
    if document.server_name != server.as_str() {
        return Err(ProtocolError::BadKey(format!(
            "asked {server} for its keys, got a document for {}",
            document.server_name
        )));
    }
    let mut keys = VerifyKeys::default();
    for (key_id, entry) in &document.verify_keys {
        let public: [u8; 32] = decode_base64(&entry.key)?
            .try_into()
            .map_err(|_| ProtocolError::BadKey(format!("{key_id} is not a 32-byte key")))?;
        keys.insert(server.as_str(), key_id, public);
    }
    if !keys.has_server(server.as_str()) {
        return Err(ProtocolError::BadKey(format!("{server} lists no usable verify key")));
    }
    // Only the server's own signature counts here; notaries add theirs beside it, and those
    // are checked (or not) by whoever trusts that notary.
    let mut own_signature_only = object.clone();
    if let Some(CanonicalJsonValue::Object(signatures)) = own_signature_only.get_mut("signatures") {
        signatures.retain(|signer, _| signer == server.as_str());
    }
    verify_json(&own_signature_only, &keys)?;
    Ok(RemoteServerKeys {
        verify_keys: document.verify_keys.into_iter().map(|(id, e)| (id, e.key)).collect(),
        old_verify_keys: document
            .old_verify_keys
            .into_iter()
            .map(|(id, e)| (id, (e.key, e.expired_ts)))
            .collect(),
        valid_until_ts: document.valid_until_ts,
    })
}

fn object<const N: usize>(pairs: [(&str, CanonicalJsonValue); N]) -> CanonicalJsonValue {
    CanonicalJsonValue::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn integer(value: u64) -> Result<CanonicalJsonValue, ProtocolError> {
    let int = ruma::Int::try_from(value)
        .map_err(|_| ProtocolError::NotCanonical(format!("{value} is beyond 2^53")))?;
    Ok(CanonicalJsonValue::Integer(int))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canonical::encode;

    fn key(server: &str, seed: u8) -> ServerSigningKey {
        ServerSigningKey::from_seed(server, "k1", &[seed; 32]).unwrap()
    }

    #[test]
    fn a_published_document_checks_and_lists_old_keys() {
        let current = key("hospital.example", 1);
        let old = OldVerifyKey {
            key_id: "ed25519:k0".into(),
            public_key_base64: key("hospital.example", 2).public_key_base64(),
            expired_ts: 1_000,
        };
        let document = own_key_document(&current, std::slice::from_ref(&old), 2_000).unwrap();
        let server = ServerName::parse("hospital.example").unwrap();
        let checked = check_key_document(encode(&document).as_bytes(), &server).unwrap();
        assert_eq!(checked.valid_until_ts, 2_000);
        assert_eq!(checked.verify_keys["ed25519:k1"], current.public_key_base64());
        assert_eq!(checked.old_verify_keys["ed25519:k0"], (old.public_key_base64, 1_000));
    }

    #[test]
    fn forged_or_misaddressed_documents_are_refused() {
        let server = ServerName::parse("hospital.example").unwrap();
        let document = own_key_document(&key("hospital.example", 1), &[], 2_000).unwrap();
        // Another server's document.
        let other = ServerName::parse("clinic.example").unwrap();
        assert!(check_key_document(encode(&document).as_bytes(), &other).is_err());
        // A changed field breaks the self-signature.
        let mut tampered = document.clone();
        tampered.insert("valid_until_ts".into(), integer(9_999_999).unwrap());
        assert!(check_key_document(encode(&tampered).as_bytes(), &server).is_err());
        // A key swapped in by someone else, signed by them: their signature does not count
        // for a key the document does not list, and the listed key did not sign it.
        let mut swapped = own_key_document(&key("hospital.example", 3), &[], 2_000).unwrap();
        swapped.insert("verify_keys".into(), document["verify_keys"].clone());
        assert!(check_key_document(encode(&swapped).as_bytes(), &server).is_err());
        assert!(check_key_document(b"not json", &server).is_err());
    }

    #[test]
    fn a_notarised_document_still_checks_by_its_own_signature() {
        let server = ServerName::parse("hospital.example").unwrap();
        let mut document = own_key_document(&key("hospital.example", 1), &[], 2_000).unwrap();
        key("notary.example", 9).sign_json(&mut document).unwrap();
        assert!(check_key_object(&document, &server).is_ok());
    }
}
