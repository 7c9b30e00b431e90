//! The parsed form of a PDU: typed fields read once from its canonical JSON, ready for the
//! authorization rules and state resolution (it implements ruma's `state_res::Event`).

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId,
    OwnedRoomId, OwnedUserId, RoomId, UInt, UserId, events::TimelineEventType,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{ProtocolError, RoomVersion};

/// One event of a room's DAG, with its ID computed from its reference hash.
#[derive(Debug, Clone)]
pub struct Pdu {
    event_id: OwnedEventId,
    room_id: Option<OwnedRoomId>,
    sender: OwnedUserId,
    origin_server_ts: MilliSecondsSinceUnixEpoch,
    kind: TimelineEventType,
    content: Box<RawJsonValue>,
    state_key: Option<String>,
    prev_events: Vec<OwnedEventId>,
    auth_events: Vec<OwnedEventId>,
    redacts: Option<OwnedEventId>,
    depth: u64,
    rejected: bool,
}

impl Pdu {
    /// Reads the typed fields of `object`, whose ID the caller computed (see
    /// [`crate::incoming::event_id`]). The object is assumed to have passed ruma's format
    /// check; anything still wrong is a [`ProtocolError::Malformed`], never a panic.
    pub fn from_canonical(
        event_id: OwnedEventId,
        object: &CanonicalJsonObject,
        version: RoomVersion,
    ) -> Result<Self, ProtocolError> {
        let kind = TimelineEventType::from(required_str(object, "type")?);
        let content_value = object.get("content").ok_or_else(|| malformed("missing `content`"))?;
        if !matches!(content_value, CanonicalJsonValue::Object(_)) {
            return Err(malformed("`content` must be an object"));
        }
        let content = serde_json::value::to_raw_value(content_value)
            .map_err(|err| malformed(&format!("`content`: {err}")))?;
        let room_id = match object.get("room_id") {
            None => None,
            Some(CanonicalJsonValue::String(id)) => {
                Some(RoomId::parse(id).map_err(|err| malformed(&format!("`room_id`: {err}")))?)
            }
            Some(_) => return Err(malformed("`room_id` must be a string")),
        };
        let sender = UserId::parse(required_str(object, "sender")?)
            .map_err(|err| malformed(&format!("`sender`: {err}")))?;
        let origin_server_ts =
            MilliSecondsSinceUnixEpoch(required_uint(object, "origin_server_ts")?);
        let depth = u64::from(required_uint(object, "depth")?);
        let state_key = match object.get("state_key") {
            None => None,
            Some(CanonicalJsonValue::String(key)) => Some(key.clone()),
            Some(_) => return Err(malformed("`state_key` must be a string")),
        };
        let redacts_field = if version.redacts_in_content() {
            match object.get("content") {
                Some(CanonicalJsonValue::Object(content)) => content.get("redacts"),
                _ => None,
            }
        } else {
            object.get("redacts")
        };
        let redacts = match redacts_field {
            Some(CanonicalJsonValue::String(id)) if kind == TimelineEventType::RoomRedaction => {
                Some(EventId::parse(id).map_err(|err| malformed(&format!("`redacts`: {err}")))?)
            }
            _ => None,
        };

        Ok(Self {
            event_id,
            room_id,
            sender,
            origin_server_ts,
            kind,
            content,
            state_key,
            prev_events: event_id_list(object, "prev_events")?,
            auth_events: event_id_list(object, "auth_events")?,
            redacts,
            depth,
            rejected: false,
        })
    }

    /// The event ID (`$` + reference hash).
    pub fn event_id(&self) -> &EventId {
        &self.event_id
    }

    /// The room, absent only on a v12 create event (whose ID the room ID is derived from).
    pub fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    /// Who sent the event.
    pub fn sender(&self) -> &UserId {
        &self.sender
    }

    /// The event type.
    pub fn kind(&self) -> &TimelineEventType {
        &self.kind
    }

    /// The state key, present exactly on state events.
    pub fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    /// Whether the event is a state event.
    pub fn is_state(&self) -> bool {
        self.state_key.is_some()
    }

    /// The content, as the raw JSON it was signed with.
    pub fn content(&self) -> &RawJsonValue {
        &self.content
    }

    /// The sender's timestamp; contracts compare against this, never against a clock.
    pub fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    /// The event's depth in the DAG.
    pub fn depth(&self) -> u64 {
        self.depth
    }

    /// The events this one follows.
    pub fn prev_events(&self) -> &[OwnedEventId] {
        &self.prev_events
    }

    /// The state events that authorize this one.
    pub fn auth_events(&self) -> &[OwnedEventId] {
        &self.auth_events
    }

    /// The event a redaction targets.
    pub fn redacts(&self) -> Option<&EventId> {
        self.redacts.as_deref()
    }

    /// Whether the event was rejected by the authorization rules.
    pub fn is_rejected(&self) -> bool {
        self.rejected
    }

    /// Records that the event was rejected; rejected events stay in the DAG (it is the audit
    /// trail) but never count as state or authorize anything.
    pub fn set_rejected(&mut self, rejected: bool) {
        self.rejected = rejected;
    }

    /// The `(type, state_key)` this event occupies in room state, if it is a state event.
    pub fn state_slot(&self) -> Option<(ruma::events::StateEventType, String)> {
        self.state_key.as_ref().map(|key| (self.kind.to_string().into(), key.clone()))
    }
}

impl ruma::state_res::Event for Pdu {
    type Id = OwnedEventId;

    fn event_id(&self) -> &Self::Id {
        &self.event_id
    }

    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }

    fn sender(&self) -> &UserId {
        &self.sender
    }

    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }

    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }

    fn content(&self) -> &RawJsonValue {
        &self.content
    }

    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }

    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.prev_events.iter())
    }

    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &Self::Id> + '_> {
        Box::new(self.auth_events.iter())
    }

    fn redacts(&self) -> Option<&Self::Id> {
        self.redacts.as_ref()
    }

    fn rejected(&self) -> bool {
        self.rejected
    }
}

fn malformed(what: &str) -> ProtocolError {
    ProtocolError::Malformed(what.to_owned())
}

fn required_str<'a>(
    object: &'a CanonicalJsonObject,
    field: &str,
) -> Result<&'a str, ProtocolError> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(text)) => Ok(text),
        Some(_) => Err(malformed(&format!("`{field}` must be a string"))),
        None => Err(malformed(&format!("missing `{field}`"))),
    }
}

fn required_uint(object: &CanonicalJsonObject, field: &str) -> Result<UInt, ProtocolError> {
    match object.get(field) {
        Some(CanonicalJsonValue::Integer(value)) => UInt::try_from(i64::from(*value))
            .map_err(|_| malformed(&format!("`{field}` must not be negative"))),
        Some(_) => Err(malformed(&format!("`{field}` must be an integer"))),
        None => Err(malformed(&format!("missing `{field}`"))),
    }
}

fn event_id_list(
    object: &CanonicalJsonObject,
    field: &str,
) -> Result<Vec<OwnedEventId>, ProtocolError> {
    match object.get(field) {
        Some(CanonicalJsonValue::Array(items)) => items
            .iter()
            .map(|item| match item {
                CanonicalJsonValue::String(id) => EventId::parse(id)
                    .map_err(|err| malformed(&format!("`{field}` entry {id:?}: {err}"))),
                _ => Err(malformed(&format!("`{field}` entries must be strings"))),
            })
            .collect(),
        Some(_) => Err(malformed(&format!("`{field}` must be an array"))),
        None => Err(malformed(&format!("missing `{field}`"))),
    }
}
