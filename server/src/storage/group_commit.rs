//! Group commit: one writer thread takes every batch waiting in its queue, writes them, makes
//! them durable with a single WAL fsync, then acknowledges them all. Durability costs one fsync
//! per group, not per write, so throughput grows with concurrency instead of being capped at
//! the disk's fsync rate (about 500/s on this class of machine).

use std::sync::{
    Arc,
    mpsc::{self, Receiver, SyncSender, TrySendError},
};

use rocksdb::{DB, WriteBatch, WriteOptions};
use tokio::sync::oneshot;

use super::StorageError;

/// How many commits may wait for the writer; past that, callers wait for room (backpressure).
const QUEUE_DEPTH: usize = 4096;
/// The most batches in one group, so a flood cannot delay the first acknowledgement forever.
const MAX_GROUP: usize = 512;

type Ack = oneshot::Sender<Result<(), StorageError>>;

/// Handle to the writer thread.
#[derive(Clone)]
pub struct GroupCommit {
    queue: SyncSender<(WriteBatch, Ack)>,
    thread: WriterThread,
}

/// The writer thread itself, to wait for at shutdown: it closes the database when the last
/// handle is gone, and the process must not exit while it does.
#[derive(Clone)]
pub struct WriterThread(Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>);

impl WriterThread {
    /// Waits for the writer to finish. Call it once every [`GroupCommit`] handle is dropped.
    pub fn join(&self) {
        if let Some(handle) = self.0.lock().expect("writer handle").take() {
            let _ = handle.join();
        }
    }
}

impl GroupCommit {
    /// Starts the writer thread for `db`. It stops when every handle is dropped.
    pub fn start(db: Arc<DB>) -> Self {
        let (queue, incoming) = mpsc::sync_channel(QUEUE_DEPTH);
        let handle = std::thread::Builder::new()
            .name("medrix-writer".into())
            .spawn(move || run_writer(&db, &incoming))
            .expect("spawn the writer thread");
        Self { queue, thread: WriterThread(Arc::new(std::sync::Mutex::new(Some(handle)))) }
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
        let mut item = (batch, ack);
        loop {
            match self.queue.try_send(item) {
                Ok(()) => return Ok(Durability(done)),
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

fn run_writer(db: &DB, incoming: &Receiver<(WriteBatch, Ack)>) {
    let mut unsynced = WriteOptions::default();
    unsynced.set_sync(false);
    let mut group: Vec<Ack> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = incoming.recv() {
        let mut result = db.write_opt(first.0, &unsynced);
        group.push(first.1);
        while group.len() < MAX_GROUP {
            let Ok((batch, ack)) = incoming.try_recv() else { break };
            if result.is_ok() {
                result = db.write_opt(batch, &unsynced);
            }
            group.push(ack);
        }
        // One fsync makes the whole group durable.
        let result = result.and_then(|()| db.flush_wal(true));
        for ack in group.drain(..) {
            let _ = ack.send(result.clone().map_err(StorageError::Db));
        }
    }
}
