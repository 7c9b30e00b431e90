//! Other servers' signing keys: fetched from the server itself (`/_matrix/key/v2/server`),
//! checked ([`medrix_protocol::server_keys::check_key_document`]), kept in RocksDB and in a
//! bounded memory cache until their `valid_until_ts`, and fetched again when a request names
//! a key not seen yet (the server rotated).
//!
//! Any request, signed or not, can name any origin, so fetches are rate limited per server
//! before they are made: a stranger cannot make this server hammer a host with key requests
//! (nor keep it busy waiting on one that does not answer).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use medrix_protocol::{
    keys::VerifyKeys,
    server_keys::{RemoteServerKeys, check_key_document},
};
use ruma::{OwnedServerName, ServerName};
use serde::{Deserialize, Serialize};

use super::{FederationError, client::FederationClient};
use crate::{
    service::rate_limit::RateLimiter,
    storage::{Storage, catalogue as cf},
};

/// The most servers whose keys are held in memory.
const MAX_IN_MEMORY: usize = 4096;

#[derive(Clone, Serialize, Deserialize)]
struct StoredKeys {
    verify_keys: std::collections::BTreeMap<String, String>,
    /// Keys the server used before: key ID → (public key, when it stopped using it).
    #[serde(default)]
    old_verify_keys: std::collections::BTreeMap<String, (String, u64)>,
    valid_until_ts: u64,
    /// The document as the server signed it, for notary answers.
    #[serde(default)]
    document: String,
}

pub struct RemoteKeys {
    storage: Storage,
    client: Arc<FederationClient>,
    memory: Mutex<HashMap<OwnedServerName, StoredKeys>>,
    /// Fetches allowed per server name.
    fetches: RateLimiter,
}

impl RemoteKeys {
    pub fn new(storage: Storage, client: Arc<FederationClient>, fetches: RateLimiter) -> Self {
        Self { storage, client, memory: Mutex::new(HashMap::new()), fetches }
    }

    /// Keys to verify what `server` signed with `key_id` now (`now_ms`): current keys only.
    pub async fn keys_for(
        &self,
        server: &ServerName,
        key_id: &str,
        now_ms: u64,
    ) -> Result<VerifyKeys, FederationError> {
        self.find(server, key_id, now_ms, None).await
    }

    /// Keys to verify an event `server` signed with `key_id` at `origin_server_ts`: a current
    /// key, or a former one the event predates (the spec's `expired_ts` rule), so events
    /// signed before a rotation stay verifiable.
    pub async fn keys_for_event(
        &self,
        server: &ServerName,
        key_id: &str,
        origin_server_ts: u64,
        now_ms: u64,
    ) -> Result<VerifyKeys, FederationError> {
        self.find(server, key_id, now_ms, Some(origin_server_ts)).await
    }

    async fn find(
        &self,
        server: &ServerName,
        key_id: &str,
        now_ms: u64,
        event_ts: Option<u64>,
    ) -> Result<VerifyKeys, FederationError> {
        let pick = |keys: &StoredKeys| -> Option<Vec<(String, String)>> {
            if keys.valid_until_ts > now_ms && keys.verify_keys.contains_key(key_id) {
                return Some(keys.verify_keys.clone().into_iter().collect());
            }
            let (old, expired_ts) = keys.old_verify_keys.get(key_id)?;
            (event_ts? < *expired_ts).then(|| vec![(key_id.to_owned(), old.clone())])
        };
        let known = match self.memory.lock().expect("keys lock").get(server).cloned() {
            Some(keys) => Some(keys),
            None => self.stored(server)?,
        };
        let chosen = match known.as_ref().and_then(|keys| pick(keys).map(|c| (keys.clone(), c))) {
            Some(found) => found,
            None => {
                let fetched = self.fetch(server).await?;
                let chosen = pick(&fetched).ok_or_else(|| FederationError::BadKeys {
                    server: server.to_owned(),
                    why: format!("no valid key {key_id}"),
                })?;
                (fetched, chosen)
            }
        };
        self.remember(server, &chosen.0);
        let mut verify = VerifyKeys::default();
        for (id, key) in &chosen.1 {
            verify.insert_base64(server.as_str(), id, key).map_err(|err| {
                FederationError::BadKeys { server: server.to_owned(), why: err.to_string() }
            })?;
        }
        Ok(verify)
    }

    /// The key document `server` signed, valid at least until `minimum_valid_until_ts` if it
    /// can be had (fetched again when the cached one expires sooner).
    pub async fn document(
        &self,
        server: &ServerName,
        minimum_valid_until_ts: u64,
    ) -> Result<ruma::CanonicalJsonObject, FederationError> {
        let cached = match self.memory.lock().expect("keys lock").get(server).cloned() {
            Some(keys) => Some(keys),
            None => self.stored(server)?,
        };
        let keys = match cached
            .filter(|k| !k.document.is_empty() && k.valid_until_ts >= minimum_valid_until_ts)
        {
            Some(keys) => keys,
            None => self.fetch(server).await?,
        };
        self.remember(server, &keys);
        medrix_protocol::canonical::parse_object(
            keys.document.as_bytes(),
            medrix_protocol::server_keys::MAX_KEY_DOCUMENT_BYTES,
        )
        .map_err(|err| FederationError::BadKeys { server: server.to_owned(), why: err.to_string() })
    }

    fn stored(&self, server: &ServerName) -> Result<Option<StoredKeys>, FederationError> {
        Ok(self
            .storage
            .get(cf::SERVERNAME_VERIFYKEYS, server.as_bytes())?
            .and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    async fn fetch(&self, server: &ServerName) -> Result<StoredKeys, FederationError> {
        if self.fetches.check(server.as_str()).is_err() {
            return Err(FederationError::KeysFetchedTooOften(server.to_owned()));
        }
        let body = self.client.get_unsigned(server, "/_matrix/key/v2/server").await?;
        let RemoteServerKeys { verify_keys, old_verify_keys, valid_until_ts } =
            check_key_document(&body, server).map_err(|err| FederationError::BadKeys {
                server: server.to_owned(),
                why: err.to_string(),
            })?;
        let keys = StoredKeys {
            verify_keys,
            old_verify_keys,
            valid_until_ts,
            document: String::from_utf8_lossy(&body).into_owned(),
        };
        let mut batch = self.storage.batch();
        batch.put(
            cf::SERVERNAME_VERIFYKEYS,
            server.as_bytes(),
            &serde_json::to_vec(&keys).expect("keys serialize"),
        );
        self.storage.commit(batch).await?;
        Ok(keys)
    }

    fn remember(&self, server: &ServerName, keys: &StoredKeys) {
        let mut memory = self.memory.lock().expect("keys lock");
        if memory.len() >= MAX_IN_MEMORY && !memory.contains_key(server) {
            memory.clear();
        }
        memory.insert(server.to_owned(), keys.clone());
    }
}
