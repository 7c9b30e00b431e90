//! Reads for local users (the client API): one event, pages of a room's timeline (`/messages`,
//! `/context`, `/sync`), the events since a sync token across the user's rooms, and the
//! current state, members and invite state of a room. Timeline reads walk the stream order
//! (the order clients page in) and keep only what the user's view of each room lets through.

use std::collections::{BTreeMap, btree_map};

use ruma::{
    EventId, OwnedEventId, OwnedRoomId, RoomId, UserId, api::Direction, events::StateEventType,
};
use serde_json::{Map, Value, json};

use medrix_records::ReadPath;

use super::{
    Access, AccessError, Reader, RoomView, Unlogged,
    read_log::Disclosure,
    timeline::{Row, TimelinePoint},
};
use crate::{service::rooms::position_from, storage::catalogue as cf};

/// A state event's ID and JSON.
pub type StateEvent = (OwnedEventId, Map<String, Value>);

/// A stored event a user may see, with its stream position (0 for a backfilled event, which
/// is not in the stream).
pub struct VisibleEvent {
    pub position: u64,
    pub event_id: OwnedEventId,
    pub event: Map<String, Value>,
}

/// A page of `/messages`: the events, where it started, and where the next page starts (none
/// when the page is not full: nothing more to read that way). `reached_start` says a backward
/// walk read every row this server has: what precedes may be on other servers (backfill).
pub struct MessagesPage {
    pub chunk: Vec<VisibleEvent>,
    pub start: TimelinePoint,
    pub end: Option<TimelinePoint>,
    pub reached_start: bool,
}

/// An event with the visible events around it (`/context`); `state` is the current state
/// for a member joined now, and empty otherwise (a former member is shown nothing changed
/// after they lost access).
pub struct Context {
    pub event: VisibleEvent,
    pub before: Vec<VisibleEvent>,
    pub after: Vec<VisibleEvent>,
    pub start: TimelinePoint,
    pub end: u64,
    pub state: Vec<StateEvent>,
}

/// The events of the stream after a sync token that the user may see, per room, and the
/// token the next sync starts from.
pub struct SinceBatch {
    pub rooms: BTreeMap<OwnedRoomId, Vec<VisibleEvent>>,
    pub next_batch: u64,
}

/// The most events one `/messages` page returns.
const MAX_PAGE: usize = 1000;
/// The most events `/context` returns around its event.
const MAX_CONTEXT: usize = 100;
/// The state events an invitee is shown of the room (the spec's stripped state, and the
/// room's place in a health record, so a client knows what it is invited to), beside the
/// invite itself and the inviter's membership: nothing about the other members.
pub const INVITE_STATE_TYPES: [&str; 8] = [
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.encryption",
    medrix_records::RECORD_EVENT_TYPE,
];

/// A joined room as an initial `/sync` shows it: the latest visible events (oldest first),
/// whether more came before them, and the current state.
pub struct RecentRoom {
    pub events: Vec<VisibleEvent>,
    pub limited: bool,
    pub state: Vec<StateEvent>,
}

impl Access {
    /// A timeline event of the room by ID, if `user` may see it (`/event`).
    pub fn event_for_user(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Unlogged<Option<VisibleEvent>>, AccessError> {
        let mut view = match self.view(room_id, Reader::User(user)) {
            Ok(view) => view,
            Err(AccessError::NotFound(_)) => return Ok(Unlogged::new(None, None)),
            Err(err) => return Err(err),
        };
        let event = self.timeline_event(&mut view, event_id)?;
        let served = event.iter().map(|e| e.event_id.to_string()).collect();
        let disclosure = view.disclosure(ReadPath::Event, served);
        Ok(Unlogged::new(event, disclosure))
    }

    /// Whether `user` may see this timeline event of the room: a check that hands out
    /// nothing of it (a receipt naming it).
    pub fn may_see_event(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<bool, AccessError> {
        let mut view = match self.view(room_id, Reader::User(user)) {
            Ok(view) => view,
            Err(AccessError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        };
        Ok(self.timeline_event(&mut view, event_id)?.is_some())
    }

    /// A timeline event (one with a stream position) the view lets through.
    fn timeline_event(
        &self,
        view: &mut RoomView<'_>,
        event_id: &EventId,
    ) -> Result<Option<VisibleEvent>, AccessError> {
        let Some(position) = self
            .storage
            .get(cf::EVENTID_POSITION, event_id.as_bytes())?
            .filter(|bytes| bytes.len() == 8)
            .map(|bytes| position_from(&bytes))
        else {
            return Ok(None);
        };
        Ok(view.visible_event(event_id)?.map(|event| VisibleEvent {
            position,
            event_id: event_id.to_owned(),
            event,
        }))
    }

    /// A page of the room's timeline from `from` (the newest visible point when walking back
    /// without one, the very start when walking forward), at most `limit`. Walking back goes
    /// from the live timeline into the backfilled history.
    pub fn messages(
        &self,
        user: &UserId,
        room_id: &RoomId,
        dir: Direction,
        from: Option<TimelinePoint>,
        limit: usize,
    ) -> Result<Unlogged<MessagesPage>, AccessError> {
        if self.rooms.membership(room_id, user)?.is_none() {
            return Err(AccessError::Forbidden("you have never been in this room"));
        }
        let mut view = self.view(room_id, Reader::User(user))?;
        let limit = limit.clamp(1, MAX_PAGE);
        let visible_upto = self.rooms.stream.visible();
        let mut chunk = Vec::new();
        let mut last = None;
        match dir {
            Direction::Backward => {
                let from = match from {
                    None => TimelinePoint::Live(visible_upto),
                    Some(TimelinePoint::Live(position)) => {
                        TimelinePoint::Live(position.min(visible_upto))
                    }
                    Some(history) => history,
                };
                // Walk back a batch at a time, skipping what the user may not see.
                let mut at = Some(from);
                let mut reached_start = false;
                while let Some(point) = at {
                    let rows = self.rows_back(room_id, point, limit)?;
                    last = self.fill(&mut view, &rows, &mut chunk, limit)?.or(last);
                    if chunk.len() == limit {
                        break;
                    }
                    if rows.len() < limit {
                        reached_start = true;
                        break;
                    }
                    at = last.and_then(TimelinePoint::before);
                }
                let end = last.filter(|_| chunk.len() == limit).and_then(TimelinePoint::before);
                let disclosure = view.disclosure(ReadPath::Messages, served(&chunk));
                Ok(Unlogged::new(
                    MessagesPage { chunk, start: from, end, reached_start },
                    disclosure,
                ))
            }
            Direction::Forward => {
                // History slot 0 is never given to an event: it is before everything.
                let from = from.unwrap_or(TimelinePoint::History(0));
                // Read forward a page at a time; never more rows at once than a page holds.
                let mut after = from;
                loop {
                    let rows = self.rows_forward(room_id, after, visible_upto, limit)?;
                    let Some(point) = self.fill(&mut view, &rows, &mut chunk, limit)? else {
                        break;
                    };
                    last = Some(point);
                    if chunk.len() == limit || rows.len() < limit {
                        break;
                    }
                    after = point;
                }
                let end = last.filter(|_| chunk.len() == limit);
                let disclosure = view.disclosure(ReadPath::Messages, served(&chunk));
                let page = MessagesPage { chunk, start: from, end, reached_start: false };
                Ok(Unlogged::new(page, disclosure))
            }
        }
    }

    /// An event with up to `limit` visible events around it, half before and half after.
    pub fn context(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
    ) -> Result<Unlogged<Option<Context>>, AccessError> {
        // One view for the event and its surroundings: their decisions share its memory.
        let mut view = match self.view(room_id, Reader::User(user)) {
            Ok(view) => view,
            Err(AccessError::NotFound(_)) => return Ok(Unlogged::new(None, None)),
            Err(err) => return Err(err),
        };
        let Some(event) = self.timeline_event(&mut view, event_id)? else {
            return Ok(Unlogged::new(None, None));
        };
        let position = event.position;
        let limit = limit.min(MAX_CONTEXT);
        let (before_limit, after_limit) = (limit / 2, limit - limit / 2);
        let mut before = Vec::new();
        let mut start = TimelinePoint::Live(position.saturating_sub(1));
        if before_limit > 0 && position > 0 {
            let rows =
                self.rows_back(room_id, TimelinePoint::Live(position - 1), 4 * before_limit)?;
            if let Some(last) = self.fill(&mut view, &rows, &mut before, before_limit)? {
                start = last.before().unwrap_or(TimelinePoint::History(0));
            }
        }
        let mut after = Vec::new();
        let mut end = position;
        let visible_upto = self.rooms.stream.visible();
        if after_limit > 0 && position < visible_upto {
            let rows = self.rows_forward(
                room_id,
                TimelinePoint::Live(position),
                visible_upto,
                4 * after_limit,
            )?;
            if let Some(TimelinePoint::Live(last)) =
                self.fill(&mut view, &rows, &mut after, after_limit)?
            {
                end = last;
            }
        }
        let state = if view.joined_now() && !view.withheld() {
            self.state_events(room_id)?
        } else {
            vec![]
        };
        let mut shown = served(&before);
        shown.push(event.event_id.to_string());
        shown.extend(served(&after));
        let disclosure = view.disclosure(ReadPath::Context, shown);
        Ok(Unlogged::new(Some(Context { event, before, after, start, end, state }), disclosure))
    }

    /// The latest events of a room `user` may see, up to stream position `upto` (at most
    /// `limit`, oldest first), whether more visible events came before them, and the room's
    /// current state from the same view (one decision of what the user may see for both):
    /// no state for a user no longer joined, or shut out of a record room.
    pub fn recent_with_state(
        &self,
        user: &UserId,
        room_id: &RoomId,
        upto: u64,
        limit: usize,
    ) -> Result<Unlogged<RecentRoom>, AccessError> {
        let mut view = self.view(room_id, Reader::User(user))?;
        let state = if view.joined_now() && !view.withheld() {
            self.state_events(room_id)?
        } else {
            vec![]
        };
        // Read a bounded window back from `upto`; events hidden from the user only shorten it.
        // Only the live timeline: a sync's timeline is what happened while this server was in
        // the room, and its `prev_batch` a stream position (backfilled history is paged to).
        let mut rows = self.rows_back(room_id, TimelinePoint::Live(upto), 4 * limit + 1)?;
        rows.retain(|row| matches!(row.point, TimelinePoint::Live(_)));
        let mut events = Vec::new();
        self.fill(&mut view, &rows, &mut events, limit + 1)?;
        let limited = events.len() > limit;
        events.truncate(limit);
        events.reverse();
        let disclosure = view.disclosure(ReadPath::Sync, served(&events));
        Ok(Unlogged::new(RecentRoom { events, limited, state }, disclosure))
    }

    /// The events after stream position `since` up to `upto` that `user` may see, per room,
    /// reading at most `max_rows` of the stream (the next sync goes on from `next_batch`).
    pub fn since(
        &self,
        user: &UserId,
        since: u64,
        upto: u64,
        max_rows: usize,
    ) -> Result<Unlogged<SinceBatch>, AccessError> {
        let rows = self.storage.scan_range(
            cf::POSITION_ROOMEVENT,
            &(since + 1).to_be_bytes(),
            &upto.to_be_bytes(),
            max_rows,
        )?;
        let next_batch = rows
            .last()
            .filter(|_| rows.len() == max_rows)
            .map_or(upto, |(key, _)| position_from(key));
        let mut views: BTreeMap<OwnedRoomId, RoomView<'_>> = BTreeMap::new();
        let mut rooms: BTreeMap<OwnedRoomId, Vec<VisibleEvent>> = BTreeMap::new();
        for (key, value) in rows {
            let position = position_from(&key);
            let Some(split) = value.iter().position(|b| *b == 0xFF) else { continue };
            let (Ok(room_id), Ok(event_id)) = (
                RoomId::parse(String::from_utf8_lossy(&value[..split]).as_ref()),
                EventId::parse(String::from_utf8_lossy(&value[split + 1..]).as_ref()),
            ) else {
                continue;
            };
            let view = match views.entry(room_id.clone()) {
                btree_map::Entry::Occupied(entry) => entry.into_mut(),
                btree_map::Entry::Vacant(entry) => match self.view(&room_id, Reader::User(user)) {
                    Ok(view) => entry.insert(view),
                    // A room only another server's invite made known here: no view of its
                    // DAG, but the user's own membership events in it are theirs to see.
                    Err(AccessError::NotFound(_)) => {
                        if let Some(event) = self.own_outside_membership(user, &event_id)? {
                            rooms.entry(room_id).or_default().push(VisibleEvent {
                                position,
                                event_id,
                                event,
                            });
                        }
                        continue;
                    }
                    Err(err) => return Err(err),
                },
            };
            if let Some(event) = view.visible_event(&event_id)? {
                rooms.entry(room_id).or_default().push(VisibleEvent { position, event_id, event });
            }
        }
        let disclosures: Vec<Disclosure> = rooms
            .iter()
            .filter_map(|(room_id, events)| {
                views.get(room_id)?.disclosure(ReadPath::Sync, served(events))
            })
            .collect();
        Ok(Unlogged::new(SinceBatch { rooms, next_batch }, disclosures))
    }

    /// The room's current state events, for a member joined now.
    pub fn current_state(
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<Vec<StateEvent>, AccessError> {
        self.require_joined(room_id, user)?;
        self.state_events(room_id)
    }

    /// One current state event's JSON, for a member joined now.
    pub fn current_state_event(
        &self,
        user: &UserId,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<Map<String, Value>>, AccessError> {
        self.require_joined(room_id, user)?;
        match self.rooms.state_event(room_id, kind, state_key)? {
            Some(event_id) => Ok(self.rooms.event_json(&event_id)?),
            None => Ok(None),
        }
    }

    /// The room's current member events, for a member joined now.
    pub fn members(&self, user: &UserId, room_id: &RoomId) -> Result<Vec<StateEvent>, AccessError> {
        let mut members = self.current_state(user, room_id)?;
        members.retain(|(_, event)| {
            event.get("type").and_then(Value::as_str) == Some("m.room.member")
        });
        Ok(members)
    }

    /// What an invitee is shown of a room they are invited to: the spec's stripped state
    /// (create, join rules, name, avatar, topic, canonical alias, encryption) and the invite
    /// itself, never the other members. For a room this server follows, from its current
    /// state; for another server's room, what that server's invite carried.
    pub fn invite_state(&self, user: &UserId, room_id: &RoomId) -> Result<Vec<Value>, AccessError> {
        if self.rooms.membership(room_id, user)?.as_deref() != Some("invite") {
            return Err(AccessError::Forbidden("you are not invited to this room"));
        }
        let own = self.rooms.server_name();
        if self.rooms.version(room_id)?.is_none() || !self.rooms.has_joined_member(room_id, own)? {
            let invite = self.rooms.remote_invite_state(room_id, user)?.unwrap_or_default();
            return Ok(invite["events"].as_array().cloned().unwrap_or_default());
        }
        // The inviter's own membership too: matrix-sdk accepts the room keys an inviter
        // shares on invite (MSC4268) only when it can tell who invited it.
        let inviter = self
            .member_event(room_id, user)?
            .and_then(|invite| invite.get("sender")?.as_str().and_then(|s| UserId::parse(s).ok()));
        let mut members = vec![user.to_owned()];
        members.extend(inviter);
        self.stripped_state(room_id, &members)
    }

    /// The current membership event of `user` in the room, if any.
    fn member_event(&self, room_id: &RoomId, user: &UserId) -> Result<Option<Value>, AccessError> {
        let kind = ruma::events::StateEventType::RoomMember;
        let Some(event_id) = self.rooms.state_event(room_id, &kind, user.as_str())? else {
            return Ok(None);
        };
        Ok(self.rooms.event_json(&event_id)?.map(Value::Object))
    }

    /// The stripped state of a room (the kinds an invitee may see), plus the member events
    /// of `members`: what an invite or a knock shows of the room.
    pub fn stripped_state(
        &self,
        room_id: &RoomId,
        members: &[ruma::OwnedUserId],
    ) -> Result<Vec<Value>, AccessError> {
        let mut stripped = Vec::new();
        for (_, event) in self.state_events(room_id)? {
            let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
            let state_key = event.get("state_key").and_then(Value::as_str);
            let shown = INVITE_STATE_TYPES.contains(&kind)
                || (kind == "m.room.member"
                    && members.iter().any(|member| state_key == Some(member.as_str())));
            if shown {
                stripped.push(json!({
                    "type": event.get("type"), "state_key": event.get("state_key"),
                    "content": event.get("content"), "sender": event.get("sender"),
                }));
            }
        }
        Ok(stripped)
    }

    /// The current state events of a room, whoever asks (callers decide who may).
    fn state_events(&self, room_id: &RoomId) -> Result<Vec<StateEvent>, AccessError> {
        let version = self.rooms.version(room_id)?.ok_or(AccessError::NotFound("unknown room"))?;
        let mut state = Vec::new();
        for (event_id, _) in self.rooms.current_state_events(room_id, version)? {
            if let Some(event) = self.rooms.event_json(&event_id)? {
                state.push((event_id, event));
            }
        }
        Ok(state)
    }

    /// A membership event about `user` that another server sent this one outside any room
    /// it follows (an invite, its withdrawal).
    fn own_outside_membership(
        &self,
        user: &UserId,
        event_id: &EventId,
    ) -> Result<Option<Map<String, Value>>, AccessError> {
        let Some(event) = self.rooms.event_json(event_id)? else { return Ok(None) };
        let own = event.get("type").and_then(Value::as_str) == Some("m.room.member")
            && event.get("state_key").and_then(Value::as_str) == Some(user.as_str());
        Ok(own.then_some(event))
    }

    /// Users joined to any room `user` is joined to (including `user`): whose device
    /// lists the user's clients track.
    pub fn users_sharing_rooms_with(&self, user: &UserId) -> Result<Vec<String>, AccessError> {
        let mut users = vec![user.to_string()];
        for (room_id, membership) in self.rooms.memberships(user)? {
            if membership != "join" {
                continue;
            }
            let Some(version) = self.rooms.version(&room_id)? else { continue };
            for (_, pdu) in self.rooms.current_state_events(&room_id, version)? {
                if *pdu.kind() == ruma::events::TimelineEventType::RoomMember
                    && crate::service::rooms::membership_of(&pdu).as_deref() == Some("join")
                    && let Some(member) = pdu.state_key()
                    && !users.iter().any(|u| u == member)
                {
                    users.push(member.to_owned());
                }
            }
        }
        Ok(users)
    }

    /// Appends the visible events of timeline `rows` to `out` until it holds `limit`;
    /// answers the point of the last row looked at.
    fn fill(
        &self,
        view: &mut RoomView<'_>,
        rows: &[Row],
        out: &mut Vec<VisibleEvent>,
        limit: usize,
    ) -> Result<Option<TimelinePoint>, AccessError> {
        let mut last = None;
        for row in rows {
            if out.len() >= limit {
                break;
            }
            last = Some(row.point);
            let Ok(event_id) = EventId::parse(String::from_utf8_lossy(&row.event_id).as_ref())
            else {
                continue;
            };
            if let Some(event) = view.visible_event(&event_id)? {
                let position = match row.point {
                    TimelinePoint::Live(position) => position,
                    TimelinePoint::History(_) => 0,
                };
                out.push(VisibleEvent { position, event_id, event });
            }
        }
        Ok(last)
    }
}

/// The IDs of events served, in order.
fn served(events: &[VisibleEvent]) -> Vec<String> {
    events.iter().map(|event| event.event_id.to_string()).collect()
}
