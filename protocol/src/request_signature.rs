//! The X-Matrix signature a server puts on each federation request: its key's signature over
//! the canonical JSON of `{method, uri, origin, destination, content}`.
//!
//! Checked here on a body the caller has already parsed, so a transaction of 50 events is
//! parsed once and its events are taken from that parse (ruma's `XMatrix::verify_request`
//! parses the body itself and copies it again to drop `signatures`), or on the body as sent
//! when the sender sent it in canonical form.

use ed25519_dalek::{Signature, Verifier as _};
use ruma::CanonicalJsonValue;
use serde::Serialize;

use crate::{ProtocolError, keys::VerifyKeys};

/// What an X-Matrix signature covers. The fields are in canonical (sorted) order, so
/// serializing this struct compactly is its canonical JSON.
#[derive(Serialize)]
struct SignedRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a CanonicalJsonValue>,
    destination: &'a str,
    method: &'a str,
    origin: &'a str,
    uri: &'a str,
}

/// What an X-Matrix signature covers besides the body.
#[derive(Clone)]
pub struct RequestLine {
    pub destination: String,
    pub method: String,
    pub origin: String,
    pub uri: String,
}

impl RequestLine {
    /// Checks `signature`, made with `origin`'s key `key_id` (found in `keys`), over the
    /// request with `content` (the parsed body; `None` for none), encoded canonically.
    pub fn verify(
        &self,
        content: Option<&CanonicalJsonValue>,
        key_id: &str,
        signature: &[u8],
        keys: &VerifyKeys,
    ) -> Result<(), ProtocolError> {
        let signed = SignedRequest {
            content,
            destination: &self.destination,
            method: &self.method,
            origin: &self.origin,
            uri: &self.uri,
        };
        // Strings, canonical values and a struct of them always serialize.
        let signed = serde_json::to_vec(&signed).expect("a signed request serializes");
        verify_bytes(&signed, &self.origin, key_id, signature, keys)
    }

    /// [`Self::verify`] with `body` (the bytes as received) standing for `content`, without
    /// parsing or re-encoding it. It succeeds only when the sender sent its body in canonical
    /// form, as Synapse does: the bytes are then the very ones it signed, so what they parse
    /// to is what it signed. Otherwise the caller parses the body and checks with
    /// [`Self::verify`]. The body is most of a transaction's bytes, and this check needs no
    /// parse, so it can run while the body is being parsed.
    pub fn verify_with_raw_body(
        &self,
        body: &[u8],
        key_id: &str,
        signature: &[u8],
        keys: &VerifyKeys,
    ) -> Result<(), ProtocolError> {
        let text = |value: &str| serde_json::to_string(value).expect("a string serializes");
        let mut signed = Vec::with_capacity(body.len() + 256);
        signed.extend_from_slice(br#"{"content":"#);
        signed.extend_from_slice(body);
        for (name, value) in [
            ("destination", &self.destination),
            ("method", &self.method),
            ("origin", &self.origin),
            ("uri", &self.uri),
        ] {
            signed.extend_from_slice(format!(",\"{name}\":{}", text(value)).as_bytes());
        }
        signed.push(b'}');
        verify_bytes(&signed, &self.origin, key_id, signature, keys)
    }
}

fn verify_bytes(
    signed: &[u8],
    origin: &str,
    key_id: &str,
    signature: &[u8],
    keys: &VerifyKeys,
) -> Result<(), ProtocolError> {
    let key = keys
        .ed25519_keys(origin)
        .and_then(|known| known.get(key_id))
        .ok_or_else(|| ProtocolError::BadSignature(format!("no key {key_id} of {origin}")))?;
    let signature = Signature::from_slice(signature)
        .map_err(|_| ProtocolError::BadSignature("a signature is 64 bytes".to_owned()))?;
    key.verify(signed, &signature).map_err(|_| {
        ProtocolError::BadSignature("the request signature does not verify".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use ruma::CanonicalJsonObject;

    use super::*;
    use crate::{canonical::parse_value, keys::ServerSigningKey};

    const URI: &str = "/_matrix/federation/v1/send/t%201?x=1";

    /// The signature the spec's algorithm gives, computed the other way: ruma's `sign_json`
    /// over the request as a canonical JSON object.
    fn signed_by_ruma(content: &CanonicalJsonValue, key: &ServerSigningKey) -> Vec<u8> {
        let mut object = CanonicalJsonObject::new();
        for (field, value) in [
            ("method", "PUT"),
            ("uri", URI),
            ("origin", "clinic.test"),
            ("destination", "lab.test"),
        ] {
            object.insert(field.to_owned(), CanonicalJsonValue::String(value.to_owned()));
        }
        object.insert("content".to_owned(), content.clone());
        key.sign_json(&mut object).unwrap();
        let CanonicalJsonValue::Object(signatures) = &object["signatures"] else { panic!() };
        let CanonicalJsonValue::Object(ours) = &signatures["clinic.test"] else { panic!() };
        let CanonicalJsonValue::String(signature) = &ours[&key.key_id()] else { panic!() };
        crate::keys::decode_base64(signature).unwrap()
    }

    #[test]
    fn verifies_the_spec_signature_and_nothing_changed() {
        let key = ServerSigningKey::from_seed("clinic.test", "a1", &[7; 32]).unwrap();
        let body = br#"{"pdus":[{"b":1,"a":"\u00e9 \n"}],"origin":"clinic.test"}"#;
        let content = parse_value(body, 1 << 20).unwrap();
        let signature = signed_by_ruma(&content, &key);
        let line = |uri: &str, destination: &str| RequestLine {
            destination: destination.to_owned(),
            method: "PUT".to_owned(),
            origin: "clinic.test".to_owned(),
            uri: uri.to_owned(),
        };
        let (keys, key_id) = (key.verify_keys(), key.key_id());
        line(URI, "lab.test").verify(Some(&content), &key_id, &signature, &keys).unwrap();

        let other = CanonicalJsonValue::Object(CanonicalJsonObject::new());
        let other_uri = "/_matrix/federation/v1/send/t%202?x=1";
        for (changed, content) in [
            (line(URI, "lab.test"), Some(&other)),
            (line(URI, "lab.test"), None),
            (line(other_uri, "lab.test"), Some(&content)),
            (line(URI, "clinic.test"), Some(&content)),
        ] {
            assert!(changed.verify(content, &key_id, &signature, &keys).is_err());
        }
        // The same signature over the body as sent: accepted when the body is canonical, so
        // it equals what was signed; refused for any other spelling of the same JSON.
        let line = |uri: &str| line(uri, "lab.test");
        let canonical = serde_json::to_vec(&content).unwrap();
        line(URI).verify_with_raw_body(&canonical, &key_id, &signature, &keys).unwrap();
        assert!(line(URI).verify_with_raw_body(body, &key_id, &signature, &keys).is_err());
        let spaced = String::from_utf8(canonical.clone()).unwrap().replace(':', ": ");
        assert!(
            line(URI).verify_with_raw_body(spaced.as_bytes(), &key_id, &signature, &keys).is_err()
        );
        let changed_uri = line(other_uri);
        assert!(changed_uri.verify_with_raw_body(&canonical, &key_id, &signature, &keys).is_err());
        let unknown_key = "ed25519:b2";
        assert!(line(URI).verify(Some(&content), unknown_key, &signature, &keys).is_err());
    }
}
