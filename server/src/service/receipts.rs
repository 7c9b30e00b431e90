//! Read receipts: per room, user, receipt type and thread, the latest event the user has
//! read. Stored durably with a stream position so `/sync` delivers each change once; an
//! updated receipt replaces its older position, so the index stays one row per receipt.
//! Threads are unbounded in number (any event can root one), so each user keeps receipts in
//! at most `MAX_THREAD_RECEIPTS` threads per room and type: the oldest one makes way.

use std::sync::Arc;

use ruma::{EventId, RoomId, UserId, events::receipt::ReceiptThread};
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

/// Threads a user keeps receipts in, per room and receipt type.
const MAX_THREAD_RECEIPTS: usize = 64;

/// The stored form of a receipt's thread: none (unthreaded), `main`, or the thread root's
/// event ID; `None` for a thread value the specification does not define.
pub fn thread_id(thread: &ReceiptThread) -> Option<Option<String>> {
    match thread {
        ReceiptThread::Unthreaded => Some(None),
        ReceiptThread::Main => Some(Some("main".to_owned())),
        ReceiptThread::Thread(root) => Some(Some(root.to_string())),
        _ => None,
    }
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
        } else if thread_id.as_deref().is_some_and(|thread| thread.starts_with('$')) {
            self.make_way_for_a_thread(&mut batch, room_id, user_id, receipt_type)?;
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

    /// Deletes the user's oldest thread receipt of this type in the room when they hold the
    /// most allowed, so the new thread's receipt keeps the count bounded.
    fn make_way_for_a_thread(
        &self,
        batch: &mut crate::storage::Batch<'_>,
        room_id: &RoomId,
        user_id: &UserId,
        receipt_type: &str,
    ) -> Result<(), StorageError> {
        let prefix =
            compound_key(&[room_id.as_bytes(), user_id.as_bytes(), receipt_type.as_bytes(), b""]);
        let mut threads = Vec::new();
        for (key, value) in self.storage.scan_prefix(cf::ROOMUSERTYPE_RECEIPT, &prefix)? {
            let receipt = decode(&value)?;
            if receipt.thread_id.as_deref().is_some_and(|thread| thread.starts_with('$')) {
                threads.push((receipt.position, key));
            }
        }
        if threads.len() >= MAX_THREAD_RECEIPTS
            && let Some((position, key)) = threads.into_iter().min()
        {
            batch.delete(cf::POSITION_RECEIPT, &position.to_be_bytes());
            batch.delete(cf::ROOMUSERTYPE_RECEIPT, &key);
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use ruma::{event_id, room_id, user_id};

    use super::*;

    #[tokio::test]
    async fn a_user_keeps_receipts_in_a_bounded_number_of_threads_the_oldest_making_way() {
        let dir = std::env::temp_dir().join(format!(
            "medrix-receipts-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        let storage = Storage::open(&dir).unwrap();
        let stream = Arc::new(StreamPositions::open(storage.clone(), 0).unwrap());
        let receipts = Receipts::new(storage.clone(), stream);
        let (room, alice) = (room_id!("!r:medrix.test"), user_id!("@alice:medrix.test"));
        let read = event_id!("$read");

        receipts.set(room, alice, "m.read", read, None).await.unwrap();
        receipts.set(room, alice, "m.read", read, Some("main".to_owned())).await.unwrap();
        let threads = MAX_THREAD_RECEIPTS + 10;
        for n in 0..threads {
            let root = Some(format!("$root{n}"));
            receipts.set(room, alice, "m.read", read, root).await.unwrap();
        }

        let held = receipts.in_room(room).unwrap();
        let thread_roots: Vec<String> = held
            .iter()
            .filter_map(|r| r.thread_id.clone().filter(|t| t.starts_with('$')))
            .collect();
        assert_eq!(thread_roots.len(), MAX_THREAD_RECEIPTS);
        // The newest threads stayed, the oldest made way; unthreaded and `main` are kept.
        for n in 10..threads {
            assert!(thread_roots.contains(&format!("$root{n}")), "$root{n} kept");
        }
        assert!(held.iter().any(|r| r.thread_id.is_none()));
        assert!(held.iter().any(|r| r.thread_id.as_deref() == Some("main")));
        // Only the kept receipts are still in the stream's index.
        let changed = receipts.changed(0, u64::MAX - 1, 10_000).unwrap();
        assert_eq!(changed.len(), MAX_THREAD_RECEIPTS + 2);

        drop((receipts, storage));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn only_the_thread_values_the_specification_defines_are_stored() {
        let parse = |value: Option<&str>| ReceiptThread::try_from(value).unwrap();
        assert_eq!(thread_id(&parse(None)), Some(None));
        assert_eq!(thread_id(&parse(Some("main"))), Some(Some("main".to_owned())));
        assert_eq!(thread_id(&parse(Some("$root"))), Some(Some("$root".to_owned())));
        assert_eq!(thread_id(&parse(Some("anything else"))), None);
    }
}
