//! Server-side key backup (`/room_keys`): versions of a user's backup, each with Megolm
//! session keys the client encrypted to the backup's public key. The server stores opaque
//! ciphertexts and only compares the plaintext metadata the spec gives it (verified flag,
//! first message index, forward count) to keep the better copy of a session.

use ruma::{RoomId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::storage::{Storage, StorageError, catalogue as cf, compound_key, to_json_bytes};

/// What backup operations can refuse.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("no such backup version")]
    UnknownVersion,
    #[error("no such key")]
    UnknownKey,
    #[error("the backup's algorithm cannot change")]
    AlgorithmMismatch,
    /// Keys go only to the current version; the client learns which one that is.
    #[error("wrong backup version; the current one is {current}")]
    WrongVersion { current: String },
    #[error("invalid: {0}")]
    Invalid(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A backup version as stored: the algorithm with its auth data, and counters kept in the
/// same write as the keys so reads never scan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupVersion {
    pub algorithm: Value,
    pub auth_data: Value,
    pub count: u64,
    pub etag: u64,
    #[serde(default)]
    deleted: bool,
}

/// One backed-up session key: room, session ID, the client's `KeyBackupData`.
pub type BackedUpKey = (String, String, Value);

#[derive(Clone)]
pub struct KeyBackup {
    storage: Storage,
    /// Backup writes read counters and compare keys before writing; one writer at a time keeps
    /// that consistent. Backups are written rarely, so one lock for all users costs nothing.
    write_lock: std::sync::Arc<Mutex<()>>,
}

fn version_key(user: &UserId, version: u64) -> Vec<u8> {
    compound_key(&[user.as_bytes(), &version.to_be_bytes()])
}

fn parse_version(version: &str) -> Result<u64, BackupError> {
    version.parse().map_err(|_| BackupError::UnknownVersion)
}

/// Splits `{algorithm, auth_data}` as clients send it.
fn algorithm_parts(body: &Value) -> Result<(Value, Value), BackupError> {
    match (body.get("algorithm"), body.get("auth_data")) {
        (Some(Value::String(algorithm)), Some(auth_data @ Value::Object(_))) => {
            Ok((Value::String(algorithm.clone()), auth_data.clone()))
        }
        _ => Err(BackupError::Invalid("a backup needs an algorithm and auth_data".to_owned())),
    }
}

/// Whether `new` should replace `old`, by the spec's order: verified beats unverified, then the
/// lower first message index (more of the session), then fewer forwards.
fn is_better(new: &Value, old: &Value) -> bool {
    let verified = |v: &Value| v["is_verified"].as_bool().unwrap_or(false);
    let index = |v: &Value| v["first_message_index"].as_u64().unwrap_or(u64::MAX);
    let forwards = |v: &Value| v["forwarded_count"].as_u64().unwrap_or(u64::MAX);
    (!verified(new), index(new), forwards(new)) < (!verified(old), index(old), forwards(old))
}

impl KeyBackup {
    pub fn new(storage: Storage) -> Self {
        Self { storage, write_lock: Default::default() }
    }

    /// The newest version number ever created (deleted ones included, so none is reused).
    fn newest(&self, user: &UserId) -> Result<Option<(u64, BackupVersion)>, BackupError> {
        let prefix = compound_key(&[user.as_bytes(), b""]);
        let Some((key, value)) =
            self.storage.last_in_prefix(cf::USERVERSION_BACKUP, &prefix, &[0xFF; 8])?
        else {
            return Ok(None);
        };
        let version = crate::service::rooms::position_from(&key);
        Ok(Some((version, decode(&value)?)))
    }

    fn stored(&self, user: &UserId, version: u64) -> Result<Option<BackupVersion>, BackupError> {
        match self.storage.get(cf::USERVERSION_BACKUP, &version_key(user, version))? {
            Some(bytes) => Ok(Some(decode(&bytes)?).filter(|v: &BackupVersion| !v.deleted)),
            None => Ok(None),
        }
    }

    /// Creates a new version, which becomes the current one; returns its number.
    pub async fn create_version(&self, user: &UserId, body: &Value) -> Result<String, BackupError> {
        let (algorithm, auth_data) = algorithm_parts(body)?;
        let _writing = self.write_lock.lock().await;
        let next = self.newest(user)?.map_or(1, |(version, _)| version + 1);
        let record = BackupVersion { algorithm, auth_data, count: 0, etag: 0, deleted: false };
        let mut batch = self.storage.batch();
        batch.put(cf::USERVERSION_BACKUP, &version_key(user, next), &encode(&record));
        self.storage.commit(batch).await?;
        Ok(next.to_string())
    }

    /// A version's info, or the current (newest live) one when `version` is `None`.
    pub fn info(
        &self,
        user: &UserId,
        version: Option<&str>,
    ) -> Result<(String, BackupVersion), BackupError> {
        match version {
            Some(version) => {
                let number = parse_version(version)?;
                let record = self.stored(user, number)?.ok_or(BackupError::UnknownVersion)?;
                Ok((number.to_string(), record))
            }
            None => match self.newest(user)? {
                Some((number, record)) if !record.deleted => Ok((number.to_string(), record)),
                _ => Err(BackupError::UnknownVersion),
            },
        }
    }

    /// Replaces a version's auth data; the algorithm must stay the same.
    pub async fn update_version(
        &self,
        user: &UserId,
        version: &str,
        body: &Value,
    ) -> Result<(), BackupError> {
        let (algorithm, auth_data) = algorithm_parts(body)?;
        let number = parse_version(version)?;
        let _writing = self.write_lock.lock().await;
        let mut record = self.stored(user, number)?.ok_or(BackupError::UnknownVersion)?;
        if record.algorithm != algorithm {
            return Err(BackupError::AlgorithmMismatch);
        }
        record.auth_data = auth_data;
        let mut batch = self.storage.batch();
        batch.put(cf::USERVERSION_BACKUP, &version_key(user, number), &encode(&record));
        Ok(self.storage.commit(batch).await?)
    }

    /// Deletes a version and its keys; the number is never handed out again.
    pub async fn delete_version(&self, user: &UserId, version: &str) -> Result<(), BackupError> {
        let number = parse_version(version)?;
        let _writing = self.write_lock.lock().await;
        let mut record = self.stored(user, number)?.ok_or(BackupError::UnknownVersion)?;
        let mut batch = self.storage.batch();
        for (key, _) in self.key_rows(user, number, None, None)? {
            batch.delete(cf::USERVERSIONROOMSESSION_ROOMKEY, &key);
        }
        record.deleted = true;
        record.count = 0;
        batch.put(cf::USERVERSION_BACKUP, &version_key(user, number), &encode(&record));
        Ok(self.storage.commit(batch).await?)
    }

    /// Stores session keys in the current version, keeping the better copy of each session.
    /// Returns the version's key count and etag afterwards.
    pub async fn put_keys(
        &self,
        user: &UserId,
        version: &str,
        keys: Vec<BackedUpKey>,
    ) -> Result<(u64, u64), BackupError> {
        let _writing = self.write_lock.lock().await;
        let current = match self.newest(user)? {
            Some((number, record)) if !record.deleted => (number, record),
            _ => return Err(BackupError::UnknownVersion),
        };
        let (number, mut record) = current;
        if parse_version(version).ok() != Some(number) {
            if self.stored(user, parse_version(version)?)?.is_none() {
                return Err(BackupError::UnknownVersion);
            }
            return Err(BackupError::WrongVersion { current: number.to_string() });
        }
        let mut batch = self.storage.batch();
        let mut changed = false;
        for (room, session, data) in keys {
            if !data.is_object() || !data["session_data"].is_object() {
                return Err(BackupError::Invalid(format!("key data for session {session}")));
            }
            let key = compound_key(&[
                user.as_bytes(),
                &number.to_be_bytes(),
                room.as_bytes(),
                session.as_bytes(),
            ]);
            match self.storage.get(cf::USERVERSIONROOMSESSION_ROOMKEY, &key)? {
                Some(old) => {
                    let old: Value = serde_json::from_slice(&old)
                        .map_err(|err| StorageError::Corrupt(format!("backup key: {err}")))?;
                    if !is_better(&data, &old) {
                        continue;
                    }
                }
                None => record.count += 1,
            }
            changed = true;
            batch.put(cf::USERVERSIONROOMSESSION_ROOMKEY, &key, data.to_string().as_bytes());
        }
        if changed {
            record.etag += 1;
            batch.put(cf::USERVERSION_BACKUP, &version_key(user, number), &encode(&record));
            self.storage.commit(batch).await?;
        }
        Ok((record.count, record.etag))
    }

    /// The keys of a version: all, one room's, or one session's.
    pub fn keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&RoomId>,
        session: Option<&str>,
    ) -> Result<Vec<BackedUpKey>, BackupError> {
        let number = parse_version(version)?;
        self.stored(user, number)?.ok_or(BackupError::UnknownVersion)?;
        let prefix_len = compound_key(&[user.as_bytes(), &number.to_be_bytes(), b""]).len();
        let mut out = Vec::new();
        for (key, value) in self.key_rows(user, number, room, session)? {
            let rest = &key[prefix_len..];
            let Some(split) = rest.iter().position(|b| *b == 0xFF) else { continue };
            let data = serde_json::from_slice(&value)
                .map_err(|err| StorageError::Corrupt(format!("backup key: {err}")))?;
            out.push((
                String::from_utf8_lossy(&rest[..split]).into_owned(),
                String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
                data,
            ));
        }
        Ok(out)
    }

    /// Deletes keys of a version (all, one room's, or one session); returns count and etag.
    pub async fn delete_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&RoomId>,
        session: Option<&str>,
    ) -> Result<(u64, u64), BackupError> {
        let number = parse_version(version)?;
        let _writing = self.write_lock.lock().await;
        let mut record = self.stored(user, number)?.ok_or(BackupError::UnknownVersion)?;
        let rows = self.key_rows(user, number, room, session)?;
        if !rows.is_empty() {
            let mut batch = self.storage.batch();
            for (key, _) in &rows {
                batch.delete(cf::USERVERSIONROOMSESSION_ROOMKEY, key);
            }
            record.count = record.count.saturating_sub(rows.len() as u64);
            record.etag += 1;
            batch.put(cf::USERVERSION_BACKUP, &version_key(user, number), &encode(&record));
            self.storage.commit(batch).await?;
        }
        Ok((record.count, record.etag))
    }

    fn key_rows(
        &self,
        user: &UserId,
        number: u64,
        room: Option<&RoomId>,
        session: Option<&str>,
    ) -> Result<Vec<crate::storage::Entry>, BackupError> {
        let version = number.to_be_bytes();
        let prefix = match (room, session) {
            (Some(room), Some(session)) => {
                compound_key(&[user.as_bytes(), &version, room.as_bytes(), session.as_bytes()])
            }
            (Some(room), None) => compound_key(&[user.as_bytes(), &version, room.as_bytes(), b""]),
            _ => compound_key(&[user.as_bytes(), &version, b""]),
        };
        let rows = self.storage.scan_prefix(cf::USERVERSIONROOMSESSION_ROOMKEY, &prefix)?;
        // A session prefix also matches longer session IDs; keep the exact one.
        Ok(match session {
            Some(_) => rows.into_iter().filter(|(key, _)| key.len() == prefix.len()).collect(),
            None => rows,
        })
    }
}

fn decode(bytes: &[u8]) -> Result<BackupVersion, BackupError> {
    serde_json::from_slice(bytes)
        .map_err(|err| StorageError::Corrupt(format!("backup version: {err}")).into())
}

fn encode(record: &BackupVersion) -> Vec<u8> {
    to_json_bytes(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn better_copy_is_verified_then_earlier_then_less_forwarded() {
        let key = |verified: bool, index: u64, forwards: u64| json!({"is_verified": verified, "first_message_index": index, "forwarded_count": forwards});
        assert!(is_better(&key(true, 9, 9), &key(false, 0, 0)));
        assert!(!is_better(&key(false, 0, 0), &key(true, 9, 9)));
        assert!(is_better(&key(false, 1, 9), &key(false, 2, 0)));
        assert!(is_better(&key(false, 2, 0), &key(false, 2, 1)));
        assert!(!is_better(&key(false, 2, 1), &key(false, 2, 1)), "equal keeps the old copy");
    }
}
