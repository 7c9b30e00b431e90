//! This server's identity toward other servers: its signing key and the key document it
//! publishes, valid for a day at a time so a rotated key stops being trusted soon.

use std::{sync::Arc, time::Duration};

use medrix_protocol::{
    keys::ServerSigningKey,
    server_keys::{OldVerifyKey, own_key_document},
};
use ruma::CanonicalJsonObject;

/// How long other servers may cache the published keys.
const PUBLISHED_VALIDITY: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Clone)]
pub struct ServerKeys {
    pub signing_key: Arc<ServerSigningKey>,
    old_keys: Arc<Vec<OldVerifyKey>>,
}

impl ServerKeys {
    pub fn new(signing_key: Arc<ServerSigningKey>, old_keys: Vec<OldVerifyKey>) -> Self {
        Self { signing_key, old_keys: Arc::new(old_keys) }
    }

    /// The signed key document, valid from `now_ms` for a day.
    pub fn own_document(&self, now_ms: u64) -> Result<CanonicalJsonObject, String> {
        let valid_until = now_ms + PUBLISHED_VALIDITY.as_millis() as u64;
        own_key_document(&self.signing_key, &self.old_keys, valid_until).map_err(|e| e.to_string())
    }
}
