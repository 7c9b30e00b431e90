//! EDUs other servers send in `/send` transactions: to-device messages for local devices,
//! device-list and cross-signing key changes of their users, typing and read receipts in
//! shared rooms. Every EDU must speak only for users of the server that sent it; one that
//! does not, or that cannot be read, is skipped without failing the transaction. Key changes
//! of users who share no room with this server's users are ignored.
//!
//! Repeats are dropped: whole transactions by origin and transaction ID (a repeat is answered
//! once its first copy's processing ends, as it ended), to-device messages by sender and
//! message ID, each remembered in a bounded memory map (a repeat comes within seconds of the
//! original, when a sender did not see the answer).

use std::{
    collections::{BTreeSet, HashMap, VecDeque},
    hash::Hash,
    sync::Mutex,
    time::Duration,
};

use ruma::{
    OwnedServerName, OwnedUserId, RoomId, ServerName, UserId,
    api::federation::transactions::edu::{DirectDeviceContent, Edu, ReceiptContent, TypingContent},
    serde::Raw,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    locks::LockExt,
    service::{
        e2ee::E2ee,
        receipts::Receipts,
        rooms::{RoomError, Rooms},
        typing::Typing,
    },
    storage::{Storage, StorageError},
};

use super::destinations::shares_a_room_with;

/// Transactions remembered per server for repeats, across all origins.
const REMEMBERED_TRANSACTIONS: usize = 10_000;
/// To-device message IDs remembered for repeats.
const REMEMBERED_MESSAGES: usize = 50_000;
/// Remote users whose last device-list stream ID is remembered.
const REMEMBERED_DEVICE_LISTS: usize = 50_000;
/// How long a remote user counts as typing: federation typing EDUs carry no timeout, and
/// servers repeat `typing: true` while their user types (Synapse's value).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(60);

/// What [`InboundEdus::claim_transaction`] found.
pub enum TransactionClaim {
    /// First seen: process it, then [`InboundEdus::finish_transaction`].
    New(ClaimedTransaction),
    /// Seen before; the outcome of its first copy (`None` while still being processed).
    Seen(Outcome),
}

/// A transaction this server is processing.
pub struct ClaimedTransaction {
    key: (OwnedServerName, String),
    done: watch::Sender<Option<bool>>,
}

/// Each remembered transaction's outcome, by origin and transaction ID: `None` while its first
/// copy is being processed.
struct SeenTransactions(Mutex<Recent<(OwnedServerName, String), Outcome>>);

/// A transaction's outcome: `Some(succeeded)` once its first copy's processing ended.
type Outcome = watch::Receiver<Option<bool>>;

impl SeenTransactions {
    /// Claims a transaction for processing, or finds it seen before: processed, or being
    /// processed by an earlier copy (a sender that gave up waiting sends it again).
    pub fn claim(&self, origin: &ServerName, txn_id: &str) -> TransactionClaim {
        let key = (origin.to_owned(), txn_id.to_owned());
        let mut transactions = self.0.locked();
        if let Some(outcome) = transactions.get(&key) {
            // A first copy whose processing died (its claim dropped unfinished) counts as
            // never seen.
            let abandoned = outcome.borrow().is_none() && outcome.has_changed().is_err();
            if !abandoned {
                return TransactionClaim::Seen(outcome.clone());
            }
        }
        let (done, outcome) = watch::channel(None);
        transactions.insert(key.clone(), outcome);
        TransactionClaim::New(ClaimedTransaction { key, done })
    }

    /// The end of processing a claimed transaction. A failed one is forgotten, so that its
    /// next copy is processed afresh; copies waiting on it are told either way.
    pub fn finish(&self, claimed: ClaimedTransaction, succeeded: bool) {
        if !succeeded {
            self.0.locked().remove(&claimed.key);
        }
        let _ = claimed.done.send(Some(succeeded));
    }
}

pub struct InboundEdus {
    own: OwnedServerName,
    storage: Storage,
    rooms: Rooms,
    e2ee: E2ee,
    typing: Typing,
    receipts: Receipts,
    transactions: SeenTransactions,
    messages: Mutex<Recent<(OwnedUserId, String), ()>>,
    device_lists: Mutex<Recent<OwnedUserId, u64>>,
}

impl InboundEdus {
    pub fn new(
        own: OwnedServerName,
        storage: Storage,
        rooms: Rooms,
        e2ee: E2ee,
        typing: Typing,
        receipts: Receipts,
    ) -> Self {
        Self {
            own,
            storage,
            rooms,
            e2ee,
            typing,
            receipts,
            transactions: SeenTransactions(Mutex::new(Recent::new(REMEMBERED_TRANSACTIONS))),
            messages: Mutex::new(Recent::new(REMEMBERED_MESSAGES)),
            device_lists: Mutex::new(Recent::new(REMEMBERED_DEVICE_LISTS)),
        }
    }

    /// Claims a transaction for processing, or finds it seen before (see
    /// [`SeenTransactions::claim`]).
    pub fn claim_transaction(&self, origin: &ServerName, txn_id: &str) -> TransactionClaim {
        self.transactions.claim(origin, txn_id)
    }

    /// The end of processing a claimed transaction (see [`SeenTransactions::finish`]).
    pub fn finish_transaction(&self, claimed: ClaimedTransaction, succeeded: bool) {
        self.transactions.finish(claimed, succeeded);
    }

    /// Applies a transaction's EDUs from `origin`.
    pub async fn receive(
        &self,
        origin: &ServerName,
        edus: &[Raw<Edu>],
    ) -> Result<(), StorageError> {
        let mut keys_changed = BTreeSet::new();
        for raw in edus {
            let edu = match raw.deserialize() {
                Ok(edu) => edu,
                Err(err) => {
                    tracing::debug!(%origin, %err, "unreadable EDU skipped");
                    continue;
                }
            };
            match edu {
                Edu::DirectToDevice(content) => self.to_device(origin, content).await?,
                Edu::DeviceListUpdate(update)
                    if of_origin(origin, &update.user_id, "m.device_list_update") =>
                {
                    let stream_id = u64::from(update.stream_id);
                    let prev: Vec<u64> = update.prev_id.iter().map(|id| u64::from(*id)).collect();
                    if self.note_device_list(&update.user_id, stream_id, &prev) {
                        keys_changed.insert(update.user_id);
                    }
                }
                Edu::SigningKeyUpdate(update)
                    if of_origin(origin, &update.user_id, "m.signing_key_update") =>
                {
                    keys_changed.insert(update.user_id);
                }
                Edu::Typing(typing) if of_origin(origin, &typing.user_id, "m.typing") => {
                    self.typing(typing).await?;
                }
                Edu::Receipt(content) => self.receipts(origin, content).await?,
                // Presence, unknown types, and EDUs speaking for other servers' users.
                _ => {}
            }
        }
        for user in keys_changed {
            // News of a user none of ours shares a room with is nobody's business here, and
            // recording it would let any server grow the key-change stream at will.
            if !shares_a_room_with(&self.storage, &user, &self.own)? {
                tracing::debug!(%origin, "key change of a user sharing no room with ours ignored");
                continue;
            }
            self.e2ee.mark_keys_changed(&user).await?;
        }
        Ok(())
    }

    /// A remote member's typing, if they are joined to the room.
    async fn typing(&self, typing: TypingContent) -> Result<(), StorageError> {
        if self.joined(&typing.room_id, &typing.user_id)? {
            let timeout = typing.typing.then_some(REMOTE_TYPING_TIMEOUT);
            self.typing.set(&typing.room_id, &typing.user_id, timeout).await?;
        }
        Ok(())
    }

    fn joined(&self, room: &RoomId, user: &UserId) -> Result<bool, StorageError> {
        match self.rooms.membership(room, user) {
            Ok(membership) => Ok(membership.as_deref() == Some("join")),
            Err(RoomError::Storage(err)) => Err(err),
            Err(_) => Ok(false),
        }
    }

    /// Records a remote user's device-list update; false for a repeat of the last one.
    fn note_device_list(&self, user: &UserId, stream_id: u64, prev: &[u64]) -> bool {
        let mut known = self.device_lists.locked();
        let last = known.get(user).copied();
        if last == Some(stream_id) {
            return false;
        }
        if prev.iter().any(|id| Some(*id) != last) {
            // A gap: an update we never saw. Medrix keeps no copy of remote devices (clients'
            // `/keys/query` asks the user's server live), so marking the user changed, as for
            // any update, is the whole resync a gap calls for.
            tracing::debug!(%user, "device-list gap; clients will re-query");
        }
        known.insert(user.to_owned(), stream_id);
        true
    }

    /// Delivers a to-device EDU to local devices (`*`: all with keys), once per message ID.
    async fn to_device(
        &self,
        origin: &ServerName,
        content: DirectDeviceContent,
    ) -> Result<(), StorageError> {
        if !of_origin(origin, &content.sender, "m.direct_to_device") {
            return Ok(());
        }
        let message_key = (content.sender.clone(), content.message_id.to_string());
        if !self.messages.locked().insert(message_key.clone(), ()) {
            tracing::debug!(%origin, "repeated to-device message dropped");
            return Ok(());
        }
        let kind = content.ev_type.to_string();
        let mut queued = Vec::new();
        for (user, devices) in &content.messages {
            if user.server_name() != self.own {
                continue;
            }
            for (target, message) in devices {
                let Ok(body) = serde_json::from_str::<Value>(message.json().get()) else {
                    continue;
                };
                let message = json!({ "sender": content.sender, "type": kind, "content": body });
                let size = message.to_string().len();
                let devices: Vec<String> = match target {
                    DeviceIdOrAllDevices::DeviceId(device) => vec![device.to_string()],
                    DeviceIdOrAllDevices::AllDevices => {
                        self.e2ee.device_keys(user, &[])?.keys().cloned().collect()
                    }
                };
                for device in devices {
                    if !self.e2ee.to_device_fits(user.as_str(), &device, size)? {
                        tracing::warn!(%origin, "a local device's to-device queue is full; dropped");
                        continue;
                    }
                    queued.push((user.to_string(), device, message.clone()));
                }
            }
        }
        if queued.is_empty() {
            return Ok(());
        }
        let result = self.e2ee.queue_to_device(queued, None).await;
        if result.is_err() {
            self.messages.locked().remove(&message_key);
        }
        result
    }

    /// Public read receipts of the origin's users, in rooms they are joined to.
    async fn receipts(
        &self,
        origin: &ServerName,
        content: ReceiptContent,
    ) -> Result<(), StorageError> {
        for (room, map) in content.receipts {
            for (user, data) in map.read {
                if !of_origin(origin, &user, "m.receipt") || !self.joined(&room, &user)? {
                    continue;
                }
                // A thread value the specification does not define is not stored.
                let Some(thread) = crate::service::receipts::thread_id(&data.data.thread) else {
                    continue;
                };
                if let Some(event_id) = data.event_ids.last() {
                    self.receipts.set(&room, &user, "m.read", event_id, thread).await?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `user` belongs to the sending server; logs an EDU that speaks for another.
fn of_origin(origin: &ServerName, user: &UserId, edu_type: &str) -> bool {
    let ok = user.server_name() == origin;
    if !ok {
        tracing::warn!(%origin, edu_type, "EDU about another server's user skipped");
    }
    ok
}

/// A map holding at most `capacity` entries, forgetting the oldest first.
struct Recent<K, V> {
    map: HashMap<K, V>,
    order: VecDeque<K>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone, V> Recent<K, V> {
    fn new(capacity: usize) -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), capacity }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key)
    }

    /// Inserts or replaces; true if the key was new.
    fn insert(&mut self, key: K, value: V) -> bool {
        if let Some(old) = self.map.get_mut(&key) {
            *old = value;
            return false;
        }
        if self.order.len() >= self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.map.remove(&oldest);
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
        true
    }

    fn remove(&mut self, key: &K) {
        if self.map.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_waits_for_its_first_copy_and_a_failed_one_is_taken_again() {
        let seen = SeenTransactions(Mutex::new(Recent::new(10)));
        let origin: &ServerName = "peer.test".try_into().unwrap();
        let TransactionClaim::New(first) = seen.claim(origin, "t1") else { panic!("new") };
        let TransactionClaim::Seen(waiting) = seen.claim(origin, "t1") else { panic!("seen") };
        assert_eq!(*waiting.borrow(), None, "the first copy is still being processed");
        seen.finish(first, false);
        assert_eq!(*waiting.borrow(), Some(false), "the repeat learns the first failed");
        let TransactionClaim::New(again) = seen.claim(origin, "t1") else {
            panic!("a failed transaction is processed afresh")
        };
        seen.finish(again, true);
        let TransactionClaim::Seen(done) = seen.claim(origin, "t1") else { panic!("seen") };
        assert_eq!(*done.borrow(), Some(true));

        let TransactionClaim::New(dropped) = seen.claim(origin, "t2") else { panic!("new") };
        drop(dropped);
        assert!(
            matches!(seen.claim(origin, "t2"), TransactionClaim::New(_)),
            "a claim dropped unfinished counts as never seen"
        );
    }

    #[test]
    fn recent_forgets_the_oldest_first() {
        let mut recent = Recent::new(2);
        assert!(recent.insert("a", 1));
        assert!(!recent.insert("a", 2), "a repeat");
        assert!(recent.insert("b", 1));
        assert!(recent.insert("c", 1));
        assert!(recent.get("a").is_none());
        assert_eq!(recent.get("b"), Some(&1));
        recent.remove(&"b");
        assert!(recent.insert("b", 3));
        assert_eq!(recent.map.len(), 2);
    }
}
