//! The read log's storage: per room, a hash chain of the reads of record data this server
//! served (`medrix_records::read_log` builds and checks the entries). An entry is made
//! durable before the read it records is answered, in the same group commit as everything
//! else, so a crash loses no entry of a read that was answered.
//!
//! Appending takes one lock for all rooms, held only to extend the chain's head and queue the
//! write (no fsync under it): the heads must be extended one at a time per room, and a single
//! lock is the simplest correct way while reads of record rooms stay a small share of the
//! work. The wait for durability happens after it is released, so appends share fsyncs.

use std::collections::{HashMap, HashSet};

use medrix_records::{ChainHead, LogReader, ReadBasis, ReadEntry, ReadPath};
use ruma::{OwnedRoomId, RoomId};
use serde_json::Value;
use tokio::sync::Mutex;

use crate::{
    locks::LockExt,
    storage::{Storage, StorageError, catalogue as cf, compound_key},
};

/// Heads kept in memory; past this the map is emptied and heads are read again from storage.
const MAX_CACHED_HEADS: usize = 10_000;
/// Rooms remembered as having grown since their last checkpoint; past this, the growth of
/// further rooms waits for their next read to be noticed.
const MAX_GROWN: usize = 100_000;
/// The most entries one listing returns.
pub const MAX_LISTED: usize = 1000;

/// One read to log: a room, what of it went out, and what allowed it.
#[derive(Debug, Clone)]
pub struct Disclosure {
    pub room_id: OwnedRoomId,
    /// The moment the read was decided (its basis holds at it): the entry's `ts`.
    pub at: u64,
    pub path: ReadPath,
    pub events: Vec<String>,
    pub basis: ReadBasis,
}

pub struct ReadLogStore {
    storage: Storage,
    heads: Mutex<HashMap<OwnedRoomId, ChainHead>>,
    /// Rooms whose log grew since the checkpoints last took them.
    grown: std::sync::Mutex<HashSet<OwnedRoomId>>,
}

impl ReadLogStore {
    pub fn new(storage: Storage) -> Self {
        Self { storage, heads: Mutex::new(HashMap::new()), grown: Default::default() }
    }

    /// The rooms whose log grew since the last call (durable entries only).
    pub fn take_grown(&self) -> Vec<OwnedRoomId> {
        self.grown.locked().drain().collect()
    }

    /// Appends one entry per disclosure, each to its room's chain, and returns once all are
    /// durable.
    pub async fn append(
        &self,
        reader: &LogReader,
        disclosures: Vec<Disclosure>,
    ) -> Result<(), StorageError> {
        if disclosures.is_empty() {
            return Ok(());
        }
        let rooms: Vec<OwnedRoomId> = disclosures.iter().map(|d| d.room_id.clone()).collect();
        let durability = {
            let mut heads = self.heads.lock().await;
            if heads.len() + disclosures.len() > MAX_CACHED_HEADS {
                heads.clear();
            }
            let mut batch = self.storage.batch();
            let mut advanced = Vec::new();
            for disclosure in disclosures {
                let head = match heads.get(&disclosure.room_id) {
                    Some(head) => head.clone(),
                    None => self.stored_head(&disclosure.room_id)?,
                };
                let entry = ReadEntry::next(
                    &head,
                    disclosure.room_id.as_str(),
                    disclosure.at,
                    reader.clone(),
                    disclosure.path,
                    disclosure.events,
                    disclosure.basis,
                );
                let after = entry.head_after();
                batch.put(
                    cf::ROOMINDEX_READENTRY,
                    &entry_key(&disclosure.room_id, entry.index),
                    entry.canonical().as_bytes(),
                );
                batch.put(
                    cf::ROOMID_READLOGHEAD,
                    disclosure.room_id.as_bytes(),
                    &head_bytes(&after),
                );
                heads.insert(disclosure.room_id.clone(), after.clone());
                advanced.push(disclosure.room_id);
            }
            match self.storage.enqueue(batch).await {
                Ok(durability) => durability,
                Err(err) => {
                    // The heads moved past entries that were never queued: read them again.
                    for room in advanced {
                        heads.remove(&room);
                    }
                    return Err(err);
                }
            }
        };
        let result = durability.wait().await;
        if result.is_err() {
            // What follows may have been built on entries that did not reach the disk.
            self.heads.lock().await.clear();
        } else {
            let mut grown = self.grown.locked();
            for room in rooms {
                if grown.len() < MAX_GROWN {
                    grown.insert(room);
                }
            }
        }
        result
    }

    /// The room's chain head as stored.
    pub fn stored_head(&self, room_id: &RoomId) -> Result<ChainHead, StorageError> {
        let Some(bytes) = self.storage.get(cf::ROOMID_READLOGHEAD, room_id.as_bytes())? else {
            return Ok(ChainHead::default());
        };
        if bytes.len() < 8 {
            return Err(StorageError::Corrupt(format!("read-log head of {room_id}")));
        }
        let (count, hash) = bytes.split_at(8);
        let count = u64::from_be_bytes(count.try_into().unwrap_or_default());
        let hash = String::from_utf8(hash.to_vec())
            .map_err(|_| StorageError::Corrupt(format!("read-log head of {room_id}")))?;
        Ok(ChainHead { count, hash: Some(hash) })
    }

    /// The room's entries from `from` on, at most `limit` (and `MAX_LISTED`), in order.
    pub fn entries(
        &self,
        room_id: &RoomId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<ReadEntry>, StorageError> {
        let rows = self.storage.scan_range(
            cf::ROOMINDEX_READENTRY,
            &entry_key(room_id, from),
            &entry_key(room_id, u64::MAX),
            limit.min(MAX_LISTED),
        )?;
        rows.into_iter()
            .map(|(_, bytes)| {
                let corrupt = || StorageError::Corrupt(format!("read-log entry of {room_id}"));
                let value: Value = serde_json::from_slice(&bytes).map_err(|_| corrupt())?;
                ReadEntry::from_json(&value).map_err(|_| corrupt())
            })
            .collect()
    }
}

fn entry_key(room_id: &RoomId, index: u64) -> Vec<u8> {
    compound_key(&[room_id.as_bytes(), &index.to_be_bytes()])
}

fn head_bytes(head: &ChainHead) -> Vec<u8> {
    let mut bytes = head.count.to_be_bytes().to_vec();
    bytes.extend_from_slice(head.hash.as_deref().unwrap_or_default().as_bytes());
    bytes
}
