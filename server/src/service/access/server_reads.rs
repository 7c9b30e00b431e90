//! Reads for other servers (the federation API): one event, the state at an event, an
//! event's auth chain, history before some events (`/backfill`) and the events between two
//! points (`get_missing_events`), and the state a joining server is handed. An event of
//! another room is never answered under this room's ID.
//!
//! A server reads an event's content if one of its users could see it (the same rules, per
//! server). A server in the room now gets the events it may not see redacted, as Synapse
//! does: their content stripped, their place in the DAG and what authorization needs kept.
//! The state at an event it may see (or, being in the room, at any event of it) comes whole:
//! it is what the server needs to authorize the room's events, and what its members are
//! shown as the room's state anyway. A server outside the room reads nothing past what its
//! users could see.

use medrix_protocol::RoomVersion;
use medrix_records::ReadPath;
use ruma::{EventId, OwnedEventId, RoomId, ServerName};
use serde_json::{Map, Value};

use super::{Access, AccessError, Reader, RoomView, Unlogged, view::room_of};

/// The state before an event and its auth chain, as event IDs.
pub struct StateAt {
    pub state: Vec<OwnedEventId>,
    pub auth_chain: Vec<OwnedEventId>,
}

impl StateAt {
    /// What serving it hands out: the state, then the auth chain.
    fn served(&self) -> Vec<String> {
        self.state.iter().chain(&self.auth_chain).map(ToString::to_string).collect()
    }
}

impl Access {
    /// A view of the room for `server`, refused outright unless `event_id` is an event of
    /// this room the server may see, or the server is in the room now.
    fn server_view_at<'a>(
        &'a self,
        server: &'a ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<RoomView<'a>, AccessError> {
        let mut view = self.view(room_id, Reader::Server(server))?;
        match view.event_for_server(event_id)? {
            Some(_) => Ok(view),
            None => Err(AccessError::Forbidden("the server may not read this event of this room")),
        }
    }

    /// An event by ID as `server` may have it (whole, or redacted; see the module).
    pub fn event_for_server(
        &self,
        server: &ServerName,
        event_id: &EventId,
    ) -> Result<Unlogged<Map<String, Value>>, AccessError> {
        let event =
            self.rooms.event_json(event_id)?.ok_or(AccessError::NotFound("unknown event"))?;
        let room_id = room_of(event_id, &event).ok_or(AccessError::NotFound("unknown event"))?;
        let mut view = self.view(&room_id, Reader::Server(server))?;
        let event = view
            .event_for_server(event_id)?
            .ok_or(AccessError::Forbidden("the server may not read this event"))?;
        let disclosure = view.disclosure(ReadPath::FederationEvent, vec![event_id.to_string()]);
        Ok(Unlogged::new(event, disclosure))
    }

    /// The state before an event of the room, and its auth chain, if `server` may read the
    /// event (`/state` or `/state_ids`, which `path` names).
    pub fn state_at_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        path: ReadPath,
    ) -> Result<Unlogged<StateAt>, AccessError> {
        let view = self.server_view_at(server, room_id, event_id)?;
        let at = self.state_before(view.version(), event_id)?;
        let disclosure = view.disclosure(path, at.served());
        Ok(Unlogged::new(at, disclosure))
    }

    /// The state before an event (a join this server just took in for `server`'s user) and
    /// its auth chain, including the event's own: what `send_join` answers.
    pub fn join_state_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        join_event_id: &EventId,
    ) -> Result<Unlogged<StateAt>, AccessError> {
        let view = self.server_view_at(server, room_id, join_event_id)?;
        let StateAt { state, .. } = self.state_before(view.version(), join_event_id)?;
        let mut starts = state.clone();
        starts.push(join_event_id.to_owned());
        let auth_chain = self.rooms.auth_chain_of(view.version(), &starts)?;
        let at = StateAt { state, auth_chain };
        let disclosure = view.disclosure(ReadPath::FederationSendJoin, at.served());
        Ok(Unlogged::new(at, disclosure))
    }

    /// An event's auth chain, if `server` may read the event.
    pub fn auth_chain_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Unlogged<Vec<OwnedEventId>>, AccessError> {
        let view = self.server_view_at(server, room_id, event_id)?;
        let chain =
            self.rooms.auth_chain_of(view.version(), std::slice::from_ref(&event_id.to_owned()))?;
        let served = chain.iter().map(ToString::to_string).collect();
        let disclosure = view.disclosure(ReadPath::FederationEventAuth, served);
        Ok(Unlogged::new(chain, disclosure))
    }

    /// Walks the room's DAG back from `from` (see `Rooms::walk_back`): the events as `server`
    /// may have them, oldest first (`/backfill` and `get_missing_events`, which `path`
    /// names). The first starting event must be one it may read.
    pub fn history_for_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        walk: HistoryWalk<'_>,
        path: ReadPath,
    ) -> Result<Unlogged<Vec<Map<String, Value>>>, AccessError> {
        let first = walk.from.first().ok_or(AccessError::NotFound("no events to start from"))?;
        let mut view = self.server_view_at(server, room_id, first)?;
        let mut pdus = self.rooms.walk_back(
            view.version(),
            walk.from,
            walk.stop_at,
            walk.min_depth,
            walk.limit,
            walk.include_from,
        )?;
        pdus.sort_by_key(|pdu| pdu.depth());
        let mut out = Vec::with_capacity(pdus.len());
        let mut served = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            if let Some(event) = view.event_for_server(pdu.event_id())? {
                out.push(event);
                served.push(pdu.event_id().to_string());
            }
        }
        let disclosure = view.disclosure(path, served);
        Ok(Unlogged::new(out, disclosure))
    }

    /// Stored events as their federation JSON, in the order given; unknown IDs are skipped.
    /// Only for IDs a decision above already let through (a state or an auth chain).
    pub fn events_json(
        &self,
        ids: &[OwnedEventId],
    ) -> Result<Vec<Map<String, Value>>, AccessError> {
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(event) = self.rooms.event_json(id)? {
                out.push(event);
            }
        }
        Ok(out)
    }

    fn state_before(
        &self,
        version: RoomVersion,
        event_id: &EventId,
    ) -> Result<StateAt, AccessError> {
        let state = self
            .rooms
            .state_before_event(event_id)?
            .ok_or(AccessError::NotFound("the state at this event is not known here"))?;
        let state: Vec<OwnedEventId> = state.values().cloned().collect();
        let auth_chain = self.rooms.auth_chain_of(version, &state)?;
        Ok(StateAt { state, auth_chain })
    }
}

/// How far back a history read walks.
pub struct HistoryWalk<'a> {
    pub from: &'a [OwnedEventId],
    pub stop_at: &'a [OwnedEventId],
    pub min_depth: u64,
    pub limit: usize,
    pub include_from: bool,
}
