//! Read receipts: per room, user and receipt type, the latest event the user has read.
//! Stored durably with a stream position so `/sync` delivers each change once; an updated
//! receipt replaces its older position, so the index stays one row per receipt.

use std::sync::Arc;

use ruma::{EventId, RoomId, UserId};
use serde::{Deserialize, Serialize};

use crate::{
    service::rooms::{position_from, stream::StreamPositions},
    storage::{Storage, StorageError, catalogue as cf, compound_key, to_json_bytes},
};

/// One receipt as stored and as delivered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub room_id: String,
    pub user_id: String,
    /// `m.read` or `m.read.private` (the latter is shown only to its owner).
    pub receipt_type: String,
    pub event_id: String,
    pub ts: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    position: u64,
}

#[derive(Clone)]
pub struct Receipts {
    storage: Storage,
    stream: Arc<StreamPositions>,
}

impl Receipts {
    pub fn new(storage: Storage, stream: Arc<StreamPositions>) -> Self {
        Self { storage, stream }
    }

    /// Records that `user` read up to `event_id`.
    pub async fn set(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<String>,
    ) -> Result<(), StorageError> {
        let key = compound_key(&[
            room_id.as_bytes(),
            user_id.as_bytes(),
            receipt_type.as_bytes(),
            thread_id.as_deref().unwrap_or("").as_bytes(),
        ]);
        let reservation = self.stream.allocate().await?;
        let position = reservation.position();
        let mut batch = self.storage.batch();
        if let Some(old) = self.storage.get(cf::ROOMUSERTYPE_RECEIPT, &key)? {
            let old: Receipt = decode(&old)?;
            batch.delete(cf::POSITION_RECEIPT, &old.position.to_be_bytes());
        }
        let receipt = Receipt {
            room_id: room_id.to_string(),
            user_id: user_id.to_string(),
            receipt_type: receipt_type.to_owned(),
            event_id: event_id.to_string(),
            ts: crate::clock::now_ms(),
            thread_id,
            position,
        };
        batch.put(cf::ROOMUSERTYPE_RECEIPT, &key, &to_json_bytes(&receipt));
        batch.put(cf::POSITION_RECEIPT, &position.to_be_bytes(), &key);
        reservation.commit(&self.storage, batch).await
    }

    /// Every current receipt in a room.
    pub fn in_room(&self, room_id: &RoomId) -> Result<Vec<Receipt>, StorageError> {
        let prefix = compound_key(&[room_id.as_bytes(), b""]);
        self.storage
            .scan_prefix(cf::ROOMUSERTYPE_RECEIPT, &prefix)?
            .iter()
            .map(|(_, value)| decode(value))
            .collect()
    }

    /// Receipts changed in `(since, upto]`, at most `limit`.
    pub fn changed(
        &self,
        since: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<Receipt>, StorageError> {
        let mut out = Vec::new();
        let rows = self.storage.scan_range(
            cf::POSITION_RECEIPT,
            &(since + 1).to_be_bytes(),
            &upto.to_be_bytes(),
            limit,
        )?;
        for (position, key) in rows {
            if let Some(value) = self.storage.get(cf::ROOMUSERTYPE_RECEIPT, &key)? {
                let receipt = decode(&value)?;
                if receipt.position == position_from(&position) {
                    out.push(receipt);
                }
            }
        }
        Ok(out)
    }
}

fn decode(bytes: &[u8]) -> Result<Receipt, StorageError> {
    serde_json::from_slice(bytes).map_err(|err| StorageError::Corrupt(format!("receipt: {err}")))
}
