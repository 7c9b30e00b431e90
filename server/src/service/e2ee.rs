//! End-to-end encryption support: device keys, one-time and fallback keys, cross-signing
//! keys and signatures, the device-list change stream and to-device messages. The server
//! stores and routes keys; it never sees a private key or a message's plaintext.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc};

use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Map, Value, json};

use crate::{
    service::{
        key_signatures::{self, Refusal, SignedKind, SignerKeys, cross_signing_public_key},
        rooms::stream::StreamPositions,
    },
    storage::{Batch, Storage, StorageError, catalogue as cf, compound_key, to_json_bytes},
};

/// How much may wait for one device; past either bound, senders are refused. Bytes as well
/// as messages: ten thousand messages of 64 KiB each would be 640 MB for one device (and
/// one sync response).
#[derive(Debug, Clone, Copy)]
pub struct ToDeviceLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
}

impl From<&crate::config::Limits> for ToDeviceLimits {
    fn from(limits: &crate::config::Limits) -> Self {
        Self {
            max_messages: limits.max_pending_to_device_messages,
            max_bytes: limits.max_pending_to_device_bytes,
        }
    }
}

/// The most to-device messages one sync delivers to a device (Synapse's figure too).
const TO_DEVICE_PAGE_MESSAGES: usize = 100;
/// The most bytes of to-device messages one sync delivers, past the page's first message.
const TO_DEVICE_PAGE_BYTES: usize = 1 << 20;

/// A place in a device's to-device queue: the stream position of the request that queued a
/// message and the message's index within it. Marks order like the queue's keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ToDeviceMark {
    pub position: u64,
    pub index: u32,
}

impl ToDeviceMark {
    /// Every message queued at or before stream position `position`.
    pub fn through_position(position: u64) -> Self {
        Self { position, index: u32::MAX }
    }

    fn key_suffix(self) -> [u8; 12] {
        let mut suffix = [0; 12];
        suffix[..8].copy_from_slice(&self.position.to_be_bytes());
        suffix[8..].copy_from_slice(&self.index.to_be_bytes());
        suffix
    }

    fn from_key_suffix(suffix: &[u8]) -> Option<Self> {
        let position = u64::from_be_bytes(suffix.get(..8)?.try_into().ok()?);
        let index = u32::from_be_bytes(suffix.get(8..12)?.try_into().ok()?);
        Some(Self { position, index })
    }
}

/// One sync's share of a device's to-device queue.
#[derive(Debug, Default)]
pub struct ToDevicePage {
    pub messages: Vec<Value>,
    /// The last message in `messages`.
    pub last: Option<ToDeviceMark>,
    /// Set when messages remain up to the sync's position: the page ended after this mark.
    pub more_after: Option<ToDeviceMark>,
}

#[derive(Clone)]
pub struct E2ee {
    storage: Storage,
    stream: Arc<StreamPositions>,
    listener: Option<Arc<dyn KeyChangeListener>>,
    to_device_limits: ToDeviceLimits,
}

/// What became of one key in a signature upload.
#[derive(Debug)]
pub enum SignatureOutcome {
    /// The uploader's new signatures are stored (or were already).
    Added,
    /// No such key of the target user.
    UnknownKey,
    /// Nothing was stored, for this reason.
    Refused(Refusal),
}

/// A stored key that signatures can be added to: where it is kept, its kind, and the key.
struct SignableKey {
    family: &'static str,
    key: Vec<u8>,
    kind: SignedKind,
    stored: Value,
}

/// A committed change of a local user's public keys, as other servers need to hear of it.
pub enum KeyChange {
    /// A device's keys were uploaded or signed (`Some`), or the device was removed (`None`).
    Device { user: OwnedUserId, device: OwnedDeviceId, keys: Option<Value> },
    /// The user's public cross-signing keys (master, self-signing) changed.
    CrossSigning { user: OwnedUserId, master: Option<Value>, self_signing: Option<Value> },
}

/// Told of every [`KeyChange`] once it is durable (federation forwards them); keeps this
/// service free of any dependency on the federation side.
pub trait KeyChangeListener: Send + Sync {
    fn keys_changed(&self, change: KeyChange) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;

    /// Records, in the write that commits a change of `user`'s keys (of `device`, or their
    /// cross-signing keys if `None`), that the change is still to be passed on; the listener
    /// clears the record when it has, so a crash in between loses nothing.
    fn note_unannounced(&self, batch: &mut Batch<'_>, user: &UserId, device: Option<&DeviceId>);
}

fn corrupt(what: &str, err: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {err}"))
}

impl E2ee {
    pub fn new(storage: Storage, stream: Arc<StreamPositions>) -> Self {
        let to_device_limits = ToDeviceLimits::from(&crate::config::Limits::default());
        Self { storage, stream, listener: None, to_device_limits }
    }

    /// Bounds each device's to-device queue by `limits`.
    pub fn with_to_device_limits(self, to_device_limits: ToDeviceLimits) -> Self {
        Self { to_device_limits, ..self }
    }

    /// Tells `listener` of every change of local users' public keys from now on.
    pub fn with_listener(self, listener: Arc<dyn KeyChangeListener>) -> Self {
        Self { listener: Some(listener), ..self }
    }

    fn note_unannounced(&self, batch: &mut Batch<'_>, user: &UserId, device: Option<&DeviceId>) {
        if let Some(listener) = &self.listener {
            listener.note_unannounced(batch, user, device);
        }
    }

    async fn tell(&self, change: KeyChange) {
        if let Some(listener) = &self.listener {
            listener.keys_changed(change).await;
        }
    }

    /// Tells the listener of the user's current public cross-signing keys.
    async fn tell_cross_signing(&self, user: &UserId) -> Result<(), StorageError> {
        let master = self.cross_signing_key(user, "master")?;
        let self_signing = self.cross_signing_key(user, "self_signing")?;
        self.tell(KeyChange::CrossSigning { user: user.to_owned(), master, self_signing }).await;
        Ok(())
    }

    /// Records that a remote user's keys changed (their server told us), so local clients
    /// sharing a room with them re-query the keys.
    pub async fn mark_keys_changed(&self, user: &UserId) -> Result<(), StorageError> {
        self.commit_with_change(self.storage.batch(), Some(user)).await
    }

    /// Stores what a device uploads; returns its one-time key counts afterwards.
    pub async fn upload(
        &self,
        user: &UserId,
        device: &DeviceId,
        device_keys: Option<Value>,
        one_time_keys: Vec<(String, Value)>,
        fallback_keys: Vec<(String, Value)>,
    ) -> Result<BTreeMap<String, u64>, StorageError> {
        let mut batch = self.storage.batch();
        let device_key = compound_key(&[user.as_bytes(), device.as_bytes()]);
        let mut changed = None;
        if let Some(keys) = device_keys {
            let unchanged =
                self.storage.get(cf::USERDEVICEID_DEVICEKEYS, &device_key)?.is_some_and(|old| {
                    serde_json::from_slice::<Value>(&old).ok().as_ref() == Some(&keys)
                });
            if !unchanged {
                batch.put(cf::USERDEVICEID_DEVICEKEYS, &device_key, &to_json_bytes(&keys));
                self.note_unannounced(&mut batch, user, Some(device));
                changed = Some(keys);
            }
        }
        for (key_id, key) in one_time_keys {
            let (algorithm, _) = key_id.split_once(':').unwrap_or((&key_id, ""));
            batch.put(
                cf::USERDEVICEALGOKEY_ONETIMEKEY,
                &compound_key(&[
                    user.as_bytes(),
                    device.as_bytes(),
                    algorithm.as_bytes(),
                    key_id.as_bytes(),
                ]),
                &to_json_bytes(&key),
            );
        }
        for (key_id, key) in fallback_keys {
            let (algorithm, _) = key_id.split_once(':').unwrap_or((&key_id, ""));
            batch.put(
                cf::USERDEVICEALGO_FALLBACKKEY,
                &compound_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes()]),
                &to_json_bytes(&json!({"key_id": key_id, "key": key, "used": false})),
            );
        }
        self.commit_with_change(batch, changed.is_some().then_some(user)).await?;
        if let Some(keys) = changed {
            let (user, device) = (user.to_owned(), device.to_owned());
            self.tell(KeyChange::Device { user, device, keys: Some(keys) }).await;
        }
        self.one_time_key_counts(user, device)
    }

    /// Commits `batch`, recording a device-list change of `changed_user` in the stream.
    async fn commit_with_change(
        &self,
        mut batch: Batch<'_>,
        changed_user: Option<&UserId>,
    ) -> Result<(), StorageError> {
        let Some(user) = changed_user else { return self.storage.commit(batch).await };
        let reservation = self.stream.allocate().await?;
        let position = reservation.position();
        batch.put(cf::POSITION_KEYCHANGEUSER, &position.to_be_bytes(), user.as_bytes());
        reservation.commit(&self.storage, batch).await
    }

    pub fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<BTreeMap<String, u64>, StorageError> {
        let prefix = compound_key(&[user.as_bytes(), device.as_bytes(), b""]);
        let mut counts = BTreeMap::new();
        for (key, _) in self.storage.scan_prefix(cf::USERDEVICEALGOKEY_ONETIMEKEY, &prefix)? {
            let rest = &key[prefix.len()..];
            let algorithm = rest.split(|b| *b == 0xFF).next().unwrap_or_default();
            *counts.entry(String::from_utf8_lossy(algorithm).into_owned()).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// Algorithms of the device's fallback keys that no one has claimed yet.
    pub fn unused_fallback_key_types(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>, StorageError> {
        let prefix = compound_key(&[user.as_bytes(), device.as_bytes(), b""]);
        let mut types = Vec::new();
        for (key, value) in self.storage.scan_prefix(cf::USERDEVICEALGO_FALLBACKKEY, &prefix)? {
            let entry: Value =
                serde_json::from_slice(&value).map_err(|e| corrupt("fallback key", e))?;
            if entry["used"] != json!(true) {
                types.push(String::from_utf8_lossy(&key[prefix.len()..]).into_owned());
            }
        }
        Ok(types)
    }

    /// The device keys of a user's devices (all of them if `devices` is empty).
    pub fn device_keys(
        &self,
        user: &UserId,
        devices: &[String],
    ) -> Result<Map<String, Value>, StorageError> {
        let prefix = compound_key(&[user.as_bytes(), b""]);
        let mut out = Map::new();
        for (key, value) in self.storage.scan_prefix(cf::USERDEVICEID_DEVICEKEYS, &prefix)? {
            let device = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if devices.is_empty() || devices.contains(&device) {
                out.insert(
                    device,
                    serde_json::from_slice(&value).map_err(|e| corrupt("device keys", e))?,
                );
            }
        }
        Ok(out)
    }

    /// One of the user's cross-signing keys (`master`, `self_signing`, `user_signing`).
    pub fn cross_signing_key(
        &self,
        user: &UserId,
        kind: &str,
    ) -> Result<Option<Value>, StorageError> {
        self.storage
            .get(
                cf::USERKEYTYPE_CROSSSIGNINGKEY,
                &compound_key(&[user.as_bytes(), kind.as_bytes()]),
            )?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| corrupt("cross-signing key", e))
            })
            .transpose()
    }

    /// Stores cross-signing keys (any of master, self_signing, user_signing).
    pub async fn set_cross_signing_keys(
        &self,
        user: &UserId,
        keys: Vec<(&str, Value)>,
    ) -> Result<(), StorageError> {
        let mut batch = self.storage.batch();
        let public = keys.iter().any(|(kind, _)| *kind != "user_signing");
        if public {
            self.note_unannounced(&mut batch, user, None);
        }
        for (kind, key) in keys {
            batch.put(
                cf::USERKEYTYPE_CROSSSIGNINGKEY,
                &compound_key(&[user.as_bytes(), kind.as_bytes()]),
                &to_json_bytes(&key),
            );
        }
        self.commit_with_change(batch, Some(user)).await?;
        if public {
            self.tell_cross_signing(user).await?;
        }
        Ok(())
    }

    /// Adds `signer`'s signatures in `signed` to a device key or cross-signing key of
    /// `target`, identified by its device ID or public key, if they may sign it and verify
    /// (see [`key_signatures`]). Others' signatures in the upload are ignored.
    pub async fn add_signatures(
        &self,
        signer: &UserId,
        target: &UserId,
        key_id: &str,
        signed: &Value,
    ) -> Result<SignatureOutcome, StorageError> {
        let Some(SignableKey { family, key, kind, mut stored }) =
            self.signable_key(target, key_id)?
        else {
            return Ok(SignatureOutcome::UnknownKey);
        };
        let signer_keys = self.signer_keys(signer)?;
        let added = match key_signatures::new_signatures(
            signer,
            &signer_keys,
            target,
            kind,
            &stored,
            signed,
        ) {
            Ok(added) => added,
            Err(refusal) => return Ok(SignatureOutcome::Refused(refusal)),
        };
        if added.is_empty() {
            return Ok(SignatureOutcome::Added);
        }
        for (signature_key_id, signature) in added {
            stored["signatures"][signer.as_str()][signature_key_id] = signature;
        }
        let mut batch = self.storage.batch();
        batch.put(family, &key, &to_json_bytes(&stored));
        let device = OwnedDeviceId::from(key_id);
        let is_device = kind == SignedKind::Device;
        self.note_unannounced(&mut batch, target, is_device.then_some(&*device));
        self.commit_with_change(batch, Some(target)).await?;
        if is_device {
            let user = target.to_owned();
            self.tell(KeyChange::Device { user, device, keys: Some(stored) }).await;
        } else {
            self.tell_cross_signing(target).await?;
        }
        Ok(SignatureOutcome::Added)
    }

    /// The stored key of `target` a signature upload names.
    fn signable_key(
        &self,
        target: &UserId,
        key_id: &str,
    ) -> Result<Option<SignableKey>, StorageError> {
        let device_key = compound_key(&[target.as_bytes(), key_id.as_bytes()]);
        if let Some(bytes) = self.storage.get(cf::USERDEVICEID_DEVICEKEYS, &device_key)? {
            let stored = serde_json::from_slice(&bytes).map_err(|e| corrupt("device keys", e))?;
            let family = cf::USERDEVICEID_DEVICEKEYS;
            return Ok(Some(SignableKey {
                family,
                key: device_key,
                kind: SignedKind::Device,
                stored,
            }));
        }
        for (name, kind) in [
            ("master", SignedKind::Master),
            ("self_signing", SignedKind::SelfSigning),
            ("user_signing", SignedKind::UserSigning),
        ] {
            if let Some(stored) = self.cross_signing_key(target, name)?
                && cross_signing_public_key(&stored).as_deref() == Some(key_id)
            {
                let key = compound_key(&[target.as_bytes(), name.as_bytes()]);
                let family = cf::USERKEYTYPE_CROSSSIGNINGKEY;
                return Ok(Some(SignableKey { family, key, kind, stored }));
            }
        }
        Ok(None)
    }

    /// The public keys `signer` signs with: their devices' and their cross-signing keys.
    fn signer_keys(&self, signer: &UserId) -> Result<SignerKeys, StorageError> {
        let mut keys = SignerKeys::default();
        for (device, device_keys) in self.device_keys(signer, &[])? {
            if let Some(public) = device_keys["keys"][format!("ed25519:{device}")].as_str() {
                keys.devices.insert(device, public.to_owned());
            }
        }
        let public = |kind| -> Result<Option<String>, StorageError> {
            Ok(self.cross_signing_key(signer, kind)?.as_ref().and_then(cross_signing_public_key))
        };
        keys.master = public("master")?;
        keys.self_signing = public("self_signing")?;
        keys.user_signing = public("user_signing")?;
        Ok(keys)
    }

    /// Claims one key of `algorithm` for each requested device: a one-time key (removed), or
    /// else the fallback key (kept, marked used).
    pub async fn claim(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<(String, Value)>, StorageError> {
        let prefix = compound_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes(), b""]);
        if let Some((key, value)) =
            self.storage.scan_prefix(cf::USERDEVICEALGOKEY_ONETIMEKEY, &prefix)?.into_iter().next()
        {
            let mut batch = self.storage.batch();
            batch.delete(cf::USERDEVICEALGOKEY_ONETIMEKEY, &key);
            self.storage.commit(batch).await?;
            let key_id = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            return Ok(Some((
                key_id,
                serde_json::from_slice(&value).map_err(|e| corrupt("one-time key", e))?,
            )));
        }
        let fallback_key =
            compound_key(&[user.as_bytes(), device.as_bytes(), algorithm.as_bytes()]);
        let Some(bytes) = self.storage.get(cf::USERDEVICEALGO_FALLBACKKEY, &fallback_key)? else {
            return Ok(None);
        };
        let mut entry: Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt("fallback key", e))?;
        let claimed =
            (entry["key_id"].as_str().unwrap_or_default().to_owned(), entry["key"].clone());
        if entry["used"] != json!(true) {
            entry["used"] = json!(true);
            let mut batch = self.storage.batch();
            batch.put(cf::USERDEVICEALGO_FALLBACKKEY, &fallback_key, &to_json_bytes(&entry));
            self.storage.commit(batch).await?;
        }
        Ok(Some(claimed))
    }

    /// Users whose keys changed in `(since, upto]`.
    pub fn key_changes(&self, since: u64, upto: u64) -> Result<Vec<String>, StorageError> {
        let mut users = Vec::new();
        for (_, user) in self.storage.scan_range(
            cf::POSITION_KEYCHANGEUSER,
            &(since + 1).to_be_bytes(),
            &upto.to_be_bytes(),
            100_000,
        )? {
            let user = String::from_utf8_lossy(&user).into_owned();
            if !users.contains(&user) {
                users.push(user);
            }
        }
        Ok(users)
    }

    /// Forgets a removed device's keys and pending messages, and tells its user's contacts.
    pub async fn remove_device(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<(), StorageError> {
        self.commit_with_removed_devices(self.storage.batch(), user, &[device.to_owned()]).await
    }

    /// Commits `batch` (the account side of logging devices out, say) with the forgetting of
    /// `devices`' keys and pending messages, in one write, then tells the user's contacts.
    pub async fn commit_with_removed_devices(
        &self,
        mut batch: Batch<'_>,
        user: &UserId,
        devices: &[OwnedDeviceId],
    ) -> Result<(), StorageError> {
        for device in devices {
            batch.delete(
                cf::USERDEVICEID_DEVICEKEYS,
                &compound_key(&[user.as_bytes(), device.as_bytes()]),
            );
            let prefix = compound_key(&[user.as_bytes(), device.as_bytes(), b""]);
            for family in [
                cf::USERDEVICEALGOKEY_ONETIMEKEY,
                cf::USERDEVICEALGO_FALLBACKKEY,
                cf::USERDEVICEPOSITION_TODEVICE,
            ] {
                for (key, _) in self.storage.scan_prefix(family, &prefix)? {
                    batch.delete(family, &key);
                }
            }
            self.note_unannounced(&mut batch, user, Some(device));
        }
        self.commit_with_change(batch, (!devices.is_empty()).then_some(user)).await?;
        for device in devices {
            let (user, device) = (user.to_owned(), device.clone());
            self.tell(KeyChange::Device { user, device, keys: None }).await;
        }
        Ok(())
    }

    /// Queues to-device messages; each is `(user, device, message JSON)`.
    /// `txn` (a local sender's idempotency key) is recorded in the same write, so a retry
    /// after a crash finds either both or neither. Messages from other servers have none.
    /// Whether a to-device send with this transaction key was already taken (a retry).
    pub fn to_device_txn_seen(&self, txn: &[u8]) -> Result<bool, StorageError> {
        Ok(self.storage.get(cf::TXNID_EVENTID, txn)?.is_some())
    }

    pub async fn queue_to_device(
        &self,
        messages: Vec<(String, String, Value)>,
        txn: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        let reservation = self.stream.allocate().await?;
        let position = reservation.position();
        let mut batch = self.storage.batch();
        if let Some(txn) = txn {
            batch.put(cf::TXNID_EVENTID, txn, b"");
        }
        for (index, (user, device, message)) in messages.iter().enumerate() {
            // One position per request; the index keeps messages of one request apart.
            let suffix = ToDeviceMark { position, index: index as u32 }.key_suffix();
            batch.put(
                cf::USERDEVICEPOSITION_TODEVICE,
                &compound_key(&[user.as_bytes(), device.as_bytes(), &suffix]),
                &to_json_bytes(message),
            );
        }
        reservation.commit(&self.storage, batch).await
    }

    /// The device's next page of pending to-device messages up to stream position `upto`,
    /// after dropping those the client acknowledged (everything at or before `acknowledged`).
    /// A page holds at most `TO_DEVICE_PAGE_MESSAGES` messages and, past its first message,
    /// `TO_DEVICE_PAGE_BYTES`: a device that was offline while thousands queued up gets them
    /// over several syncs instead of one response of unbounded size.
    pub async fn take_to_device(
        &self,
        user: &UserId,
        device: &DeviceId,
        acknowledged: Option<ToDeviceMark>,
        upto: u64,
    ) -> Result<ToDevicePage, StorageError> {
        let prefix = compound_key(&[user.as_bytes(), device.as_bytes(), b""]);
        let rows = self.storage.scan_prefix(cf::USERDEVICEPOSITION_TODEVICE, &prefix)?;
        let mut dropped = self.storage.batch();
        let mut any_dropped = false;
        let mut page = ToDevicePage::default();
        let mut page_bytes = 0;
        for (key, value) in rows {
            let mark = ToDeviceMark::from_key_suffix(&key[prefix.len()..])
                .ok_or_else(|| corrupt("to-device key", "too short"))?;
            if acknowledged.is_some_and(|acknowledged| mark <= acknowledged) {
                dropped.delete(cf::USERDEVICEPOSITION_TODEVICE, &key);
                any_dropped = true;
                continue;
            }
            if mark.position > upto {
                continue;
            }
            let full = page.messages.len() >= TO_DEVICE_PAGE_MESSAGES
                || (!page.messages.is_empty() && page_bytes + value.len() > TO_DEVICE_PAGE_BYTES);
            if full {
                page.more_after = page.last;
                break;
            }
            page_bytes += value.len();
            page.messages
                .push(serde_json::from_slice(&value).map_err(|e| corrupt("to-device message", e))?);
            page.last = Some(mark);
        }
        if any_dropped {
            self.storage.commit(dropped).await?;
        }
        Ok(page)
    }

    /// Whether one more message of `bytes` (its JSON) fits in the device's queue.
    pub fn to_device_fits(
        &self,
        user: &str,
        device: &str,
        bytes: usize,
    ) -> Result<bool, StorageError> {
        let prefix = compound_key(&[user.as_bytes(), device.as_bytes(), b""]);
        let rows = self.storage.scan_prefix(cf::USERDEVICEPOSITION_TODEVICE, &prefix)?;
        let waiting: usize = rows.iter().map(|(_, value)| value.len()).sum();
        let limits = &self.to_device_limits;
        Ok(rows.len() < limits.max_messages && waiting + bytes <= limits.max_bytes)
    }
}
