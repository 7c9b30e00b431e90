//! Group commit: one writer thread takes every batch waiting in its queue, writes them, makes
//! them durable with a single WAL write and fsync (`flush_wal`: the log is flushed by hand,
//! see `Storage::open`), then acknowledges them all. Durability costs one fsync per group,
//! not per write, so throughput grows with concurrency instead of being capped at the disk's
//! fsync rate (about 500/s on this class of machine).

use std::sync::{
    Arc,
    mpsc::{self, Receiver, SyncSender, TrySendError},
};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use super::StorageError;
use crate::locks::LockExt;

/// How many commits may wait for the writer; past that, callers wait for room (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// The most batches in one group, so a flood cannot delay the first acknowledgement forever.
const MAX_GROUP: usize = 512;

type Ack = oneshot::Sender<Result<(), StorageError>>;

/// A batch for the writer, and who waits for it to be durable (nobody, for a part of a
/// larger write whose last batch carries the wait).
type Queued = (WriteBatch, Option<Ack>);

/// Handle to the writer thread.
#[derive(Clone)]
pub struct GroupCommit {
    queue: SyncSender<Queued>,
    thread: WriterThread,
}

/// The writer thread itself, to wait for at shutdown: it closes the database when the last
/// handle is gone, and the process must not exit while it does.
#[derive(Clone)]
pub struct WriterThread(Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>);

impl WriterThread {
    /// Waits for the writer to finish. Call it once every [`GroupCommit`] handle is dropped.
    pub fn join(&self) {
        if let Some(handle) = self.0.locked().take() {
            let _ = handle.join();
        }
    }
}

impl GroupCommit {
    /// Starts the writer thread for `db`. It stops when every handle is dropped.
    pub fn start(db: Arc<DB>) -> Result<Self, StorageError> {
        let (queue, incoming) = mpsc::sync_channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("medrix-writer".into())
            .spawn(move || run_writer(&db, &incoming))
            .map_err(|err| StorageError::WriterStart(err.to_string()))?;
        Ok(Self { queue, thread: WriterThread(Arc::new(std::sync::Mutex::new(Some(handle)))) })
    }

    pub fn thread(&self) -> WriterThread {
        self.thread.clone()
    }

    /// Queues `batch` and waits until it is durable.
    pub async fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.enqueue(batch).await?.wait().await
    }

    /// Queues `batch` behind every batch queued before it and returns at once; the answer
    /// says when it is durable. Batches are written in queue order, so a batch that is durable
    /// means every one queued before it is too. This lets a caller release its own lock
    /// before the fsync, yet keep its writes in order.
    pub async fn enqueue(&self, batch: WriteBatch) -> Result<Durability, StorageError> {
        let (ack, done) = oneshot::channel();
        self.push((batch, Some(ack))).await?;
        Ok(Durability(done))
    }

    /// Queues `batch` as a part of a larger write: it is written in queue order (readers see
    /// it; its log record waits in RocksDB's buffer for the sync) but nobody waits for it, so
    /// the writer syncs nothing for it alone. It becomes durable with the next batch queued by [`GroupCommit::enqueue`],
    /// whose answer also reports a failure to write this part. A caller writing many events
    /// in one go queues them in parts as they are ready, and the last with `enqueue`: the
    /// writing overlaps the caller's work, and one fsync at the end covers it all.
    pub async fn enqueue_part(&self, batch: WriteBatch) -> Result<(), StorageError> {
        self.push((batch, None)).await
    }

    async fn push(&self, mut item: Queued) -> Result<(), StorageError> {
        loop {
            match self.queue.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Full(back)) => {
                    item = back;
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                Err(TrySendError::Disconnected(_)) => return Err(StorageError::WriterStopped),
            }
        }
    }
}

/// A queued batch's outcome.
pub struct Durability(oneshot::Receiver<Result<(), StorageError>>);

impl Durability {
    /// Waits until the batch is durable (or failed).
    pub async fn wait(self) -> Result<(), StorageError> {
        self.0.await.map_err(|_| StorageError::WriterStopped)?
    }
}

fn run_writer(db: &DB, incoming: &Receiver<Queued>) {
    let mut unsynced = WriteOptions::default();
    unsynced.set_sync(false);
    let mut group: Vec<Ack> = Vec::with_capacity(MAX_GROUP);
    // The first failed write since the last fsync: it fails every acknowledgement of the
    // group, among them the one its own caller waits for.
    let mut failure: Option<rocksdb::Error> = None;
    while let Ok(first) = incoming.recv() {
        write_one(db, &unsynced, first, &mut group, &mut failure);
        while group.len() < MAX_GROUP {
            let Ok(next) = incoming.try_recv() else { break };
            write_one(db, &unsynced, next, &mut group, &mut failure);
        }
        if group.is_empty() {
            // Only parts so far: their write's last batch is still to come.
            continue;
        }
        // One fsync makes the whole group durable.
        let result = match failure.take() {
            Some(err) => Err(err),
            None => db.flush_wal(true),
        };
        for ack in group.drain(..) {
            let _ = ack.send(result.clone().map_err(StorageError::Db));
        }
    }
}

fn write_one(
    db: &DB,
    options: &WriteOptions,
    (batch, ack): Queued,
    group: &mut Vec<Ack>,
    failure: &mut Option<rocksdb::Error>,
) {
    if failure.is_none()
        && let Err(err) = db.write_opt(batch, options)
    {
        *failure = Some(err);
    }
    group.extend(ack);
}

#[cfg(test)]
mod tests {
    use super::super::{Storage, catalogue as cf};

    fn storage(name: &str) -> (Storage, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "medrix-group-commit-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        (Storage::open(&dir).unwrap(), dir)
    }

    #[tokio::test]
    async fn parts_are_written_in_order_and_durable_with_the_write_that_ends_them() {
        let (storage, dir) = storage("parts");
        for (i, value) in [b"first", b"later"].iter().enumerate() {
            let mut part = storage.batch();
            part.put(cf::EVENTID_PDU, format!("part{i}").as_bytes(), *value);
            // A later part overwrites the same key: the order of writes is the queue's.
            part.put(cf::EVENTID_PDU, b"shared", *value);
            storage.enqueue_part(part).await.unwrap();
        }
        let mut last = storage.batch();
        last.put(cf::EVENTID_PDU, b"last", b"end");
        storage.enqueue(last).await.unwrap().wait().await.unwrap();
        for (key, value) in [
            (&b"part0"[..], &b"first"[..]),
            (b"part1", b"later"),
            (b"shared", b"later"),
            (b"last", b"end"),
        ] {
            assert_eq!(storage.get(cf::EVENTID_PDU, key).unwrap().as_deref(), Some(value));
        }
        storage.close_for_test((), &dir);
    }
}
