//! Walks of the auth DAG (the graph of `auth_events` links): auth chains, and the conflicted
//! state subgraph that state resolution v2.1 (room version 12) adds to the conflicted set.
//!
//! Both walks are iterative: auth chains of long-lived rooms are deep, and recursion would put
//! the depth of a room's history on the call stack.

use std::collections::{HashMap, HashSet};

use ruma::{EventId, OwnedEventId};

use crate::lookup::EventLookup;

/// The auth chain of a set of events: every event reachable through `auth_events`, not
/// counting the starting events themselves. IDs the lookup does not know are included but not
/// followed further.
pub fn auth_chain<'a, L: EventLookup>(
    events: &L,
    starts: impl IntoIterator<Item = &'a EventId>,
) -> HashSet<OwnedEventId> {
    let mut chain = HashSet::new();
    let mut to_visit: Vec<&EventId> = starts.into_iter().collect();
    while let Some(id) = to_visit.pop() {
        let Some(pdu) = events.get_pdu(id) else {
            continue;
        };
        for auth_id in pdu.auth_events() {
            if chain.insert(auth_id.clone()) {
                to_visit.push(auth_id);
            }
        }
    }
    chain
}

/// The conflicted state subgraph: every event on some `auth_events` path from one conflicted
/// event to another, endpoints included.
pub fn conflicted_state_subgraph<'a, L: EventLookup>(
    events: &'a L,
    conflicted: impl IntoIterator<Item = &'a EventId>,
) -> HashSet<OwnedEventId> {
    let conflicted: HashSet<&EventId> = conflicted.into_iter().collect();
    // For each event visited from a conflicted event: whether a conflicted event is reachable
    // from it (itself included). Visited and reaching = on a path between two conflicted events.
    let mut reaches: HashMap<&EventId, bool> = HashMap::new();

    for &start in &conflicted {
        if reaches.contains_key(start) {
            continue;
        }
        reaches.insert(start, true);
        // Each frame: an event and how many of its auth events were looked at so far.
        let mut stack: Vec<(&EventId, usize)> = vec![(start, 0)];
        while let Some(frame) = stack.last_mut() {
            let (id, next) = *frame;
            let auth_events = events.get_pdu(id).map(|pdu| pdu.auth_events()).unwrap_or(&[]);
            let Some(child) = auth_events.get(next) else {
                stack.pop();
                if reaches[id]
                    && let Some(&(parent, _)) = stack.last()
                {
                    reaches.insert(parent, true);
                }
                continue;
            };
            frame.1 += 1;
            match reaches.get(&**child) {
                Some(true) => {
                    reaches.insert(id, true);
                }
                Some(false) => {}
                None => {
                    reaches.insert(child, conflicted.contains(&**child));
                    stack.push((child, 0));
                }
            }
        }
    }

    reaches.into_iter().filter(|&(_, on_path)| on_path).map(|(id, _)| id.to_owned()).collect()
}
