//! A room's history from before this server joined it, taken in by backfill. A server that
//! joins a room sees it from its join on; when one of its users pages back past that, the
//! federation layer fetches what came before (`/backfill`) and hands it here oldest first.
//!
//! A backfilled event is placed in the DAG like any received event: authorized against the
//! state before it, which is stored, so the access service judges it where it sits (history
//! visibility and memberships at that point). But it moves nothing: not the room's forward
//! extremities, not its current state, not the `/sync` stream (it is not news). Accepted
//! events go into the room's *history timeline*, a second index below the live one: slots
//! count down from [`HISTORY_TOP`], so every backfill lands below the one before, and a
//! client reading back walks the live timeline and then the history.

use medrix_protocol::{RoomVersion, Verdict, decide, incoming::CheckedPdu};
use ruma::{EventId, OwnedEventId, RoomId};

use super::{Pending, StateBefore};
use crate::service::rooms::{
    RoomError, Rooms, position_from,
    state_store::{StateStore, StoredEvents},
};
use crate::storage::{catalogue as cf, compound_key};

/// The slot above the newest backfilled event: history slots are below it.
pub const HISTORY_TOP: u64 = u64::MAX;

impl Rooms {
    /// The event the room's history ends at going back: the oldest backfilled event, else
    /// the oldest of the live timeline; with the history slot below which a backfill goes.
    pub fn oldest_known(&self, room_id: &RoomId) -> Result<Option<(OwnedEventId, u64)>, RoomError> {
        if let Some((slot, event_id)) = self.history_bottom(room_id)? {
            return Ok(Some((event_id, slot)));
        }
        let prefix = compound_key(&[room_id.as_bytes(), b""]);
        let Some((_, event_id)) =
            self.storage.scan_prefix_first(cf::ROOMPOSITION_EVENTID, &prefix)?
        else {
            return Ok(None);
        };
        let event_id = EventId::parse(String::from_utf8_lossy(&event_id).as_ref())
            .map_err(|err| RoomError::Invalid(format!("a timeline row: {err}")))?;
        Ok(Some((event_id, HISTORY_TOP)))
    }

    /// Servers with a member joined to the room now, this one excepted: those that can
    /// answer for its history.
    pub fn other_servers_in(
        &self,
        room_id: &RoomId,
    ) -> Result<std::collections::BTreeSet<ruma::OwnedServerName>, RoomError> {
        Ok(crate::service::federation::destinations::servers_in_room(
            &self.storage,
            room_id,
            &self.server_name,
        )?)
    }

    /// Whether the event already has its place in the room here: in the DAG with the state
    /// before it, or in the live timeline (an invite from another server is shown there
    /// before this server joins, without a state). Backfill skips such events, so nothing is
    /// shown twice.
    pub fn has_place(&self, event_id: &EventId) -> Result<bool, RoomError> {
        Ok(self.has_state_at(event_id)?
            || self.storage.get(cf::EVENTID_POSITION, event_id.as_bytes())?.is_some())
    }

    /// The room's oldest backfilled event and its slot, if anything was backfilled.
    pub fn history_bottom(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<(u64, OwnedEventId)>, RoomError> {
        let prefix = compound_key(&[room_id.as_bytes(), b""]);
        let Some((key, event_id)) =
            self.storage.scan_prefix_first(cf::ROOMHISTORY_EVENTID, &prefix)?
        else {
            return Ok(None);
        };
        let event_id = EventId::parse(String::from_utf8_lossy(&event_id).as_ref())
            .map_err(|err| RoomError::Invalid(format!("a history row: {err}")))?;
        Ok(Some((position_from(&key), event_id)))
    }

    /// Takes in one backfilled event at history `slot` (below every slot taken before, above
    /// those of the older events of the same backfill). `state_before` is the state a peer
    /// reported at it, or `FromPrevEvents` when its predecessors are in the DAG. Stored with
    /// its verdict; only an accepted event enters the history timeline. An event already in
    /// the DAG (the join that started this server's view, an earlier backfill) answers its
    /// verdict and is not indexed again.
    pub async fn store_historical(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
        checked: CheckedPdu,
        state_before: StateBefore,
        slot: u64,
    ) -> Result<Verdict, RoomError> {
        let room_slot = self.slot(room_id);
        let _room = room_slot.lock().await;
        let CheckedPdu { mut pdu, json, .. } = checked;
        let event_id = pdu.event_id().to_owned();
        if self.has_place(&event_id)? {
            return self.verdict(&event_id);
        }
        let mut events = StoredEvents::new(&self.storage, version);
        let (before, reusable_group) = match state_before {
            StateBefore::Given(state) | StateBefore::Join(state) => {
                (std::sync::Arc::new(state), None)
            }
            StateBefore::FromPrevEvents => {
                self.state_from_prev_events(version, &pdu, &mut events, &Pending::default())?
            }
        };
        events.load(before.values().map(|id| &**id))?;
        events.load(pdu.auth_events().iter().map(|id| &**id))?;
        // No current state: history cannot be soft-failed against a present it preceded.
        let verdict = decide(version, &pdu, &events, &before, None).verdict;
        let mut batch = self.storage.batch();
        let before_group = match reusable_group {
            Some(group) => group,
            None => self.state_store.put_group(&mut batch, None, &before),
        };
        batch.put(cf::EVENTID_PDU, event_id.as_bytes(), json.as_bytes());
        StateStore::put_event_group(&mut batch, &event_id, before_group);
        match &verdict {
            Verdict::Accepted => batch.put(
                cf::ROOMHISTORY_EVENTID,
                &compound_key(&[room_id.as_bytes(), &slot.to_be_bytes()]),
                event_id.as_bytes(),
            ),
            Verdict::Rejected(reason) | Verdict::SoftFailed(reason) => {
                pdu.set_rejected(true);
                let row = format!("rejected: {reason}");
                batch.put(cf::EVENTID_REJECTION, event_id.as_bytes(), row.as_bytes());
            }
        }
        self.storage.commit(batch).await?;
        Ok(verdict)
    }
}
