//! Handing out entry keys as contracts say (the decisions are `key_scope`'s; this carries
//! them out through matrix-sdk):
//! - a live entry: a fresh Megolm session, withheld from the devices of members whose
//!   contract does not cover the entry (they are blacklisted for that one send);
//! - a grant: an MSC4268 key bundle of the sessions the contract covers, built here instead of
//!   by matrix-sdk's invite (which bundles every key of the room), sent to the grantee's
//!   cross-signed devices before the invitation. A standard matrix-sdk client imports it on
//!   joining, as it would the SDK's own bundle.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use matrix_sdk::{
    Room, RoomMemberships,
    deserialized_responses::{TimelineEvent, TimelineEventKind},
    encryption::{LocalTrust, identities::Device},
    ruma::{OwnedEventId, OwnedTransactionId, serde::Raw},
};
use matrix_sdk_base::crypto::{
    CollectStrategy, decrypt_room_key_export,
    types::{
        events::room_key_bundle::RoomKeyBundleContent,
        room_history::{HistoricRoomKey, RoomKeyBundle},
    },
};
use medrix_records::{DataClass, ENTRY_EVENT_TYPE, Entry, UserId};
use rand::Rng;
use serde_json::Value;

use crate::client::MedrixClient;
use crate::entries::{clinical_time, room_history};
use crate::error::{ClientError, Result};
use crate::key_scope::{KeyScope, SessionUse};
use crate::record::executor_of;

/// The event type of an MSC4268 key bundle announcement (a to-device message).
const KEY_BUNDLE_EVENT_TYPE: &str = "m.room_key_bundle";

/// An entry's content on its way, with what decides who may read it.
pub(crate) struct OutgoingEntry {
    /// `org.medrix.entry`, or `m.room.message` for a device's alert notice.
    pub event_type: &'static str,
    pub class: DataClass,
    pub clinical_time_ms: Option<i64>,
    pub content: Value,
    pub txn: OwnedTransactionId,
}

/// The members of a class room who may receive its keys (joined or invited, not the sender,
/// not the executor, which has no devices), with their devices as just fetched.
pub(crate) struct RoomRecipients {
    members: Vec<(UserId, Vec<Device>)>,
}

impl MedrixClient {
    /// Who is in `room` to receive keys, with a fresh list of each one's devices (a device
    /// added since the last sync must not slip past the choice). Devices left blacklisted by
    /// an earlier run cut short are restored: only this module blacklists, and only for one
    /// send.
    pub(crate) async fn room_recipients(
        &self,
        room: &Room,
        patient: &UserId,
    ) -> Result<RoomRecipients> {
        let executor = executor_of(patient);
        let mut members = Vec::new();
        for member in room.members(RoomMemberships::JOIN | RoomMemberships::INVITE).await? {
            let id = member.user_id();
            if id.as_str() == self.user.as_str() || id.as_str() == executor {
                continue;
            }
            let Some(user) = UserId::parse(id.as_str()) else { continue };
            self.client.encryption().request_user_identity(id).await?;
            let devices: Vec<Device> =
                self.client.encryption().get_user_devices(id).await?.devices().collect();
            for device in &devices {
                if device.local_trust_state() == LocalTrust::BlackListed {
                    set_trust(device, LocalTrust::Unset).await?;
                }
            }
            members.push((user, devices));
        }
        Ok(RoomRecipients { members })
    }

    /// Sends one entry with a Megolm session of its own, handed only to the members `scope`
    /// lets read it (and the caller's own devices). The transaction ID makes a resend of the
    /// same entry the same request.
    pub(crate) async fn send_entry(
        &self,
        room: &Room,
        recipients: &RoomRecipients,
        scope: &KeyScope<'_>,
        entry: OutgoingEntry,
    ) -> Result<OwnedEventId> {
        let OutgoingEntry { event_type, class, clinical_time_ms, content, txn } = entry;
        let withheld: Vec<&Device> = recipients
            .members
            .iter()
            .filter(|(user, _)| !scope.may_read(user, class, clinical_time_ms))
            .flat_map(|(_, devices)| devices)
            .collect();
        // A session of its own: its key opens this entry and nothing else, so whoever is
        // handed it later (a grant's bundle) is handed exactly this entry.
        room.discard_room_key().await?;
        for device in &withheld {
            set_trust(device, LocalTrust::BlackListed).await?;
        }
        let sent = room.send_raw(event_type, content).with_transaction_id(&txn).await;
        for device in &withheld {
            set_trust(device, LocalTrust::Unset).await?;
        }
        Ok(sent?.response.event_id)
    }

    /// Hands `grantee` the keys of what `rooms` hold that `scope` lets them read, one MSC4268
    /// bundle per room that has any, to their cross-signed devices; returns the rooms whose
    /// bundle was delivered. Sent before the invitation: matrix-sdk imports a bundle when it
    /// joins after an invitation from the bundle's sender.
    pub(crate) async fn hand_over_history(
        &self,
        rooms: &[(DataClass, Room)],
        grantee: &UserId,
        scope: &KeyScope<'_>,
    ) -> Result<usize> {
        let mut wanted: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (class, room) in rooms {
            let uses: Vec<SessionUse> = room_history(room)
                .await?
                .iter()
                .filter_map(|event| session_use(*class, event))
                .collect();
            let sessions = scope.sessions_for(grantee, &uses);
            if !sessions.is_empty() {
                wanted.insert(room.room_id().to_string(), sessions);
            }
        }
        if wanted.is_empty() {
            return Ok(0);
        }
        let bundles = self.export_bundles(&wanted).await?;
        let recipient = crate::grants::sdk_user(grantee)?;
        self.client.encryption().request_user_identity(&recipient).await?;
        let devices = self.client.encryption().get_user_devices(&recipient).await?;
        let devices: Vec<Device> = devices.devices().collect();
        let mut delivered = 0;
        for (room_id, bundle) in bundles {
            let json = serde_json::to_vec(&bundle)
                .map_err(|err| ClientError::Sdk(format!("a key bundle: {err}")))?;
            let file = self.client.upload_encrypted_file(&mut Cursor::new(json)).await?;
            let content = RoomKeyBundleContent { room_id, file };
            let raw = Raw::new(&content)
                .map_err(|err| ClientError::Sdk(format!("a key bundle: {err}")))?
                .cast_unchecked();
            // Only the grantee's devices their identity signed, as matrix-sdk's own history
            // sharing requires: a device the server slipped in gets nothing.
            let failed = self
                .client
                .encryption()
                .encrypt_and_send_raw_to_device(
                    devices.iter().collect(),
                    KEY_BUNDLE_EVENT_TYPE,
                    raw,
                    CollectStrategy::IdentityBasedStrategy,
                )
                .await?;
            if failed.len() < devices.len() {
                delivered += 1;
            }
        }
        Ok(delivered)
    }

    /// The chosen sessions as one key bundle per room. matrix-sdk exports keys only to a
    /// passphrase-encrypted file: written in the profile directory under a random passphrase
    /// held in memory, read back and removed at once.
    async fn export_bundles(
        &self,
        wanted: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<BTreeMap<matrix_sdk::ruma::OwnedRoomId, RoomKeyBundle>> {
        let passphrase: String =
            rand::rng().sample_iter(rand::distr::Alphanumeric).take(32).map(char::from).collect();
        let path = self.profile.dir().join(format!("handover-{}.keys", &passphrase[..8]));
        let exported = self
            .client
            .encryption()
            .export_room_keys(path.clone(), &passphrase, |session| {
                wanted
                    .get(session.room_id().as_str())
                    .is_some_and(|sessions| sessions.contains(session.session_id()))
            })
            .await;
        let text = exported.map_err(ClientError::from).and_then(|()| {
            std::fs::read(&path).map_err(|error| ClientError::file(path.clone(), error))
        });
        let _ = std::fs::remove_file(&path);
        let keys = decrypt_room_key_export(Cursor::new(text?), &passphrase)
            .map_err(|err| ClientError::Sdk(format!("reading the exported keys: {err}")))?;
        let mut bundles: BTreeMap<_, RoomKeyBundle> = BTreeMap::new();
        for key in keys {
            bundles
                .entry(key.room_id.clone())
                .or_default()
                .room_keys
                .push(HistoricRoomKey::from(key));
        }
        Ok(bundles)
    }
}

/// An event the caller decrypted, as the session it used and what it opens: an entry with its
/// clinical time, or (any other event) something only an unbounded data period covers. Events
/// it could not decrypt are left out: it has no key of theirs to hand over.
fn session_use(class: DataClass, event: &TimelineEvent) -> Option<SessionUse> {
    let TimelineEventKind::Decrypted(decrypted) = &event.kind else { return None };
    let session_id = decrypted.encryption_info.session_id()?.to_owned();
    let json: Value = serde_json::from_str(decrypted.event.json().get()).ok()?;
    let clinical_time_ms = (json["type"] == ENTRY_EVENT_TYPE)
        .then(|| Entry::from_content(&json["content"]).ok())
        .flatten()
        .and_then(|entry| clinical_time(&entry));
    Some(SessionUse { session_id, class, clinical_time_ms })
}

/// Now, in ms since the epoch: the moment a key is handed out is the moment contracts are
/// evaluated at.
pub(crate) fn now_ms() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

async fn set_trust(device: &Device, trust: LocalTrust) -> Result<()> {
    device
        .set_local_trust(trust)
        .await
        .map_err(|err| ClientError::Sdk(format!("device trust of {}: {err}", device.device_id())))
}
