//! Room state at every event. Each stored event points to a *state group*: the state before
//! it. Events that do not change state share their predecessor's group, so a message costs
//! one small row; a new group is written only when state changes or forks are resolved.
//! A new group is stored as the slots it changes over the room's group before it (a delta),
//! so a state event costs a row the size of its change, not of the room's state: a record
//! space holding hundreds of contracts, or a room of thousands of members, would otherwise
//! copy its whole state with every contract or join. Every `MAX_DELTA_CHAIN` deltas a full
//! copy is written again, which bounds what reading a group that is not cached costs.
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
/// The most deltas between a group and the full copy it is read from.
const MAX_DELTA_CHAIN: u8 = 32;
/// The first byte of a delta row; a full copy is a JSON array, so it starts with `[`.
const DELTA_ROW: u8 = 1;

/// A parsed group and how many deltas lie between it and its full copy.
#[derive(Clone)]
struct CachedGroup {
    state: Arc<StateMap>,
    chain: u8,
}

pub struct StateStore {
    storage: Storage,
    next_group: AtomicU64,
    cache: Mutex<HashMap<u64, CachedGroup>>,
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

    /// Stores `state` as a new group in `batch`, answering its number: as its changes over
    /// the group `base` (of the same room), when that is shorter and the chain of deltas
    /// behind `base` not too long; otherwise as a full copy. The changes are taken against
    /// what `base` holds as stored, so a delta always reads back as `state`.
    pub fn put_group(&self, batch: &mut Batch<'_>, base: Option<u64>, state: &StateMap) -> u64 {
        let group = self.next_group.fetch_add(1, Ordering::Relaxed);
        // A base not found (its write still queued, and the cache started over since) is
        // simply not built upon.
        let delta = base.and_then(|base_group| {
            let base = self.cached_group(base_group).ok()?;
            let changes = changes_between(&base.state, state);
            (base.chain < MAX_DELTA_CHAIN && changes.len() * 2 < state.len())
                .then(|| (base_group, base.chain + 1, changes))
        });
        let chain = match delta {
            Some((base_group, chain, changes)) => {
                batch.put(
                    cf::STATEGROUP_STATE,
                    &group.to_be_bytes(),
                    &encode_delta(base_group, chain, &changes),
                );
                chain
            }
            None => {
                batch.put(cf::STATEGROUP_STATE, &group.to_be_bytes(), &encode_state(state));
                0
            }
        };
        self.remember(group, CachedGroup { state: Arc::new(state.clone()), chain });
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
        Ok(self.cached_group(group)?.state)
    }

    /// A group from the cache, or read: a delta row applies its changes to its base, read
    /// the same way (at most `MAX_DELTA_CHAIN` rows deep).
    fn cached_group(&self, group: u64) -> Result<CachedGroup, StorageError> {
        if let Some(cached) = self.cache.locked().get(&group) {
            return Ok(cached.clone());
        }
        // Walk back to a cached group or a full copy, then apply the deltas met on the way,
        // oldest first, to one copy of it; only the group asked for is remembered.
        let mut deltas = Vec::new();
        let mut at = group;
        let mut state = loop {
            if let Some(cached) = self.cache.locked().get(&at) {
                break StateMap::clone(&cached.state);
            }
            let bytes = self
                .storage
                .get(cf::STATEGROUP_STATE, &at.to_be_bytes())?
                .ok_or_else(|| StorageError::Corrupt(format!("missing state group {at}")))?;
            match decode_row(&bytes)? {
                Row::Full(state) => break state,
                Row::Delta { base, chain, changes } => {
                    // Bases come before their groups, so the walk ends.
                    if base >= at {
                        return Err(StorageError::Corrupt(format!(
                            "state group {at} is a delta over a later group"
                        )));
                    }
                    deltas.push((chain, changes));
                    at = base;
                }
            }
        };
        let chain = deltas.first().map_or(0, |(chain, _)| *chain);
        for (_, changes) in deltas.into_iter().rev() {
            for (slot, event_id) in changes {
                match event_id {
                    Some(event_id) => state.insert(slot, event_id),
                    None => state.remove(&slot),
                };
            }
        }
        let cached = CachedGroup { state: Arc::new(state), chain };
        self.remember(group, cached.clone());
        Ok(cached)
    }

    /// The state before an event, if known.
    pub fn state_before(&self, event_id: &EventId) -> Result<Option<Arc<StateMap>>, StorageError> {
        self.event_group(event_id)?.map(|group| self.group(group)).transpose()
    }

    fn remember(&self, group: u64, cached: CachedGroup) {
        let mut cache = self.cache.locked();
        if cache.len() >= MAX_CACHED_GROUPS {
            cache.clear();
        }
        cache.insert(group, cached);
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
        .map(|(kind, key, id)| Ok(((StateEventType::from(kind), key), parse_state_id(&id)?)))
        .collect()
}

/// A slot's change from one group to the next: its new event, or `None` when it left.
type Change = ((StateEventType, String), Option<OwnedEventId>);

/// What `state` changes over `base`, slot by slot.
fn changes_between(base: &StateMap, state: &StateMap) -> Vec<Change> {
    let entered = state
        .iter()
        .filter(|(slot, id)| base.get(*slot) != Some(*id))
        .map(|(slot, id)| (slot.clone(), Some(id.clone())));
    let left =
        base.keys().filter(|slot| !state.contains_key(*slot)).map(|slot| (slot.clone(), None));
    entered.chain(left).collect()
}

/// A delta row: `DELTA_ROW`, the chain length, the base group (8 bytes, big-endian), then the
/// changes as JSON `[[type, state_key, event_id | null], ...]`.
fn encode_delta(base: u64, chain: u8, changes: &[Change]) -> Vec<u8> {
    let triples: Vec<(String, &str, Option<&str>)> = changes
        .iter()
        .map(|((kind, key), id)| {
            (kind.to_string(), key.as_str(), id.as_deref().map(EventId::as_str))
        })
        .collect();
    let mut row = vec![DELTA_ROW, chain];
    row.extend_from_slice(&base.to_be_bytes());
    row.extend_from_slice(&to_json_bytes(&triples));
    row
}

enum Row {
    Full(StateMap),
    Delta { base: u64, chain: u8, changes: Vec<Change> },
}

fn decode_row(bytes: &[u8]) -> Result<Row, StorageError> {
    if bytes.first() != Some(&DELTA_ROW) {
        return decode_state(bytes).map(Row::Full);
    }
    let corrupt = |what: String| StorageError::Corrupt(format!("state group delta: {what}"));
    let (Some(&chain), Some(base)) = (bytes.get(1), bytes.get(2..10)) else {
        return Err(corrupt("too short".to_owned()));
    };
    let base = u64::from_be_bytes(base.try_into().map_err(|_| corrupt("base".to_owned()))?);
    let triples: Vec<(String, String, Option<String>)> =
        serde_json::from_slice(&bytes[10..]).map_err(|err| corrupt(err.to_string()))?;
    let changes = triples
        .into_iter()
        .map(|(kind, key, id)| {
            Ok(((StateEventType::from(kind), key), id.as_deref().map(parse_state_id).transpose()?))
        })
        .collect::<Result<_, StorageError>>()?;
    Ok(Row::Delta { base, chain, changes })
}

fn parse_state_id(id: &str) -> Result<OwnedEventId, StorageError> {
    EventId::parse(id).map_err(|err| StorageError::Corrupt(format!("state group event ID: {err}")))
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

    fn member(user: &str, event: &str) -> ((StateEventType, String), OwnedEventId) {
        ((StateEventType::RoomMember, user.to_owned()), EventId::parse(event).unwrap())
    }

    fn store(name: &str) -> (StateStore, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "medrix-state-store-{name}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        (StateStore::open(Storage::open(&dir).unwrap()).unwrap(), dir)
    }

    /// The row kind a group was written as.
    fn row_is_delta(store: &StateStore, group: u64) -> bool {
        let row = store.storage.get(cf::STATEGROUP_STATE, &group.to_be_bytes()).unwrap();
        row.unwrap()[0] == DELTA_ROW
    }

    #[tokio::test]
    async fn groups_written_as_deltas_read_back_whole_from_storage() {
        let (store, dir) = store("deltas");
        let mut state: StateMap = (0..20).map(|i| member(&format!("@u{i}:x"), "$old")).collect();
        let mut batch = store.storage.batch();
        let mut group = store.put_group(&mut batch, None, &state);
        let mut written = vec![(group, state.clone())];
        // Past the longest chain a full copy comes again; a slot may also leave the state
        // (as state resolution can make it).
        for step in 0..(usize::from(MAX_DELTA_CHAIN) + 3) {
            let (slot, id) = member(&format!("@u{}:x", step % 20), &format!("$e{step}"));
            state.insert(slot, id);
            if step == 5 {
                state.remove(&(StateEventType::RoomMember, "@u19:x".to_owned()));
            }
            group = store.put_group(&mut batch, Some(group), &state);
            written.push((group, state.clone()));
        }
        store.storage.commit(batch).await.unwrap();
        assert!(!row_is_delta(&store, written[0].0));
        assert!(row_is_delta(&store, written[1].0));
        assert!(!row_is_delta(&store, written[usize::from(MAX_DELTA_CHAIN) + 1].0));
        assert!(row_is_delta(&store, written.last().unwrap().0));

        store.cache.locked().clear();
        for (group, expected) in written.iter().rev() {
            assert_eq!(*store.group(*group).unwrap(), *expected, "group {group}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_change_of_most_of_the_state_is_written_whole() {
        let (store, dir) = store("whole");
        let before: StateMap = (0..4).map(|i| member(&format!("@u{i}:x"), "$a")).collect();
        let after: StateMap = (0..4).map(|i| member(&format!("@u{i}:x"), "$b")).collect();
        let mut batch = store.storage.batch();
        let base = store.put_group(&mut batch, None, &before);
        let group = store.put_group(&mut batch, Some(base), &after);
        store.storage.commit(batch).await.unwrap();
        assert!(!row_is_delta(&store, group));
        store.cache.locked().clear();
        assert_eq!(*store.group(group).unwrap(), after);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_delta_over_a_later_group_is_reported_corrupt_not_followed() {
        let (store, dir) = store("corrupt");
        let mut batch = store.storage.batch();
        let changes = vec![member("@a:x", "$a")].into_iter().map(|(slot, id)| (slot, Some(id)));
        let row = encode_delta(9, 1, &changes.collect::<Vec<_>>());
        batch.put(cf::STATEGROUP_STATE, &5u64.to_be_bytes(), &row);
        store.storage.commit(batch).await.unwrap();
        assert!(matches!(store.group(5), Err(StorageError::Corrupt(_))));
        let _ = std::fs::remove_dir_all(dir);
    }
}
