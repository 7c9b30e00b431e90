//! Who may hold a place in a patient's record. In a record's space or class room whose patient
//! is a user of this server, a join or an invite must be covered by an active consent
//! contract (`org.medrix.grant` in the record's space) for that room's class, at the moment
//! of the membership; the patient and the contract executor need none. This server is the
//! patient's, so it is the one that enforces: for its own users' memberships, and for other
//! servers' joins through it (`make_join`, `send_join`). Knocks (access requests), leaves and
//! bans pass: they give nobody access.
//!
//! The decision itself is `medrix_records::covering`, the function the clients and the audit
//! verifier also call; this module only finds its inputs in the rooms' state.

use std::collections::HashMap;

use medrix_protocol::{Pdu, StateMap};
use medrix_records::{
    Action, DataClass, Decision, GRANT_EVENT_TYPE, Grant, RECORD_EVENT_TYPE, RECORD_STATE_KEY,
    RecordRoom, RecordSpace, USER_STATE_KEY_PREFIX,
};
use ruma::{OwnedEventId, OwnedUserId, RoomId, ServerName, UserId, events::StateEventType};
use serde_json::Value;

use super::{RoomError, Rooms};
use crate::service::device_accounts;
use crate::storage::{catalogue as cf, compound_key};

/// The most standing emergency contracts of one space looked through for a custodian (one
/// per organisation the patient trusts in an emergency: a handful).
const MAX_STANDING_SCANNED: usize = 256;

/// The localpart of the contract executor, the service user that acts for contracts.
pub const EXECUTOR_LOCALPART: &str = "medrix-contracts";

/// The contract executor of the server `server`.
pub fn executor_of(server: &ServerName) -> OwnedUserId {
    UserId::parse(format!("@{EXECUTOR_LOCALPART}:{server}"))
        .unwrap_or_else(|_| unreachable!("a server name and a fixed localpart make a user ID"))
}

/// What a room is in a patient's record.
#[derive(Debug, Clone)]
pub enum RecordPlace {
    /// The room of one class of data.
    ClassRoom(RecordRoom),
    /// The record's space, where the contracts are.
    Space(RecordSpace),
}

impl RecordPlace {
    pub fn patient(&self) -> &str {
        match self {
            RecordPlace::ClassRoom(room) => room.patient.as_str(),
            RecordPlace::Space(space) => space.patient.as_str(),
        }
    }

    /// The space holding the record's contracts.
    pub fn space<'a>(&'a self, room_id: &'a RoomId) -> &'a str {
        match self {
            RecordPlace::ClassRoom(room) => room.space.as_str(),
            RecordPlace::Space(_) => room_id.as_str(),
        }
    }
}

/// The room's place in a record, read from its current state: its `org.medrix.record` event,
/// whose patient must be the room's creator (anyone can write the event into a room of their
/// own; only a room the patient created is the patient's record).
pub fn record_place(state: &StateMap, events: &HashMap<OwnedEventId, Pdu>) -> Option<RecordPlace> {
    let event = |kind: &str| {
        state
            .get(&(StateEventType::from(kind), RECORD_STATE_KEY.to_owned()))
            .and_then(|id| events.get(id))
    };
    let record = event(RECORD_EVENT_TYPE)?;
    let creator = event("m.room.create")?.sender();
    let content: Value = serde_json::from_str(record.content().get()).ok()?;
    place_from(&content, creator.as_str())
}

/// The place an `org.medrix.record` content gives a room created by `creator`: none unless
/// it parses and names the creator as the patient.
pub fn place_from(content: &Value, creator: &str) -> Option<RecordPlace> {
    let place = match RecordRoom::from_content(content) {
        Ok(room) => RecordPlace::ClassRoom(room),
        Err(_) => RecordPlace::Space(RecordSpace::from_content(content).ok()?),
    };
    (place.patient() == creator).then_some(place)
}

impl Rooms {
    /// Refuses any event a device account may not send: it changes its own membership (to
    /// join its rooms, or leave them) and sends encrypted readings in its own device room
    /// (the class room whose record state names it), and nothing else, anywhere.
    pub(super) fn check_device_write(
        &self,
        state: &StateMap,
        events: &HashMap<OwnedEventId, Pdu>,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
    ) -> Result<(), RoomError> {
        if !device_accounts::is_device_account(&self.storage, sender)? {
            return Ok(());
        }
        if kind == "m.room.member" && state_key == Some(sender.as_str()) {
            return Ok(());
        }
        let own_room = matches!(
            record_place(state, events),
            Some(RecordPlace::ClassRoom(room))
                if room.device.as_ref().is_some_and(|device| device.as_str() == sender.as_str())
        );
        if own_room && kind == "m.room.encrypted" && state_key.is_none() {
            return Ok(());
        }
        Err(RoomError::Forbidden(
            "a device account sends only encrypted readings, in its own device room".to_owned(),
        ))
    }

    /// Refuses a join or invite of `target` into a record room of a patient of this server
    /// unless a contract covers it at `now_ms` (see the module's comment).
    pub(super) fn check_record_membership(
        &self,
        room_id: &RoomId,
        state: &StateMap,
        events: &HashMap<OwnedEventId, Pdu>,
        target: &UserId,
        membership: &str,
        now_ms: u64,
    ) -> Result<(), RoomError> {
        if !matches!(membership, "join" | "invite") {
            return Ok(());
        }
        let Some(place) = record_place(state, events) else { return Ok(()) };
        let patient_is_ours = UserId::parse(place.patient())
            .is_ok_and(|patient| patient.server_name() == self.server_name());
        if !patient_is_ours
            || target.as_str() == place.patient()
            || *target == executor_of(self.server_name())
        {
            return Ok(());
        }
        // The patient's devices hold the space and each its own device room, nothing else;
        // no other patient's device holds anything.
        if let Some(device) = device_accounts::device_account(&self.storage, target)? {
            let own_place = match &place {
                RecordPlace::Space(_) => true,
                RecordPlace::ClassRoom(room) => {
                    room.device.as_ref().is_some_and(|named| named.as_str() == target.as_str())
                }
            };
            if device.patient.as_str() == place.patient()
                && device.removed_at.is_none()
                && own_place
            {
                return Ok(());
            }
            return Err(RoomError::Forbidden(format!(
                "{target} is a device account: it holds only its patient's record space and its own device room"
            )));
        }
        let classes: Vec<DataClass> = match &place {
            RecordPlace::ClassRoom(room) => vec![room.class],
            // The space shows which rooms the record has: a contract for any class opens it.
            RecordPlace::Space(_) => DataClass::ALL.to_vec(),
        };
        match self.holding(place.space(room_id), target, &classes, now_ms)? {
            Decision::Allowed { .. } => Ok(()),
            Decision::Denied(why) => Err(RoomError::Forbidden(format!(
                "{target} holds no active contract of the patient's covering this room ({})",
                why.as_str()
            ))),
        }
    }

    /// Whether `user` may hold a room of one of `classes` in the record whose space is
    /// `space`, at `now_ms`: the first class a contract of theirs covers (its decision), else
    /// the last denial. The one question both a membership and a read ask.
    pub fn holding(
        &self,
        space: &str,
        user: &UserId,
        classes: &[DataClass],
        now_ms: u64,
    ) -> Result<Decision, RoomError> {
        let grants = self.contracts_for(space, user)?;
        let Some(user) = medrix_records::UserId::parse(user.as_str()) else {
            return Ok(Decision::Denied(medrix_records::Denial::NoContract));
        };
        let mut decision = Decision::Denied(medrix_records::Denial::NoContract);
        for class in classes {
            decision =
                medrix_records::covering(&grants, &user, &Action::Hold { class: *class }, now_ms);
            if decision.is_allowed() {
                break;
            }
        }
        Ok(decision)
    }

    /// The standing emergency contract the record's space holds for the server `server`, if
    /// a well-formed one.
    pub fn standing_contract_of(
        &self,
        space: &str,
        server: &ServerName,
    ) -> Result<Option<Grant>, RoomError> {
        self.contract_keyed(space, server.as_str())
    }

    /// The contracts that may cover `user` in the record whose space is `space`: their
    /// personal contract and, for a user of this server, the standing emergency contracts
    /// that name them custodian (a custodian is always a user of the patient's server, the
    /// one that enforces). `medrix_records::covering` decides among them.
    fn contracts_for(&self, space: &str, user: &UserId) -> Result<Vec<Grant>, RoomError> {
        let mut grants: Vec<Grant> = self.contract_of(space, user)?.into_iter().collect();
        if user.server_name() == self.server_name() {
            let named = |grant: &Grant| {
                grant
                    .custodian
                    .as_ref()
                    .is_some_and(|custodian| custodian.as_str() == user.as_str())
            };
            grants.extend(self.standing_contracts(space)?.into_iter().filter(named));
        }
        Ok(grants)
    }

    /// The space's standing emergency contracts (state keys that are server names, not
    /// `user:`), well-formed ones only, at most `MAX_STANDING_SCANNED`.
    fn standing_contracts(&self, space: &str) -> Result<Vec<Grant>, RoomError> {
        let prefix = compound_key(&[space.as_bytes(), GRANT_EVENT_TYPE.as_bytes(), b""]);
        let key_at = |state_key: &[u8]| [prefix.as_slice(), state_key].concat();
        // Two ranges around the personal contracts, which may be many.
        let user_keys_end = key_at(b"user;");
        let ranges = [
            (prefix.clone(), key_at(USER_STATE_KEY_PREFIX.as_bytes())),
            (user_keys_end, key_at(&[0xFF])),
        ];
        let mut grants = Vec::new();
        for (from, to) in ranges {
            for (key, event_id) in self.storage.scan_range(
                cf::ROOMSTATEKEY_EVENTID,
                &from,
                &to,
                MAX_STANDING_SCANNED,
            )? {
                let state_key = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
                let Some(content) = self.event_content(&super::parse_event_id(&event_id)?)? else {
                    continue;
                };
                grants.extend(Grant::from_event(&state_key, &content).ok());
            }
        }
        Ok(grants)
    }

    /// The contract the record's space holds for `grantee`, if a well-formed one.
    pub fn contract_of(&self, space: &str, grantee: &UserId) -> Result<Option<Grant>, RoomError> {
        let Some(user) = medrix_records::UserId::parse(grantee.as_str()) else { return Ok(None) };
        self.contract_keyed(space, &Grant::state_key_of(&medrix_records::Grantee::User(user)))
    }

    /// The space's current `org.medrix.grant` with this state key, if a well-formed one.
    pub(crate) fn contract_keyed(
        &self,
        space: &str,
        state_key: &str,
    ) -> Result<Option<Grant>, RoomError> {
        let Ok(space) = RoomId::parse(space) else { return Ok(None) };
        let kind = StateEventType::from(GRANT_EVENT_TYPE);
        let Some(event_id) = self.state_event(&space, &kind, state_key)? else {
            return Ok(None);
        };
        let Some(content) = self.event_content(&event_id)? else { return Ok(None) };
        Ok(Grant::from_event(state_key, &content).ok())
    }
}
