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
    locks::LockExt,
    service::rate_limit::RateLimiter,
    storage::{Storage, catalogue as cf, to_json_bytes},
};

/// The most servers whose keys are held in memory.
const MAX_IN_MEMORY: usize = 4096;

/// The longest a fetched key is trusted without asking again, whatever `valid_until_ts` the
/// server claims (the spec's limit for room versions 5 and later): a key a server rotated
/// away from, perhaps because it leaked, stops verifying within a week.
const MAX_KEY_VALIDITY_MS: u64 = 7 * 24 * 60 * 60 * 1000;

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
    /// When the keys were fetched; 0 in rows stored before it was kept, which are fetched
    /// again on first use.
    #[serde(default)]
    fetched_ts: u64,
}

impl StoredKeys {
    /// Until when the current keys are trusted: the server's `valid_until_ts`, but at most
    /// [`MAX_KEY_VALIDITY_MS`] after they were fetched.
    fn usable_until(&self) -> u64 {
        self.valid_until_ts.min(self.fetched_ts.saturating_add(MAX_KEY_VALIDITY_MS))
    }
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
            if keys.usable_until() > now_ms && keys.verify_keys.contains_key(key_id) {
                return Some(keys.verify_keys.clone().into_iter().collect());
            }
            let (old, expired_ts) = keys.old_verify_keys.get(key_id)?;
            (event_ts? < *expired_ts).then(|| vec![(key_id.to_owned(), old.clone())])
        };
        let known = match self.memory.locked().get(server).cloned() {
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
        let cached = match self.memory.locked().get(server).cloned() {
            Some(keys) => Some(keys),
            None => self.stored(server)?,
        };
        let keys = match cached
            .filter(|k| !k.document.is_empty() && k.usable_until() >= minimum_valid_until_ts)
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
        let fetched_ts = crate::clock::now_ms();
        let keys = StoredKeys {
            verify_keys,
            old_verify_keys,
            valid_until_ts: valid_until_ts.min(fetched_ts.saturating_add(MAX_KEY_VALIDITY_MS)),
            document: String::from_utf8_lossy(&body).into_owned(),
            fetched_ts,
        };
        let mut batch = self.storage.batch();
        batch.put(cf::SERVERNAME_VERIFYKEYS, server.as_bytes(), &to_json_bytes(&keys));
        self.storage.commit(batch).await?;
        Ok(keys)
    }

    fn remember(&self, server: &ServerName, keys: &StoredKeys) {
        let mut memory = self.memory.locked();
        if memory.len() >= MAX_IN_MEMORY && !memory.contains_key(server) {
            memory.clear();
        }
        memory.insert(server.to_owned(), keys.clone());
    }
}

#[cfg(test)]
mod tests {
    use medrix_protocol::keys::ServerSigningKey;

    use super::*;

    const DAY_MS: u64 = 24 * 60 * 60 * 1000;

    /// Remote keys over a fresh database, with a client allowed to reach no other server:
    /// a key that must be fetched again cannot be, and the lookup fails.
    fn remote_keys(name: &str) -> (RemoteKeys, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("medrix-keys-{name}-{}", std::process::id()));
        let storage = Storage::open(&dir).unwrap();
        let key = ServerSigningKey::from_seed("origin.test", "mdx1", &[7; 32]).unwrap();
        let config = crate::config::Federation {
            allow: vec!["origin.test".to_owned()],
            ..Default::default()
        };
        let origin = ServerName::parse("origin.test").unwrap();
        let client = FederationClient::new(&config, origin, key.to_ruma_key_pair().unwrap());
        let fetches = RateLimiter::per_interval(100, std::time::Duration::from_millis(1));
        (RemoteKeys::new(storage, Arc::new(client.unwrap()), fetches), dir)
    }

    async fn store(keys: &RemoteKeys, row: serde_json::Value) {
        let mut batch = keys.storage.batch();
        batch.put(cf::SERVERNAME_VERIFYKEYS, b"peer.test", row.to_string().as_bytes());
        keys.storage.commit(batch).await.unwrap();
    }

    #[tokio::test]
    async fn a_key_claimed_valid_for_a_year_is_trusted_for_a_week_after_its_fetch() {
        let (keys, dir) = remote_keys("cap");
        let now = crate::clock::now_ms();
        let peer = ServerName::parse("peer.test").unwrap();
        let public = ServerSigningKey::from_seed("peer.test", "k", &[9; 32]).unwrap();
        let row = |fetched_ts: Option<u64>| {
            let mut row = serde_json::json!({
                "verify_keys": {"ed25519:k": public.public_key_base64()},
                "valid_until_ts": now + 365 * DAY_MS,
            });
            if let Some(fetched_ts) = fetched_ts {
                row["fetched_ts"] = fetched_ts.into();
            }
            row
        };
        store(&keys, row(Some(now - DAY_MS))).await;
        assert!(keys.keys_for(&peer, "ed25519:k", now).await.is_ok(), "fetched yesterday");

        for stale in [Some(now - 8 * DAY_MS), None] {
            keys.memory.lock().unwrap().clear();
            store(&keys, row(stale)).await;
            let found = keys.keys_for(&peer, "ed25519:k", now).await;
            assert!(found.is_err(), "{stale:?}: must be fetched again, and cannot be here");
        }
        keys.storage.clone().close_for_test(keys, &dir);
    }
}
