//! Room state at every event. Each stored event points to a *state group*: the state before
//! it. Events that do not change state share their predecessor's group, so a message costs
//! one small row; a new group (a full copy of the state map) is written only when state
//! changes or forks are resolved. Health-record rooms hold a handful of members, so full
//! copies are cheaper to read than delta chains; a room with thousands of members would want
//! deltas, and the encoding leaves room for that.
//!
//! Also here: [`StoredEvents`], the lookup that lends stored events to the pure rules
//! (authorization, auth chains, state resolution), loading them on demand.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use medrix_protocol::{
    Pdu, RoomVersion, StateMap,
    canonical::{MAX_PDU_BYTES, parse_object},
    lookup::EventLookup,
};
use ruma::{EventId, OwnedEventId, events::StateEventType};

use crate::{
    locks::LockExt,
    storage::{Batch, Storage, StorageError, catalogue as cf, to_json_bytes},
};

/// Groups kept parsed in memory; past this the cache starts over.
const MAX_CACHED_GROUPS: usize = 2048;

pub struct StateStore {
    storage: Storage,
    next_group: AtomicU64,
    cache: Mutex<HashMap<u64, Arc<StateMap>>>,
}

impl StateStore {
    pub fn open(storage: Storage) -> Result<Self, StorageError> {
        // A group whose batch was lost in a crash left no trace, so reusing its number is safe.
        let next = storage
            .last_in_prefix(cf::STATEGROUP_STATE, b"", &[0xFF; 8])?
            .map(|(key, _)| crate::service::rooms::position_from(&key) + 1)
            .unwrap_or(1);
        Ok(Self { storage, next_group: AtomicU64::new(next), cache: Mutex::new(HashMap::new()) })
    }

    /// Stores `state` as a new group in `batch`, answering its number.
    pub fn put_group(&self, batch: &mut Batch<'_>, state: &StateMap) -> u64 {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        batch.put(cf::STATEGROUP_STATE, &group.to_be_bytes(), &encode_state(state));
        self.remember(group, Arc::new(state.clone()));
        group
    }

    /// Records that the state before `event_id` is `group`.
    pub fn put_event_group(batch: &mut Batch<'_>, event_id: &EventId, group: u64) {
        batch.put(cf::EVENTID_STATEGROUP, event_id.as_bytes(), &group.to_be_bytes());
    }

    /// The group holding the state before an event, if the event's place in the DAG is known
    /// (outliers, such as auth events fetched on their own, have none).
    pub fn event_group(&self, event_id: &EventId) -> Result<Option<u64>, StorageError> {
        Ok(self.storage.get(cf::EVENTID_STATEGROUP, event_id.as_bytes())?.map(|bytes| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[..8]);
            u64::from_be_bytes(raw)
        }))
    }

    /// The state a group holds.
    pub fn group(&self, group: u64) -> Result<Arc<StateMap>, StorageError> {
        if let Some(state) = self.cache.locked().get(&group) {
            return Ok(state.clone());
        }
        let bytes = self
            .storage
            .get(cf::STATEGROUP_STATE, &group.to_be_bytes())?
            .ok_or_else(|| StorageError::Corrupt(format!("missing state group {group}")))?;
        let state = Arc::new(decode_state(&bytes)?);
        self.remember(group, state.clone());
        Ok(state)
    }

    /// The state before an event, if known.
    pub fn state_before(&self, event_id: &EventId) -> Result<Option<Arc<StateMap>>, StorageError> {
        self.event_group(event_id)?.map(|group| self.group(group)).transpose()
    }

    fn remember(&self, group: u64, state: Arc<StateMap>) {
        let mut cache = self.cache.locked();
        if cache.len() >= MAX_CACHED_GROUPS {
            cache.clear();
        }
        cache.insert(group, state);
    }
}

/// The state after an event, from the state before it: the event takes its slot unless it
/// was rejected (a rejected event never becomes state).
pub fn state_after(before: &StateMap, pdu: &Pdu) -> StateMap {
    let mut after = before.clone();
    if !pdu.is_rejected()
        && let Some(slot) = pdu.state_slot()
    {
        after.insert(slot, pdu.event_id().to_owned());
    }
    after
}

/// A state map as JSON `[[type, state_key, event_id], ...]`.
fn encode_state(state: &StateMap) -> Vec<u8> {
    let triples: Vec<(String, &str, &str)> = state
        .iter()
        .map(|((kind, key), id)| (kind.to_string(), key.as_str(), id.as_str()))
        .collect();
    to_json_bytes(&triples)
}

fn decode_state(bytes: &[u8]) -> Result<StateMap, StorageError> {
    let triples: Vec<(String, String, String)> = serde_json::from_slice(bytes)
        .map_err(|err| StorageError::Corrupt(format!("state group: {err}")))?;
    triples
        .into_iter()
        .map(|(kind, key, id)| {
            let id = EventId::parse(&id)
                .map_err(|err| StorageError::Corrupt(format!("state group event ID: {err}")))?;
            Ok(((StateEventType::from(kind), key), id))
        })
        .collect()
}

/// Stored events lent to the pure rules, loaded on demand and kept for one decision. Events
/// the caller already holds in memory (a loaded room's current state) are consulted first,
/// by reference: an incoming event then costs no copy or reload of the room's state.
pub struct StoredEvents<'a> {
    storage: &'a Storage,
    version: RoomVersion,
    in_memory: Option<&'a HashMap<OwnedEventId, Pdu>>,
    also_in_memory: Option<&'a HashMap<OwnedEventId, Pdu>>,
    events: HashMap<OwnedEventId, Pdu>,
}

impl<'a> StoredEvents<'a> {
    pub fn new(storage: &'a Storage, version: RoomVersion) -> Self {
        Self { storage, version, in_memory: None, also_in_memory: None, events: HashMap::new() }
    }

    /// The same, consulting `in_memory` before storage.
    pub fn over(
        storage: &'a Storage,
        version: RoomVersion,
        in_memory: &'a HashMap<OwnedEventId, Pdu>,
    ) -> Self {
        Self {
            storage,
            version,
            in_memory: Some(in_memory),
            also_in_memory: None,
            events: HashMap::new(),
        }
    }

    /// Consults `more` too (events decided but perhaps not yet durable).
    pub fn and_over(mut self, more: &'a HashMap<OwnedEventId, Pdu>) -> Self {
        self.also_in_memory = Some(more);
        self
    }

    /// Adds an event already in hand (the one being decided).
    pub fn insert(&mut self, pdu: Pdu) {
        self.events.insert(pdu.event_id().to_owned(), pdu);
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.get_pdu(id).is_some()
    }

    /// Loads these events from storage if not at hand yet; unknown IDs are skipped.
    pub fn load<'i>(
        &mut self,
        ids: impl IntoIterator<Item = &'i EventId>,
    ) -> Result<(), StorageError> {
        for id in ids {
            if self.contains(id) {
                continue;
            }
            if let Some(pdu) = load_pdu(self.storage, id, self.version)? {
                self.events.insert(id.to_owned(), pdu);
            }
        }
        Ok(())
    }

    /// Loads these events and their whole auth chains.
    pub fn load_with_auth_chains<'i>(
        &mut self,
        ids: impl IntoIterator<Item = &'i EventId>,
    ) -> Result<(), StorageError> {
        let mut todo: Vec<OwnedEventId> = ids.into_iter().map(ToOwned::to_owned).collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(id) = todo.pop() {
            if !seen.insert(id.clone()) {
                continue;
            }
            self.load([&*id])?;
            if let Some(pdu) = self.get_pdu(&id) {
                todo.extend(pdu.auth_events().iter().filter(|a| !seen.contains(*a)).cloned());
            }
        }
        Ok(())
    }
}

impl EventLookup for StoredEvents<'_> {
    fn get_pdu(&self, id: &EventId) -> Option<&Pdu> {
        self.in_memory
            .and_then(|events| events.get(id))
            .or_else(|| self.also_in_memory.and_then(|events| events.get(id)))
            .or_else(|| self.events.get(id))
    }
}

/// One stored event, typed, with its rejection recorded.
pub fn load_pdu(
    storage: &Storage,
    id: &EventId,
    version: RoomVersion,
) -> Result<Option<Pdu>, StorageError> {
    let Some(bytes) = storage.get(cf::EVENTID_PDU, id.as_bytes())? else { return Ok(None) };
    let object = parse_object(&bytes, MAX_PDU_BYTES)
        .map_err(|err| StorageError::Corrupt(err.to_string()))?;
    let mut pdu = Pdu::from_canonical(id.to_owned(), &object, version)
        .map_err(|err| StorageError::Corrupt(err.to_string()))?;
    if storage
        .get(cf::EVENTID_REJECTION, id.as_bytes())?
        .is_some_and(|r| r.starts_with(b"rejected"))
    {
        pdu.set_rejected(true);
    }
    Ok(Some(pdu))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_map_survives_encoding() {
        let mut state = StateMap::new();
        state.insert((StateEventType::RoomMember, "@a:x".into()), EventId::parse("$a").unwrap());
        state.insert((StateEventType::RoomCreate, String::new()), EventId::parse("$c").unwrap());
        assert_eq!(decode_state(&encode_state(&state)).unwrap(), state);
    }
}
