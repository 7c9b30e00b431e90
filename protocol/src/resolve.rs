//! State resolution: one room state from the states of several forks of the DAG, by state
//! resolution v2 (room versions 10 and 11) or v2.1 (room version 12), with ruma's algorithm.

use ruma::{
    OwnedEventId,
    state_res::{self, utils::event_id_set::EventIdSet},
};

use crate::{
    ProtocolError, RoomVersion,
    auth_chain::{auth_chain, conflicted_state_subgraph},
    lookup::EventLookup,
};

/// A room state: `(event type, state key)` → the event holding that slot.
pub type StateMap = state_res::StateMap<OwnedEventId>;

/// Resolves the states of `forks` into one. Every event named in the forks, and their auth
/// chains, must be in `events`; the answer does not depend on the order of `forks`.
pub fn resolve_state<L: EventLookup>(
    version: RoomVersion,
    forks: &[StateMap],
    events: &L,
) -> Result<StateMap, ProtocolError> {
    match forks {
        [] => return Ok(StateMap::new()),
        [only] => return Ok(only.clone()),
        _ => {}
    }
    let rules = version.rules();
    let state_res_rules = rules.state_res.v2_rules().ok_or_else(|| {
        ProtocolError::StateResolution(format!("room version {version} has no v2 rules"))
    })?;
    let auth_chains: Vec<EventIdSet<OwnedEventId>> = forks
        .iter()
        .map(|fork| auth_chain(events, fork.values().map(|id| &**id)).into_iter().collect())
        .collect();

    state_res::resolve(
        &rules.authorization,
        state_res_rules,
        forks.iter(),
        auth_chains,
        |id| events.get_pdu(id),
        |conflicted| {
            let ids = conflicted.values().flatten().map(|id| &**id);
            Some(conflicted_state_subgraph(events, ids).into_iter().collect())
        },
    )
    .map_err(|err| ProtocolError::StateResolution(err.to_string()))
}
