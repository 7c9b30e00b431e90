//! Outbound federation: one queue per destination server, persisted in RocksDB, drained as
//! transactions (at most 50 PDUs and 100 EDUs each) with retries and backoff.
//!
//! Contract with the rest of the server:
//! - A room event bound for other servers is queued in the same write batch as the event
//!   itself ([`Sender::queue_pdu_in`]), so an acknowledged event is never lost to a crash
//!   before it was sent. After the batch is durable the caller calls [`Sender::wake`].
//! - EDUs are queued with [`Sender::queue_edu`] (durable when it returns).
//! - An inbound request from a server resets its backoff ([`Sender::peer_is_back`]).
//!
//! Inside: a dispatcher task ([`Sender::start`]) turns wakes into workers, one per destination
//! with queued rows and none otherwise; a worker drains its destination and exits when the
//! queue is empty. Workers are independent tasks, so a dead destination only delays itself.
//! A periodic rescan finds destinations whose wake was dropped (the wake channel is bounded).

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName,
    api::federation::transactions::{edu::Edu, send_transaction_message::v1 as send_transaction},
    serde::Raw,
};
use serde_json::value::RawValue;
use tokio::sync::{Notify, Semaphore, mpsc};

use super::{FederationError, client::FederationClient};
use crate::{
    locks::LockExt,
    storage::{Batch, Storage, StorageError, catalogue as cf, compound_key, to_json_bytes},
};

/// The most PDUs in one transaction (the spec's limit).
pub const MAX_PDUS_PER_TRANSACTION: usize = 50;
/// The most EDUs in one transaction (the spec's limit).
pub const MAX_EDUS_PER_TRANSACTION: usize = 100;
/// Pending wakes; past this a wake is dropped and the rescan finds its destination.
const WAKE_CHANNEL: usize = 1024;
/// How often the queues are scanned for destinations without a worker.
const RESCAN_INTERVAL: Duration = Duration::from_secs(30);
/// Transactions in flight at once, across all destinations.
const MAX_CONCURRENT_SENDS: usize = 32;
/// Queued EDUs per destination past which the oldest typing, then receipt EDUs are dropped.
const EDU_SOFT_CAP: usize = 1_000;
/// Queued EDUs per destination past which nothing more is taken (to-device included).
const EDU_HARD_CAP: usize = 50_000;
/// The first retry delay after a failure, doubled per failure up to [`BACKOFF_CAP`].
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(60);
/// Destinations remembered as refused by the allow-list (so each is logged once).
const MAX_REFUSED_LOGGED: usize = 1_000;

/// Why an EDU was not queued.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{0} has too many undelivered EDUs")]
    Full(OwnedServerName),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

pub struct Sender {
    storage: Storage,
    client: Arc<FederationClient>,
    wake_tx: mpsc::Sender<OwnedServerName>,
    wake_rx: Mutex<Option<mpsc::Receiver<OwnedServerName>>>,
    workers: Mutex<HashMap<OwnedServerName, Arc<WorkerSignals>>>,
    /// Queued EDUs per destination (a soft count: corrected whenever a worker sees the end
    /// of its queue).
    queued_edus: Mutex<HashMap<OwnedServerName, usize>>,
    next_edu_seq: AtomicU64,
    /// Random per process: with the counter, transaction IDs never repeat across restarts.
    boot_id: String,
    next_txn: AtomicU64,
    sends: Semaphore,
    refused_logged: Mutex<HashSet<OwnedServerName>>,
    /// The access service, which logs what each transaction discloses of a patient's record
    /// before it goes out (set once the services exist; unset, nothing is logged). Weak: the
    /// access service holds `Rooms`, which holds this sender.
    read_log: std::sync::OnceLock<std::sync::Weak<crate::service::access::Access>>,
}

/// How the rest of the server reaches a running worker.
#[derive(Default)]
struct WorkerSignals {
    /// Set when rows were queued after the worker last looked.
    more: AtomicBool,
    /// Notified when the destination proved it is up: retry now.
    back: Notify,
}

impl Sender {
    /// Opens the queues: finds the highest EDU sequence and counts what each destination has
    /// waiting.
    pub fn new(storage: Storage, client: Arc<FederationClient>) -> Result<Arc<Self>, StorageError> {
        let mut queued_edus: HashMap<OwnedServerName, usize> = HashMap::new();
        let mut max_seq = 0;
        // In chunks, so a long queue is never read into memory at once.
        let mut from = Vec::new();
        loop {
            let rows = storage.scan_range(cf::DESTINATIONSEQ_EDU, &from, &[0xFF; 512], 4096)?;
            let Some((last, _)) = rows.last() else { break };
            from = last.to_vec();
            from.push(0); // the next key after `last`
            for (key, _) in &rows {
                let Some((destination, seq)) = split_queue_key(key) else { continue };
                max_seq = max_seq.max(seq);
                *queued_edus.entry(destination).or_default() += 1;
            }
        }
        let (wake_tx, wake_rx) = mpsc::channel(WAKE_CHANNEL);
        Ok(Arc::new(Self {
            storage,
            client,
            wake_tx,
            wake_rx: Mutex::new(Some(wake_rx)),
            workers: Mutex::default(),
            queued_edus: Mutex::new(queued_edus),
            next_edu_seq: AtomicU64::new(max_seq + 1),
            boot_id: crate::random::string(crate::random::ALPHANUMERIC, 12),
            next_txn: AtomicU64::new(1),
            sends: Semaphore::new(MAX_CONCURRENT_SENDS),
            refused_logged: Mutex::default(),
            read_log: std::sync::OnceLock::new(),
        }))
    }

    /// Logs every transaction's record data through `access` before it is sent.
    pub fn log_pushes_with(&self, access: std::sync::Weak<crate::service::access::Access>) {
        let _ = self.read_log.set(access);
    }

    /// Starts the dispatcher (once; needs a tokio runtime): a worker for every destination
    /// with queued rows now, then one per woken destination, and a periodic rescan.
    pub fn start(self: &Arc<Self>) {
        let Some(mut wakes) = self.wake_rx.locked().take() else { return };
        let sender = self.clone();
        tokio::spawn(async move {
            let mut rescan = tokio::time::interval(RESCAN_INTERVAL);
            loop {
                tokio::select! {
                    Some(destination) = wakes.recv() => sender.ensure_worker(destination),
                    _ = rescan.tick() => match sender.destinations_with_rows() {
                        Ok(destinations) => {
                            for destination in destinations {
                                sender.ensure_worker(destination);
                            }
                        }
                        Err(err) => tracing::error!(%err, "scanning the federation queues"),
                    },
                }
            }
        });
    }

    /// Queues `event_id` (stored at stream `position`) for `destination`, in the caller's batch.
    pub fn queue_pdu_in(
        batch: &mut Batch<'_>,
        destination: &ServerName,
        position: u64,
        event_id: &EventId,
    ) {
        batch.put(
            cf::DESTINATIONPOSITION_PDU,
            &compound_key(&[destination.as_bytes(), &position.to_be_bytes()]),
            event_id.as_bytes(),
        );
    }

    /// Tells the dispatcher these destinations have new work.
    pub fn wake(&self, destinations: &[OwnedServerName]) {
        for destination in destinations {
            if self.wake_tx.try_send(destination.clone()).is_err() {
                tracing::debug!(%destination, "wake dropped; the rescan will find the queue");
            }
        }
    }

    /// Queues an EDU (`{"edu_type": .., "content": ..}`) for `destination`, durably.
    pub async fn queue_edu(
        &self,
        destination: &ServerName,
        edu: serde_json::Value,
    ) -> Result<(), QueueError> {
        self.queue_edu_for_all(&[destination.to_owned()], &edu, self.storage.batch()).await
    }

    /// Queues one EDU for each of `destinations`, committed durably together with `batch`
    /// (the caller's own writes, e.g. a new device-list stream ID), then wakes them.
    pub async fn queue_edu_for_all(
        &self,
        destinations: &[OwnedServerName],
        edu: &serde_json::Value,
        mut batch: Batch<'_>,
    ) -> Result<(), QueueError> {
        let bytes = to_json_bytes(edu);
        let kind = edu["edu_type"].as_str().unwrap_or_default();
        let mut queued = Vec::new();
        for destination in destinations {
            if destination == self.client.origin() || self.client.policy.check(destination).is_err()
            {
                continue;
            }
            let waiting = self.queued_edus(destination);
            let mut freed = 0;
            if waiting >= EDU_SOFT_CAP {
                freed = self.drop_oldest_droppable(
                    destination,
                    &mut batch,
                    waiting + 1 - EDU_SOFT_CAP,
                )?;
                if freed == 0 && droppability(kind).is_some() {
                    tracing::debug!(%destination, kind, "queue full; EDU dropped");
                    continue;
                }
                if freed == 0 && waiting >= EDU_HARD_CAP {
                    return Err(QueueError::Full(destination.clone()));
                }
            }
            let seq = self.next_edu_seq.fetch_add(1, Ordering::Relaxed);
            batch.put(
                cf::DESTINATIONSEQ_EDU,
                &compound_key(&[destination.as_bytes(), &seq.to_be_bytes()]),
                &bytes,
            );
            queued.push((destination.clone(), freed));
        }
        self.storage.commit(batch).await?;
        {
            let mut counts = self.queued_edus.locked();
            for (destination, freed) in &queued {
                let count = counts.entry(destination.clone()).or_default();
                *count = (*count + 1).saturating_sub(*freed);
            }
        }
        let woken: Vec<OwnedServerName> = queued.into_iter().map(|(d, _)| d).collect();
        self.wake(&woken);
        Ok(())
    }

    /// The database the queues live in (unit tests).
    #[cfg(test)]
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// An inbound request came from `origin`: it is up, so retry now instead of after backoff.
    pub fn peer_is_back(&self, origin: &ServerName) {
        if let Some(signals) = self.workers.locked().get(origin) {
            signals.back.notify_one();
        }
    }

    fn queued_edus(&self, destination: &ServerName) -> usize {
        self.queued_edus.locked().get(destination).copied().unwrap_or(0)
    }

    /// Deletes (in `batch`) up to `wanted` of the destination's oldest typing EDUs, then
    /// receipt EDUs; returns how many.
    fn drop_oldest_droppable(
        &self,
        destination: &ServerName,
        batch: &mut Batch<'_>,
        wanted: usize,
    ) -> Result<usize, StorageError> {
        // The oldest rows only: a scan per queued EDU must stay cheap when a queue is long.
        let from = compound_key(&[destination.as_bytes(), b""]);
        let to = compound_key(&[destination.as_bytes(), &[0xFF; 8]]);
        let rows = self.storage.scan_range(cf::DESTINATIONSEQ_EDU, &from, &to, 2 * EDU_SOFT_CAP)?;
        let mut candidates: Vec<(u8, usize)> = rows
            .iter()
            .enumerate()
            .filter_map(|(index, (_, value))| {
                let edu: serde_json::Value = serde_json::from_slice(value).ok()?;
                droppability(edu["edu_type"].as_str()?).map(|rank| (rank, index))
            })
            .collect();
        candidates.sort();
        candidates.truncate(wanted);
        for (_, index) in &candidates {
            batch.delete(cf::DESTINATIONSEQ_EDU, &rows[*index].0);
        }
        Ok(candidates.len())
    }

    /// Starts a worker for `destination` unless one runs; a running one is told to look again.
    fn ensure_worker(self: &Arc<Self>, destination: OwnedServerName) {
        let mut workers = self.workers.locked();
        if let Some(signals) = workers.get(&destination) {
            signals.more.store(true, Ordering::SeqCst);
            return;
        }
        let signals = Arc::new(WorkerSignals::default());
        workers.insert(destination.clone(), signals.clone());
        let sender = self.clone();
        tokio::spawn(async move { sender.run_worker(destination, signals).await });
    }

    /// Drains one destination's queue, then exits (unless more arrived meanwhile).
    async fn run_worker(
        self: Arc<Self>,
        destination: OwnedServerName,
        signals: Arc<WorkerSignals>,
    ) {
        let mut backoff = Backoff::default();
        loop {
            signals.more.store(false, Ordering::SeqCst);
            if let Err(err) = self.client.policy.check(&destination) {
                self.drop_refused(&destination, &err).await;
            }
            let transaction = match self.next_transaction(&destination) {
                Ok(transaction) => transaction,
                Err(err) => {
                    tracing::error!(%destination, %err, "reading the federation queue");
                    tokio::time::sleep(backoff.next_delay(rand::random())).await;
                    continue;
                }
            };
            if transaction.is_empty() {
                let mut workers = self.workers.locked();
                if signals.more.load(Ordering::SeqCst) {
                    continue;
                }
                workers.remove(&destination);
                self.queued_edus.locked().remove(&destination);
                return;
            }
            if transaction.edu_keys.len() < MAX_EDUS_PER_TRANSACTION {
                // The whole EDU queue is in this transaction: the count is exact again.
                self.queued_edus.locked().insert(destination.clone(), transaction.edu_keys.len());
            }
            self.deliver(&destination, &signals, transaction, &mut backoff).await;
        }
    }

    /// Sends one transaction until the destination takes it (retrying the same transaction
    /// ID, so the destination can recognise a repeat), then deletes exactly its rows.
    async fn deliver(
        &self,
        destination: &ServerName,
        signals: &WorkerSignals,
        transaction: Transaction,
        backoff: &mut Backoff,
    ) {
        let txn_id = self.next_transaction_id();
        // What the transaction discloses of patients' records is logged before it first
        // leaves; without the entry, nothing goes (the rows wait for the next round).
        if let Some(access) = self.read_log.get().and_then(std::sync::Weak::upgrade)
            && let Err(err) = access.log_push(destination, transaction.events.clone()).await
        {
            tracing::error!(%destination, %err, "logging a transaction's reads failed; not sent");
            tokio::time::sleep(backoff.next_delay(rand::random())).await;
            return;
        }
        loop {
            let request = transaction.request(txn_id.clone(), self.client.origin());
            let body = transaction.canonical_body(&request);
            let result = {
                // The semaphore is never closed; were it, the worker stops and its rows wait
                // in storage for the next start.
                let Ok(_permit) = self.sends.acquire().await else { return };
                self.client.send_with_body(destination, request, Some(body)).await
            };
            let outcome = match result {
                Ok(response) => {
                    let refused = response.pdus.values().filter(|result| result.is_err()).count();
                    if refused > 0 {
                        // The destination has these events and judged them; a resend would
                        // not change its mind.
                        tracing::info!(%destination, refused, "PDUs not accepted by the destination");
                    }
                    Ok(())
                }
                Err(err) => Err(err),
            };
            match outcome {
                Ok(()) => {}
                Err(FederationError::Refused { status, .. }) if matches!(status, 400 | 413) => {
                    tracing::warn!(%destination, status, "transaction refused as malformed; dropped");
                }
                Err(FederationError::NotAllowed(_)) => {}
                Err(err) => {
                    let delay = backoff.next_delay(rand::random());
                    tracing::info!(%destination, %err, retry_in_ms = delay.as_millis() as u64, "transaction not delivered");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = signals.back.notified() => backoff.reset(),
                    }
                    continue;
                }
            }
            backoff.reset();
            if let Err(err) = self.acknowledge(&transaction).await {
                tracing::error!(%destination, %err, "removing a sent transaction from the queue");
            }
            return;
        }
    }

    /// Removes a delivered transaction's rows, durably.
    async fn acknowledge(&self, transaction: &Transaction) -> Result<(), StorageError> {
        let mut batch = self.storage.batch();
        for key in &transaction.pdu_keys {
            batch.delete(cf::DESTINATIONPOSITION_PDU, key);
        }
        for key in &transaction.edu_keys {
            batch.delete(cf::DESTINATIONSEQ_EDU, key);
        }
        self.storage.commit(batch).await
    }

    /// The allow-list refuses the destination: nothing may go there, so its queue goes.
    async fn drop_refused(&self, destination: &ServerName, err: &FederationError) {
        {
            let mut logged = self.refused_logged.locked();
            if logged.len() < MAX_REFUSED_LOGGED && logged.insert(destination.to_owned()) {
                tracing::warn!(%destination, %err, "dropping what was queued for a refused server");
            }
        }
        let prefix = compound_key(&[destination.as_bytes(), b""]);
        let mut batch = self.storage.batch();
        for family in [cf::DESTINATIONPOSITION_PDU, cf::DESTINATIONSEQ_EDU] {
            match self.storage.scan_prefix(family, &prefix) {
                Ok(rows) => rows.iter().for_each(|(key, _)| batch.delete(family, key)),
                Err(err) => tracing::error!(%err, "scanning a refused server's queue"),
            }
        }
        if let Err(err) = self.storage.commit(batch).await {
            tracing::error!(%err, "dropping a refused server's queue");
        }
    }

    /// The destination's oldest PDUs (in stream order) and EDUs (in queue order), at most a
    /// transaction's worth of each.
    fn next_transaction(&self, destination: &ServerName) -> Result<Transaction, StorageError> {
        let from = compound_key(&[destination.as_bytes(), b""]);
        let to = compound_key(&[destination.as_bytes(), &[0xFF; 8]]);
        let mut transaction = Transaction::default();
        let pdu_rows = self.storage.scan_range(
            cf::DESTINATIONPOSITION_PDU,
            &from,
            &to,
            MAX_PDUS_PER_TRANSACTION,
        )?;
        for (key, event_id) in pdu_rows {
            match self.storage.get(cf::EVENTID_PDU, &event_id)? {
                Some(json) => {
                    match String::from_utf8(json).ok().and_then(|s| RawValue::from_string(s).ok()) {
                        Some(raw) => {
                            if let (Some(room), Ok(id)) =
                                (room_of(&raw), String::from_utf8(event_id.to_vec()))
                            {
                                transaction.events.push((room, id));
                            }
                            transaction.pdus.push(raw);
                        }
                        None => {
                            tracing::error!(%destination, "a queued event's stored JSON is unreadable")
                        }
                    }
                }
                None => tracing::error!(%destination, "a queued event is not stored"),
            }
            // Unreadable or missing events are acknowledged with the rest: retrying cannot help.
            transaction.pdu_keys.push(key.into_vec());
        }
        let edu_rows = self.storage.scan_range(
            cf::DESTINATIONSEQ_EDU,
            &from,
            &to,
            MAX_EDUS_PER_TRANSACTION,
        )?;
        for (key, json) in edu_rows {
            match String::from_utf8(json.into_vec())
                .ok()
                .and_then(|s| RawValue::from_string(s).ok())
            {
                Some(raw) => transaction.edus.push(Raw::from_json(raw)),
                None => tracing::error!(%destination, "a queued EDU is unreadable"),
            }
            transaction.edu_keys.push(key.into_vec());
        }
        Ok(transaction)
    }

    /// Every destination with a queued PDU or EDU, skipping from one destination's rows to
    /// the next with a seek each.
    fn destinations_with_rows(&self) -> Result<Vec<OwnedServerName>, StorageError> {
        let mut found = Vec::new();
        for family in [cf::DESTINATIONPOSITION_PDU, cf::DESTINATIONSEQ_EDU] {
            let mut from = Vec::new();
            while let Some((key, _)) =
                self.storage.scan_range(family, &from, &[0xFF; 512], 1)?.into_iter().next()
            {
                let Some((destination, _)) = split_queue_key(&key) else { break };
                // Past every key of this destination: its name, then 0xFF and an 8-byte number.
                from = compound_key(&[destination.as_bytes(), &[0xFF; 9]]);
                if !found.contains(&destination) {
                    found.push(destination);
                }
            }
        }
        Ok(found)
    }

    fn next_transaction_id(&self) -> OwnedTransactionId {
        let n = self.next_txn.fetch_add(1, Ordering::Relaxed);
        OwnedTransactionId::from(format!("{}{n}", self.boot_id))
    }
}

/// The order in which EDUs of a kind are dropped from a full queue; `None`: never dropped.
/// Typing goes first (it is stale within seconds), then receipts (the next one supersedes).
/// To-device messages carry encryption keys and device lists their changes: never dropped.
fn droppability(edu_type: &str) -> Option<u8> {
    match edu_type {
        "m.typing" => Some(0),
        "m.receipt" => Some(1),
        _ => None,
    }
}

/// `destination 0xFF big-endian u64` → the destination and the number.
fn split_queue_key(key: &[u8]) -> Option<(OwnedServerName, u64)> {
    if key.len() < 10 || key[key.len() - 9] != 0xFF {
        return None;
    }
    let name = std::str::from_utf8(&key[..key.len() - 9]).ok()?;
    let number = u64::from_be_bytes(key[key.len() - 8..].try_into().ok()?);
    Some((ServerName::parse(name).ok()?, number))
}

/// The room a stored PDU names (a v12 create event names none; it is not pushed).
fn room_of(pdu: &RawValue) -> Option<ruma::OwnedRoomId> {
    #[derive(serde::Deserialize)]
    struct RoomOf<'a> {
        #[serde(borrow)]
        room_id: Option<&'a str>,
    }
    let room = serde_json::from_str::<RoomOf<'_>>(pdu.get()).ok()?.room_id?;
    ruma::RoomId::parse(room).ok()
}

/// One transaction's worth of a destination's queue, and the rows it came from.
#[derive(Default)]
struct Transaction {
    pdu_keys: Vec<Vec<u8>>,
    pdus: Vec<Box<RawValue>>,
    /// Each PDU's room and event ID, for the read log.
    events: Vec<(ruma::OwnedRoomId, String)>,
    edu_keys: Vec<Vec<u8>>,
    edus: Vec<Raw<Edu>>,
}

impl Transaction {
    fn is_empty(&self) -> bool {
        self.pdu_keys.is_empty() && self.edu_keys.is_empty()
    }

    fn request(
        &self,
        txn_id: OwnedTransactionId,
        origin: &ServerName,
    ) -> send_transaction::Request {
        let mut request = send_transaction::Request::new(
            txn_id,
            origin.to_owned(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = self.pdus.clone();
        request.edus = self.edus.clone();
        request
    }

    /// The body of `request` (made by [`Self::request`]) in canonical JSON, put together
    /// from the PDUs as stored (canonical already) and the EDUs made canonical, with no
    /// whole-body encoding: the destination can then check the X-Matrix signature on the
    /// bytes as sent. The fields are ruma's (`edus` left out when there are none), as the
    /// signature ruma makes covers those. Should a part not be canonical after all, the
    /// destination checks the signature on its own encoding instead, as for any sender.
    fn canonical_body(&self, request: &send_transaction::Request) -> Vec<u8> {
        let size: usize = self.pdus.iter().map(|pdu| pdu.get().len() + 1).sum();
        let mut body = Vec::with_capacity(size + 256);
        body.push(b'{');
        if !self.edus.is_empty() {
            body.extend_from_slice(b"\"edus\":[");
            for (index, edu) in self.edus.iter().enumerate() {
                if index > 0 {
                    body.push(b',');
                }
                let json = edu.json().get();
                match medrix_protocol::canonical::parse_value(json.as_bytes(), json.len()) {
                    Ok(value) => body.extend(to_json_bytes(&value)),
                    Err(_) => body.extend_from_slice(json.as_bytes()),
                }
            }
            body.extend_from_slice(b"],");
        }
        body.extend_from_slice(b"\"origin\":");
        body.extend(to_json_bytes(request.origin.as_str()));
        body.extend_from_slice(b",\"origin_server_ts\":");
        body.extend_from_slice(request.origin_server_ts.get().to_string().as_bytes());
        body.extend_from_slice(b",\"pdus\":[");
        for (index, pdu) in self.pdus.iter().enumerate() {
            if index > 0 {
                body.push(b',');
            }
            body.extend_from_slice(pdu.get().as_bytes());
        }
        body.extend_from_slice(b"]}");
        body
    }
}

/// Retry delays for one destination: [`BACKOFF_START`] doubling per failure up to
/// [`BACKOFF_CAP`], each spread by ±20% so destinations that failed together do not retry in
/// lockstep.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The delay before the next attempt; `jitter` in `[0, 1)` picks where in the spread.
    fn next_delay(&mut self, jitter: f64) -> Duration {
        let base = BACKOFF_START.saturating_mul(1 << self.failures.min(16)).min(BACKOFF_CAP);
        self.failures = self.failures.saturating_add(1);
        base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A sender for `origin.test` over a fresh database in a temporary directory, allowed to
/// send to `peer.test` and `other.test` only (unit tests).
#[cfg(test)]
pub(crate) fn test_sender(name: &str) -> (Arc<Sender>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "medrix-sender-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let storage = Storage::open(&dir).unwrap();
    let key = medrix_protocol::keys::ServerSigningKey::from_seed("origin.test", "mdx1", &[7; 32]);
    let config = crate::config::Federation {
        allow: vec!["peer.test".to_owned(), "other.test".to_owned(), "origin.test".to_owned()],
        ..Default::default()
    };
    let client = FederationClient::new(
        &config,
        ServerName::parse("origin.test").unwrap(),
        key.unwrap().to_ruma_key_pair().unwrap(),
    )
    .unwrap();
    (Sender::new(storage, Arc::new(client)).unwrap(), dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sender(name: &str) -> (Arc<Sender>, std::path::PathBuf) {
        test_sender(name)
    }

    fn edu(kind: &str, n: u64) -> serde_json::Value {
        serde_json::json!({"edu_type": kind, "content": {"n": n}})
    }

    fn server(name: &str) -> OwnedServerName {
        ServerName::parse(name).unwrap()
    }

    #[test]
    fn a_transaction_body_is_sent_in_canonical_json() {
        let raw = |json: &str| RawValue::from_string(json.to_owned()).unwrap();
        let pdu = r#"{"content":{"body":"é"},"type":"m.room.message"}"#;
        let mut transaction =
            Transaction { pdus: vec![raw(pdu), raw(pdu)], ..Transaction::default() };
        let canonical = |transaction: &Transaction| {
            let request = transaction.request("t1".into(), &server("origin.test"));
            let body = transaction.canonical_body(&request);
            let parsed = medrix_protocol::canonical::parse_value(&body, body.len()).unwrap();
            assert_eq!(serde_json::to_vec(&parsed).unwrap(), body, "canonical as it stands");
            (serde_json::to_value(&parsed).unwrap(), request.origin_server_ts.get())
        };
        // No EDUs: no `edus` field, as ruma leaves it out (the signature covers ruma's).
        let (body, ts) = canonical(&transaction);
        let message = serde_json::json!({"content": {"body": "é"}, "type": "m.room.message"});
        let mut expected = serde_json::json!({
            "origin": "origin.test", "origin_server_ts": ts, "pdus": [message, message],
        });
        assert_eq!(body, expected);
        // An EDU made with its keys out of order and an escape canonical JSON spells
        // otherwise: it comes out canonical.
        transaction.edus =
            vec![Raw::from_json(raw(r#"{"edu_type":"m.typing","content":{"z":1,"a":"\u00e9"}}"#))];
        let (body, ts) = canonical(&transaction);
        expected["origin_server_ts"] = serde_json::json!(ts);
        expected["edus"] =
            serde_json::json!([{"content": {"a": "é", "z": 1}, "edu_type": "m.typing"}]);
        assert_eq!(body, expected);
    }

    /// The end-to-end property: the body sent verifies, as sent, against the X-Matrix
    /// signature ruma makes for the request (with EDUs and without).
    #[test]
    fn the_canonical_body_verifies_as_sent_against_the_signature_ruma_makes() {
        use ruma::api::{
            OutgoingRequest,
            federation::authentication::{ServerSignaturesInput, XMatrix},
        };
        let key =
            medrix_protocol::keys::ServerSigningKey::from_seed("origin.test", "mdx1", &[7; 32])
                .unwrap();
        let key_pair = key.to_ruma_key_pair().unwrap();
        let raw = |json: &str| RawValue::from_string(json.to_owned()).unwrap();
        let pdu = raw(r#"{"content":{"body":"é"},"depth":3,"type":"m.room.message"}"#);
        let typing = Raw::from_json(raw(r#"{"edu_type":"m.typing","content":{"z":1,"a":"b"}}"#));
        for edus in [vec![], vec![typing]] {
            let transaction =
                Transaction { pdus: vec![pdu.clone()], edus, ..Transaction::default() };
            let request = transaction.request("t1".into(), &server("origin.test"));
            let body = transaction.canonical_body(&request);
            let signing =
                ServerSignaturesInput::new(server("origin.test"), server("peer.test"), &key_pair);
            let sent: http::Request<Vec<u8>> =
                request.try_into_http_request("https://peer.test", signing, ()).unwrap();
            let header = sent.headers().get(http::header::AUTHORIZATION).unwrap();
            let x_matrix = XMatrix::try_from(header).unwrap();
            let line = medrix_protocol::request_signature::RequestLine {
                destination: "peer.test".to_owned(),
                method: "PUT".to_owned(),
                origin: "origin.test".to_owned(),
                uri: sent.uri().path_and_query().unwrap().to_string(),
            };
            line.verify_with_raw_body(
                &body,
                x_matrix.key.as_str(),
                x_matrix.sig.as_bytes(),
                &key.verify_keys(),
            )
            .unwrap();
        }
    }

    #[test]
    fn backoff_doubles_from_one_second_to_a_minute_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..9).map(|_| backoff.next_delay(0.5).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.next_delay(0.5), Duration::from_secs(1));
        // Jitter spreads a delay by a fifth either way, never more.
        let low = Backoff { failures: 30 }.next_delay(0.0);
        let high = Backoff { failures: 30 }.next_delay(1.0);
        assert_eq!((low.as_secs(), high.as_secs()), (48, 72));
    }

    #[tokio::test]
    async fn a_transaction_takes_pdus_in_stream_order_and_at_most_50_and_100() {
        let (sender, dir) = sender("batch");
        let peer = server("peer.test");
        let mut batch = sender.storage.batch();
        for position in (1..=60u64).rev() {
            let event_id = EventId::parse(format!("$event{position}")).unwrap();
            batch.put(
                cf::EVENTID_PDU,
                event_id.as_bytes(),
                format!("{{\"n\":{position}}}").as_bytes(),
            );
            Sender::queue_pdu_in(&mut batch, &peer, position, &event_id);
        }
        sender.storage.commit(batch).await.unwrap();
        for n in 0..120 {
            sender.queue_edu(&peer, edu("m.direct_to_device", n)).await.unwrap();
        }
        sender.queue_edu(&server("other.test"), edu("m.typing", 0)).await.unwrap();

        let first = sender.next_transaction(&peer).unwrap();
        assert_eq!((first.pdus.len(), first.edus.len()), (50, 100));
        let order: Vec<String> = first.pdus.iter().map(|raw| raw.get().to_owned()).collect();
        assert_eq!(order[0], "{\"n\":1}");
        assert_eq!(order[49], "{\"n\":50}");
        assert!(first.edus[0].json().get().contains("\"n\":0"));
        sender.acknowledge(&first).await.unwrap();

        let second = sender.next_transaction(&peer).unwrap();
        assert_eq!((second.pdus.len(), second.edus.len()), (10, 20));
        sender.acknowledge(&second).await.unwrap();
        assert!(sender.next_transaction(&peer).unwrap().is_empty());
        // The other destination's queue is untouched.
        assert_eq!(sender.next_transaction(&server("other.test")).unwrap().edus.len(), 1);
        let mut found = sender.destinations_with_rows().unwrap();
        found.sort();
        assert_eq!(found, [server("other.test")]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_full_queue_drops_typing_first_and_never_to_device() {
        let (sender, dir) = sender("cap");
        let peer = server("peer.test");
        for n in 0..EDU_SOFT_CAP as u64 - 2 {
            sender.queue_edu(&peer, edu("m.direct_to_device", n)).await.unwrap();
        }
        sender.queue_edu(&peer, edu("m.receipt", 0)).await.unwrap();
        sender.queue_edu(&peer, edu("m.typing", 0)).await.unwrap();
        assert_eq!(sender.queued_edus(&peer), EDU_SOFT_CAP);
        // Full: a to-device message goes in and the typing EDU makes room.
        sender.queue_edu(&peer, edu("m.direct_to_device", 9_999)).await.unwrap();
        let kinds = |sender: &Sender| -> Vec<String> {
            let prefix = compound_key(&[peer.as_bytes(), b""]);
            sender
                .storage
                .scan_prefix(cf::DESTINATIONSEQ_EDU, &prefix)
                .unwrap()
                .iter()
                .map(|(_, v)| {
                    serde_json::from_slice::<serde_json::Value>(v).unwrap()["edu_type"]
                        .as_str()
                        .unwrap()
                        .to_owned()
                })
                .collect()
        };
        let now = kinds(&sender);
        assert_eq!(now.len(), EDU_SOFT_CAP);
        assert!(!now.contains(&"m.typing".to_owned()));
        assert!(now.contains(&"m.receipt".to_owned()));
        // Then the receipt; then, with only to-device left, a new typing EDU is dropped itself.
        sender.queue_edu(&peer, edu("m.direct_to_device", 10_000)).await.unwrap();
        sender.queue_edu(&peer, edu("m.typing", 1)).await.unwrap();
        let now = kinds(&sender);
        assert_eq!(now.len(), EDU_SOFT_CAP);
        assert!(now.iter().all(|kind| kind == "m.direct_to_device"));
        // A reopened queue counts what waits and continues the sequence.
        let counted = Sender::new(sender.storage.clone(), sender.client.clone()).unwrap();
        assert_eq!(counted.queued_edus(&peer), EDU_SOFT_CAP);
        assert!(counted.next_edu_seq.load(Ordering::Relaxed) > EDU_SOFT_CAP as u64);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn nothing_is_queued_for_ourselves_or_refused_servers() {
        let (sender, dir) = sender("refused");
        sender.queue_edu(&server("origin.test"), edu("m.typing", 0)).await.unwrap();
        sender.queue_edu(&server("stranger.test"), edu("m.typing", 0)).await.unwrap();
        assert!(sender.destinations_with_rows().unwrap().is_empty());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn transaction_ids_differ_within_and_across_processes() {
        let (a, dir_a) = sender("txn-a");
        let (b, dir_b) = sender("txn-b");
        let ids = [a.next_transaction_id(), a.next_transaction_id(), b.next_transaction_id()];
        assert!(ids[0] != ids[1] && ids[0] != ids[2] && ids[1] != ids[2]);
        let _ = (std::fs::remove_dir_all(dir_a), std::fs::remove_dir_all(dir_b));
    }
}
