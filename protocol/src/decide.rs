//! The one question the server asks of the rules: given this event and the states around it,
//! is it accepted, rejected (and why) or soft-failed, and what is the state after it?

use std::{cell::RefCell, collections::HashMap};

use ruma::{
    EventId, OwnedEventId, UserId,
    events::{StateEventType, TimelineEventType},
    state_res,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    Pdu, ProtocolError, RoomVersion, incoming::create_event_id_from_room_id, lookup::EventLookup,
    resolve::StateMap,
};

/// The outcome of authorizing one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The event passes every check.
    Accepted,
    /// The event fails against its own auth events or the state before it. It stays in the DAG
    /// (the audit trail) marked rejected, and never becomes state.
    Rejected(String),
    /// The event is valid where it sits in the DAG but not against the room's current state
    /// (for example its sender was banned meanwhile). It is kept but not served or relayed.
    SoftFailed(String),
}

/// A verdict and the room state after the event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    /// The state before the event, plus the event itself if it is an accepted (or soft-failed)
    /// state event. A rejected event leaves the state as it was.
    pub state_after: StateMap,
}

/// Runs the authorization rules on `event`:
/// 1. the state-independent rules (create events; shape of `auth_events`);
/// 2. against the state its `auth_events` describe, then against `state_before` (the resolved
///    state at its place in the DAG): a failure rejects;
/// 3. against `current_state`, if given: a failure soft-fails.
///
/// `events` must hold the event's auth events (and, in v12, the create event); a missing one
/// is reported as a rejection, so callers fetch dependencies first.
pub fn decide<L: EventLookup>(
    version: RoomVersion,
    event: &Pdu,
    events: &L,
    state_before: &StateMap,
    current_state: Option<&StateMap>,
) -> Decision {
    let rules = &version.rules().authorization;
    let rejected = |reason: String| Decision {
        verdict: Verdict::Rejected(reason),
        state_after: state_before.clone(),
    };

    if let Err(reason) = check_create_names_this_version(version, event) {
        return rejected(reason);
    }
    if let Err(reason) =
        state_res::check_state_independent_auth_rules(rules, event, |id| events.get_pdu(id))
    {
        return rejected(reason);
    }
    // The rules are a deterministic function of the state slots they read, so the first
    // check records what it saw; a later check over a state holding the very same events in
    // those slots must give the same answer and is skipped (in a linear room, nearly always).
    let auth_state = AuthEventsState::new(version, event, events);
    let seen = RefCell::new(Vec::new());
    if let Err(reason) = state_res::check_state_dependent_auth_rules(rules, event, |kind, key| {
        let found = auth_state.get(kind, key);
        let slot = (kind.clone(), key.to_owned());
        seen.borrow_mut().push((slot, found.map(|pdu| pdu.event_id())));
        found
    }) {
        return rejected(format!("against its auth events: {reason}"));
    }
    let seen = seen.into_inner();
    let before = StateView { state: state_before, events };
    if !before.agrees_with(&seen)
        && let Err(reason) =
            state_res::check_state_dependent_auth_rules(rules, event, |kind, key| {
                before.get(kind, key)
            })
    {
        return rejected(format!("against the state before it: {reason}"));
    }

    let mut state_after = state_before.clone();
    if let Some(slot) = event.state_slot() {
        state_after.insert(slot, event.event_id().to_owned());
    }
    let now = current_state
        .filter(|current| *current != state_before)
        .map(|current| StateView { state: current, events })
        .filter(|now| !now.agrees_with(&seen));
    let verdict = match now {
        Some(now) => {
            match state_res::check_state_dependent_auth_rules(rules, event, |kind, key| {
                now.get(kind, key)
            }) {
                Ok(()) => Verdict::Accepted,
                Err(reason) => Verdict::SoftFailed(format!("against current state: {reason}")),
            }
        }
        None => Verdict::Accepted,
    };
    Decision { verdict, state_after }
}

/// The spec's rule 1.3 ("if `content.room_version` is present and not a recognised version,
/// reject"), which ruma leaves to its caller. Medrix recognises only the version it was asked
/// to check the room as; an absent field means version 1, which it does not speak.
fn check_create_names_this_version(version: RoomVersion, event: &Pdu) -> Result<(), String> {
    if *event.kind() != TimelineEventType::RoomCreate {
        return Ok(());
    }
    #[derive(serde::Deserialize)]
    struct CreateContent<'a> {
        #[serde(borrow)]
        room_version: Option<&'a str>,
    }
    let named = serde_json::from_str::<CreateContent<'_>>(event.content().get())
        .map_err(|err| format!("invalid `m.room.create` content: {err}"))?
        .room_version
        .unwrap_or("1");
    if named == version.as_str() {
        Ok(())
    } else {
        Err(format!("`m.room.create` names room version {named:?}, not {version}"))
    }
}

/// The auth events a new event of this shape must cite, chosen from `state`
/// (the spec's auth events selection). In v12 the create event is implied by the room ID.
pub fn select_auth_events(
    version: RoomVersion,
    kind: &str,
    sender: &UserId,
    state_key: Option<&str>,
    content: &RawJsonValue,
    state: &StateMap,
) -> Result<Vec<OwnedEventId>, ProtocolError> {
    let slots = state_res::auth_types_for_event(
        &TimelineEventType::from(kind),
        sender,
        state_key,
        content,
        &version.rules().authorization,
    )
    .map_err(ProtocolError::Malformed)?;
    Ok(slots.iter().filter_map(|slot| state.get(slot).cloned()).collect())
}

/// A room state with the events behind it.
struct StateView<'a, L> {
    state: &'a StateMap,
    events: &'a L,
}

impl<'a, L: EventLookup> StateView<'a, L> {
    fn get(&self, kind: &StateEventType, key: &str) -> Option<&'a Pdu> {
        // The map is keyed by owned pairs; a lookup costs one small allocation.
        let id = self.state.get(&(kind.clone(), key.to_owned()))?;
        self.events.get_pdu(id)
    }

    /// Whether this state holds exactly the events another check saw in each slot it read.
    fn agrees_with(&self, seen: &[((StateEventType, String), Option<&EventId>)]) -> bool {
        seen.iter().all(|(slot, seen_id)| {
            let here = self.state.get(slot).and_then(|id| self.events.get_pdu(id));
            here.map(|pdu| pdu.event_id()) == *seen_id
        })
    }
}

/// The state described by an event's `auth_events` (plus the create event in v12, which the
/// room ID names instead of listing it).
struct AuthEventsState<'a> {
    by_slot: HashMap<(StateEventType, String), &'a Pdu>,
}

impl<'a> AuthEventsState<'a> {
    fn new<L: EventLookup>(version: RoomVersion, event: &Pdu, events: &'a L) -> Self {
        let mut by_slot = HashMap::with_capacity(event.auth_events().len() + 1);
        for pdu in event.auth_events().iter().filter_map(|id| events.get_pdu(id)) {
            if let Some(slot) = pdu.state_slot() {
                by_slot.insert(slot, pdu);
            }
        }
        if version.room_id_is_create_event_hash()
            && let Some(create) = event
                .room_id()
                .and_then(create_event_id_from_room_id)
                .and_then(|id| events.get_pdu(&id))
        {
            by_slot.insert((StateEventType::RoomCreate, String::new()), create);
        }
        Self { by_slot }
    }

    fn get(&self, kind: &StateEventType, key: &str) -> Option<&'a Pdu> {
        self.by_slot.get(&(kind.clone(), key.to_owned())).copied()
    }
}

/// Whether an event ID names a known, accepted event (used by callers building forks).
pub fn is_accepted<L: EventLookup>(events: &L, id: &EventId) -> bool {
    events.get_pdu(id).is_some_and(|pdu| !pdu.is_rejected())
}
