//! Paging back past this server's join: a user who reads back to the start of what this
//! server has of a room (its join, or the oldest event backfilled so far) makes it ask a
//! server in the room for what came before (`/backfill`). The events pass the same checks as
//! every received event (signatures and hashes, then authorization where they sit in the
//! DAG) and enter the room's history timeline oldest first (`Rooms::store_historical`).
//! What the user then sees of them is the access service's decision, as for every read.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use medrix_protocol::{
    RoomVersion,
    canonical::{MAX_PDU_BYTES, parse_object},
    incoming::CheckedPdu,
};
use ruma::{
    OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, ServerName, UInt,
    api::federation::backfill::get_backfill, events::TimelineEventType,
};

use super::{FederatedRooms, room_id_of};
use crate::locks::LockExt;
use crate::service::rooms::{RoomError, remote::StateBefore};

/// Events asked for per backfill, the one they start from included.
const BACKFILL_LIMIT: u32 = 100;
/// How long a reader's page waits for a backfill before it is answered with what is here.
const BACKFILL_TIMEOUT: Duration = Duration::from_secs(10);
/// A room whose backfill brought nothing is not asked about again for this long: a reader
/// paging at its start must not make this server ask other servers on every page.
const QUIET_FOR: Duration = Duration::from_secs(60);
/// The most servers asked in one backfill (the room's creator's first).
const MAX_SERVERS_ASKED: usize = 3;
/// The most rooms whose backfill state is remembered; beyond it the idle ones are forgotten.
const MAX_TRACKED_ROOMS: usize = 10_000;

/// Per room: one backfill at a time, and when the last one brought nothing.
#[derive(Default)]
pub struct Backfills {
    rooms: Mutex<HashMap<OwnedRoomId, Arc<RoomBackfill>>>,
}

#[derive(Default)]
struct RoomBackfill {
    running: tokio::sync::Mutex<()>,
    quiet_until: Mutex<Option<Instant>>,
}

impl Backfills {
    fn of(&self, room_id: &RoomId) -> Arc<RoomBackfill> {
        let mut rooms = self.rooms.locked();
        if rooms.len() >= MAX_TRACKED_ROOMS && !rooms.contains_key(room_id) {
            let now = Instant::now();
            rooms.retain(|_, room| {
                Arc::strong_count(room) > 1
                    || room.quiet_until.locked().is_some_and(|until| until > now)
            });
            if rooms.len() >= MAX_TRACKED_ROOMS {
                rooms.clear();
            }
        }
        rooms.entry(room_id.to_owned()).or_default().clone()
    }
}

impl FederatedRooms {
    /// Fetches what precedes the oldest event this server has of the room, from a server in
    /// it; answers whether anything new entered the room's history. Bounded in time, in
    /// events and in servers asked; concurrent readers of one room share one backfill.
    pub async fn backfill(&self, room_id: &RoomId) -> bool {
        let room = self.backfills.of(room_id);
        if room.quiet_until.locked().is_some_and(|until| Instant::now() < until) {
            return false;
        }
        let oldest_before = self.rooms.oldest_known(room_id).ok().flatten();
        let _running = room.running.lock().await;
        // Another reader's backfill may have run while this one waited.
        if self.rooms.oldest_known(room_id).ok().flatten() != oldest_before {
            return true;
        }
        let added = match tokio::time::timeout(BACKFILL_TIMEOUT, self.backfill_once(room_id)).await
        {
            Ok(Ok(added)) => added,
            Ok(Err(err)) => {
                tracing::info!(room = %room_id, %err, "backfill failed");
                0
            }
            Err(_) => {
                tracing::info!(room = %room_id, "backfill timed out");
                0
            }
        };
        if added == 0 {
            *room.quiet_until.locked() = Some(Instant::now() + QUIET_FOR);
        }
        added > 0
    }

    async fn backfill_once(&self, room_id: &RoomId) -> Result<usize, RoomError> {
        let Some(version) = self.rooms.version(room_id)? else { return Ok(0) };
        let Some((oldest, bottom)) = self.rooms.oldest_known(room_id)? else { return Ok(0) };
        let Some(oldest_pdu) = self.rooms.pdu(&oldest, version)? else { return Ok(0) };
        if *oldest_pdu.kind() == TimelineEventType::RoomCreate {
            return Ok(0); // the room's whole history is here
        }
        for server in self.servers_to_ask(room_id, version)? {
            let request = get_backfill::v1::Request::new(
                room_id.to_owned(),
                vec![oldest.clone()],
                UInt::from(BACKFILL_LIMIT),
            );
            let pdus = match self.client.send(&server, request).await {
                Ok(response) => response.pdus,
                Err(err) => {
                    tracing::info!(%server, room = %room_id, %err, "backfill request failed");
                    continue;
                }
            };
            let objects = pdus
                .iter()
                .take(BACKFILL_LIMIT as usize)
                .filter_map(|raw| parse_object(raw.get().as_bytes(), MAX_PDU_BYTES).ok())
                .filter(|object| room_id_of(object).is_none_or(|id| id == room_id))
                .collect();
            let mut fresh: BTreeMap<OwnedEventId, CheckedPdu> = BTreeMap::new();
            for checked in self.check_objects(version, objects).await.into_iter().flatten() {
                let in_room = match checked.pdu.room_id() {
                    Some(id) => id == room_id,
                    None => version.room_id_is_create_event_hash(),
                };
                if in_room && !self.rooms.has_place(checked.pdu.event_id())? {
                    fresh.insert(checked.pdu.event_id().to_owned(), checked);
                }
            }
            let fresh: Vec<CheckedPdu> = fresh.into_values().collect();
            if fresh.is_empty() {
                continue;
            }
            return self.take_in_history(&server, room_id, version, fresh, bottom).await;
        }
        Ok(0)
    }

    /// Places backfilled events in the history below `bottom`, oldest first (lowest slot).
    async fn take_in_history(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: RoomVersion,
        mut events: Vec<CheckedPdu>,
        bottom: u64,
    ) -> Result<usize, RoomError> {
        events.sort_by_key(|checked| checked.pdu.depth());
        // Slot 0 is the start of the timeline itself, never an event's.
        let Some(first_slot) = bottom.checked_sub(events.len() as u64).filter(|slot| *slot > 0)
        else {
            return Ok(0);
        };
        let mut added = 0;
        for (offset, checked) in events.into_iter().enumerate() {
            let event_id: OwnedEventId = checked.pdu.event_id().to_owned();
            if !self.missing(checked.pdu.auth_events())?.is_empty() {
                self.fetch_auth_chain(origin, room_id, version, &event_id).await?;
            }
            let state_before = if self.missing_in_dag(checked.pdu.prev_events())?.is_empty() {
                StateBefore::FromPrevEvents
            } else {
                StateBefore::Given(self.fetch_state_at(origin, room_id, version, &event_id).await?)
            };
            let slot = first_slot + offset as u64;
            match self.rooms.store_historical(room_id, version, checked, state_before, slot).await {
                Ok(medrix_protocol::Verdict::Accepted) => added += 1,
                Ok(verdict) => {
                    tracing::info!(%origin, room = %room_id, event = %event_id, ?verdict, "a backfilled event was not accepted")
                }
                Err(err) => {
                    tracing::info!(%origin, room = %room_id, event = %event_id, %err, "a backfilled event could not be placed");
                }
            }
        }
        tracing::info!(%origin, room = %room_id, added, "backfilled");
        Ok(added)
    }

    /// The servers to ask, the room's creator's first (it has the room from its start).
    fn servers_to_ask(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
    ) -> Result<Vec<OwnedServerName>, RoomError> {
        let mut servers: Vec<OwnedServerName> =
            self.rooms.other_servers_in(room_id)?.into_iter().collect();
        let creator = self
            .rooms
            .state_event(room_id, &ruma::events::StateEventType::RoomCreate, "")?
            .and_then(|id| self.rooms.pdu(&id, version).ok().flatten())
            .map(|create| create.sender().server_name().to_owned());
        if let Some(creator) = creator {
            servers.sort_by_key(|server| *server != creator);
        }
        servers.truncate(MAX_SERVERS_ASKED);
        Ok(servers)
    }
}
