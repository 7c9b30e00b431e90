//! A record room exported whole for the independent verifier (`spec/audit.md` §6): every
//! event of its DAG as signed, and its read log. Only the patient exports; the export is
//! itself a logged read.

use std::collections::{BTreeSet, HashSet};

use medrix_protocol::RoomVersion;
use medrix_records::{ReadBasis, ReadEntry, ReadPath};
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{Map, Value};

use super::{Access, AccessError, Reader, Unlogged, read_log::MAX_LISTED};

/// The most events one room's export holds.
pub const MAX_EXPORTED_EVENTS: usize = 200_000;

pub struct RoomExport {
    pub version: RoomVersion,
    /// Every event reachable from the room's forward extremities through `prev_events` and
    /// `auth_events`, in the federation format, as signed (oldest first by depth).
    pub events: Vec<Map<String, Value>>,
    /// The whole read log, in order.
    pub read_log: Vec<ReadEntry>,
    /// The servers whose signatures the events carry (whose keys the verifier needs).
    pub signers: BTreeSet<String>,
}

impl Access {
    /// The room's DAG and read log, for its patient.
    pub fn export_room(
        &self,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<Unlogged<RoomExport>, AccessError> {
        let view = self.view(room_id, Reader::User(user))?;
        if view.basis() != Some(&ReadBasis::Patient) {
            return Err(AccessError::NotFound("no health record room of yours by this ID"));
        }
        let (extremities, _) =
            self.rooms.extremities(room_id)?.ok_or(AccessError::NotFound("unknown room"))?;
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        let mut stack = extremities.clone();
        let mut events = Vec::new();
        while let Some(id) = stack.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            if seen.len() > MAX_EXPORTED_EVENTS {
                return Err(AccessError::Forbidden("the room is too large to export at once"));
            }
            let Some(event) = self.rooms.event_json(&id)? else { continue };
            for key in ["prev_events", "auth_events"] {
                let referenced = event.get(key).and_then(Value::as_array).into_iter().flatten();
                for next in referenced.filter_map(Value::as_str) {
                    if let Ok(next) = OwnedEventId::try_from(next) {
                        stack.push(next);
                    }
                }
            }
            events.push((id, event));
        }
        let depth = |event: &Map<String, Value>| event.get("depth").and_then(Value::as_u64);
        events.sort_by(|(a_id, a), (b_id, b)| (depth(a), a_id).cmp(&(depth(b), b_id)));
        let signers = events
            .iter()
            .flat_map(|(_, event)| {
                event
                    .get("signatures")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flat_map(|s| s.keys())
            })
            .cloned()
            .collect();
        let mut read_log = Vec::new();
        loop {
            let page = self.read_log.entries(room_id, read_log.len() as u64, MAX_LISTED)?;
            let full = page.len() == MAX_LISTED;
            read_log.extend(page);
            if !full {
                break;
            }
        }
        // Logged by the forward extremities: the export is everything reachable from them.
        let heads = extremities.iter().map(ToString::to_string).collect();
        let disclosure = view.disclosure(ReadPath::Export, heads);
        let export = RoomExport {
            version: view.version(),
            events: events.into_iter().map(|(_, event)| event).collect(),
            read_log,
            signers,
        };
        Ok(Unlogged::new(export, disclosure))
    }
}
