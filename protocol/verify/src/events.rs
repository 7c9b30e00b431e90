//! A room's events: each one's format, signatures, content hash and ID; the DAG's links;
//! and each event's authorization, replayed in DAG order from the room's creation.

use std::collections::{BTreeMap, HashMap, HashSet};

use medrix_protocol::{
    Pdu, StateMap,
    canonical::object_from_value,
    decide::{Verdict, decide},
    incoming::check_incoming_object,
    keys::VerifyKeys,
    resolve::resolve_state,
    ruma::{EventId, OwnedEventId},
};

use crate::{Problem, RoomExport};

/// The events of a room that passed their checks, in DAG order.
pub struct RoomEvents {
    pub events: HashMap<OwnedEventId, Pdu>,
    /// Parents before children.
    pub order: Vec<OwnedEventId>,
}

pub fn check_room(room: &RoomExport, keys: &VerifyKeys, problems: &mut Vec<Problem>) -> RoomEvents {
    let at = |id: &str| format!("room {}, event {id}", room.room_id);
    let mut events = HashMap::new();
    let mut redacted = Vec::new();
    for (position, value) in room.events.iter().enumerate() {
        let object = match object_from_value(value.clone()) {
            Ok(object) => object,
            Err(err) => {
                problems.push(Problem {
                    place: format!("room {}, exported event #{position}", room.room_id),
                    what: format!("is not canonical JSON: {err}"),
                });
                continue;
            }
        };
        match check_incoming_object(object, room.version, keys) {
            Ok(checked) => {
                let id = checked.pdu.event_id().to_owned();
                if checked.redacted_on_receipt {
                    redacted.push(id.clone());
                }
                events.insert(id, checked.pdu);
            }
            Err(err) => problems.push(Problem {
                place: format!("room {}, exported event #{position}", room.room_id),
                what: format!("fails its checks (format, signatures, hashes): {err}"),
            }),
        }
    }
    // A stored event whose content no longer matches its hash is one a redaction removed the
    // content of; anything else is tampering.
    let redaction_targets: HashSet<&EventId> = events.values().filter_map(Pdu::redacts).collect();
    for id in redacted {
        if !redaction_targets.contains(&*id) {
            problems.push(Problem {
                place: at(id.as_str()),
                what: "its content does not match its content hash, and no redaction in the room names it"
                    .to_owned(),
            });
        }
    }
    for pdu in events.values() {
        for (field, referenced) in
            [("prev_events", pdu.prev_events()), ("auth_events", pdu.auth_events())]
        {
            for missing in referenced.iter().filter(|id| !events.contains_key(*id)) {
                problems.push(Problem {
                    place: at(pdu.event_id().as_str()),
                    what: format!("its {field} names {missing}, which is not in the room"),
                });
            }
        }
    }
    let order = dag_order(&events);
    replay(room, &events, &order, problems);
    RoomEvents { events, order }
}

/// Parents before children (Kahn's algorithm over `prev_events`, ties by depth then ID so
/// the order is the same on every run). Events on a cycle (impossible with honest hashes)
/// are left out and reported by the replay as never reached.
fn dag_order(events: &HashMap<OwnedEventId, Pdu>) -> Vec<OwnedEventId> {
    let mut waiting: HashMap<&EventId, usize> = HashMap::new();
    let mut children: HashMap<&EventId, Vec<&EventId>> = HashMap::new();
    for (id, pdu) in events {
        let parents: Vec<&OwnedEventId> =
            pdu.prev_events().iter().filter(|p| events.contains_key(*p)).collect();
        waiting.insert(id, parents.len());
        for parent in parents {
            children.entry(parent).or_default().push(id);
        }
    }
    let mut ready: BTreeMap<(u64, &EventId), ()> = waiting
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(id, _)| ((events[*id].depth(), *id), ()))
        .collect();
    let mut order = Vec::with_capacity(events.len());
    while let Some(((_, id), ())) = ready.pop_first() {
        order.push(id.to_owned());
        for child in children.get(id).into_iter().flatten() {
            if let Some(count) = waiting.get_mut(child) {
                *count -= 1;
                if *count == 0 {
                    ready.insert((events[*child].depth(), child), ());
                }
            }
        }
    }
    order
}

/// Authorizes every event against its auth events and the state before it, the state being
/// the state after its `prev_events`, resolved where they differ. Every event of an export
/// must be accepted: the server exports the accepted DAG.
fn replay(
    room: &RoomExport,
    events: &HashMap<OwnedEventId, Pdu>,
    order: &[OwnedEventId],
    problems: &mut Vec<Problem>,
) {
    let mut state_after: HashMap<&EventId, StateMap> = HashMap::with_capacity(order.len());
    for id in order {
        let pdu = &events[id];
        let forks: Vec<StateMap> =
            pdu.prev_events().iter().filter_map(|prev| state_after.get(&**prev).cloned()).collect();
        let distinct = forks.windows(2).any(|pair| pair[0] != pair[1]);
        let state_before = if distinct {
            match resolve_state(room.version, &forks, events) {
                Ok(state) => state,
                Err(err) => {
                    problems.push(Problem {
                        place: format!("room {}, event {id}", room.room_id),
                        what: format!("the state before it cannot be resolved: {err}"),
                    });
                    forks.into_iter().next().unwrap_or_default()
                }
            }
        } else {
            forks.into_iter().next().unwrap_or_default()
        };
        let decision = decide(room.version, pdu, events, &state_before, None);
        if let Verdict::Rejected(reason) | Verdict::SoftFailed(reason) = &decision.verdict {
            problems.push(Problem {
                place: format!("room {}, event {id}", room.room_id),
                what: format!("is not authorized: {reason}"),
            });
        }
        state_after.insert(id, decision.state_after);
    }
    if order.len() < events.len() {
        problems.push(Problem {
            place: format!("room {}", room.room_id),
            what: format!("{} event(s) are on a cycle of prev_events", events.len() - order.len()),
        });
    }
}
