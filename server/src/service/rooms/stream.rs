//! Stream positions: every stored change (room event, account data, key change, to-device
//! message, receipt, typing) gets the next position in one global order, and readers
//! (`/sync`) see a position only once it and every position before it is committed.
//! Commits finish out of order under group commit; without this, a reader could move past an
//! event that lands a moment later and never see it.
//!
//! Positions are never handed out twice, across restarts too: a client holding a token must
//! not miss a change made after a crash at a position it already passed. Positions are
//! reserved in blocks by one durable write per block, and a restart continues after the
//! reserved block, leaving a harmless gap.
//!
//! A position is taken as a [`Reservation`], which gives it back when dropped: a request
//! that fails, returns early or is cancelled (its client hung up mid-commit) can never hold
//! every reader back until a restart.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

use crate::{
    locks::LockExt,
    storage::{Batch, Storage, StorageError, catalogue as cf},
};

/// Positions reserved per durable write.
const RESERVATION_BLOCK: u64 = 1 << 16;
/// The key in `global_counter` holding the end of the reserved block.
const RESERVED_KEY: &[u8] = b"stream_reserved";

pub struct StreamPositions {
    inner: Mutex<Inner>,
    visible: watch::Sender<u64>,
    /// Where reservations are made durable; `None` keeps them in memory (unit tests).
    storage: Option<Storage>,
    reserving: tokio::sync::Mutex<()>,
}

struct Inner {
    last_allocated: u64,
    reserved_upto: u64,
    in_flight: BTreeSet<u64>,
}

impl StreamPositions {
    /// Continues the stream stored in `storage`: after the last reserved block, and after
    /// `last_used` (the highest position found in the data, for databases older than the
    /// reservation record).
    pub fn open(storage: Storage, last_used: u64) -> Result<Self, StorageError> {
        let reserved = match storage.get(cf::GLOBAL_COUNTER, RESERVED_KEY)? {
            Some(bytes) => u64::from_be_bytes(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Corrupt("stream reservation".to_owned()))?,
            ),
            None => 0,
        };
        let start = reserved.max(last_used);
        let mut stream = Self::starting_at(start);
        stream.storage = Some(storage);
        stream.inner.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).reserved_upto =
            start;
        Ok(stream)
    }

    /// A stream in memory only, starting after `last_committed`.
    pub fn starting_at(last_committed: u64) -> Self {
        Self {
            inner: Mutex::new(Inner {
                last_allocated: last_committed,
                reserved_upto: u64::MAX,
                in_flight: BTreeSet::new(),
            }),
            visible: watch::channel(last_committed).0,
            storage: None,
            reserving: tokio::sync::Mutex::new(()),
        }
    }

    /// Takes the next position for a change about to be committed. The position is given
    /// back when the [`Reservation`] is dropped, or once its write is durable with
    /// [`Reservation::commit`].
    pub async fn allocate(self: &Arc<Self>) -> Result<Reservation, StorageError> {
        loop {
            {
                let mut inner = self.inner.locked();
                if inner.last_allocated < inner.reserved_upto {
                    inner.last_allocated += 1;
                    let position = inner.last_allocated;
                    inner.in_flight.insert(position);
                    return Ok(Reservation { stream: Some(self.clone()), position });
                }
            }
            self.reserve_next_block().await?;
        }
    }

    async fn reserve_next_block(&self) -> Result<(), StorageError> {
        let _one_reserver = self.reserving.lock().await;
        let reserved = self.inner.locked().reserved_upto;
        if self.inner.locked().last_allocated < reserved {
            return Ok(()); // another task reserved while this one waited
        }
        let next = reserved + RESERVATION_BLOCK;
        if let Some(storage) = &self.storage {
            let mut batch = storage.batch();
            batch.put(cf::GLOBAL_COUNTER, RESERVED_KEY, &next.to_be_bytes());
            storage.commit(batch).await?;
        }
        self.inner.locked().reserved_upto = next;
        Ok(())
    }

    /// Marks a position done, committed or abandoned; advances what readers see. Only for a
    /// position handed over by [`Reservation::into_position`]; a [`Reservation`] calls it
    /// itself.
    pub fn finish(&self, position: u64) {
        let mut inner = self.inner.locked();
        inner.in_flight.remove(&position);
        let visible = match inner.in_flight.first() {
            Some(&lowest) => lowest - 1,
            None => inner.last_allocated,
        };
        self.visible.send_if_modified(|current| {
            let advanced = visible > *current;
            if advanced {
                *current = visible;
            }
            advanced
        });
    }

    /// The highest position readers may read up to.
    pub fn visible(&self) -> u64 {
        *self.visible.borrow()
    }

    /// Waits until the visible position passes `since`, or `timeout` elapses.
    pub async fn wait_past(&self, since: u64, timeout: std::time::Duration) -> u64 {
        let mut receiver = self.visible.subscribe();
        let _ = tokio::time::timeout(timeout, receiver.wait_for(|visible| *visible > since)).await;
        self.visible()
    }
}

/// A stream position taken for one change. Dropping it gives the position back, so a
/// change abandoned for any reason, the request's future dropped among them, never holds
/// readers back.
#[must_use = "a reserved position is given back when dropped"]
pub struct Reservation {
    /// `None` once handed over with [`Reservation::into_position`].
    stream: Option<Arc<StreamPositions>>,
    position: u64,
}

impl Reservation {
    /// The reserved position, to record in the change's write.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Writes `batch` (the change at this position) and gives the position back once the
    /// write is durable, or failed. The wait runs in a task of its own: if the caller is
    /// dropped once the batch is queued, the position is still given back after the write
    /// lands, never before it (a reader would skip the change for good).
    pub async fn commit(self, storage: &Storage, batch: Batch<'_>) -> Result<(), StorageError> {
        // Queuing is all or nothing: dropped before it, the batch goes unwritten and `self`
        // gives back a position nothing was written at.
        let durability = storage.enqueue(batch).await?;
        tokio::spawn(async move {
            let result = durability.wait().await;
            drop(self);
            result
        })
        .await
        .map_err(|_| StorageError::WriterStopped)?
    }

    /// Hands the position over to a caller that gives it back itself with
    /// [`StreamPositions::finish`] from a task that cannot be cancelled (room events, given
    /// back together once their group commit is durable).
    pub fn into_position(mut self) -> u64 {
        self.stream = None;
        self.position
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            stream.finish(self.position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_never_see_past_a_position_still_being_committed() {
        let stream = Arc::new(StreamPositions::starting_at(10));
        let (a, b) = (stream.allocate().await.unwrap(), stream.allocate().await.unwrap());
        drop(b);
        assert_eq!(stream.visible(), 10, "11 is still in flight");
        drop(a);
        assert_eq!(stream.visible(), 12);
    }

    #[tokio::test]
    async fn a_commit_dropped_midway_still_gives_its_position_back_once_durable() {
        let dir = std::env::temp_dir().join(format!("medrix-stream-drop-{}", std::process::id()));
        let storage = Storage::open(&dir).unwrap();
        let stream = Arc::new(StreamPositions::open(storage.clone(), 0).unwrap());
        for _ in 0..50 {
            let reservation = stream.allocate().await.unwrap();
            let mut batch = storage.batch();
            batch.put(cf::GLOBAL_COUNTER, b"test", &reservation.position().to_be_bytes());
            // The caller goes away after the first poll, as a request whose client hung up.
            let commit = reservation.commit(&storage, batch);
            let _ = tokio::time::timeout(std::time::Duration::ZERO, commit).await;
        }
        let abandoned = stream.allocate().await.unwrap();
        let last = abandoned.position();
        drop(abandoned);
        let visible = stream.wait_past(last - 1, std::time::Duration::from_secs(5)).await;
        assert_eq!(visible, last, "every position was given back");
        storage.close_for_test(stream, &dir);
    }

    #[tokio::test]
    async fn a_reopened_stream_never_reuses_a_position() {
        let dir = std::env::temp_dir().join(format!("medrix-stream-{}", std::process::id()));
        let storage = Storage::open(&dir).unwrap();
        let used = {
            let stream = Arc::new(StreamPositions::open(storage.clone(), 0).unwrap());
            stream.allocate().await.unwrap().position()
        };
        // A restart reads the stream back from storage. Nothing recorded `used` anywhere but
        // the reservation, and still it is never handed out again.
        let stream = Arc::new(StreamPositions::open(storage.clone(), 0).unwrap());
        assert!(stream.allocate().await.unwrap().position() > used);
        assert!(stream.visible() >= used, "tokens handed out before stay valid");
        storage.close_for_test(stream, &dir);
    }
}
