//! Which signatures a user may add to a device or cross-signing key
//! (`/keys/signatures/upload`): only their own, made by one of their keys that the spec lets
//! sign that kind of key, and verifying over the key exactly as stored. Other users'
//! signatures are never taken from an upload, so nobody can replace or forge them: a client
//! trusts a device because of them.

use std::collections::BTreeMap;

use medrix_protocol::{
    canonical::{encode_without, object_from_value},
    keys::verify_object_signature,
};
use ruma::UserId;
use serde_json::Value;

/// The kind of key being signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedKind {
    Device,
    Master,
    SelfSigning,
    UserSigning,
}

/// Why an upload's signatures were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The object or a signature is not what was signed, or does not verify.
    Invalid(String),
    /// The signer's keys may not sign this key.
    NotAllowed(String),
}

/// The signer's public ed25519 keys (unpadded base64): their devices' keys by device ID,
/// and their cross-signing keys.
#[derive(Debug, Default)]
pub struct SignerKeys {
    pub devices: BTreeMap<String, String>,
    pub master: Option<String>,
    pub self_signing: Option<String>,
    pub user_signing: Option<String>,
}

/// The public key of a cross-signing key object (its one `keys` entry).
pub fn cross_signing_public_key(key: &Value) -> Option<String> {
    key["keys"].as_object()?.values().next()?.as_str().map(ToOwned::to_owned)
}

/// The key IDs (`ed25519:<device ID or public key>`) that may sign a key of `kind` owned by
/// `owner`, with their public keys: a user's self-signing key signs their devices, their
/// devices sign their master key, their master key signs their other cross-signing keys,
/// and their user-signing key signs other users' master keys. Nothing else.
fn allowed_signing_keys(
    signer: &UserId,
    keys: &SignerKeys,
    owner: &UserId,
    kind: SignedKind,
) -> BTreeMap<String, String> {
    let cross_signing = |key: &Option<String>| {
        key.iter().map(|public| (format!("ed25519:{public}"), public.clone())).collect()
    };
    match (signer == owner, kind) {
        (true, SignedKind::Device) => cross_signing(&keys.self_signing),
        (true, SignedKind::Master) => keys
            .devices
            .iter()
            .map(|(device, public)| (format!("ed25519:{device}"), public.clone()))
            .collect(),
        (true, SignedKind::SelfSigning | SignedKind::UserSigning) => cross_signing(&keys.master),
        (false, SignedKind::Master) => cross_signing(&keys.user_signing),
        (false, _) => BTreeMap::new(),
    }
}

/// The signatures by `signer` in `uploaded` to add to `stored` (a key of `owner` of `kind`):
/// `(key ID, signature)` pairs, those already stored left out. `uploaded` must be the stored
/// key itself (signatures and unsigned data aside), and every new signature must come from
/// a key allowed to sign it and verify.
pub fn new_signatures(
    signer: &UserId,
    signer_keys: &SignerKeys,
    owner: &UserId,
    kind: SignedKind,
    stored: &Value,
    uploaded: &Value,
) -> Result<Vec<(String, Value)>, Refusal> {
    let invalid = |why: &str| Refusal::Invalid(why.to_owned());
    let stored_object = object_from_value(stored.clone())
        .map_err(|_| invalid("the stored key is not canonical JSON"))?;
    let uploaded_object = object_from_value(uploaded.clone())
        .map_err(|err| Refusal::Invalid(format!("the signed object: {err}")))?;
    let unsigned_part = |object| encode_without(object, &["signatures", "unsigned"]);
    if unsigned_part(&stored_object) != unsigned_part(&uploaded_object) {
        return Err(invalid("the signed object is not the key as stored"));
    }
    let by_signer = uploaded["signatures"][signer.as_str()]
        .as_object()
        .ok_or_else(|| invalid("the upload holds no signature by its uploader"))?;
    let allowed = allowed_signing_keys(signer, signer_keys, owner, kind);
    let mut added = Vec::new();
    for (key_id, signature) in by_signer {
        if stored["signatures"][signer.as_str()][key_id] == *signature {
            continue; // already stored: clients send the key's earlier signatures back
        }
        let Some(public) = allowed.get(key_id) else {
            return Err(Refusal::NotAllowed(format!("{key_id} may not sign this key")));
        };
        let signature_text =
            signature.as_str().ok_or_else(|| invalid("a signature is a string"))?;
        verify_object_signature(&stored_object, public, signature_text)
            .map_err(|err| Refusal::Invalid(format!("{key_id}: {err}")))?;
        added.push((key_id.clone(), signature.clone()));
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use base64::{Engine as _, engine::general_purpose::STANDARD_NO_PAD};
    use ed25519_dalek::{Signer as _, SigningKey};
    use serde_json::json;

    use super::*;

    fn public(key: &SigningKey) -> String {
        STANDARD_NO_PAD.encode(key.verifying_key().to_bytes())
    }

    fn sign(key: &SigningKey, object: &Value) -> String {
        let object = object_from_value(object.clone()).unwrap();
        let message = encode_without(&object, &["signatures", "unsigned"]);
        STANDARD_NO_PAD.encode(key.sign(message.as_bytes()).to_bytes())
    }

    fn user(id: &str) -> &UserId {
        <&UserId>::try_from(id).unwrap()
    }

    fn device_key() -> Value {
        json!({"user_id": "@a:h", "device_id": "DEV", "keys": {"ed25519:DEV": "k"},
            "signatures": {"@a:h": {"ed25519:DEV": "own"}}})
    }

    #[test]
    fn a_users_self_signing_key_signs_their_device_and_nothing_from_others_is_taken() {
        let self_signing = SigningKey::from_bytes(&[1; 32]);
        let keys = SignerKeys { self_signing: Some(public(&self_signing)), ..Default::default() };
        let stored = device_key();
        let mut uploaded = stored.clone();
        let key_id = format!("ed25519:{}", public(&self_signing));
        uploaded["signatures"]["@a:h"][&key_id] = json!(sign(&self_signing, &stored));
        uploaded["signatures"]["@m:h"] = json!({"ed25519:X": "forged"});
        let added = new_signatures(
            user("@a:h"),
            &keys,
            user("@a:h"),
            SignedKind::Device,
            &stored,
            &uploaded,
        )
        .unwrap();
        assert_eq!(added.len(), 1, "only the uploader's new signature: {added:?}");
        assert_eq!(added[0].0, key_id);
    }

    #[test]
    fn bad_changed_or_unauthorized_signatures_are_refused() {
        let self_signing = SigningKey::from_bytes(&[1; 32]);
        let keys = SignerKeys { self_signing: Some(public(&self_signing)), ..Default::default() };
        let stored = device_key();
        let key_id = format!("ed25519:{}", public(&self_signing));
        let check = |signer: &str, uploaded: &Value| {
            new_signatures(user(signer), &keys, user("@a:h"), SignedKind::Device, &stored, uploaded)
        };

        let mut wrong = stored.clone();
        wrong["signatures"]["@a:h"][&key_id] =
            json!(sign(&SigningKey::from_bytes(&[2; 32]), &stored));
        assert!(matches!(check("@a:h", &wrong), Err(Refusal::Invalid(_))));

        let mut replaced = stored.clone();
        replaced["signatures"]["@a:h"]["ed25519:DEV"] = json!("replaced");
        assert!(matches!(check("@a:h", &replaced), Err(Refusal::NotAllowed(_))));

        let mut changed = stored.clone();
        changed["keys"]["ed25519:DEV"] = json!("attacker's key");
        changed["signatures"]["@a:h"][&key_id] = json!(sign(&self_signing, &changed));
        assert!(matches!(check("@a:h", &changed), Err(Refusal::Invalid(_))));

        // Another user's keys never sign a device, even with the owner's name on them.
        let mut foreign = stored.clone();
        foreign["signatures"]["@a:h"][&key_id] = json!(sign(&self_signing, &stored));
        assert!(check("@m:h", &foreign).is_err());
    }

    #[test]
    fn another_users_user_signing_key_signs_only_a_master_key() {
        let user_signing = SigningKey::from_bytes(&[5; 32]);
        let keys = SignerKeys { user_signing: Some(public(&user_signing)), ..Default::default() };
        let master = json!({"user_id": "@a:h", "usage": ["master"], "keys": {"ed25519:M": "M"}});
        let mut uploaded = master.clone();
        let key_id = format!("ed25519:{}", public(&user_signing));
        uploaded["signatures"] = json!({"@m:h": {&key_id: sign(&user_signing, &master)}});
        let added = new_signatures(
            user("@m:h"),
            &keys,
            user("@a:h"),
            SignedKind::Master,
            &master,
            &uploaded,
        );
        assert_eq!(added.unwrap().len(), 1);
        let device = device_key();
        let mut uploaded = device.clone();
        uploaded["signatures"]["@m:h"] = json!({&key_id: sign(&user_signing, &device)});
        let refused = new_signatures(
            user("@m:h"),
            &keys,
            user("@a:h"),
            SignedKind::Device,
            &device,
            &uploaded,
        );
        assert!(matches!(refused, Err(Refusal::NotAllowed(_))));
    }
}
