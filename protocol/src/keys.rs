//! Server signing keys (private, for signing) and verify-key sets (public, for checking).
//!
//! Keys are made from a caller-supplied 32-byte seed: this crate never draws randomness, so the
//! server decides where seeds come from and tests can use fixed ones.

use std::collections::BTreeMap;

use base64::{
    Engine as _, alphabet,
    engine::{
        DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig, general_purpose::STANDARD_NO_PAD,
    },
};
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use ruma::{
    AnyKeyName, CanonicalJsonObject, OwnedServerName, ServerName, SigningKeyAlgorithm,
    SigningKeyId,
    serde::Base64,
    signatures::{KeyPair, PublicKeyMap, Signature},
};

use crate::ProtocolError;

/// The ed25519 key a server signs its events and requests with, named `ed25519:<version>`.
pub struct ServerSigningKey {
    server_name: OwnedServerName,
    version: String,
    key: SigningKey,
}

impl ServerSigningKey {
    /// Builds the key for `server_name` from a 32-byte seed; `version` is the part after
    /// `ed25519:` in the key ID and may use only `[a-zA-Z0-9_]`.
    pub fn from_seed(
        server_name: &str,
        version: &str,
        seed: &[u8; 32],
    ) -> Result<Self, ProtocolError> {
        let server_name = ServerName::parse(server_name)
            .map_err(|err| ProtocolError::BadKey(format!("server name {server_name:?}: {err}")))?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ProtocolError::BadKey(format!(
                "key version {version:?} must be non-empty [a-zA-Z0-9_]"
            )));
        }
        Ok(Self { server_name, version: version.to_owned(), key: SigningKey::from_bytes(seed) })
    }

    /// Builds the key from an unpadded-base64 seed, the form the spec's test vectors use.
    pub fn from_base64_seed(
        server_name: &str,
        version: &str,
        seed_base64: &str,
    ) -> Result<Self, ProtocolError> {
        let bytes = decode_base64(seed_base64)?;
        let seed: [u8; 32] = bytes
            .try_into()
            .map_err(|_| ProtocolError::BadKey("a seed is exactly 32 bytes".to_owned()))?;
        Self::from_seed(server_name, version, &seed)
    }

    /// The server this key belongs to.
    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// The key ID, `ed25519:<version>`.
    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.version)
    }

    /// The raw public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The public key as unpadded base64, as published in `/_matrix/key/v2/server`.
    pub fn public_key_base64(&self) -> String {
        STANDARD_NO_PAD.encode(self.public_key())
    }

    /// A verify-key set holding just this key.
    pub fn verify_keys(&self) -> VerifyKeys {
        let mut keys = VerifyKeys::default();
        keys.insert(self.server_name.as_str(), &self.key_id(), self.public_key());
        keys
    }
}

impl ServerSigningKey {
    /// The same key as ruma's key pair type, which ruma's request signing (X-Matrix) takes.
    pub fn to_ruma_key_pair(&self) -> Result<ruma::signatures::Ed25519KeyPair, ProtocolError> {
        // PKCS#8 v1 for an ed25519 seed: a fixed 16-byte header, then the 32-byte seed.
        const PKCS8_ED25519_PREFIX: [u8; 16] = [
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        let mut document = PKCS8_ED25519_PREFIX.to_vec();
        document.extend_from_slice(&self.key.to_bytes());
        ruma::signatures::Ed25519KeyPair::from_der(&document, self.version.clone())
            .map_err(|err| ProtocolError::BadKey(err.to_string()))
    }

    /// Signs an arbitrary JSON object (server keys, federation requests) in place, adding this
    /// server's entry under `signatures`; `signatures` and `unsigned` are not covered.
    pub fn sign_json(&self, object: &mut CanonicalJsonObject) -> Result<(), ProtocolError> {
        ruma::signatures::sign_json(self.server_name.as_str(), self, object)
            .map_err(|err| ProtocolError::Malformed(err.to_string()))
    }
}

/// Checks the signatures on an arbitrary signed JSON object: every server that signed it must
/// have a key in `keys`, and each such signature must verify.
pub fn verify_json(object: &CanonicalJsonObject, keys: &VerifyKeys) -> Result<(), ProtocolError> {
    ruma::signatures::verify_json(keys.as_public_key_map(), object)
        .map_err(|err| ProtocolError::BadSignature(err.to_string()))
}

/// Checks one ed25519 `signature` by `public_key` (both unpadded base64) over `object`'s
/// canonical JSON without `signatures` and `unsigned`: how clients sign their device keys
/// and cross-signing keys, whose signers are users, not servers.
pub fn verify_object_signature(
    object: &CanonicalJsonObject,
    public_key: &str,
    signature: &str,
) -> Result<(), ProtocolError> {
    let key: [u8; 32] = decode_base64(public_key)?
        .try_into()
        .map_err(|_| ProtocolError::BadKey("an ed25519 public key is 32 bytes".to_owned()))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| ProtocolError::BadKey("not an ed25519 public key".to_owned()))?;
    let signature: [u8; 64] = decode_base64(signature)?
        .try_into()
        .map_err(|_| ProtocolError::BadSignature("an ed25519 signature is 64 bytes".to_owned()))?;
    let message = crate::canonical::encode_without(object, &["signatures", "unsigned"]);
    key.verify_strict(message.as_bytes(), &ed25519_dalek::Signature::from_bytes(&signature))
        .map_err(|_| ProtocolError::BadSignature("the signature does not verify".to_owned()))
}

impl KeyPair for ServerSigningKey {
    fn sign(&self, message: &[u8]) -> Signature {
        let key_name: &AnyKeyName = self.version.as_str().into();
        Signature::new(
            SigningKeyId::from_parts(SigningKeyAlgorithm::Ed25519, key_name),
            self.key.sign(message).to_bytes().to_vec(),
        )
    }
}

impl std::fmt::Debug for ServerSigningKey {
    // Never print the private half.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSigningKey")
            .field("server_name", &self.server_name)
            .field("key_id", &self.key_id())
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

/// The public keys known for each server, used to check signatures.
///
/// Keys are kept decompressed: decoding an ed25519 point costs a field inversion, about a
/// tenth of a verification, and the same few keys check every event from a server.
#[derive(Debug, Clone, Default)]
pub struct VerifyKeys {
    map: PublicKeyMap,
    parsed: BTreeMap<String, BTreeMap<String, VerifyingKey>>,
}

impl VerifyKeys {
    /// Records `key_id` (`ed25519:<version>`) of `server` as `public_key`. A key that is not
    /// a valid curve point is kept for the record but can verify nothing.
    pub fn insert(&mut self, server: &str, key_id: &str, public_key: [u8; 32]) {
        self.map
            .entry(server.to_owned())
            .or_default()
            .insert(key_id.to_owned(), Base64::new(public_key.to_vec()));
        if key_id.starts_with("ed25519:")
            && let Ok(key) = VerifyingKey::from_bytes(&public_key)
        {
            self.parsed.entry(server.to_owned()).or_default().insert(key_id.to_owned(), key);
        }
    }

    /// The usable ed25519 keys of `server`, by key ID.
    pub fn ed25519_keys(&self, server: &str) -> Option<&BTreeMap<String, VerifyingKey>> {
        self.parsed.get(server)
    }

    /// Records a key given as unpadded base64.
    pub fn insert_base64(
        &mut self,
        server: &str,
        key_id: &str,
        public_key: &str,
    ) -> Result<(), ProtocolError> {
        let bytes: [u8; 32] = decode_base64(public_key)?
            .try_into()
            .map_err(|_| ProtocolError::BadKey("an ed25519 public key is 32 bytes".to_owned()))?;
        self.insert(server, key_id, bytes);
        Ok(())
    }

    /// Merges another set into this one.
    pub fn extend(&mut self, other: VerifyKeys) {
        for (server, keys) in other.map {
            self.map.entry(server).or_default().extend(keys);
        }
        for (server, keys) in other.parsed {
            self.parsed.entry(server).or_default().extend(keys);
        }
    }

    /// Whether any key is known for `server`.
    pub fn has_server(&self, server: &str) -> bool {
        self.map.get(server).is_some_and(|keys| !keys.is_empty())
    }

    /// The ruma form, for the signature checks.
    pub fn as_public_key_map(&self) -> &PublicKeyMap {
        &self.map
    }

    /// The servers and key IDs known, for diagnostics.
    pub fn summary(&self) -> BTreeMap<&str, Vec<&str>> {
        self.map
            .iter()
            .map(|(server, keys)| (server.as_str(), keys.keys().map(String::as_str).collect()))
            .collect()
    }
}

/// Standard base64 that, like Synapse's decoder, ignores set bits after the last whole byte:
/// the specification's own test seed has them, and a strict decoder refuses it.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Decodes unpadded (or padded) standard base64, as Matrix uses for keys and signatures.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, ProtocolError> {
    LENIENT_BASE64
        .decode(text)
        .map_err(|err| ProtocolError::BadKey(format!("invalid base64: {err}")))
}

#[cfg(test)]
mod ruma_key_pair_tests {
    use super::*;

    #[test]
    fn an_object_signature_verifies_only_over_the_same_content_and_key() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let public = STANDARD_NO_PAD.encode(key.verifying_key().to_bytes());
        let mut object = crate::canonical::object_from_value(serde_json::json!({
            "user_id": "@a:b.example", "keys": {"ed25519:DEV": "k"}, "unsigned": {"x": 1},
        }))
        .unwrap();
        let message = crate::canonical::encode_without(&object, &["signatures", "unsigned"]);
        let signature = STANDARD_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes());
        // Signatures and unsigned data are not covered.
        object.insert("signatures".into(), ruma::CanonicalJsonValue::Object(Default::default()));
        assert!(verify_object_signature(&object, &public, &signature).is_ok());

        let other =
            STANDARD_NO_PAD.encode(SigningKey::from_bytes(&[4; 32]).verifying_key().to_bytes());
        assert!(verify_object_signature(&object, &other, &signature).is_err());
        object.insert("user_id".into(), ruma::CanonicalJsonValue::String("@m:b.example".into()));
        assert!(verify_object_signature(&object, &public, &signature).is_err());
        assert!(verify_object_signature(&object, &public, "not base64!").is_err());
    }

    #[test]
    fn the_ruma_key_pair_is_the_same_key() {
        let key = ServerSigningKey::from_seed("a.example", "k1", &[7; 32]).unwrap();
        let pair = key.to_ruma_key_pair().unwrap();
        assert_eq!(pair.public_key(), key.public_key());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_bad_versions_server_names_and_seed_lengths() {
        let seed = [7u8; 32];
        assert!(ServerSigningKey::from_seed("example.org", "a:b", &seed).is_err());
        assert!(ServerSigningKey::from_seed("example.org", "", &seed).is_err());
        assert!(ServerSigningKey::from_seed("bad name!", "1", &seed).is_err());
        assert!(ServerSigningKey::from_base64_seed("example.org", "1", "AAAA").is_err());
        assert!(ServerSigningKey::from_base64_seed("example.org", "1", "!!").is_err());
    }

    #[test]
    fn debug_output_never_shows_the_seed() {
        let key = ServerSigningKey::from_seed("example.org", "1", &[42u8; 32]).unwrap();
        let printed = format!("{key:?}");
        assert!(!printed.contains(&STANDARD_NO_PAD.encode([42u8; 32])));
        assert!(printed.contains(&key.public_key_base64()));
    }
}
