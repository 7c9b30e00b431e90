//! One reader's view of one room: decides, event by event, what the reader may see, from the
//! room's state at each event. Events that change no state share a state group, so a view
//! looks each group up once and a page of messages costs one decision.

use std::collections::HashMap;

use medrix_protocol::{
    RoomVersion,
    canonical::object_from_value,
    history_visibility::{
        HistoryVisibility, MembershipState, ServerAt, UserAt, VisibilityAt, parse_setting,
        server_may_see, user_may_see,
    },
    redaction::redact,
};
use ruma::{EventId, OwnedRoomId, RoomId, ServerName, UserId, events::StateEventType};
use serde_json::{Map, Value};

use super::{Access, AccessError, read_log::Disclosure, record_reads::RecordFacts};
use crate::{service::device_accounts, storage::StorageError};
use medrix_records::ReadPath;

/// Who reads.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    /// A local user, through the client API.
    User(&'a UserId),
    /// Another server, through the federation API.
    Server(&'a ServerName),
}

impl Reader<'_> {
    /// Whether `user` is this reader or, for a server, one of its users.
    fn speaks_for(&self, user: &str) -> bool {
        match self {
            Reader::User(reader) => reader.as_str() == user,
            Reader::Server(server) => {
                UserId::parse(user).is_ok_and(|user| user.server_name() == *server)
            }
        }
    }
}

/// What a state group says about the reader.
#[derive(Clone)]
struct GroupFacts {
    visibility: HistoryVisibility,
    /// A user reader's membership.
    membership: Option<MembershipState>,
    /// A server reader's: one of its users joined, one invited.
    any_joined: bool,
    any_invited: bool,
}

/// Groups remembered by one view; a view lives for one request.
const MAX_GROUPS_PER_VIEW: usize = 1024;

pub struct RoomView<'a> {
    access: &'a Access,
    room_id: OwnedRoomId,
    version: RoomVersion,
    reader: Reader<'a>,
    /// The reader (a server: one of its users) is joined to the room now.
    joined_now: bool,
    /// The reader is a device account: shown the room's state and its own events, never
    /// anyone else's (a device writes readings; it reads nothing).
    device_reader: bool,
    /// In a room of a patient's record: what the reader's reads are logged under, and
    /// whether they are shut out; `None` elsewhere.
    record: Option<RecordFacts>,
    /// When the view was opened: the moment its record facts hold at.
    opened_at: u64,
    groups: HashMap<u64, GroupFacts>,
}

impl<'a> RoomView<'a> {
    pub(super) fn open(
        access: &'a Access,
        room_id: &RoomId,
        reader: Reader<'a>,
    ) -> Result<Self, AccessError> {
        let version =
            access.rooms.version(room_id)?.ok_or(AccessError::NotFound("unknown room"))?;
        let joined_now = match reader {
            Reader::User(user) => access.rooms.is_joined(room_id, user)?,
            Reader::Server(server) => access.rooms.has_joined_member(room_id, server)?,
        };
        let opened_at = crate::clock::now_ms();
        let record = access.record_facts(room_id, reader, opened_at)?;
        let device_reader = match reader {
            Reader::User(user) => device_accounts::is_device_account(&access.storage, user)?,
            Reader::Server(_) => false,
        };
        Ok(Self {
            access,
            room_id: room_id.to_owned(),
            version,
            reader,
            joined_now,
            device_reader,
            record,
            opened_at,
            groups: HashMap::new(),
        })
    }

    pub fn version(&self) -> RoomVersion {
        self.version
    }

    /// Whether the reader (a server: one of its users) is joined to the room now.
    pub fn joined_now(&self) -> bool {
        self.joined_now
    }

    /// Whether the reader is shut out of this record room (no contract covers them now):
    /// shown nothing but their own membership.
    pub fn withheld(&self) -> bool {
        self.record.as_ref().is_some_and(|record| record.withheld)
    }

    /// What the reader's reads of this record room are logged under; `None` outside a record.
    pub(super) fn basis(&self) -> Option<&medrix_records::ReadBasis> {
        self.record.as_ref().map(|record| &record.basis)
    }

    /// The read to log for serving these events of the room: none outside a patient's
    /// record, or when nothing was served.
    pub(super) fn disclosure(&self, path: ReadPath, events: Vec<String>) -> Option<Disclosure> {
        let record = self.record.as_ref()?;
        (!events.is_empty()).then(|| Disclosure {
            room_id: self.room_id.clone(),
            at: self.opened_at,
            path,
            events,
            basis: record.basis.clone(),
        })
    }

    /// Whether the reader may see a stored event of this room, given as its JSON. An event
    /// of another room is never visible through this room's view.
    pub fn may_see(
        &mut self,
        event_id: &EventId,
        event: &Map<String, Value>,
    ) -> Result<bool, AccessError> {
        if room_of(event_id, event).as_deref() != Some(&*self.room_id) {
            return Ok(false);
        }
        let kind = event.get("type").and_then(Value::as_str);
        let state_key = event.get("state_key").and_then(Value::as_str);
        let own_membership = kind == Some("m.room.member")
            && state_key.is_some_and(|key| self.reader.speaks_for(key));
        if own_membership {
            return Ok(true);
        }
        if self.withheld() {
            return Ok(false);
        }
        if self.device_reader
            && state_key.is_none()
            && !event
                .get("sender")
                .and_then(Value::as_str)
                .is_some_and(|sender| self.reader.speaks_for(sender))
        {
            return Ok(false);
        }
        let Some(group) = self.access.rooms.state_store.event_group(event_id)? else {
            // An event known only by itself (state a join or a peer handed over, an auth
            // event): it has no place in the DAG to judge it by. State events among them are
            // the room's structure, which a server joined now needs to authorize events;
            // nothing else is shown.
            return Ok(matches!(self.reader, Reader::Server(_))
                && state_key.is_some()
                && self.joined_now);
        };
        let facts = self.facts(group)?;
        let set_by_event = (kind == Some("m.room.history_visibility") && state_key == Some(""))
            .then(|| {
                parse_setting(
                    event
                        .get("content")
                        .and_then(|content| content.get("history_visibility"))
                        .and_then(Value::as_str),
                )
            });
        let visibility = VisibilityAt { before: facts.visibility, set_by_event };
        Ok(match self.reader {
            Reader::User(_) => user_may_see(
                &visibility,
                &UserAt {
                    membership: facts.membership,
                    event_is_own_membership: false,
                    joined_now: self.joined_now,
                },
            ),
            Reader::Server(_) => server_may_see(
                &visibility,
                &ServerAt {
                    any_joined: facts.any_joined,
                    any_invited: facts.any_invited,
                    event_is_own_membership: false,
                    joined_now: self.joined_now,
                },
            ),
        })
    }

    /// Whether the reader may see the event with this ID, and its JSON if so. An event of
    /// another room, or one not stored, is answered as not found.
    pub fn visible_event(
        &mut self,
        event_id: &EventId,
    ) -> Result<Option<Map<String, Value>>, AccessError> {
        let Some(event) = self.access.rooms.event_json(event_id)? else { return Ok(None) };
        Ok(self.may_see(event_id, &event)?.then_some(event))
    }

    /// An event as the reading server is given it in the room's history (`/event`,
    /// `/backfill`, `get_missing_events`): whole if it may see it; redacted (stripped to what
    /// authorization and the DAG need, as the spec's redaction algorithm keeps) if it is in
    /// the room now but may not see this event, so its DAG stays whole without the content;
    /// not at all otherwise (another room, not stored, or a server outside the room).
    pub fn event_for_server(
        &mut self,
        event_id: &EventId,
    ) -> Result<Option<Map<String, Value>>, AccessError> {
        let Some(event) = self.access.rooms.event_json(event_id)? else { return Ok(None) };
        if room_of(event_id, &event).as_deref() != Some(&*self.room_id) {
            return Ok(None);
        }
        if self.may_see(event_id, &event)? {
            return Ok(Some(event));
        }
        if !self.joined_now {
            return Ok(None);
        }
        let object = object_from_value(Value::Object(event))
            .map_err(|err| StorageError::Corrupt(format!("stored event {event_id}: {err}")))?;
        let redacted = redact(object, self.version, None)
            .map_err(|err| StorageError::Corrupt(format!("stored event {event_id}: {err}")))?;
        match serde_json::to_value(redacted) {
            Ok(Value::Object(map)) => Ok(Some(map)),
            _ => Err(StorageError::Corrupt(format!("stored event {event_id}")).into()),
        }
    }

    /// What a state group says about the reader, looked up once per view.
    fn facts(&mut self, group: u64) -> Result<GroupFacts, AccessError> {
        if let Some(facts) = self.groups.get(&group) {
            return Ok(facts.clone());
        }
        let state = self.access.rooms.state_store.group(group)?;
        let visibility = match state.get(&(StateEventType::RoomHistoryVisibility, String::new())) {
            Some(id) => {
                let event = self.stored(id)?;
                parse_setting(
                    event
                        .get("content")
                        .and_then(|content| content.get("history_visibility"))
                        .and_then(Value::as_str),
                )
            }
            None => HistoryVisibility::Shared,
        };
        let mut facts =
            GroupFacts { visibility, membership: None, any_joined: false, any_invited: false };
        match self.reader {
            Reader::User(user) => {
                if let Some(id) = state.get(&(StateEventType::RoomMember, user.to_string())) {
                    facts.membership = Some(membership(&self.stored(id)?));
                }
            }
            Reader::Server(_) => {
                for ((kind, key), id) in state.iter() {
                    if *kind != StateEventType::RoomMember || !self.reader.speaks_for(key) {
                        continue;
                    }
                    match membership(&self.stored(id)?) {
                        MembershipState::Join => facts.any_joined = true,
                        MembershipState::Invite => facts.any_invited = true,
                        _ => {}
                    }
                    if facts.any_joined {
                        break;
                    }
                }
            }
        }
        if self.groups.len() >= MAX_GROUPS_PER_VIEW {
            self.groups.clear();
        }
        self.groups.insert(group, facts.clone());
        Ok(facts)
    }

    /// A state event the group names, which must be stored.
    fn stored(&self, event_id: &EventId) -> Result<Map<String, Value>, AccessError> {
        self.access.rooms.event_json(event_id)?.ok_or_else(|| {
            StorageError::Corrupt(format!("state event {event_id} is not stored")).into()
        })
    }
}

/// The membership a member event's content names (`leave` if it names none this server
/// knows: the least access).
fn membership(event: &Map<String, Value>) -> MembershipState {
    let value = event
        .get("content")
        .and_then(|content| content.get("membership"))
        .and_then(Value::as_str)
        .unwrap_or("leave");
    match MembershipState::from(value) {
        state @ (MembershipState::Join
        | MembershipState::Invite
        | MembershipState::Knock
        | MembershipState::Ban
        | MembershipState::Leave) => state,
        _ => MembershipState::Leave,
    }
}

/// The room a stored event belongs to: its `room_id`, or for a v12 create event (which has
/// none) the room its ID names.
pub(super) fn room_of(event_id: &EventId, event: &Map<String, Value>) -> Option<ruma::OwnedRoomId> {
    match event.get("room_id").and_then(Value::as_str) {
        Some(room_id) => RoomId::parse(room_id).ok(),
        None if event.get("type").and_then(Value::as_str) == Some("m.room.create") => {
            Some(medrix_protocol::incoming::room_id_from_create_event_id(event_id))
        }
        None => None,
    }
}
