//! What a user keeps for themselves: profile, sync filters, account data (global and per
//! room). Account data changes take a position in the global stream so `/sync` reports them.

use std::sync::Arc;

use ruma::{RoomId, UserId};
use serde_json::{Map, Value};

use crate::{
    service::rooms::stream::StreamPositions,
    storage::{Batch, Storage, StorageError, catalogue as cf, compound_key, to_json_bytes},
};

#[derive(Clone)]
pub struct UserData {
    storage: Storage,
    stream: Arc<StreamPositions>,
}

impl UserData {
    pub fn new(storage: Storage, stream: Arc<StreamPositions>) -> Self {
        Self { storage, stream }
    }

    /// The profile fields (`displayname`, `avatar_url`, ...) of a user.
    pub fn profile(&self, user_id: &UserId) -> Result<Map<String, Value>, StorageError> {
        match self.storage.get(cf::USERID_PROFILE, user_id.as_bytes())? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|err| StorageError::Corrupt(format!("profile: {err}"))),
            None => Ok(Map::new()),
        }
    }

    /// Sets (or with `None`, removes) one profile field.
    pub async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: Option<Value>,
    ) -> Result<(), StorageError> {
        let mut profile = self.profile(user_id)?;
        match value {
            Some(value) => profile.insert(field.to_owned(), value),
            None => profile.remove(field),
        };
        let mut batch = self.storage.batch();
        batch.put(cf::USERID_PROFILE, user_id.as_bytes(), &to_json_bytes(&profile));
        self.storage.commit(batch).await
    }

    /// Removes the whole profile in `batch` (a deactivation's one write).
    pub fn clear_profile_in(&self, batch: &mut Batch<'_>, user_id: &UserId) {
        batch.delete(cf::USERID_PROFILE, user_id.as_bytes());
    }

    /// Stores a filter definition and returns its new ID.
    pub async fn create_filter(
        &self,
        user_id: &UserId,
        filter: &Value,
    ) -> Result<String, StorageError> {
        let filter_id = crate::random::string(crate::random::HEX, 16);
        let mut batch = self.storage.batch();
        batch.put(
            cf::USERFILTERID_FILTER,
            &compound_key(&[user_id.as_bytes(), filter_id.as_bytes()]),
            &to_json_bytes(filter),
        );
        self.storage.commit(batch).await?;
        Ok(filter_id)
    }

    pub fn filter(&self, user_id: &UserId, filter_id: &str) -> Result<Option<Value>, StorageError> {
        let key = compound_key(&[user_id.as_bytes(), filter_id.as_bytes()]);
        self.storage
            .get(cf::USERFILTERID_FILTER, &key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|err| StorageError::Corrupt(format!("filter: {err}")))
            })
            .transpose()
    }

    /// Sets account data (global when `room_id` is `None`), recording the change in the stream.
    pub async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: &Value,
    ) -> Result<(), StorageError> {
        let room = room_id.map(RoomId::as_bytes).unwrap_or_default();
        let reservation = self.stream.allocate().await?;
        let position = reservation.position();
        let mut batch = self.storage.batch();
        batch.put(
            cf::USERROOMTYPE_ACCOUNTDATA,
            &compound_key(&[user_id.as_bytes(), room, kind.as_bytes()]),
            &to_json_bytes(content),
        );
        batch.put(
            cf::USERPOSITION_ACCOUNTDATAKEY,
            &compound_key(&[user_id.as_bytes(), &position.to_be_bytes()]),
            &compound_key(&[room, kind.as_bytes()]),
        );
        reservation.commit(&self.storage, batch).await
    }

    pub fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
    ) -> Result<Option<Value>, StorageError> {
        let room = room_id.map(RoomId::as_bytes).unwrap_or_default();
        let key = compound_key(&[user_id.as_bytes(), room, kind.as_bytes()]);
        self.storage
            .get(cf::USERROOMTYPE_ACCOUNTDATA, &key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|err| StorageError::Corrupt(format!("account data: {err}")))
            })
            .transpose()
    }

    /// All account data of a user, as `(room ID or "" for global, type, content)`.
    pub fn all_account_data(
        &self,
        user_id: &UserId,
    ) -> Result<Vec<(String, String, Value)>, StorageError> {
        let prefix = compound_key(&[user_id.as_bytes(), b""]);
        let mut out = Vec::new();
        for (key, value) in self.storage.scan_prefix(cf::USERROOMTYPE_ACCOUNTDATA, &prefix)? {
            let rest = &key[prefix.len()..];
            let Some(split) = rest.iter().position(|b| *b == 0xFF) else { continue };
            let content = serde_json::from_slice(&value)
                .map_err(|err| StorageError::Corrupt(format!("account data: {err}")))?;
            out.push((
                String::from_utf8_lossy(&rest[..split]).into_owned(),
                String::from_utf8_lossy(&rest[split + 1..]).into_owned(),
                content,
            ));
        }
        Ok(out)
    }

    /// The account data keys `(room or "", type)` a user changed in `(since, upto]`.
    pub fn changed_account_data(
        &self,
        user_id: &UserId,
        since: u64,
        upto: u64,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let from = compound_key(&[user_id.as_bytes(), &(since + 1).to_be_bytes()]);
        let to = compound_key(&[user_id.as_bytes(), &upto.to_be_bytes()]);
        let mut out: Vec<(String, String)> = Vec::new();
        for (_, value) in
            self.storage.scan_range(cf::USERPOSITION_ACCOUNTDATAKEY, &from, &to, 10_000)?
        {
            let Some(split) = value.iter().position(|b| *b == 0xFF) else { continue };
            let entry = (
                String::from_utf8_lossy(&value[..split]).into_owned(),
                String::from_utf8_lossy(&value[split + 1..]).into_owned(),
            );
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
        Ok(out)
    }
}
