//! Events from other servers entering a room's DAG. The caller (the federation layer) has
//! checked each event's format, signatures and hashes, and fetched what it depends on; here
//! the event is authorized against its auth events, the state before it (resolved over its
//! `prev_events` where the DAG forks) and the current state, and stored with its verdict.
//! Rejected and soft-failed events are kept: the DAG is the audit trail.

pub mod history;

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use medrix_protocol::{
    Pdu, RoomVersion, StateMap, Verdict, decide,
    incoming::{CheckedPdu, create_event_id_from_room_id},
    resolve::resolve_state,
};
use ruma::{EventId, OwnedEventId, OwnedServerName, RoomId};
use tokio::sync::mpsc;

use super::{
    LoadedRoom, QueuedEvent, RoomError, RoomHead, Rooms,
    event_write::{AcceptedEvent, write_accepted},
    index_timeline,
    state_store::{StateStore, StoredEvents, load_pdu, state_after},
};
use crate::storage::{Batch, StorageError, catalogue as cf, compound_key, to_json_bytes};

/// Where the state before a received event comes from.
pub enum StateBefore {
    /// Resolved over the states after its `prev_events`, which must all be in the DAG.
    FromPrevEvents,
    /// Given by the caller: the state a peer reported at an event whose predecessors could
    /// not be fetched.
    Given(StateMap),
    /// This server's join to a room on another server, with the room's state from
    /// `send_join`: the join starts this server's view of the DAG.
    Join(StateMap),
}

/// What a run of received events came to.
#[derive(Default)]
pub struct RunOutcome {
    /// Each event taken in, in order, with its verdict (or why none could be given).
    pub decided: Vec<(OwnedEventId, Result<Verdict, RoomError>)>,
    /// Events that build on something neither stored nor earlier in the run.
    pub not_ready: Vec<CheckedPdu>,
}

/// Events of one run decided and queued but maybe not yet durable: what later events of the
/// run read instead of storage (and their state maps stay here even if the group cache drops
/// them).
#[derive(Default)]
pub(super) struct Pending {
    pdus: HashMap<OwnedEventId, Pdu>,
    before: HashMap<OwnedEventId, (u64, Arc<StateMap>)>,
    verdicts: HashMap<OwnedEventId, Verdict>,
}

impl Pending {
    fn record(&mut self, pdu: &Pdu, before_group: u64, before: Arc<StateMap>, verdict: &Verdict) {
        let id = pdu.event_id().to_owned();
        self.pdus.insert(id.clone(), pdu.clone());
        self.before.insert(id.clone(), (before_group, before));
        self.verdicts.insert(id, verdict.clone());
    }
}

impl Rooms {
    /// Whether the event is stored (in the DAG or as an outlier).
    pub fn has_event(&self, event_id: &EventId) -> Result<bool, RoomError> {
        Ok(self.storage.get(cf::EVENTID_PDU, event_id.as_bytes())?.is_some())
    }

    /// Whether the event's place in the DAG is known: the state before it is stored.
    pub fn has_state_at(&self, event_id: &EventId) -> Result<bool, RoomError> {
        Ok(self.state_store.event_group(event_id)?.is_some())
    }

    /// The verdict stored for an event (accepted unless a rejection row says otherwise).
    pub fn verdict(&self, event_id: &EventId) -> Result<Verdict, RoomError> {
        Ok(match self.storage.get(cf::EVENTID_REJECTION, event_id.as_bytes())? {
            None => Verdict::Accepted,
            Some(row) => {
                let text = String::from_utf8_lossy(&row).into_owned();
                match text.strip_prefix("soft_failed: ") {
                    Some(reason) => Verdict::SoftFailed(reason.to_owned()),
                    None => Verdict::Rejected(
                        text.strip_prefix("rejected: ").unwrap_or(&text).to_owned(),
                    ),
                }
            }
        })
    }

    /// Stores events known only by themselves (auth chains, a joined room's state), each
    /// authorized against its own auth events, oldest first. Their auth events must be among
    /// them or stored already; an event whose auth events are missing is rejected.
    pub async fn store_outliers(
        &self,
        version: RoomVersion,
        mut checked: Vec<CheckedPdu>,
    ) -> Result<HashMap<OwnedEventId, Verdict>, RoomError> {
        checked.sort_by_key(|c| c.pdu.depth());
        let mut events = StoredEvents::new(&self.storage, version);
        let mut verdicts = HashMap::new();
        let mut batch = self.storage.batch();
        for CheckedPdu { mut pdu, json, .. } in checked {
            let id = pdu.event_id().to_owned();
            if self.has_event(&id)? {
                verdicts.insert(id.clone(), self.verdict(&id)?);
                continue;
            }
            events.load_with_auth_chains(pdu.auth_events().iter().map(|id| &**id))?;
            // In v12 the room ID names the create event instead of `auth_events` listing it.
            let implied_create = version
                .room_id_is_create_event_hash()
                .then(|| pdu.room_id().and_then(create_event_id_from_room_id))
                .flatten();
            if let Some(create) = &implied_create {
                events.load([&**create])?;
            }
            let auth_state: StateMap = pdu
                .auth_events()
                .iter()
                .chain(&implied_create)
                .filter_map(|id| events_slot(&events, id))
                .collect();
            let verdict = decide(version, &pdu, &events, &auth_state, None).verdict;
            batch.put(cf::EVENTID_PDU, id.as_bytes(), json.as_bytes());
            if let Verdict::Rejected(reason) = &verdict {
                batch.put(
                    cf::EVENTID_REJECTION,
                    id.as_bytes(),
                    format!("rejected: {reason}").as_bytes(),
                );
                pdu.set_rejected(true);
            }
            events.insert(pdu);
            verdicts.insert(id, verdict);
        }
        self.storage.commit(batch).await?;
        Ok(verdicts)
    }

    /// Takes in one event from another server: authorizes it where it sits in the DAG and
    /// stores it with its verdict. An accepted event joins the timeline, becomes a forward
    /// extremity and moves the current state (resolved over all extremities); it is queued
    /// for `forward_to` (the other servers, when this server relays a join or leave it was
    /// handed). Receiving an event twice answers the first verdict.
    pub async fn receive(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
        checked: CheckedPdu,
        state_before: StateBefore,
        forward_to: BTreeSet<OwnedServerName>,
    ) -> Result<Verdict, RoomError> {
        // In a task of its own: once begun, taking in the event runs to its end (written and
        // settled) even if the request that brought it is dropped. Stopped half way, the
        // in-memory room would be ahead of storage and the event's stream position would
        // hold back every later event from `/sync`.
        let (this, room_id) = (self.clone(), room_id.to_owned());
        tokio::spawn(async move {
            this.receive_one(&room_id, version, checked, state_before, forward_to).await
        })
        .await
        .unwrap_or_else(|err| Err(RoomError::Invalid(format!("taking in an event failed: {err}"))))
    }

    async fn receive_one(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
        checked: CheckedPdu,
        state_before: StateBefore,
        forward_to: BTreeSet<OwnedServerName>,
    ) -> Result<Verdict, RoomError> {
        let slot = self.slot(room_id);
        let mut guard = slot.lock().await;
        let starts_line = matches!(state_before, StateBefore::Join(_));
        let room = self.loaded(&mut guard, room_id, version, starts_line)?;
        // Local events still in the commit queue are in the room's head but not yet in
        // storage, where resolving this event's state would look for them.
        room.in_flight.clone().wait_all().await;
        let event_id = checked.pdu.event_id().to_owned();
        if self.has_state_at(&event_id)? {
            return self.verdict(&event_id);
        }
        let mut pending = Pending::default();
        let mut batch = self.storage.batch();
        let (queued, verdict) = self
            .decide_and_store(
                room_id,
                room,
                checked,
                state_before,
                forward_to,
                &mut pending,
                &mut batch,
            )
            .await?;
        let durability = self.enqueue_or_reload(&mut guard, batch, [&queued]).await?;
        drop(guard);
        self.settle(room_id, durability, vec![queued]).await?;
        Ok(verdict)
    }

    /// Takes in a transaction's checked events as they arrive from `chunks` (depth-ordered),
    /// under one hold of the room's lock. An event goes in if its auth events are stored and
    /// its predecessors are in the DAG, either already or earlier in the run; the others are
    /// answered as not ready, for the caller to fetch what they need. Every event gets an
    /// answer: a failure of the whole room (not loadable, another version) is each event's.
    ///
    /// Each chunk's writes are queued as soon as it is decided, so writing overlaps deciding
    /// the next; the run's last write carries the one wait for durability (one fsync).
    pub async fn receive_run(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
        chunks: mpsc::Receiver<Vec<CheckedPdu>>,
    ) -> RunOutcome {
        // In a task of its own, for the reason given at `receive`.
        let (this, room_id) = (self.clone(), room_id.to_owned());
        tokio::spawn(async move { this.run_events(&room_id, version, chunks).await })
            .await
            .unwrap_or_else(|err| {
                tracing::error!(%err, "a run of received events failed");
                RunOutcome::default()
            })
    }

    async fn run_events(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
        mut chunks: mpsc::Receiver<Vec<CheckedPdu>>,
    ) -> RunOutcome {
        let mut outcome = RunOutcome::default();
        let slot = self.slot(room_id);
        let mut guard = slot.lock().await;
        let room = match self.loaded(&mut guard, room_id, version, false) {
            Ok(room) => room,
            Err(err) => {
                while let Some(chunk) = chunks.recv().await {
                    for checked in chunk {
                        let event_id = checked.pdu.event_id().to_owned();
                        outcome.decided.push((event_id, Err(err.clone())));
                    }
                }
                return outcome;
            }
        };
        room.in_flight.clone().wait_all().await;
        let mut pending = Pending::default();
        let mut queued: Vec<(usize, QueuedEvent)> = Vec::new();
        let mut part_failed = None;
        let mut batch = self.storage.batch();
        while let Some(chunk) = chunks.recv().await {
            for checked in chunk {
                let event_id = checked.pdu.event_id().to_owned();
                let verdict = match self.known_verdict(&event_id, &pending) {
                    Ok(Some(verdict)) => Ok(verdict),
                    Ok(None) => match self.builds_on_known(&checked.pdu, room, &pending) {
                        Ok(true) => self
                            .decide_and_store(
                                room_id,
                                room,
                                checked,
                                StateBefore::FromPrevEvents,
                                BTreeSet::new(),
                                &mut pending,
                                &mut batch,
                            )
                            .await
                            .map(|(event, verdict)| {
                                queued.push((outcome.decided.len(), event));
                                verdict
                            }),
                        Ok(false) => {
                            outcome.not_ready.push(checked);
                            continue;
                        }
                        Err(err) => Err(err),
                    },
                    Err(err) => Err(err),
                };
                outcome.decided.push((event_id, verdict));
            }
            if !chunks.is_empty() || part_failed.is_some() {
                continue; // more is ready: decide it first, and write it with this
            }
            let part = std::mem::replace(&mut batch, self.storage.batch());
            if let Err(err) = self.storage.enqueue_part(part).await {
                part_failed = Some(err);
            }
        }
        if queued.is_empty() {
            return outcome;
        }
        let written = match part_failed {
            Some(err) => {
                let events = queued.iter().map(|(_, event)| event);
                self.forget_unwritten(&mut guard, events);
                Err(err)
            }
            None => self.enqueue_or_reload(&mut guard, batch, queued.iter().map(|(_, e)| e)).await,
        };
        drop(guard);
        let (indexes, events): (Vec<usize>, Vec<QueuedEvent>) = queued.into_iter().unzip();
        let settled = match written {
            Ok(durability) => self.settle(room_id, durability, events).await,
            Err(err) => Err(err),
        };
        if let Err(err) = settled {
            for index in indexes {
                outcome.decided[index].1 = Err(RoomError::Storage(err.clone()));
            }
        }
        outcome
    }

    /// The room in `slot` (loaded from storage if not in memory), if it has `version`. A room
    /// not here yet is started empty when `starts_line` (this server's join begins its view
    /// of the DAG), else unknown.
    fn loaded<'g>(
        &self,
        slot: &'g mut Option<LoadedRoom>,
        room_id: &RoomId,
        version: RoomVersion,
        starts_line: bool,
    ) -> Result<&'g mut LoadedRoom, RoomError> {
        if slot.is_none() {
            *slot = self.load(room_id)?;
        }
        if slot.is_none() && starts_line {
            *slot = Some(LoadedRoom::empty(version));
        }
        match slot.as_mut() {
            Some(room) if room.version == version => Ok(room),
            Some(_) => Err(RoomError::Invalid("room version mismatch".to_owned())),
            None => Err(RoomError::UnknownRoom),
        }
    }

    /// The verdict already given to an event, earlier in this run or before it.
    fn known_verdict(
        &self,
        event_id: &EventId,
        pending: &Pending,
    ) -> Result<Option<Verdict>, RoomError> {
        if let Some(verdict) = pending.verdicts.get(event_id) {
            return Ok(Some(verdict.clone()));
        }
        if self.has_state_at(event_id)? {
            return self.verdict(event_id).map(Some);
        }
        Ok(None)
    }

    /// Whether everything the event builds on is here: its auth events stored, its
    /// predecessors in the DAG (stored, or earlier in the run). What the loaded room holds
    /// (its current state events, its forward extremities) answers most of it without a
    /// lookup.
    fn builds_on_known(
        &self,
        pdu: &Pdu,
        room: &LoadedRoom,
        pending: &Pending,
    ) -> Result<bool, RoomError> {
        for id in pdu.auth_events() {
            let known = room.events.contains_key(id) || pending.pdus.contains_key(id);
            if !known && !self.has_event(id)? {
                return Ok(false);
            }
        }
        for id in pdu.prev_events() {
            let known = room.head.extremities.contains(id) || pending.before.contains_key(id);
            if !known && !self.has_state_at(id)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Authorizes a received event and writes it, with its verdict and everything indexing
    /// it, into `batch`; moves the in-memory room past it if it was accepted. Everything that
    /// can fail runs before the first write, so a failure leaves `batch` (which a run of
    /// events shares) as it was, and allocates no stream position.
    #[allow(clippy::too_many_arguments)]
    async fn decide_and_store(
        &self,
        room_id: &RoomId,
        room: &mut LoadedRoom,
        checked: CheckedPdu,
        state_before: StateBefore,
        forward_to: BTreeSet<OwnedServerName>,
        pending: &mut Pending,
        batch: &mut Batch<'_>,
    ) -> Result<(QueuedEvent, Verdict), RoomError> {
        let version = room.version;
        let CheckedPdu { mut pdu, json, .. } = checked;
        let event_id = pdu.event_id().to_owned();
        let mut events =
            StoredEvents::over(&self.storage, version, &room.events).and_over(&pending.pdus);
        let starts_line = matches!(state_before, StateBefore::Join(_));
        let (before, reusable_group) = match state_before {
            StateBefore::Given(state) | StateBefore::Join(state) => (Arc::new(state), None),
            StateBefore::FromPrevEvents => {
                self.state_from_prev_events(version, &pdu, &mut events, pending)?
            }
        };
        events.load(before.values().map(|id| &**id))?;
        events.load(pdu.auth_events().iter().map(|id| &**id))?;
        let has_current = !room.head.extremities.is_empty() && !starts_line;
        let decision = decide(version, &pdu, &events, &before, has_current.then_some(&room.state));
        let accepted = match &decision.verdict {
            Verdict::Accepted => {
                let extremities: Vec<OwnedEventId> = if starts_line {
                    vec![event_id.clone()]
                } else {
                    room.head.extremities_after(pdu.prev_events(), &event_id)
                };
                events.insert(pdu.clone());
                let current = self.current_state_over(
                    &extremities,
                    &event_id,
                    &decision.state_after,
                    version,
                    &mut events,
                    pending,
                )?;
                let mut entered = Vec::new();
                for (slot, id) in &current {
                    if room.state.get(slot) != Some(id) {
                        events.load([&**id])?;
                        if let Some(state_event) = events_get(&events, id) {
                            entered.push(state_event.clone());
                        }
                    }
                }
                // A redaction another server sent removes its target's content here too, in
                // the same write, by the same rule as a local one.
                let redacted = match pdu.redacts() {
                    Some(_) => {
                        let object = medrix_protocol::canonical::parse_object(
                            json.as_bytes(),
                            medrix_protocol::canonical::MAX_PDU_BYTES,
                        )
                        .map_err(|err| RoomError::Invalid(err.to_string()))?;
                        super::redaction::redacted_target(
                            &self.storage,
                            room_id,
                            version,
                            &before,
                            &events,
                            &pdu,
                            &object,
                        )?
                    }
                    None => None,
                };
                // Given back by `settle` with the run's write (this runs in a task of its own).
                let position = self.stream.allocate().await?.into_position();
                Some((extremities, current, entered, position, redacted))
            }
            Verdict::Rejected(_) | Verdict::SoftFailed(_) => None,
        };

        // Nothing fails from here on.
        let before_group = match reusable_group {
            Some(group) => group,
            None if has_current && *before == room.state => room.head.state_group,
            None => {
                let base = has_current.then_some(room.head.state_group);
                self.state_store.put_group(batch, base, &before)
            }
        };
        let Some((extremities, current, entered, position, redacted)) = accepted else {
            // Kept for the audit trail, but neither served to clients nor built upon.
            batch.put(cf::EVENTID_PDU, event_id.as_bytes(), json.as_bytes());
            StateStore::put_event_group(batch, &event_id, before_group);
            let row = match &decision.verdict {
                Verdict::Rejected(reason) => {
                    pdu.set_rejected(true);
                    format!("rejected: {reason}")
                }
                Verdict::SoftFailed(reason) => format!("soft_failed: {reason}"),
                Verdict::Accepted => unreachable!("accepted events have a position"),
            };
            batch.put(cf::EVENTID_REJECTION, event_id.as_bytes(), row.as_bytes());
            pending.record(&pdu, before_group, before, &decision.verdict);
            let queued = QueuedEvent {
                event_id,
                position: None,
                txn: None,
                destinations: vec![],
                in_flight: room.in_flight.begin(),
            };
            return Ok((queued, decision.verdict));
        };
        pending.record(&pdu, before_group, before.clone(), &decision.verdict);
        let state_group = if current == *before {
            before_group
        } else if has_current && current == room.state {
            room.head.state_group
        } else {
            let base = if has_current { room.head.state_group } else { before_group };
            self.state_store.put_group(batch, Some(base), &current)
        };
        let head = RoomHead {
            version: version.as_str().to_owned(),
            depth: if starts_line { pdu.depth() } else { room.head.depth.max(pdu.depth()) },
            extremities,
            state_group,
        };
        let left = room.state.keys().filter(|slot| !current.contains_key(*slot)).cloned().collect();
        write_accepted(
            batch,
            AcceptedEvent {
                room_id,
                event_id: &event_id,
                json: json.as_bytes(),
                before_group,
                position,
                entered: &entered,
                left,
                head: &head,
                redacted,
            },
        );
        let destinations = self.queue_outbound(batch, forward_to, &event_id, position);
        let changed = (current != room.state).then_some((current, entered));
        room.advance(head, changed, &self.server_name);
        let queued = QueuedEvent {
            event_id,
            position: Some(position),
            txn: None,
            destinations,
            in_flight: room.in_flight.begin(),
        };
        Ok((queued, Verdict::Accepted))
    }

    /// The room's state over its forward extremities once `event_id` (with the state
    /// `after` it) is among them: that state itself if it is the only one, else the
    /// resolution of the states after each.
    fn current_state_over(
        &self,
        extremities: &[OwnedEventId],
        event_id: &EventId,
        after: &StateMap,
        version: RoomVersion,
        events: &mut StoredEvents<'_>,
        pending: &Pending,
    ) -> Result<StateMap, RoomError> {
        if extremities.len() == 1 {
            return Ok(after.clone());
        }
        let mut forks = Vec::with_capacity(extremities.len());
        for id in extremities {
            forks.push(if id == event_id {
                after.clone()
            } else {
                self.state_after_event_or_pending(id, version, pending)?
            });
        }
        for fork in &forks {
            events.load_with_auth_chains(fork.values().map(|id| &**id))?;
        }
        resolve_state(version, &forks, events).map_err(|err| RoomError::Invalid(err.to_string()))
    }

    /// The state before `pdu` from its `prev_events`: the state after the one predecessor,
    /// or the resolution of the states after several. Answers the state group to reuse when
    /// the state is exactly a stored group.
    fn state_from_prev_events(
        &self,
        version: RoomVersion,
        pdu: &Pdu,
        events: &mut StoredEvents<'_>,
        pending: &Pending,
    ) -> Result<(Arc<StateMap>, Option<u64>), RoomError> {
        let mut missing = Vec::new();
        for prev in pdu.prev_events() {
            if !pending.before.contains_key(prev) && self.state_store.event_group(prev)?.is_none() {
                missing.push(prev.clone());
            }
        }
        if !missing.is_empty() {
            return Err(RoomError::MissingEvents(missing));
        }
        let mut forks: Vec<Arc<StateMap>> = Vec::new();
        let mut single_group = None;
        for prev in pdu.prev_events() {
            let (group, before_prev, prev_pdu) = match pending.before.get(prev) {
                Some((group, before)) => (
                    *group,
                    before.clone(),
                    pending
                        .pdus
                        .get(prev)
                        .ok_or_else(|| RoomError::MissingEvents(vec![prev.clone()]))?
                        .clone(),
                ),
                None => {
                    let group = self
                        .state_store
                        .event_group(prev)?
                        .ok_or_else(|| RoomError::MissingEvents(vec![prev.clone()]))?;
                    let prev_pdu = load_pdu(&self.storage, prev, version)?
                        .ok_or_else(|| RoomError::MissingEvents(vec![prev.clone()]))?;
                    (group, self.state_store.group(group)?, prev_pdu)
                }
            };
            // A predecessor that changed no state leaves its own group in force.
            let after = if prev_pdu.is_rejected() || prev_pdu.state_slot().is_none() {
                single_group = Some(group);
                before_prev
            } else {
                Arc::new(state_after(&before_prev, &prev_pdu))
            };
            if !forks.contains(&after) {
                forks.push(after);
            }
        }
        if forks.len() == 1
            && let Some(only) = forks.pop()
        {
            let reusable = single_group.filter(|_| pdu.prev_events().len() == 1);
            return Ok((only, reusable));
        }
        for fork in &forks {
            events.load_with_auth_chains(fork.values().map(|id| &**id))?;
        }
        let forks: Vec<StateMap> = forks.iter().map(|fork| (**fork).clone()).collect();
        let resolved = resolve_state(version, &forks, &*events)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        Ok((Arc::new(resolved), None))
    }

    /// [`Rooms::state_after_event`], for an event that may still be in `pending`.
    fn state_after_event_or_pending(
        &self,
        event_id: &EventId,
        version: RoomVersion,
        pending: &Pending,
    ) -> Result<StateMap, RoomError> {
        match (pending.before.get(event_id), pending.pdus.get(event_id)) {
            (Some((_, before)), Some(pdu)) => Ok(state_after(before, pdu)),
            _ => self.state_after_event(event_id, version),
        }
    }

    /// The state after a stored event whose place in the DAG is known.
    pub fn state_after_event(
        &self,
        event_id: &EventId,
        version: RoomVersion,
    ) -> Result<StateMap, RoomError> {
        let before = self
            .state_store
            .state_before(event_id)?
            .ok_or_else(|| RoomError::MissingEvents(vec![event_id.to_owned()]))?;
        let pdu = load_pdu(&self.storage, event_id, version)?
            .ok_or_else(|| StorageError::Corrupt(format!("missing event {event_id}")))?;
        Ok(state_after(&before, &pdu))
    }

    /// The state before a stored event whose place in the DAG is known.
    pub fn state_before_event(&self, event_id: &EventId) -> Result<Option<StateMap>, RoomError> {
        Ok(self.state_store.state_before(event_id)?.map(|state| (*state).clone()))
    }

    /// The room's forward extremities and the greatest depth among them.
    pub fn extremities(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<(Vec<OwnedEventId>, u64)>, RoomError> {
        Ok(self.head(room_id)?.map(|(head, _)| (head.extremities, head.depth)))
    }
}

impl Rooms {
    /// Records a membership event of a local user in a room this server is not in: another
    /// server's invite (with `invite_state`, the stripped state their client displays), or
    /// the user's rejection of it. The event (signed by both servers) enters the room's
    /// timeline here, so the user's `/sync` shows it.
    pub async fn store_outside_membership(
        &self,
        room_id: &RoomId,
        user: &ruma::UserId,
        event_id: &EventId,
        canonical_json: &str,
        membership: &str,
        invite_state: Option<&serde_json::Value>,
    ) -> Result<(), RoomError> {
        let slot = self.slot(room_id);
        let _guard = slot.lock().await;
        let reservation = self.stream.allocate().await?;
        let position = reservation.position();
        let mut batch = self.storage.batch();
        let (room_key, user_key) = (room_id.as_bytes(), user.as_bytes());
        batch.put(cf::EVENTID_PDU, event_id.as_bytes(), canonical_json.as_bytes());
        index_timeline(&mut batch, room_id, event_id, position);
        let membership = membership.as_bytes();
        batch.put(cf::USERROOMID_MEMBERSHIP, &compound_key(&[user_key, room_key]), membership);
        batch.put(
            cf::ROOMUSERPOSITION_MEMBERSHIP,
            &compound_key(&[room_key, user_key, &position.to_be_bytes()]),
            membership,
        );
        // The invite's state is kept while the invite stands, and dropped with its refusal.
        let state_key = compound_key(&[room_key, user_key]);
        match invite_state {
            Some(state) => batch.put(cf::ROOMUSER_INVITESTATE, &state_key, &to_json_bytes(state)),
            None => batch.delete(cf::ROOMUSER_INVITESTATE, &state_key),
        }
        Ok(reservation.commit(&self.storage, batch).await?)
    }

    /// The stripped state of a room another server invited `user` to.
    pub fn remote_invite_state(
        &self,
        room_id: &RoomId,
        user: &ruma::UserId,
    ) -> Result<Option<serde_json::Value>, RoomError> {
        let key = compound_key(&[room_id.as_bytes(), user.as_bytes()]);
        Ok(self
            .storage
            .get(cf::ROOMUSER_INVITESTATE, &key)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }

    /// Whether `server` has a member joined to the room now (in this server's copy of its
    /// current state). For this server itself: whether it is in the room (a server whose
    /// last member left gets none of the room's events, so its copy is stale).
    pub fn has_joined_member(
        &self,
        room_id: &RoomId,
        server: &ruma::ServerName,
    ) -> Result<bool, RoomError> {
        let Some(version) = self.version(room_id)? else { return Ok(false) };
        for (_, pdu) in self.current_state_events(room_id, version)? {
            if *pdu.kind() == ruma::events::TimelineEventType::RoomMember
                && pdu
                    .state_key()
                    .and_then(|key| ruma::UserId::parse(key).ok())
                    .is_some_and(|user| user.server_name() == server)
                && super::membership_of(&pdu).as_deref() == Some("join")
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The auth chain of these events (not counting them), as stored event IDs.
    pub fn auth_chain_of(
        &self,
        version: RoomVersion,
        starts: &[OwnedEventId],
    ) -> Result<Vec<OwnedEventId>, RoomError> {
        let mut events = StoredEvents::new(&self.storage, version);
        events.load_with_auth_chains(starts.iter().map(|id| &**id))?;
        let chain = medrix_protocol::auth_chain::auth_chain(&events, starts.iter().map(|id| &**id));
        Ok(chain.into_iter().filter(|id| events.contains(id)).collect())
    }

    /// Walks the DAG backwards over `prev_events` from `from`, breadth first, stopping at
    /// `stop_at`, below `min_depth` or after `limit` events; `from` itself is included when
    /// `include_from`. For `/backfill` and `get_missing_events`.
    pub fn walk_back(
        &self,
        version: RoomVersion,
        from: &[OwnedEventId],
        stop_at: &[OwnedEventId],
        min_depth: u64,
        limit: usize,
        include_from: bool,
    ) -> Result<Vec<Pdu>, RoomError> {
        use std::collections::{HashSet, VecDeque};
        let starts: HashSet<&OwnedEventId> = from.iter().collect();
        let mut seen: HashSet<OwnedEventId> = stop_at.iter().chain(from).cloned().collect();
        let mut queue: VecDeque<OwnedEventId> = from.iter().cloned().collect();
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            if out.len() >= limit {
                break;
            }
            let Some(pdu) = load_pdu(&self.storage, &id, version)? else { continue };
            if pdu.depth() < min_depth {
                continue;
            }
            for prev in pdu.prev_events() {
                if seen.insert(prev.clone()) {
                    queue.push_back(prev.clone());
                }
            }
            if include_from || !starts.contains(&id) {
                out.push(pdu);
            }
        }
        Ok(out)
    }
}

fn events_get<'e>(events: &'e StoredEvents<'_>, id: &EventId) -> Option<&'e Pdu> {
    use medrix_protocol::lookup::EventLookup;
    events.get_pdu(id)
}

fn events_slot(
    events: &StoredEvents<'_>,
    id: &EventId,
) -> Option<((ruma::events::StateEventType, String), OwnedEventId)> {
    events_get(events, id).and_then(|pdu| pdu.state_slot().map(|slot| (slot, id.to_owned())))
}
