//! The rows that put an accepted event into a room, for local and received events alike: one
//! function, so the two paths cannot drift apart (received redactions were once never
//! applied, because only the local path wrote the redacted target).

use medrix_protocol::Pdu;
use ruma::{EventId, OwnedEventId, RoomId, events::StateEventType};

use super::{RoomHead, index_state_slot, index_timeline, state_store::StateStore};
use crate::storage::{Batch, catalogue as cf, compound_key, to_json_bytes};

/// An accepted event and how the room moves with it.
pub(super) struct AcceptedEvent<'a> {
    pub room_id: &'a RoomId,
    pub event_id: &'a EventId,
    /// Its canonical JSON, as stored.
    pub json: &'a [u8],
    /// The state group holding the state before it.
    pub before_group: u64,
    /// Its place in the stream (the timeline `/sync` reads).
    pub position: u64,
    /// The state events that entered the room's current state with it.
    pub entered: &'a [Pdu],
    /// The state slots that left the current state with it (resolving a fork can drop one).
    pub left: Vec<(StateEventType, String)>,
    /// The room's head after it.
    pub head: &'a RoomHead,
    /// The event a redaction removes the content of, as it is to be stored now.
    pub redacted: Option<(OwnedEventId, Vec<u8>)>,
}

/// Writes an accepted event, its indexes and the room's new head into `batch`.
pub(super) fn write_accepted(batch: &mut Batch<'_>, event: AcceptedEvent<'_>) {
    let AcceptedEvent {
        room_id,
        event_id,
        json,
        before_group,
        position,
        entered,
        left,
        head,
        redacted,
    } = event;
    batch.put(cf::EVENTID_PDU, event_id.as_bytes(), json);
    StateStore::put_event_group(batch, event_id, before_group);
    index_timeline(batch, room_id, event_id, position);
    // The redacted target replaces the original in the same write as the redaction.
    if let Some((target, json)) = redacted {
        batch.put(cf::EVENTID_PDU, target.as_bytes(), &json);
    }
    for state_event in entered {
        index_state_slot(batch, room_id, state_event, position);
    }
    // What the contract executor must look at because of these events, in the same write.
    crate::service::contracts::schedule::note_entered(batch, room_id, entered);
    for (kind, key) in left {
        let kind = kind.to_string();
        batch.delete(
            cf::ROOMSTATEKEY_EVENTID,
            &compound_key(&[room_id.as_bytes(), kind.as_bytes(), key.as_bytes()]),
        );
    }
    batch.put(cf::ROOMID_HEAD, room_id.as_bytes(), &to_json_bytes(head));
}
