//! The custodian (spec/contracts-enforcement.md, "Break-glass keys"): an account of the
//! patient's server, run beside it, that a patient may name in a standing emergency contract.
//! The patient's client brings it into the emergency classes' rooms with their keys, and
//! every later entry of those classes is shared with it (the contract covers it, read-only).
//! When a clinician breaks the glass, the executor leaves the rooms the custodian holds to
//! the custodian, which hands the clinician the keys the break-glass contract covers and
//! invites them: a standard matrix-sdk client imports keys sent before an invitation from
//! their sender (MSC4268), so the clinician decrypts while the patient's devices are
//! offline. Each release is an invitation the custodian signs and a notice to the patient.

use std::time::Duration;

use matrix_sdk::{Room, RoomState, config::SyncSettings};
use medrix_records::{
    DataClass, Grant, Grantee, RECORD_EVENT_TYPE, RECORD_STATE_KEY, RoomId, Status, UserId,
};
use serde_json::json;

use crate::client::MedrixClient;
use crate::error::Result;
use crate::grants::{invite_with_reason, is_member, sdk_user};
use crate::key_scope::KeyScope;
use crate::keys::now_ms;
use crate::record::{Record, room_id, state_content};

/// The content key of the notice a release posts in the record space.
pub const KEY_RELEASE_NOTICE_KEY: &str = "org.medrix.key_release_notice";

/// One release of keys to a clinician who broke the glass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRelease {
    /// Whose record.
    pub patient: UserId,
    /// The clinician.
    pub clinician: UserId,
    /// The break-glass contract the release rests on.
    pub contract_id: String,
    /// The class rooms the clinician was invited to, with their keys.
    pub rooms: Vec<RoomId>,
    /// How many of those rooms had keys to hand over.
    pub rooms_with_keys: usize,
}

impl MedrixClient {
    /// One round of the custodian's work: a sync that waits up to `wait` for news, the
    /// invitations into records accepted, then the keys released for every break-glass in
    /// force that has rooms still to open. Idempotent: a clinician already invited to a room
    /// (or in it) is not invited again.
    pub async fn custodian_round(&self, wait: Duration) -> Result<Vec<KeyRelease>> {
        self.client.sync_once(SyncSettings::default().timeout(wait)).await?;
        self.accept_custody().await?;
        let now = now_ms();
        let mut releases = Vec::new();
        for record in self.joined_records().await {
            let grants = self.grants(&record).await?;
            for grant in break_glass_in_custody(&grants, &self.user, now) {
                if let Some(release) = self.release(&record, grant, now).await? {
                    releases.push(release);
                }
            }
        }
        Ok(releases)
    }

    /// Joins the invitations of users of the custodian's own server (the patient's server
    /// admits a custodian only to records whose standing contract names it), and leaves any
    /// joined room that turns out not to be part of a record.
    async fn accept_custody(&self) -> Result<()> {
        let own_server = self.user.server_name();
        let mut joined = false;
        for room in self.client.invited_rooms() {
            let Ok(invite) = room.invite_details().await else { continue };
            if invite.inviter_id.server_name().as_str() != own_server.as_str() {
                continue;
            }
            // Joining after the patient's invitation imports the keys sent with it.
            self.client.join_room_by_id(room.room_id()).await?;
            joined = true;
        }
        if joined {
            self.sync().await?;
            for room in self.client.joined_rooms() {
                if state_content(&room, RECORD_EVENT_TYPE, RECORD_STATE_KEY).await.is_none() {
                    room.leave().await?;
                }
            }
        }
        Ok(())
    }

    /// Opens to the clinician of `grant` the rooms of its classes the custodian holds and
    /// the clinician is not yet in: their keys (what the break-glass contract covers), then
    /// the invitation; then a notice to the patient. `None` when nothing was left to open.
    async fn release(
        &self,
        record: &Record,
        grant: &Grant,
        now: u64,
    ) -> Result<Option<KeyRelease>> {
        let Grantee::User(clinician) = &grant.grantee else { return Ok(None) };
        let invitee = sdk_user(clinician)?;
        let mut to_open: Vec<(DataClass, Room)> = Vec::new();
        for (class, id) in record.rooms() {
            if !grant.classes.contains(&class) {
                continue;
            }
            let Some(room) = self.client.get_room(&crate::record::sdk_room_id(id)?) else {
                continue;
            };
            if room.state() == RoomState::Joined && !is_member(&room, &invitee).await? {
                to_open.push((class, room));
            }
        }
        if to_open.is_empty() {
            return Ok(None);
        }
        let scoped = [grant.clone()];
        let scope = KeyScope::new(record.patient(), &scoped, now);
        let rooms_with_keys = self.hand_over_history(&to_open, clinician, &scope).await?;
        let reason =
            format!("break-glass: keys released by the custodian under {}", grant.contract_id);
        let mut rooms = Vec::new();
        for (_, room) in &to_open {
            invite_with_reason(room, &invitee, Some(&reason)).await?;
            rooms.push(room_id(room.room_id()));
        }
        let classes: Vec<&str> = grant.classes.iter().map(|class| class.as_str()).collect();
        let notice = json!({
            "msgtype": "m.notice",
            "body": format!(
                "Break-glass: your custodian {} gave {clinician} the keys of your {} \
                 under contract {}.",
                self.user,
                classes.join(", "),
                grant.contract_id,
            ),
            KEY_RELEASE_NOTICE_KEY: {
                "contract_id": grant.contract_id,
                "clinician": clinician,
                "rooms": rooms,
                "rooms_with_keys": rooms_with_keys,
            },
        });
        record.space.send_raw("m.room.message", notice).await?;
        Ok(Some(KeyRelease {
            patient: record.patient().clone(),
            clinician: clinician.clone(),
            contract_id: grant.contract_id.to_string(),
            rooms,
            rooms_with_keys,
        }))
    }
}

/// The break-glass contracts in force at `now` that were invoked under a standing contract
/// naming `custodian`: the ones whose rooms are the custodian's to open.
fn break_glass_in_custody<'a>(
    grants: &'a [Grant],
    custodian: &UserId,
    now: u64,
) -> impl Iterator<Item = &'a Grant> {
    let custodied: Vec<&str> = grants
        .iter()
        .filter(|grant| {
            grant.is_standing_emergency()
                && grant.status == Status::Active
                && grant.custodian.as_ref() == Some(custodian)
        })
        .map(|grant| grant.contract_id.as_str())
        .collect();
    grants.iter().filter(move |grant| {
        grant.status == Status::Active
            && grant.valid.start() <= now
            && now < grant.valid.end()
            && grant
                .break_glass
                .as_ref()
                .is_some_and(|origin| custodied.contains(&origin.standing_contract.as_str()))
    })
}
