//! Reads of a patient's record: what allows them (the basis the read log records) and, in a
//! record of a patient of this server, whether the reader may read at all. A user other than
//! the patient and the contract executor reads a record room only while a contract covers
//! them for that room's class (`medrix_records::covering`, the function the clients and the
//! verifier call, at the moment of the read): the moment a contract ends or is revoked, its
//! grantee is shown nothing more of the room but their own membership, even before the
//! executor's kick reaches the DAG. Servers are served the room's structure as before (they
//! need it to authorize events); what they were served, and under which of their users'
//! contracts, is logged.

use medrix_records::{
    DataClass, Decision, GRANT_EVENT_TYPE, Purpose, RECORD_EVENT_TYPE, ReadBasis,
};
use ruma::{OwnedUserId, RoomId, ServerName, UserId, events::StateEventType};
use serde_json::Value;

use super::{Access, AccessError, Reader};
use crate::{
    locks::LockExt,
    service::device_accounts,
    service::rooms::record_gate::{RecordPlace, executor_of, place_from},
    storage::{catalogue as cf, compound_key},
};

/// Record places remembered (by their `org.medrix.record` event); past this, forgotten.
const MAX_CACHED_PLACES: usize = 10_000;
/// The most grants of one space looked through for a server's users.
const MAX_GRANTS_SCANNED: usize = 1000;

/// What a reader's reads of a record room are logged under, and whether they are shut out.
#[derive(Debug, Clone)]
pub(super) struct RecordFacts {
    pub basis: ReadBasis,
    /// Nothing but the reader's own membership is shown (see the module).
    pub withheld: bool,
}

impl Access {
    /// The facts for `reader` in `room_id` at `now_ms`; `None` when the room is not part of a
    /// patient's record (its reads are not logged).
    pub(super) fn record_facts(
        &self,
        room_id: &RoomId,
        reader: Reader<'_>,
        now_ms: u64,
    ) -> Result<Option<RecordFacts>, AccessError> {
        let Some(place) = self.record_place(room_id)? else { return Ok(None) };
        let Ok(patient) = UserId::parse(place.patient()) else { return Ok(None) };
        let patients_server_is_ours = patient.server_name() == self.rooms.server_name();
        let classes = match &place {
            RecordPlace::ClassRoom(room) => vec![room.class],
            // The space shows which rooms the record has: a contract for any class opens it.
            RecordPlace::Space(_) => DataClass::ALL.to_vec(),
        };
        let space = place.space(room_id);
        let basis = match reader {
            Reader::User(user) if *user == patient => ReadBasis::Patient,
            Reader::User(user) if *user == executor_of(patient.server_name()) => {
                ReadBasis::Executor
            }
            Reader::User(user) if self.is_patients_device_here(&place, &patient, user)? => {
                ReadBasis::Device
            }
            Reader::User(user) => {
                self.contract_basis(space, &[user.to_owned()], &classes, now_ms)?
            }
            Reader::Server(server) => {
                let users = self.grantees_on(space, server)?;
                self.contract_basis(space, &users, &classes, now_ms)?
            }
        };
        let withheld = patients_server_is_ours
            && matches!(reader, Reader::User(_))
            && basis == ReadBasis::Membership;
        Ok(Some(RecordFacts { basis, withheld }))
    }

    /// Whether the patient named `user` in the record's space to read the audit trail
    /// (`org.medrix.audit.delegate` with `{"delegate": true}`).
    pub(super) fn is_audit_delegate(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<bool, AccessError> {
        let Some(place) = self.record_place(room_id)? else { return Ok(false) };
        let Ok(space) = RoomId::parse(place.space(room_id)) else { return Ok(false) };
        let kind = StateEventType::from(medrix_records::DELEGATE_EVENT_TYPE);
        let key = format!("{}{user}", medrix_records::USER_STATE_KEY_PREFIX);
        let Some(id) = self.rooms.state_event(&space, &kind, &key)? else {
            return Ok(false);
        };
        let Some(content) = self.rooms.event_content(&id)? else { return Ok(false) };
        // Only the patient (or the executor) can set state in the space; a delegation the
        // patient's server did not let through would not be current state.
        Ok(content.get("delegate") == Some(&Value::Bool(true)))
    }

    /// The room's place in a record, read from its current state (its `org.medrix.record`
    /// and its creator).
    pub(super) fn record_place(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<RecordPlace>, AccessError> {
        let state_content =
            |kind: &str| -> Result<Option<serde_json::Map<String, Value>>, AccessError> {
                let Some(id) = self.rooms.state_event(room_id, &StateEventType::from(kind), "")?
                else {
                    return Ok(None);
                };
                Ok(self.rooms.event_json(&id)?)
            };
        let kind = StateEventType::from(RECORD_EVENT_TYPE);
        let Some(record_id) = self.rooms.state_event(room_id, &kind, "")? else { return Ok(None) };
        // Every read of a record room asks this: the place is parsed once per record event
        // (an event's content does not change; a new record event has a new ID).
        if let Some(place) = self.record_places.locked().get(&record_id) {
            return Ok(place.clone());
        }
        let Some(content) = self.rooms.event_content(&record_id)? else { return Ok(None) };
        let Some(create) = state_content("m.room.create")? else { return Ok(None) };
        let Some(creator) = create.get("sender").and_then(Value::as_str) else { return Ok(None) };
        let place = place_from(&content, creator);
        let mut places = self.record_places.locked();
        if places.len() >= MAX_CACHED_PLACES {
            places.clear();
        }
        places.insert(record_id, place.clone());
        Ok(place)
    }

    /// Whether `user` is one of `patient`'s device accounts and this place is one it holds:
    /// the record's space, or the class room whose record state names it.
    fn is_patients_device_here(
        &self,
        place: &RecordPlace,
        patient: &UserId,
        user: &UserId,
    ) -> Result<bool, AccessError> {
        let Some(device) = device_accounts::device_account(&self.storage, user)? else {
            return Ok(false);
        };
        Ok(device.patient == patient
            && match place {
                RecordPlace::Space(_) => true,
                RecordPlace::ClassRoom(room) => {
                    room.device.as_ref().is_some_and(|named| named.as_str() == user.as_str())
                }
            })
    }

    /// The contract among `users`' that covers one of `classes` now, else `Membership`.
    fn contract_basis(
        &self,
        space: &str,
        users: &[OwnedUserId],
        classes: &[DataClass],
        now_ms: u64,
    ) -> Result<ReadBasis, AccessError> {
        for user in users {
            if let Decision::Allowed { contract_id, purpose } =
                self.rooms.holding(space, user, classes, now_ms)?
            {
                return Ok(ReadBasis::Contract {
                    contract_id: contract_id.as_str().to_owned(),
                    purpose: purpose.code().to_owned(),
                    break_glass: purpose == Purpose::BreakTheGlass,
                });
            }
        }
        Ok(ReadBasis::Membership)
    }

    /// The users of `server` the record's space holds a personal contract for.
    fn grantees_on(
        &self,
        space: &str,
        server: &ServerName,
    ) -> Result<Vec<OwnedUserId>, AccessError> {
        let prefix = compound_key(&[
            space.as_bytes(),
            GRANT_EVENT_TYPE.as_bytes(),
            medrix_records::USER_STATE_KEY_PREFIX.as_bytes(),
        ]);
        let rows = self.storage.scan_range(
            cf::ROOMSTATEKEY_EVENTID,
            &prefix,
            &[prefix.as_slice(), &[0xFF]].concat(),
            MAX_GRANTS_SCANNED,
        )?;
        Ok(rows
            .iter()
            .filter_map(|(key, _)| {
                let key = key.strip_prefix(prefix.as_slice())?;
                UserId::parse(String::from_utf8_lossy(key).as_ref()).ok()
            })
            .filter(|user| user.server_name() == server)
            .collect())
    }
}
