//! The format, signature and hash checks of received events, spread over the machine's cores
//! and handed on in order, a few events at a time. A transaction's first events can then be
//! authorized and stored while its later ones are still being verified: with one transaction
//! in flight per sending server (as Matrix sends), the signature arithmetic and the room's
//! one-at-a-time decisions overlap instead of adding up.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, OnceLock},
};

use medrix_protocol::{
    RoomVersion,
    incoming::{CheckedPdu, check_incoming_objects},
    keys::VerifyKeys,
};
use ruma::{CanonicalJsonObject, OwnedEventId};
use tokio::sync::oneshot;

use crate::locks::LockExt;

/// How many events one checking step takes. Small, so the first events reach the room soon;
/// not one, so a step's signature arithmetic runs back to back with the curve tables in cache.
const EVENTS_PER_CHUNK: usize = 5;

/// An event that failed its checks: its ID if it has one, and why.
pub struct RefusedPdu {
    pub event_id: Option<OwnedEventId>,
    pub why: String,
}

pub type CheckResult = Result<CheckedPdu, RefusedPdu>;

type Chunk = (Vec<CanonicalJsonObject>, oneshot::Sender<Vec<CheckResult>>);

/// Events being checked on blocking threads and the caller's; their results come back in
/// input order, one chunk at a time.
pub struct CheckedInOrder {
    version: RoomVersion,
    keys: Arc<VerifyKeys>,
    /// Chunks no thread has taken yet, in order.
    unclaimed: Arc<Mutex<VecDeque<Chunk>>>,
    /// Every chunk's answer, in order.
    chunks: VecDeque<oneshot::Receiver<Vec<CheckResult>>>,
}

impl CheckedInOrder {
    /// Starts checking `objects` (their signers' keys are in `keys`) on one thread per core
    /// but one: the caller's thread is the last, helping while it waits (see [`Self::next`]).
    pub fn start(
        version: RoomVersion,
        keys: Arc<VerifyKeys>,
        objects: Vec<CanonicalJsonObject>,
    ) -> Self {
        let mut unclaimed = VecDeque::new();
        let mut chunks = VecDeque::new();
        let mut objects = objects.into_iter().peekable();
        while objects.peek().is_some() {
            let (done, result) = oneshot::channel();
            unclaimed.push_back((objects.by_ref().take(EVENTS_PER_CHUNK).collect(), done));
            chunks.push_back(result);
        }
        let cores = cores();
        let helpers = (cores - 1).min(unclaimed.len().saturating_sub(1));
        let unclaimed = Arc::new(Mutex::new(unclaimed));
        for _ in 0..helpers {
            let (unclaimed, keys) = (unclaimed.clone(), keys.clone());
            tokio::task::spawn_blocking(move || {
                while let Some(chunk) = claim(&unclaimed) {
                    check_chunk(chunk, version, &keys);
                }
            });
        }
        Self { version, keys, unclaimed, chunks }
    }

    /// How many chunks the events were split into.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The results of the next chunk, in input order; `None` when all were handed on. While
    /// that chunk is still being checked elsewhere, this thread checks the next unclaimed one
    /// instead of idling: the caller's thread is one of the checking threads.
    pub async fn next(&mut self) -> Option<Vec<CheckResult>> {
        let mut head = self.chunks.pop_front()?;
        loop {
            match head.try_recv() {
                Ok(results) => return Some(results),
                Err(oneshot::error::TryRecvError::Closed) => return Some(lost_chunk()),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            match claim(&self.unclaimed) {
                Some(chunk) => check_chunk(chunk, self.version, &self.keys),
                None => return Some((&mut head).await.unwrap_or_else(|_| lost_chunk())),
            }
        }
    }

    /// Every result, in input order.
    pub async fn all(mut self) -> Vec<CheckResult> {
        let mut results = Vec::new();
        while let Some(chunk) = self.next().await {
            results.extend(chunk);
        }
        results
    }
}

/// The machine's cores, asked once: the standard library reads the cgroup files each time.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn claim(unclaimed: &Mutex<VecDeque<Chunk>>) -> Option<Chunk> {
    unclaimed.locked().pop_front()
}

/// Only a panic in the checks gets here; the chunk's events get no answer, and their sender
/// retries them or they are fetched again.
fn lost_chunk() -> Vec<CheckResult> {
    tracing::error!("a checking thread stopped before answering");
    Vec::new()
}

fn check_chunk((objects, done): Chunk, version: RoomVersion, keys: &VerifyKeys) {
    let results = check_incoming_objects(objects, version, keys)
        .into_iter()
        .map(|result| {
            result.map_err(|(err, event_id)| RefusedPdu { event_id, why: err.to_string() })
        })
        .collect();
    // The receiver is gone only if the request was dropped; nothing waits for the answer.
    let _ = done.send(results);
}
