//! Rooms that span servers: receiving other servers' events (`/send`, with the missing
//! predecessors, auth events and state fetched from the sender), and joining rooms that live
//! on other servers (`make_join` / `send_join`).
//!
//! Every received event passes the same gate: its signers' keys are fetched, then
//! `incoming::check_incoming_object` checks format, signatures and hashes (a failed
//! signature drops it: nothing unverifiable is stored), then [`Rooms::receive`] authorizes
//! it and stores it with its verdict.

mod backfill;

use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    pin::Pin,
    sync::Arc,
};

use medrix_protocol::{
    RoomVersion, StateMap, Verdict,
    build::{SignedEvent, hash_and_sign},
    canonical::{MAX_PDU_BYTES, encode, parse_object},
    incoming::{
        CheckedPdu, check_incoming_object, event_id as compute_event_id, required_signers,
        room_id_from_create_event_id,
    },
    keys::VerifyKeys,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedRoomId, OwnedServerName,
    RoomId, ServerName, UInt, UserId,
    api::federation::{
        authorization::get_event_authorization,
        event::{get_event, get_missing_events, get_room_state_ids},
        membership::{
            create_invite, create_join_event, create_knock_event, create_leave_event,
            prepare_join_event, prepare_knock_event, prepare_leave_event,
        },
    },
};
use serde_json::value::RawValue;

use tokio::sync::mpsc;

use super::{
    checking::{CheckResult, CheckedInOrder, RefusedPdu},
    client::FederationClient,
    remote_keys::RemoteKeys,
};
use crate::service::rooms::{
    Cosigner, RoomError, Rooms,
    remote::{RunOutcome, StateBefore},
};

/// The most events fetched one by one to fill in a state snapshot.
const MAX_EVENTS_FETCHED: usize = 500;
/// How many missing predecessors are asked for at a time.
const MISSING_EVENTS_LIMIT: u32 = 20;
/// The most events one gap in a room's DAG is filled with (see `fill_gap`).
const MAX_GAP_EVENTS: usize = 500;
/// The most `get_missing_events` requests one gap costs: a server answering each round with
/// a single new event would otherwise hold the filling for `MAX_GAP_EVENTS` round trips.
/// Honest answers bring up to `MISSING_EVENTS_LIMIT` events, so this still reaches
/// `MAX_GAP_EVENTS` when every round is full.
const MAX_GAP_REQUESTS: usize = MAX_GAP_EVENTS / MISSING_EVENTS_LIMIT as usize + 5;

/// What a membership event made from another server's template says of whom.
#[derive(Clone, Copy)]
pub struct MembershipChange<'a> {
    pub user: &'a UserId,
    /// `join` or `leave`.
    pub membership: &'a str,
    /// Why, as the user gave it (`reason` in the event's content).
    pub reason: Option<&'a str>,
    /// The user's `displayname` and `avatar_url`, carried by a join as Synapse's do.
    pub profile: Option<&'a serde_json::Map<String, serde_json::Value>>,
    /// More content fields (a knock's `org.medrix.request`).
    pub extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

/// A membership event this server signed from another server's template.
struct Signed {
    version: RoomVersion,
    event_id: OwnedEventId,
    event: CanonicalJsonObject,
    pdu: Box<RawValue>,
}

pub struct FederatedRooms {
    rooms: Rooms,
    client: Arc<FederationClient>,
    remote_keys: Arc<RemoteKeys>,
    backfills: backfill::Backfills,
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl FederatedRooms {
    pub fn new(rooms: Rooms, client: Arc<FederationClient>, remote_keys: Arc<RemoteKeys>) -> Self {
        Self { rooms, client, remote_keys, backfills: backfill::Backfills::default() }
    }

    /// Takes in the PDUs of a transaction from `origin`; one result per event ID, as `/send`
    /// answers (an error string for an event that was not accepted).
    pub async fn receive_transaction(
        &self,
        origin: &ServerName,
        pdus: Vec<CanonicalJsonObject>,
    ) -> BTreeMap<OwnedEventId, Result<(), String>> {
        let mut results = BTreeMap::new();
        let mut by_room: BTreeMap<OwnedRoomId, Vec<CanonicalJsonObject>> = BTreeMap::new();
        for object in pdus {
            let Some(room_id) = room_id_of(&object) else { continue };
            by_room.entry(room_id).or_default().push(object);
        }
        for (room_id, mut objects) in by_room {
            let version = match self.rooms.version(&room_id) {
                Ok(Some(version)) => version,
                _ => {
                    for object in &objects {
                        if let Some(version) = guess_version(object)
                            && let Ok(id) = compute_event_id(object, version)
                        {
                            results.insert(id, Err("this server is not in the room".to_owned()));
                        }
                    }
                    continue;
                }
            };
            // Depth order, so that an event's predecessors in the transaction come before it.
            objects.sort_by_key(depth_of);
            let keys = Arc::new(self.verify_keys(version, &objects).await);
            let mut checking = CheckedInOrder::start(version, keys, objects);
            // The events whose predecessors and auth events are all here already (or earlier
            // in the transaction) go into the room as they come out of the checks, with one
            // wait for durability at the end; the others, which need fetching, one by one
            // after them.
            let (ready_tx, ready_rx) = mpsc::channel(checking.chunk_count().max(1));
            let feed = async {
                let ready_tx = ready_tx;
                while let Some(chunk) = checking.next().await {
                    let mut ready = Vec::with_capacity(chunk.len());
                    for result in chunk {
                        match result {
                            Ok(pdu) => ready.push(pdu),
                            Err(RefusedPdu { event_id: Some(id), why }) => {
                                record(&mut results, origin, id, Err(why));
                            }
                            Err(RefusedPdu { event_id: None, .. }) => {}
                        }
                    }
                    // The channel holds every chunk, so this waits for nothing.
                    let _ = ready_tx.send(ready).await;
                    // Lets the room take in this chunk before this thread checks another.
                    tokio::task::yield_now().await;
                }
            };
            // The room's side is polled first, so its task (taking the room's lock) starts
            // before this thread begins checking.
            let run = self.rooms.receive_run(&room_id, version, ready_rx);
            let (RunOutcome { decided, not_ready }, ()) = tokio::join!(run, feed);
            for (id, verdict) in decided {
                record(&mut results, origin, id, describe(verdict));
            }
            for pdu in not_ready {
                let id = pdu.pdu.event_id().to_owned();
                let verdict = self.ingest(origin, &room_id, version, pdu, true).await;
                record(&mut results, origin, id, describe(verdict));
            }
        }
        results
    }

    /// One checked event into the room: its auth events fetched if missing, its
    /// predecessors fetched (`get_missing_events`) when `fill_gaps`, else the state before
    /// it asked of `origin`; then authorized and stored.
    fn ingest<'a>(
        &'a self,
        origin: &'a ServerName,
        room_id: &'a RoomId,
        version: RoomVersion,
        checked: CheckedPdu,
        fill_gaps: bool,
    ) -> BoxFuture<'a, Result<Verdict, RoomError>> {
        Box::pin(async move {
            let event_id = checked.pdu.event_id().to_owned();
            if self.rooms.has_state_at(&event_id)? {
                return self.rooms.verdict(&event_id);
            }
            let missing_auth = self.missing(checked.pdu.auth_events())?;
            if !missing_auth.is_empty() {
                self.fetch_auth_chain(origin, room_id, version, &event_id).await?;
            }
            let mut missing_prev = self.missing_in_dag(checked.pdu.prev_events())?;
            if !missing_prev.is_empty() && fill_gaps {
                self.fill_gap(origin, room_id, version, &event_id, checked.pdu.depth()).await;
                missing_prev = self.missing_in_dag(checked.pdu.prev_events())?;
            }
            let state_before = if missing_prev.is_empty() {
                StateBefore::FromPrevEvents
            } else {
                tracing::info!(%origin, room = %room_id, event = %event_id, missing = missing_prev.len(), "predecessors not found; asking for the state at the event");
                match self.fetch_state_at(origin, room_id, version, &event_id).await {
                    Ok(state) => StateBefore::Given(state),
                    // A server with no member left may not read the room any more, but an
                    // event about one of its users (a ban after a kick) still concerns it.
                    Err(err) => match self.outside_removal_target(room_id, &checked)? {
                        Some(user) => {
                            return self
                                .take_outside_membership(room_id, version, &user, checked)
                                .await;
                        }
                        None => return Err(err),
                    },
                }
            };
            self.rooms.receive(room_id, version, checked, state_before, BTreeSet::new()).await
        })
    }

    /// Asks `origin` for the events between this room's forward extremities and `latest`,
    /// and takes them in oldest first. One answer holds at most `MISSING_EVENTS_LIMIT`
    /// events (Synapse sends no more either), the newest first, so a longer gap (a long
    /// outage, after which Synapse sends only each room's newest event) is walked back in
    /// rounds: each asks for what precedes the oldest events received so far, until they
    /// reach the DAG, an answer brings nothing new, `MAX_GAP_EVENTS` are held or
    /// `MAX_GAP_REQUESTS` were made. What is
    /// still missing then is left to the caller's fallback (the state at the event).
    async fn fill_gap(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: RoomVersion,
        latest: &EventId,
        depth: u64,
    ) {
        let Ok(Some((earliest, _))) = self.rooms.extremities(room_id) else { return };
        let min_depth = UInt::try_from(depth.saturating_sub(1000)).unwrap_or_default();
        let mut received: BTreeMap<OwnedEventId, CheckedPdu> = BTreeMap::new();
        let mut ask_before = vec![latest.to_owned()];
        let mut requests = 0;
        while !ask_before.is_empty() && received.len() < MAX_GAP_EVENTS {
            if requests == MAX_GAP_REQUESTS {
                tracing::info!(%origin, room = %room_id, "a gap took too many requests to fill");
                break;
            }
            requests += 1;
            let mut request = get_missing_events::v1::Request::new(
                room_id.to_owned(),
                earliest.clone(),
                std::mem::take(&mut ask_before),
            );
            request.limit = UInt::from(MISSING_EVENTS_LIMIT);
            request.min_depth = min_depth;
            let events = match self.client.send(origin, request).await {
                Ok(response) => response.events,
                Err(err) => {
                    tracing::info!(%origin, room = %room_id, %err, "get_missing_events failed");
                    break;
                }
            };
            let objects = events
                .iter()
                .filter_map(|raw| parse_object(raw.get().as_bytes(), MAX_PDU_BYTES).ok())
                .filter(|object| room_id_of(object).as_deref() == Some(room_id))
                .collect();
            let before = received.len();
            for checked in self.check_objects(version, objects).await.into_iter().flatten() {
                received.entry(checked.pdu.event_id().to_owned()).or_insert(checked);
            }
            if received.len() == before {
                break;
            }
            ask_before = self.gap_frontier(&received, latest);
        }
        tracing::info!(%origin, room = %room_id, received = received.len(), "filling a gap in the room's DAG");
        let mut received: Vec<CheckedPdu> = received.into_values().collect();
        received.sort_by_key(|c| c.pdu.depth());
        for pdu in received {
            if let Err(err) = self.ingest(origin, room_id, version, pdu, false).await {
                tracing::info!(%origin, room = %room_id, %err, "a missing event could not be taken in");
            }
        }
    }

    /// The events received while filling a gap whose predecessors are neither received nor
    /// in the room's DAG: the next round asks for what precedes them (the spec's
    /// `latest_events`, events the asking server has). At most `MISSING_EVENTS_LIMIT`.
    fn gap_frontier(
        &self,
        received: &BTreeMap<OwnedEventId, CheckedPdu>,
        latest: &EventId,
    ) -> Vec<OwnedEventId> {
        let missing = |id: &OwnedEventId| {
            id != latest
                && !received.contains_key(id)
                && !self.rooms.has_state_at(id).unwrap_or(false)
        };
        received
            .values()
            .filter(|checked| checked.pdu.prev_events().iter().any(missing))
            .map(|checked| checked.pdu.event_id().to_owned())
            .take(MISSING_EVENTS_LIMIT as usize)
            .collect()
    }

    /// The local user a received membership event removes from a room this server no longer
    /// follows (no member of it joined), if that is what the event is: a leave (a withdrawn
    /// invite, a kick) or a ban. Only such an event may bypass the room's DAG, and only
    /// then: while this server has a member joined it follows the room and places every
    /// event in the DAG, and no server may hand a local user a join or an invite this way
    /// (a server that was once in the room could otherwise rewrite the user's membership).
    fn outside_removal_target(
        &self,
        room_id: &RoomId,
        checked: &CheckedPdu,
    ) -> Result<Option<ruma::OwnedUserId>, RoomError> {
        let pdu = &checked.pdu;
        if *pdu.kind() != ruma::events::TimelineEventType::RoomMember {
            return Ok(None);
        }
        let Some(user) = pdu
            .state_key()
            .and_then(|key| UserId::parse(key).ok())
            .filter(|user| user.server_name() == self.client.origin())
        else {
            return Ok(None);
        };
        let removal =
            matches!(crate::service::rooms::membership_of(pdu).as_deref(), Some("leave" | "ban"));
        if !removal || self.rooms.has_joined_member(room_id, self.client.origin())? {
            return Ok(None);
        }
        Ok(Some(user))
    }

    /// A membership event about a local user in a room this server can no longer follow:
    /// authorized against its own auth events, then shown to the user as their membership.
    async fn take_outside_membership(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
        user: &UserId,
        checked: CheckedPdu,
    ) -> Result<Verdict, RoomError> {
        let event_id = checked.pdu.event_id().to_owned();
        let membership = crate::service::rooms::membership_of(&checked.pdu).unwrap_or_default();
        let json = checked.json.clone();
        let verdicts = self.rooms.store_outliers(version, vec![checked]).await?;
        let verdict = verdicts.get(&event_id).cloned().unwrap_or(Verdict::Accepted);
        if verdict == Verdict::Accepted {
            self.rooms
                .store_outside_membership(room_id, user, &event_id, &json, &membership, None)
                .await?;
        }
        Ok(verdict)
    }

    /// Fetches the auth chain of `event_id` from `origin` and stores it as outliers.
    async fn fetch_auth_chain(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: RoomVersion,
        event_id: &EventId,
    ) -> Result<(), RoomError> {
        let request =
            get_event_authorization::v1::Request::new(room_id.to_owned(), event_id.to_owned());
        let response = self.client.send(origin, request).await.map_err(remote)?;
        let checked = self.check_raw(version, room_id, &response.auth_chain).await;
        self.rooms.store_outliers(version, checked).await?;
        Ok(())
    }

    /// The state before `event_id` as `origin` reports it (`/state_ids`), with the events
    /// this server lacks fetched, checked and stored as outliers.
    async fn fetch_state_at(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        version: RoomVersion,
        event_id: &EventId,
    ) -> Result<StateMap, RoomError> {
        let request = get_room_state_ids::v1::Request::new(event_id.to_owned(), room_id.to_owned());
        let response = self.client.send(origin, request).await.map_err(remote)?;
        let wanted: Vec<OwnedEventId> =
            response.pdu_ids.iter().chain(&response.auth_chain_ids).cloned().collect();
        let missing = self.missing(&wanted)?;
        if missing.len() > MAX_EVENTS_FETCHED {
            return Err(RoomError::Remote(format!(
                "{origin} reports {} unknown state events, more than {MAX_EVENTS_FETCHED}",
                missing.len()
            )));
        }
        let mut fetched = Vec::new();
        for id in missing {
            match self.client.send(origin, get_event::v1::Request::new(id.clone())).await {
                Ok(response) => fetched.push(response.pdu),
                Err(err) => tracing::info!(%origin, event = %id, %err, "state event not fetched"),
            }
        }
        let checked = self.check_raw(version, room_id, &fetched).await;
        self.rooms.store_outliers(version, checked).await?;
        let mut state = StateMap::new();
        for id in &response.pdu_ids {
            if let Some(pdu) = self.rooms.pdu(id, version)?
                && !pdu.is_rejected()
                && let Some(slot) = pdu.state_slot()
            {
                state.insert(slot, id.clone());
            }
        }
        Ok(state)
    }

    /// Joins `user` to a room this server is not in, through one of `via`: `make_join`,
    /// sign, `send_join` (v2, full state), check everything answered, adopt the state.
    pub async fn join(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
        profile: &serde_json::Map<String, serde_json::Value>,
        via: &[OwnedServerName],
    ) -> Result<OwnedEventId, RoomError> {
        let change = MembershipChange {
            user,
            membership: "join",
            reason,
            profile: Some(profile),
            extra: None,
        };
        self.through_any(room_id, via, "join", |server| self.join_through(room_id, change, server))
            .await
    }

    /// Runs `step` through each server of `via` but this one, until one succeeds; answers
    /// the last failure if none does.
    async fn through_any<'a, F, Fut>(
        &self,
        room_id: &RoomId,
        via: &'a [OwnedServerName],
        what: &str,
        step: F,
    ) -> Result<OwnedEventId, RoomError>
    where
        F: Fn(&'a ServerName) -> Fut,
        Fut: Future<Output = Result<OwnedEventId, RoomError>>,
    {
        let mut last_error = RoomError::Remote(format!("no server to {what} through"));
        for server in via.iter().filter(|s| **s != *self.client.origin()) {
            match step(server).await {
                Ok(event_id) => return Ok(event_id),
                Err(err) => {
                    tracing::info!(room = %room_id, %server, %err, what, "this server failed");
                    last_error = err;
                }
            }
        }
        Err(last_error)
    }

    async fn join_through(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        server: &ServerName,
    ) -> Result<OwnedEventId, RoomError> {
        let user = change.user;
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = RoomVersion::ALL.iter().map(|v| v.id()).collect();
        let template = self.client.send(server, request).await.map_err(remote)?;
        let Signed { version, event_id, event, pdu } =
            self.sign_template(server, template.room_version, &template.event, room_id, change)?;
        let request =
            create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), pdu);
        let answer = self.client.send(server, request).await.map_err(remote)?.room_state;

        let state_checked = self.check_raw(version, room_id, &answer.state).await;
        let state_ids: Vec<OwnedEventId> =
            state_checked.iter().map(|c| c.pdu.event_id().to_owned()).collect();
        let mut everything = state_checked;
        everything.extend(self.check_raw(version, room_id, &answer.auth_chain).await);
        let verdicts = self.rooms.store_outliers(version, everything).await?;
        let mut state = StateMap::new();
        for id in &state_ids {
            if verdicts.get(id) == Some(&Verdict::Accepted)
                && let Some(pdu) = self.rooms.pdu(id, version)?
                && let Some(slot) = pdu.state_slot()
            {
                state.insert(slot, id.clone());
            }
        }
        check_create_event(&self.rooms, &state, room_id, version)?;
        // The resident server may have added its signature; the event is the same either way.
        let joined = match answer.event {
            Some(raw) => parse_object(raw.get().as_bytes(), MAX_PDU_BYTES)
                .ok()
                .filter(|object| compute_event_id(object, version).ok().as_ref() == Some(&event_id))
                .unwrap_or(event),
            None => event,
        };
        let keys = self.verify_keys(version, std::slice::from_ref(&joined)).await;
        let checked = check_incoming_object(joined, version, &keys)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        match self
            .rooms
            .receive(room_id, version, checked, StateBefore::Join(state), BTreeSet::new())
            .await?
        {
            Verdict::Accepted => Ok(event_id),
            Verdict::Rejected(why) | Verdict::SoftFailed(why) => Err(RoomError::Forbidden(why)),
        }
    }

    /// The co-signing step of inviting a user of another server: their server checks and
    /// signs the invite (`/invite` v2, with the room's public state for the invitee to see)
    /// before it is stored here.
    /// The co-signing step an invite of `invitee` needs: their server's, when they are a
    /// user of another server; none for this server's own users.
    pub fn cosigner_for(
        self: &Arc<Self>,
        room_id: &RoomId,
        inviter: &UserId,
        invitee: &UserId,
    ) -> Result<Option<Cosigner>, RoomError> {
        if invitee.server_name() == self.rooms.server_name() {
            return Ok(None);
        }
        self.invite_cosigner(room_id, inviter).map(Some)
    }

    fn invite_cosigner(
        self: &Arc<Self>,
        room_id: &RoomId,
        inviter: &UserId,
    ) -> Result<Cosigner, RoomError> {
        let version = self.rooms.version(room_id)?.ok_or(RoomError::UnknownRoom)?;
        let mut invite_room_state = Vec::new();
        for (id, pdu) in self.rooms.current_state_events(room_id, version)? {
            // What an invitee is shown of the room: never its other members, but the
            // inviter's membership (matrix-sdk accepts the room keys an inviter shares on
            // invite only when it can tell who invited it).
            let shown = crate::service::access::INVITE_STATE_TYPES
                .contains(&pdu.kind().to_string().as_str())
                || (*pdu.kind() == ruma::events::TimelineEventType::RoomMember
                    && pdu.state_key() == Some(inviter.as_str()));
            if shown && let Some(json) = self.rooms.event_json(&id)? {
                let raw = serde_json::value::to_raw_value(&json)
                    .map_err(|err| RoomError::Invalid(err.to_string()))?;
                invite_room_state
                    .push(ruma::api::federation::membership::RawStrippedState::Pdu(raw));
            }
        }
        let this = self.clone();
        let room_id = room_id.to_owned();
        Ok(Box::new(move |signed: SignedEvent| {
            Box::pin(async move {
                let target = signed
                    .pdu
                    .state_key()
                    .and_then(|key| UserId::parse(key).ok())
                    .ok_or_else(|| RoomError::Invalid("an invite names a user".to_owned()))?;
                let event = RawValue::from_string(encode(&signed.json))
                    .map_err(|err| RoomError::Invalid(err.to_string()))?;
                let request = create_invite::v2::Request::new(
                    room_id,
                    signed.event_id.clone(),
                    version.id(),
                    event,
                    invite_room_state,
                );
                let answer =
                    this.client.send(target.server_name(), request).await.map_err(remote)?;
                let object = parse_object(answer.event.get().as_bytes(), MAX_PDU_BYTES)
                    .map_err(|err| RoomError::Remote(format!("invite answer: {err}")))?;
                let checked = this.check_objects(version, vec![object]).await.remove(0);
                let checked = checked.map_err(|refused| {
                    RoomError::Remote(format!("invite answer: {}", refused.why))
                })?;
                if checked.pdu.event_id() != signed.event_id {
                    return Err(RoomError::Remote("the invite answer is another event".to_owned()));
                }
                // The stored form (redacted, had its content hash not matched).
                let json = parse_object(checked.json.as_bytes(), MAX_PDU_BYTES)
                    .map_err(|err| RoomError::Remote(format!("invite answer: {err}")))?;
                Ok(SignedEvent { event_id: signed.event_id, json, pdu: checked.pdu })
            }) as Pin<Box<dyn Future<Output = Result<SignedEvent, RoomError>> + Send>>
        }))
    }

    /// Knocks on a room this server is not in, through one of `via`: `make_knock`, sign,
    /// `send_knock`; the knock is recorded here with the room's stripped state the answer
    /// carried (what the knocker is shown of the room).
    pub async fn knock(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        via: &[OwnedServerName],
    ) -> Result<OwnedEventId, RoomError> {
        self.through_any(room_id, via, "knock", |server| {
            self.knock_through(room_id, change, server)
        })
        .await
    }

    async fn knock_through(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        server: &ServerName,
    ) -> Result<OwnedEventId, RoomError> {
        let user = change.user;
        let mut request =
            prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = RoomVersion::ALL.iter().map(|v| v.id()).collect();
        let template = self.client.send(server, request).await.map_err(remote)?;
        let Signed { event_id, event, pdu, .. } = self.sign_template(
            server,
            Some(template.room_version),
            &template.event,
            room_id,
            change,
        )?;
        let request =
            create_knock_event::v1::Request::new(room_id.to_owned(), event_id.clone(), pdu);
        let answer = self.client.send(server, request).await.map_err(remote)?;
        let shown: Vec<serde_json::Value> =
            answer.knock_room_state.iter().filter_map(stripped_event).collect();
        let room_state = serde_json::json!({ "events": shown });
        self.rooms
            .store_outside_membership(
                room_id,
                user,
                &event_id,
                &encode(&event),
                "knock",
                Some(&room_state),
            )
            .await?;
        Ok(event_id)
    }

    /// Rejects an invite to a room this server is not in, through one of `via` (the server
    /// that sent it): `make_leave`, sign, `send_leave` (v2); the leave is recorded here too.
    pub async fn reject_invite(
        &self,
        room_id: &RoomId,
        user: &UserId,
        reason: Option<&str>,
        via: &[OwnedServerName],
    ) -> Result<OwnedEventId, RoomError> {
        let change =
            MembershipChange { user, membership: "leave", reason, profile: None, extra: None };
        self.through_any(room_id, via, "leave", |server| {
            self.reject_through(room_id, change, server)
        })
        .await
    }

    async fn reject_through(
        &self,
        room_id: &RoomId,
        change: MembershipChange<'_>,
        server: &ServerName,
    ) -> Result<OwnedEventId, RoomError> {
        let user = change.user;
        let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        let template = self.client.send(server, request).await.map_err(remote)?;
        let Signed { event_id, event, pdu, .. } =
            self.sign_template(server, template.room_version, &template.event, room_id, change)?;
        let request =
            create_leave_event::v2::Request::new(room_id.to_owned(), event_id.clone(), pdu);
        self.client.send(server, request).await.map_err(remote)?;
        self.rooms
            .store_outside_membership(room_id, user, &event_id, &encode(&event), "leave", None)
            .await?;
        Ok(event_id)
    }

    /// A membership template from a resident server, checked to be `user`'s `membership` in
    /// `room_id` in a room version this server speaks, then timestamped and signed here.
    fn sign_template(
        &self,
        server: &ServerName,
        room_version: Option<ruma::RoomVersionId>,
        template: &RawValue,
        room_id: &RoomId,
        change: MembershipChange<'_>,
    ) -> Result<Signed, RoomError> {
        let version =
            room_version.and_then(|v| RoomVersion::parse(v.as_str()).ok()).ok_or_else(|| {
                RoomError::Remote(format!("{server} offers an unsupported room version"))
            })?;
        let mut event = parse_object(template.get().as_bytes(), MAX_PDU_BYTES)
            .map_err(|err| RoomError::Remote(format!("membership template: {err}")))?;
        check_membership_template(&event, room_id, change.user, change.membership)?;
        if let Some(CanonicalJsonValue::Object(content)) = event.get_mut("content") {
            if let Some(reason) = change.reason {
                content.insert("reason".into(), CanonicalJsonValue::String(reason.to_owned()));
            }
            for field in ["displayname", "avatar_url"] {
                if let Some(value) = change.profile.and_then(|p| p.get(field)?.as_str()) {
                    content.insert(field.into(), CanonicalJsonValue::String(value.to_owned()));
                }
            }
            for (field, value) in change.extra.into_iter().flatten() {
                let value = CanonicalJsonValue::try_from(value.clone())
                    .map_err(|err| RoomError::Invalid(format!("{field}: {err}")))?;
                content.insert(field.clone(), value);
            }
        }
        event.insert(
            "origin_server_ts".into(),
            CanonicalJsonValue::Integer(crate::clock::now_ms().try_into().unwrap_or_default()),
        );
        event.remove("signatures");
        event.remove("hashes");
        event.remove("unsigned");
        hash_and_sign(&mut event, version, self.rooms.signing_key())
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        let event_id =
            compute_event_id(&event, version).map_err(|err| RoomError::Invalid(err.to_string()))?;
        let pdu = RawValue::from_string(encode(&event))
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        Ok(Signed { version, event_id, event, pdu })
    }

    /// Checks raw PDUs of `room_id` (format, signatures, hashes); drops those that fail.
    async fn check_raw(
        &self,
        version: RoomVersion,
        room_id: &RoomId,
        raw: &[Box<RawValue>],
    ) -> Vec<CheckedPdu> {
        let objects = raw
            .iter()
            .filter_map(|raw| parse_object(raw.get().as_bytes(), MAX_PDU_BYTES).ok())
            // A v12 create event carries no room ID: its ID names the room instead.
            .filter(|object| match room_id_of(object) {
                Some(id) => id == room_id,
                None => version.room_id_is_create_event_hash(),
            })
            .collect();
        self.check_objects(version, objects)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .filter(|checked| match checked.pdu.room_id() {
                Some(id) => id == room_id,
                None => room_id_from_create_event_id(checked.pdu.event_id()) == room_id,
            })
            .collect()
    }

    /// Checks parsed PDUs, fetching their signers' keys first. The signature arithmetic, the
    /// bulk of the cost, is spread over the machine's cores. A refused event is named by its
    /// ID where it has one.
    pub async fn check_objects(
        &self,
        version: RoomVersion,
        objects: Vec<CanonicalJsonObject>,
    ) -> Vec<CheckResult> {
        let keys = Arc::new(self.verify_keys(version, &objects).await);
        CheckedInOrder::start(version, keys, objects).all().await
    }

    /// The verify keys of every server whose signature these events need.
    pub async fn verify_keys(
        &self,
        version: RoomVersion,
        objects: &[CanonicalJsonObject],
    ) -> VerifyKeys {
        // Each key with the latest timestamp of an event it signed: a former key verifies
        // only events made before it expired.
        let mut wanted: BTreeMap<(OwnedServerName, String), u64> = BTreeMap::new();
        for object in objects {
            let ts = match object.get("origin_server_ts") {
                Some(CanonicalJsonValue::Integer(ts)) => u64::try_from(i64::from(*ts)).unwrap_or(0),
                _ => 0,
            };
            for server in required_signers(object, version).unwrap_or_default() {
                for key_id in signature_key_ids(object, &server) {
                    let latest = wanted.entry((server.clone(), key_id)).or_insert(0);
                    *latest = (*latest).max(ts);
                }
            }
        }
        let mut keys = VerifyKeys::default();
        let own = self.rooms.signing_key();
        let now = crate::clock::now_ms();
        for ((server, key_id), latest_ts) in wanted {
            if server == *own.server_name() {
                keys.extend(own.verify_keys());
                continue;
            }
            if keys.ed25519_keys(server.as_str()).is_some_and(|known| known.contains_key(&key_id)) {
                continue;
            }
            match self.remote_keys.keys_for_event(&server, &key_id, latest_ts, now).await {
                Ok(found) => keys.extend(found),
                Err(err) => tracing::info!(%server, %err, "signing keys not available"),
            }
        }
        keys
    }

    fn missing(&self, ids: &[OwnedEventId]) -> Result<Vec<OwnedEventId>, RoomError> {
        let mut out = Vec::new();
        for id in ids {
            if !self.rooms.has_event(id)? {
                out.push(id.clone());
            }
        }
        Ok(out)
    }

    fn missing_in_dag(&self, ids: &[OwnedEventId]) -> Result<Vec<OwnedEventId>, RoomError> {
        let mut out = Vec::new();
        for id in ids {
            if !self.rooms.has_state_at(id)? {
                out.push(id.clone());
            }
        }
        Ok(out)
    }
}

/// A verdict as `/send` reports it.
fn describe(verdict: Result<Verdict, RoomError>) -> Result<(), String> {
    match verdict {
        Ok(Verdict::Accepted) => Ok(()),
        Ok(Verdict::Rejected(why)) => Err(format!("rejected: {why}")),
        Ok(Verdict::SoftFailed(why)) => Err(format!("soft-failed: {why}")),
        Err(err) => Err(err.to_string()),
    }
}

/// Records an event's answer for `/send`, logging a refusal.
fn record(
    results: &mut BTreeMap<OwnedEventId, Result<(), String>>,
    origin: &ServerName,
    event: OwnedEventId,
    result: Result<(), String>,
) {
    if let Err(why) = &result {
        tracing::info!(%origin, %event, why, "event from a transaction not accepted");
    }
    results.insert(event, result);
}

fn remote(err: super::FederationError) -> RoomError {
    RoomError::Remote(err.to_string())
}

/// The key IDs of `server`'s signatures on an event.
fn signature_key_ids(object: &CanonicalJsonObject, server: &ServerName) -> Vec<String> {
    match object.get("signatures") {
        Some(CanonicalJsonValue::Object(signatures)) => match signatures.get(server.as_str()) {
            Some(CanonicalJsonValue::Object(by_key)) => by_key.keys().cloned().collect(),
            _ => vec![],
        },
        _ => vec![],
    }
}

/// The depth an event claims, for ordering a transaction before its events are checked.
fn depth_of(object: &CanonicalJsonObject) -> i64 {
    match object.get("depth") {
        Some(CanonicalJsonValue::Integer(depth)) => i64::from(*depth),
        _ => 0,
    }
}

fn room_id_of(object: &CanonicalJsonObject) -> Option<OwnedRoomId> {
    match object.get("room_id") {
        Some(CanonicalJsonValue::String(id)) => RoomId::parse(id).ok(),
        _ => None,
    }
}

/// For reporting an event of an unknown room by ID: v12's rules for a v12-shaped room ID.
fn guess_version(object: &CanonicalJsonObject) -> Option<RoomVersion> {
    let room_id = room_id_of(object)?;
    Some(if room_id.server_name().is_none() { RoomVersion::V12 } else { RoomVersion::V11 })
}

/// A membership template must be the join (or leave) of the user asked for, in the room
/// asked for.
fn check_membership_template(
    event: &CanonicalJsonObject,
    room_id: &RoomId,
    user: &UserId,
    wanted: &str,
) -> Result<(), RoomError> {
    let text = |field: &str| match event.get(field) {
        Some(CanonicalJsonValue::String(value)) => Some(value.as_str()),
        _ => None,
    };
    let membership = match event.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.as_str()),
            _ => None,
        },
        _ => None,
    };
    let fits = text("type") == Some("m.room.member")
        && text("sender") == Some(user.as_str())
        && text("state_key") == Some(user.as_str())
        && text("room_id") == Some(room_id.as_str())
        && membership == Some(wanted);
    if fits {
        Ok(())
    } else {
        Err(RoomError::Remote(format!("the template is not this user's {wanted}")))
    }
}

/// The joined room's state must hold the create event the room ID and version name.
fn check_create_event(
    rooms: &Rooms,
    state: &StateMap,
    room_id: &RoomId,
    version: RoomVersion,
) -> Result<(), RoomError> {
    let create_id = state
        .get(&(ruma::events::StateEventType::RoomCreate, String::new()))
        .ok_or_else(|| RoomError::Remote("the room state has no create event".to_owned()))?;
    if version.room_id_is_create_event_hash()
        && medrix_protocol::incoming::room_id_from_create_event_id(create_id) != *room_id
    {
        return Err(RoomError::Remote("the create event is not this room's".to_owned()));
    }
    let create = rooms
        .pdu(create_id, version)?
        .ok_or_else(|| RoomError::Remote("the create event is missing".to_owned()))?;
    #[derive(serde::Deserialize)]
    struct Content {
        room_version: Option<String>,
    }
    let named = serde_json::from_str::<Content>(create.content().get())
        .ok()
        .and_then(|c| c.room_version)
        .unwrap_or_else(|| "1".to_owned());
    if named == version.as_str() {
        Ok(())
    } else {
        Err(RoomError::Remote(format!("the create event names room version {named}")))
    }
}

/// A stripped state event (what a client shows of a room it is invited to), from either form
/// a server may send: stripped already, or a full PDU (Matrix 1.16 and later).
#[allow(deprecated)]
pub fn stripped_event(
    raw: &ruma::api::federation::membership::RawStrippedState,
) -> Option<serde_json::Value> {
    let event: serde_json::Value = match raw {
        ruma::api::federation::membership::RawStrippedState::Stripped(raw) => {
            serde_json::from_str(raw.json().get()).ok()?
        }
        ruma::api::federation::membership::RawStrippedState::Pdu(raw) => {
            serde_json::from_str(raw.get()).ok()?
        }
        _ => return None,
    };
    Some(serde_json::json!({
        "type": event.get("type")?, "state_key": event.get("state_key")?,
        "content": event.get("content")?, "sender": event.get("sender")?,
    }))
}
