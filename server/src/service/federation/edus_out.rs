//! EDUs this server sends: to-device messages for other servers' users, and, to every server
//! sharing a room with the local user concerned, their device-list and cross-signing key
//! changes, typing notifications and read receipts. Each becomes a queued EDU per destination
//! ([`Sender`]); none is sent directly from a request.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use ruma::{
    DeviceId, EventId, MilliSecondsSinceUnixEpoch, OwnedDeviceId, OwnedServerName,
    OwnedTransactionId, OwnedUserId, RoomId, UInt, UserId,
    api::federation::transactions::edu::{
        DeviceListUpdateContent, DirectDeviceContent, DirectDeviceMessages, Edu, ReceiptContent,
        ReceiptData, ReceiptMap, SigningKeyUpdateContent, TypingContent,
    },
    events::{
        ToDeviceEventType,
        receipt::{Receipt, ReceiptThread},
    },
    serde::Raw,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{
    destinations,
    sender::{QueueError, Sender},
};
use crate::{
    service::e2ee::{E2ee, KeyChange, KeyChangeListener},
    storage::{Batch, Storage, StorageError, catalogue as cf, compound_key},
};

pub struct OutboundEdus {
    own: OwnedServerName,
    storage: Storage,
    sender: Arc<Sender>,
    /// Serialises device-list stream IDs, so each user's IDs increase and `prev_id` holds.
    device_list_ids: tokio::sync::Mutex<()>,
}

impl OutboundEdus {
    pub fn new(storage: Storage, sender: Arc<Sender>, own: OwnedServerName) -> Arc<Self> {
        Arc::new(Self { own, storage, sender, device_list_ids: Default::default() })
    }

    /// Queues to-device messages for users of other servers: one `m.direct_to_device` EDU per
    /// destination. The message ID is derived from the sending device and its transaction ID,
    /// so a client's retry after a crash carries the same one and the receiver drops the copy.
    pub async fn to_device(
        &self,
        sender: &UserId,
        sender_device: &str,
        txn_id: &str,
        event_type: &ToDeviceEventType,
        per_server: BTreeMap<OwnedServerName, DirectDeviceMessages>,
    ) -> Result<(), QueueError> {
        let digest = Sha256::new()
            .chain_update(sender.as_bytes())
            .chain_update([0xFF])
            .chain_update(sender_device.as_bytes())
            .chain_update([0xFF])
            .chain_update(txn_id.as_bytes())
            .finalize();
        let message_id: String = digest[..16].iter().map(|byte| format!("{byte:02x}")).collect();
        for (destination, messages) in per_server {
            let mut content = DirectDeviceContent::new(
                sender.to_owned(),
                event_type.clone(),
                OwnedTransactionId::from(message_id.clone()),
            );
            content.messages = messages;
            self.sender.queue_edu(&destination, edu_json(Edu::DirectToDevice(content))).await?;
        }
        Ok(())
    }

    /// A local user started or stopped typing in `room`.
    pub async fn typing(&self, room: &RoomId, user: &UserId, typing: bool) {
        let edu = Edu::Typing(TypingContent::new(room.to_owned(), user.to_owned(), typing));
        self.to_room(room, edu).await;
    }

    /// A local user's public read receipt in `room`.
    pub async fn read_receipt(
        &self,
        room: &RoomId,
        user: &UserId,
        event_id: &EventId,
        thread: Option<&str>,
    ) {
        let mut receipt = Receipt::new(MilliSecondsSinceUnixEpoch::now());
        receipt.thread = ReceiptThread::try_from(thread).unwrap_or(ReceiptThread::Unthreaded);
        let data = ReceiptData::new(receipt, vec![event_id.to_owned()]);
        let map = ReceiptMap::new(BTreeMap::from([(user.to_owned(), data)]));
        let edu = Edu::Receipt(ReceiptContent::new(BTreeMap::from([(room.to_owned(), map)])));
        self.to_room(room, edu).await;
    }

    /// The last device-list stream ID sent for a local user (0: none yet), which
    /// `/user/devices` answers too so a peer that resynced recognises the next `prev_id`.
    pub fn device_list_stream_id(&self, user: &UserId) -> Result<u64, StorageError> {
        Ok(self
            .storage
            .get(cf::USERID_DEVICELISTSTREAMID, user.as_bytes())?
            .and_then(|bytes| bytes.try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Typing and receipts matter only now: a failure to queue is logged, not retried.
    async fn to_room(&self, room: &RoomId, edu: Edu) {
        let destinations = match destinations::servers_in_room(&self.storage, room, &self.own) {
            Ok(destinations) => destinations,
            Err(err) => {
                tracing::error!(%err, "finding a room's servers");
                return;
            }
        };
        if destinations.is_empty() {
            return;
        }
        let destinations: Vec<OwnedServerName> = destinations.into_iter().collect();
        let batch = self.storage.batch();
        if let Err(err) = self.sender.queue_edu_for_all(&destinations, &edu_json(edu), batch).await
        {
            tracing::warn!(%err, "queueing an EDU for a room's servers");
        }
    }

    /// Sends a key change of a local user to every server sharing a room with them, in the
    /// write that clears its unannounced record (see [`KeyChangeListener::note_unannounced`]).
    async fn key_change(&self, change: KeyChange) -> Result<(), QueueError> {
        let (user, device) = match &change {
            KeyChange::Device { user, device, .. } => (user.clone(), Some(device.clone())),
            KeyChange::CrossSigning { user, .. } => (user.clone(), None),
        };
        if user.server_name() != self.own {
            return Ok(());
        }
        let destinations: Vec<OwnedServerName> =
            destinations::servers_sharing_rooms_with(&self.storage, &user, &self.own)?
                .into_iter()
                .collect();
        let mut batch = self.storage.batch();
        batch.delete(cf::USERDEVICE_UNANNOUNCEDKEYS, &unannounced_key(&user, device.as_deref()));
        match change {
            KeyChange::Device { user, device, keys } => {
                self.device_list_update(&destinations, user, device, keys, batch).await
            }
            KeyChange::CrossSigning { user, master, self_signing } => {
                if destinations.is_empty() {
                    return Ok(self.storage.commit(batch).await?);
                }
                let mut content = SigningKeyUpdateContent::new(user);
                content.master_key = master.as_ref().and_then(raw);
                content.self_signing_key = self_signing.as_ref().and_then(raw);
                let edu = edu_json(Edu::SigningKeyUpdate(content));
                self.sender.queue_edu_for_all(&destinations, &edu, batch).await
            }
        }
    }

    /// Passes on the key changes committed but never queued for other servers (the server
    /// stopped in between), each as the keys stand now.
    pub async fn announce_unannounced(&self, e2ee: &E2ee) {
        let records = match self.storage.scan_prefix(cf::USERDEVICE_UNANNOUNCEDKEYS, b"") {
            Ok(records) => records,
            Err(err) => {
                tracing::error!(%err, "reading unannounced key changes");
                return;
            }
        };
        for (key, _) in records {
            let Some(change) = current_change(e2ee, &key) else {
                tracing::warn!("an unreadable unannounced key change skipped");
                continue;
            };
            if let Err(err) = self.key_change(change).await {
                tracing::warn!(%err, "announcing a key change left from before a restart");
            }
        }
    }

    /// Takes the user's next device-list stream ID (durably, with the EDUs) and queues the
    /// update naming the previous one.
    async fn device_list_update(
        &self,
        destinations: &[OwnedServerName],
        user: OwnedUserId,
        device: OwnedDeviceId,
        keys: Option<Value>,
        mut batch: Batch<'_>,
    ) -> Result<(), QueueError> {
        let _one_at_a_time = self.device_list_ids.lock().await;
        let previous = self.device_list_stream_id(&user)?;
        let stream_id = previous + 1;
        batch.put(cf::USERID_DEVICELISTSTREAMID, user.as_bytes(), &stream_id.to_be_bytes());
        let mut content = DeviceListUpdateContent::new(
            user,
            device,
            UInt::try_from(stream_id).unwrap_or_default(),
        );
        if previous > 0 {
            content.prev_id = vec![UInt::try_from(previous).unwrap_or_default()];
        }
        match &keys {
            Some(keys) => content.keys = raw(keys),
            None => content.deleted = Some(true),
        }
        let edu = edu_json(Edu::DeviceListUpdate(content));
        self.sender.queue_edu_for_all(destinations, &edu, batch).await
    }
}

/// The record of an unannounced key change: user, then device (empty for cross-signing keys).
fn unannounced_key(user: &UserId, device: Option<&DeviceId>) -> Vec<u8> {
    compound_key(&[user.as_bytes(), device.map_or(&b""[..], |device| device.as_bytes())])
}

/// The change an unannounced record stands for, with the keys as they are now.
fn current_change(e2ee: &E2ee, record: &[u8]) -> Option<KeyChange> {
    let split = record.iter().position(|byte| *byte == 0xFF)?;
    let user = UserId::parse(std::str::from_utf8(&record[..split]).ok()?).ok()?;
    let device = std::str::from_utf8(&record[split + 1..]).ok()?;
    if device.is_empty() {
        let master = e2ee.cross_signing_key(&user, "master").ok()?;
        let self_signing = e2ee.cross_signing_key(&user, "self_signing").ok()?;
        return Some(KeyChange::CrossSigning { user, master, self_signing });
    }
    let keys = e2ee.device_keys(&user, &[device.to_owned()]).ok()?.remove(device);
    Some(KeyChange::Device { user, device: device.into(), keys })
}

impl KeyChangeListener for OutboundEdus {
    fn keys_changed(&self, change: KeyChange) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            // The change itself is committed, with a record that it is unannounced: if this
            // fails, the next start passes it on.
            if let Err(err) = self.key_change(change).await {
                tracing::warn!(%err, "queueing a key change for other servers");
            }
        })
    }

    fn note_unannounced(&self, batch: &mut Batch<'_>, user: &UserId, device: Option<&DeviceId>) {
        if user.server_name() == self.own {
            batch.put(cf::USERDEVICE_UNANNOUNCEDKEYS, &unannounced_key(user, device), b"");
        }
    }
}

fn edu_json(edu: Edu) -> Value {
    // ruma's EDU types hold strings, numbers and maps keyed by IDs: they always serialize.
    #[allow(clippy::expect_used)]
    serde_json::to_value(edu).expect("EDUs serialize")
}

fn raw<T>(value: &Value) -> Option<Raw<T>> {
    Raw::new(value).ok().map(Raw::cast_unchecked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edus_have_the_wire_shape_peers_expect() {
        let user = UserId::parse("@alice:here.test").unwrap();
        let mut content = DeviceListUpdateContent::new(user, "DEV".into(), UInt::from(2u32));
        content.prev_id = vec![UInt::from(1u32)];
        content.deleted = Some(true);
        let json = edu_json(Edu::DeviceListUpdate(content));
        assert_eq!(json["edu_type"], "m.device_list_update");
        assert_eq!(json["content"]["prev_id"], serde_json::json!([1]));
        assert_eq!(json["content"]["deleted"], true);
    }

    /// Outbound EDUs of `origin.test`, whose `@alice` shares a room with `@bob:peer.test`.
    async fn alice_sharing_a_room_with_peer(
        name: &str,
    ) -> (Arc<OutboundEdus>, Storage, std::path::PathBuf) {
        let (sender, dir) = crate::service::federation::sender::test_sender(name);
        let storage = sender.storage().clone();
        let own = ruma::ServerName::parse("origin.test").unwrap();
        let edus = OutboundEdus::new(storage.clone(), sender, own);
        let room = RoomId::parse("!room:origin.test").unwrap();
        let mut batch = storage.batch();
        for user in ["@alice:origin.test", "@bob:peer.test"] {
            let (room_key, user_key) = (room.as_bytes(), user.as_bytes());
            let position = 1u64.to_be_bytes();
            let key = crate::storage::compound_key(&[room_key, user_key, &position]);
            batch.put(cf::ROOMUSERPOSITION_MEMBERSHIP, &key, b"join");
            let key = crate::storage::compound_key(&[user_key, room_key]);
            batch.put(cf::USERROOMID_MEMBERSHIP, &key, b"join");
        }
        storage.commit(batch).await.unwrap();
        (edus, storage, dir)
    }

    /// The EDUs queued for `peer.test`, oldest first.
    fn queued_for_peer(storage: &Storage) -> Vec<Value> {
        let prefix = crate::storage::compound_key(&[b"peer.test", b""]);
        storage
            .scan_prefix(cf::DESTINATIONSEQ_EDU, &prefix)
            .unwrap()
            .iter()
            .map(|(_, edu)| serde_json::from_slice(edu).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn device_changes_go_to_servers_sharing_a_room_with_increasing_stream_ids() {
        let (edus, storage, dir) = alice_sharing_a_room_with_peer("device-lists").await;

        let alice = UserId::parse("@alice:origin.test").unwrap();
        let keys = serde_json::json!({"user_id": alice, "device_id": "DEV", "keys": {}});
        let device = || OwnedDeviceId::from("DEV");
        let user = alice.clone();
        edus.keys_changed(KeyChange::Device { user, device: device(), keys: Some(keys) }).await;
        let user = alice.clone();
        edus.keys_changed(KeyChange::Device { user, device: device(), keys: None }).await;
        assert_eq!(edus.device_list_stream_id(&alice).unwrap(), 2);

        let queued = queued_for_peer(&storage);
        assert_eq!(queued.len(), 2, "{queued:?}");
        assert_eq!(queued[0]["content"]["stream_id"], 1);
        assert!(queued[0]["content"].get("prev_id").is_none());
        assert_eq!(queued[0]["content"]["keys"]["device_id"], "DEV");
        assert_eq!(queued[1]["content"]["stream_id"], 2);
        assert_eq!(queued[1]["content"]["prev_id"], serde_json::json!([1]));
        assert_eq!(queued[1]["content"]["deleted"], true);
        storage.close_for_test(edus, &dir);
    }

    /// Forwards the record of unannounced changes to the real listener, but dies before
    /// passing any change on: the server stopping between the commit and the queueing.
    struct DiesBeforeAnnouncing(Arc<OutboundEdus>);

    impl KeyChangeListener for DiesBeforeAnnouncing {
        fn keys_changed(&self, _: KeyChange) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            Box::pin(async {})
        }

        fn note_unannounced(
            &self,
            batch: &mut Batch<'_>,
            user: &UserId,
            device: Option<&DeviceId>,
        ) {
            self.0.note_unannounced(batch, user, device);
        }
    }

    #[tokio::test]
    async fn a_key_change_committed_but_never_queued_is_passed_on_at_the_next_start() {
        let (edus, storage, dir) = alice_sharing_a_room_with_peer("unannounced").await;
        let queued_for_peer = || queued_for_peer(&storage).len();

        let stream = Arc::new(crate::service::rooms::stream::StreamPositions::starting_at(0));
        let e2ee = E2ee::new(storage.clone(), stream)
            .with_listener(Arc::new(DiesBeforeAnnouncing(edus.clone())));
        let alice = UserId::parse("@alice:origin.test").unwrap();
        let keys = serde_json::json!({"user_id": alice, "device_id": "DEV", "keys": {"k": "v"}});
        e2ee.upload(&alice, "DEV".into(), Some(keys), vec![], vec![]).await.unwrap();
        assert_eq!(queued_for_peer(), 0, "the change was committed, never queued");

        edus.announce_unannounced(&e2ee).await;
        assert_eq!(queued_for_peer(), 1, "the next start queues it");
        assert_eq!(edus.device_list_stream_id(&alice).unwrap(), 1);
        edus.announce_unannounced(&e2ee).await;
        assert_eq!(queued_for_peer(), 1, "and clears its record in the same write");
        storage.close_for_test((edus, e2ee), &dir);
    }
}
