//! A room whose DAG this server extends in a single line: it picks `prev_events`,
//! `auth_events` and `depth`, signs, authorizes and records each new event. The homeserver's
//! room creation, the test vectors, property tests and benchmarks all build rooms with it.

use std::collections::HashMap;

use ruma::{OwnedEventId, OwnedRoomId, RoomId, UserId};
use serde_json::{Value, json};

use crate::{
    Decision, Pdu, ProtocolError, RoomVersion, StateMap, Verdict,
    build::{EventDraft, SignedEvent, sign_new_event},
    canonical::object_from_value,
    decide::{decide, select_auth_events},
    incoming::room_id_from_create_event_id,
    keys::ServerSigningKey,
};

/// An in-memory room: its events, its current state and the tip of its DAG.
#[derive(Debug, Clone)]
pub struct LocalRoom {
    version: RoomVersion,
    room_id: OwnedRoomId,
    events: HashMap<OwnedEventId, Pdu>,
    signed: Vec<SignedEvent>,
    state: StateMap,
    tip: OwnedEventId,
    depth: u64,
}

impl LocalRoom {
    /// Creates a room: signs its `m.room.create` event. `room_id` is used for versions before
    /// 12; in v12 the room ID is derived from the create event and `room_id` must be `None`.
    pub fn create(
        version: RoomVersion,
        key: &ServerSigningKey,
        creator: &UserId,
        room_id: Option<&RoomId>,
        origin_server_ts: u64,
    ) -> Result<Self, ProtocolError> {
        let mut content = json!({ "room_version": version.as_str() });
        if version == RoomVersion::V10 {
            // Before v11 the creator was named in content, not taken from `sender`.
            content["creator"] = json!(creator);
        }
        let draft = EventDraft {
            room_id: room_id.map(ToOwned::to_owned),
            sender: creator.to_owned(),
            kind: "m.room.create".to_owned(),
            state_key: Some(String::new()),
            content: content_object(content)?,
            prev_events: vec![],
            auth_events: vec![],
            depth: 1,
            origin_server_ts,
            redacts: None,
        };
        let create = sign_new_event(&draft, version, key)?;
        let room_id = match room_id {
            Some(id) => id.to_owned(),
            None => room_id_from_create_event_id(&create.event_id),
        };
        let mut state = StateMap::new();
        state.insert(
            create.pdu.state_slot().expect("create is a state event"),
            create.event_id.clone(),
        );
        Ok(Self {
            version,
            room_id,
            events: HashMap::from([(create.event_id.clone(), create.pdu.clone())]),
            tip: create.event_id.clone(),
            signed: vec![create],
            state,
            depth: 1,
        })
    }

    /// Creates a room set up like the `private_chat` preset: creator joined, default power
    /// levels, invite-only, history shared with members.
    pub fn private_chat(
        version: RoomVersion,
        key: &ServerSigningKey,
        creator: &UserId,
        room_id: Option<&RoomId>,
        origin_server_ts: u64,
    ) -> Result<Self, ProtocolError> {
        let mut room = Self::create(version, key, creator, room_id, origin_server_ts)?;
        let mut ts = origin_server_ts;
        let mut next_ts = || {
            ts += 1;
            ts
        };
        room.send(
            key,
            creator,
            "m.room.member",
            Some(creator.as_str()),
            json!({"membership": "join"}),
            next_ts(),
        )?;
        let mut users = serde_json::Map::new();
        if version < RoomVersion::V12 {
            // v12 creators hold unlimited power and must not be listed.
            users.insert(creator.to_string(), json!(100));
        }
        room.send(
            key,
            creator,
            "m.room.power_levels",
            Some(""),
            json!({
                "users": users, "users_default": 0, "events_default": 0, "state_default": 50,
                "ban": 50, "kick": 50, "redact": 50, "invite": 0,
            }),
            next_ts(),
        )?;
        room.send(
            key,
            creator,
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "invite"}),
            next_ts(),
        )?;
        room.send(
            key,
            creator,
            "m.room.history_visibility",
            Some(""),
            json!({"history_visibility": "shared"}),
            next_ts(),
        )?;
        Ok(room)
    }

    /// A draft of the next event on the tip: auth events chosen from the current state.
    pub fn draft(
        &self,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        origin_server_ts: u64,
    ) -> Result<EventDraft, ProtocolError> {
        let content = content_object(content)?;
        let raw_content = serde_json::value::to_raw_value(&content)
            .map_err(|err| ProtocolError::Malformed(err.to_string()))?;
        let auth_events =
            select_auth_events(self.version, kind, sender, state_key, &raw_content, &self.state)?;
        Ok(EventDraft {
            room_id: Some(self.room_id.clone()),
            sender: sender.to_owned(),
            kind: kind.to_owned(),
            state_key: state_key.map(ToOwned::to_owned),
            content,
            prev_events: vec![self.tip.clone()],
            auth_events,
            depth: self.depth + 1,
            origin_server_ts,
            redacts: None,
        })
    }

    /// Signs `draft`, authorizes it against the current state and records it. An accepted event
    /// becomes the new tip (and state, if a state event); a rejected one is kept, marked.
    pub fn append(
        &mut self,
        key: &ServerSigningKey,
        draft: &EventDraft,
    ) -> Result<(SignedEvent, Decision), ProtocolError> {
        let mut signed = sign_new_event(draft, self.version, key)?;
        let decision = decide(self.version, &signed.pdu, &self.events, &self.state, None);
        if let Verdict::Rejected(_) = decision.verdict {
            signed.pdu.set_rejected(true);
        } else {
            self.state = decision.state_after.clone();
            self.tip = signed.event_id.clone();
            self.depth = self.depth.max(draft.depth);
        }
        self.events.insert(signed.event_id.clone(), signed.pdu.clone());
        self.signed.push(signed.clone());
        Ok((signed, decision))
    }

    /// Drafts and appends an event that must be accepted.
    pub fn send(
        &mut self,
        key: &ServerSigningKey,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        origin_server_ts: u64,
    ) -> Result<SignedEvent, ProtocolError> {
        let draft = self.draft(sender, kind, state_key, content, origin_server_ts)?;
        let (signed, decision) = self.append(key, &draft)?;
        match decision.verdict {
            Verdict::Accepted => Ok(signed),
            Verdict::Rejected(reason) | Verdict::SoftFailed(reason) => {
                Err(ProtocolError::Malformed(format!("{kind} from {sender} refused: {reason}")))
            }
        }
    }

    pub fn version(&self) -> RoomVersion {
        self.version
    }

    pub fn room_id(&self) -> &RoomId {
        &self.room_id
    }

    /// The current state.
    pub fn state(&self) -> &StateMap {
        &self.state
    }

    /// Every event, rejected ones included, by ID.
    pub fn events(&self) -> &HashMap<OwnedEventId, Pdu> {
        &self.events
    }

    /// Every event in the order it was appended, with its wire JSON.
    pub fn signed_events(&self) -> &[SignedEvent] {
        &self.signed
    }

    /// The latest accepted event.
    pub fn tip(&self) -> &OwnedEventId {
        &self.tip
    }
}

fn content_object(content: Value) -> Result<ruma::CanonicalJsonObject, ProtocolError> {
    object_from_value(content).map_err(|err| ProtocolError::Malformed(format!("content: {err}")))
}
