//! Rooms: creating them, appending local events to their DAG (signed, authorized, stored in
//! one durable batch), and the current state. Every local event goes through
//! [`Rooms::append`], which holds the room's lock so the DAG stays a line per server.

mod event_write;
mod in_flight;
mod medrix_contents;
pub mod record_gate;
mod redaction;
pub mod remote;
pub mod state_store;
pub mod stream;

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use medrix_protocol::{
    Pdu, RoomVersion, StateMap, Verdict,
    build::{EventDraft, SignedEvent, sign_new_event},
    canonical::{encode, object_from_value},
    decide,
    decide::select_auth_events,
    incoming::room_id_from_create_event_id,
    keys::ServerSigningKey,
};
use ruma::{
    CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, OwnedServerName, RoomId, ServerName,
    UserId,
    events::{StateEventType, TimelineEventType},
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    locks::LockExt,
    service::federation::sender::Sender,
    storage::{Batch, Durability, Storage, StorageError, catalogue as cf, compound_key},
};
use event_write::{AcceptedEvent, write_accepted};
use state_store::StateStore;
use stream::StreamPositions;

/// What room operations can refuse.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RoomError {
    #[error("unknown room")]
    UnknownRoom,
    #[error("not allowed: {0}")]
    Forbidden(String),
    #[error("invalid: {0}")]
    Invalid(String),
    /// Well-formed, but a value breaks a rule (a contract ending before it starts).
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// Events the operation needs that this server does not have (yet).
    #[error("missing events: {0:?}")]
    MissingEvents(Vec<OwnedEventId>),
    /// Another server failed or refused a step (an invite's co-signature, a join).
    #[error("{0}")]
    Remote(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Where a room's next local event attaches: the DAG's forward extremities (its
/// `prev_events`), the greatest depth among them, and the group of the current state (the
/// state resolved over the extremities).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RoomHead {
    version: String,
    extremities: Vec<OwnedEventId>,
    depth: u64,
    state_group: u64,
}

/// The most `prev_events` a local event cites; older extremities stay until merged later.
const MAX_PREV_EVENTS: usize = 10;

/// The most forward extremities a room keeps. Each is a fork the current state is resolved
/// over on every received event, so a server sending many forks (each citing an old event)
/// would otherwise make each later event cost more without bound. Past it, the extremities
/// held longest leave the set: they stay in the DAG, and their state counts again as soon
/// as a later event cites them.
const MAX_FORWARD_EXTREMITIES: usize = 2 * MAX_PREV_EVENTS;

impl RoomHead {
    /// The forward extremities once `event` (citing `prev_events`) is accepted: those it
    /// does not cite, in the order they became extremities, then itself; the newest
    /// `MAX_FORWARD_EXTREMITIES` of them.
    fn extremities_after(
        &self,
        prev_events: &[OwnedEventId],
        event: &EventId,
    ) -> Vec<OwnedEventId> {
        let mut extremities: Vec<OwnedEventId> = self
            .extremities
            .iter()
            .filter(|id| !prev_events.contains(id) && **id != *event)
            .cloned()
            .chain([event.to_owned()])
            .collect();
        let excess = extremities.len().saturating_sub(MAX_FORWARD_EXTREMITIES);
        extremities.drain(..excess);
        extremities
    }
}

/// A room loaded for appending: head, current state and the state events themselves.
#[derive(Clone)]
struct LoadedRoom {
    version: RoomVersion,
    head: RoomHead,
    state: StateMap,
    events: HashMap<OwnedEventId, Pdu>,
    /// Other servers with a member joined now: where this room's local events go.
    remote_servers: BTreeSet<OwnedServerName>,
    /// Its events queued but not yet durable.
    in_flight: Arc<in_flight::InFlight>,
}

impl LoadedRoom {
    fn empty(version: RoomVersion) -> Self {
        Self {
            version,
            head: RoomHead {
                version: version.as_str().to_owned(),
                extremities: vec![],
                depth: 0,
                state_group: 0,
            },
            state: StateMap::new(),
            events: HashMap::new(),
            remote_servers: BTreeSet::new(),
            in_flight: Arc::default(),
        }
    }

    /// Moves the in-memory room to a new head, and to a new current state if it changed
    /// (`new_state_events` are the events that entered it).
    fn advance(&mut self, head: RoomHead, state: Option<(StateMap, Vec<Pdu>)>, own: &ServerName) {
        self.head = head;
        let Some((state, entered)) = state else { return };
        let members_changed =
            entered.iter().any(|pdu| *pdu.kind() == TimelineEventType::RoomMember);
        for pdu in entered {
            self.events.insert(pdu.event_id().to_owned(), pdu);
        }
        if self.events.len() > state.len() {
            let current: HashSet<&OwnedEventId> = state.values().collect();
            self.events.retain(|id, _| current.contains(id));
        }
        self.state = state;
        if members_changed {
            self.remote_servers = joined_servers(&self.state, &self.events, own);
        }
    }
}

/// The servers of the members joined in `state`, other than `own`.
fn joined_servers(
    state: &StateMap,
    events: &HashMap<OwnedEventId, Pdu>,
    own: &ServerName,
) -> BTreeSet<OwnedServerName> {
    state
        .iter()
        .filter(|((kind, _), _)| *kind == StateEventType::RoomMember)
        .filter_map(|(_, id)| events.get(id))
        .filter(|pdu| membership_of(pdu).as_deref() == Some("join"))
        .filter_map(|pdu| pdu.state_key().and_then(|key| UserId::parse(key).ok()))
        .map(|user| user.server_name().to_owned())
        .filter(|server| server != own)
        .collect()
}

/// An idempotency key for client sends: the same key returns the same event.
pub struct TxnKey<'a> {
    pub device_id: &'a str,
    pub txn_id: &'a str,
}

/// A room's lock, holding the room once loaded.
type RoomSlot = Arc<tokio::sync::Mutex<Option<LoadedRoom>>>;

/// Cached rooms; past this many, rooms not in use are dropped from memory.
const MAX_CACHED_ROOMS: usize = 4096;

#[derive(Clone)]
pub struct Rooms {
    storage: Storage,
    key: Arc<ServerSigningKey>,
    server_name: OwnedServerName,
    pub stream: Arc<StreamPositions>,
    pub state_store: Arc<StateStore>,
    /// The outbound federation queues, when federation is on.
    sender: Option<Arc<Sender>>,
    rooms: Arc<Mutex<HashMap<OwnedRoomId, RoomSlot>>>,
    /// Sends queued but not yet durable, by transaction key: a retry that arrives meanwhile
    /// waits for the first one's outcome instead of sending again.
    pending_txns: Arc<Mutex<HashMap<Vec<u8>, PendingTxn>>>,
}

/// A queued send's event ID and the channel that reports whether it became durable.
type PendingTxn = (OwnedEventId, watch::Receiver<Option<bool>>);

/// An event in the commit queue: appended to the in-memory room, durable once settled.
struct QueuedEvent {
    event_id: OwnedEventId,
    /// Its stream position, if it joined the timeline (rejected and soft-failed events do not).
    position: Option<u64>,
    txn: Option<(Vec<u8>, watch::Sender<Option<bool>>)>,
    /// Servers whose queues received it, to wake once it is durable.
    destinations: Vec<OwnedServerName>,
    /// Counts it among its room's events in flight until it settles.
    in_flight: in_flight::InFlightWrite,
}

/// A co-signing step between building a local event and storing it: an invite to a user on
/// another server must carry that server's signature too (`/invite` v2).
pub type Cosigner = Box<
    dyn FnOnce(SignedEvent) -> Pin<Box<dyn Future<Output = Result<SignedEvent, RoomError>> + Send>>
        + Send,
>;

impl Rooms {
    pub fn new(
        storage: Storage,
        key: Arc<ServerSigningKey>,
        server_name: OwnedServerName,
        sender: Option<Arc<Sender>>,
    ) -> Result<Self, StorageError> {
        let last = storage
            .last_in_prefix(cf::POSITION_ROOMEVENT, b"", &[0xFF; 8])?
            .map(|(key, _)| position_from(&key))
            .unwrap_or(0);
        let stream = Arc::new(StreamPositions::open(storage.clone(), last)?);
        Ok(Self {
            state_store: Arc::new(StateStore::open(storage.clone())?),
            storage,
            key,
            server_name,
            stream,
            sender,
            rooms: Arc::new(Mutex::new(HashMap::new())),
            pending_txns: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    pub fn signing_key(&self) -> &ServerSigningKey {
        &self.key
    }

    /// Creates a room: the create event (with the fields of `creation_content`, such as a
    /// space's `type`; the room version and creator are this server's to set), then each of
    /// `setup` in order, as `creator`.
    pub async fn create(
        &self,
        creator: &UserId,
        version: RoomVersion,
        creation_content: serde_json::Map<String, Value>,
        setup: Vec<(String, Option<String>, Value)>,
    ) -> Result<OwnedRoomId, RoomError> {
        if crate::service::device_accounts::is_device_account(&self.storage, creator)? {
            return Err(RoomError::Forbidden("a device account creates no rooms".to_owned()));
        }
        let mut content = Value::Object(creation_content);
        content["room_version"] = json!(version.as_str());
        if let Some(content) = content.as_object_mut() {
            content.remove("creator");
        }
        if version == RoomVersion::V10 {
            content["creator"] = json!(creator);
        }
        let room_id = match version.room_id_is_create_event_hash() {
            true => None,
            false => Some(
                RoomId::parse(format!(
                    "!{}:{}",
                    crate::random::string(crate::random::LETTERS, 12),
                    self.server_name
                ))
                .map_err(|err| RoomError::Invalid(err.to_string()))?,
            ),
        };
        let draft = EventDraft {
            room_id: room_id.clone(),
            sender: creator.to_owned(),
            kind: "m.room.create".to_owned(),
            state_key: Some(String::new()),
            content: object_from_value(content)
                .map_err(|err| RoomError::Invalid(err.to_string()))?,
            prev_events: vec![],
            auth_events: vec![],
            depth: 1,
            origin_server_ts: crate::clock::now_ms(),
            redacts: None,
        };
        let create = sign_new_event(&draft, version, &self.key)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        let room_id = room_id.unwrap_or_else(|| room_id_from_create_event_id(&create.event_id));
        let slot = self.slot(&room_id);
        let mut guard = slot.lock().await;
        let mut room = LoadedRoom::empty(version);
        // Authorize the whole setup in memory first: a refused `initial_state` event must not
        // leave a half-built room behind.
        let mut trial = room.clone();
        let create_slot = create
            .pdu
            .state_slot()
            .ok_or_else(|| RoomError::Invalid("the create event has no state key".to_owned()))?;
        trial.state.insert(create_slot, create.event_id.clone());
        trial.events.insert(create.event_id.clone(), create.pdu.clone());
        trial.head.extremities = vec![create.event_id.clone()];
        trial.head.depth = 1;
        for (kind, state_key, content) in &setup {
            let signed = self.prepare(
                &room_id,
                &trial,
                creator,
                kind,
                state_key.as_deref(),
                content.clone(),
            )?;
            if let Some(slot) = signed.pdu.state_slot() {
                trial.state.insert(slot, signed.event_id.clone());
                trial.events.insert(signed.event_id.clone(), signed.pdu.clone());
            }
            trial.head.extremities = vec![signed.event_id.clone()];
            trial.head.depth = signed.pdu.depth();
        }
        let (queued, durability) = self.store(&room_id, &mut room, create, None, None).await?;
        self.settle(&room_id, durability, vec![queued]).await?;
        for (kind, state_key, content) in setup {
            let (queued, durability) = self
                .append_loaded(
                    &room_id,
                    &mut room,
                    creator,
                    &kind,
                    state_key.as_deref(),
                    content,
                    None,
                    None,
                )
                .await?;
            self.settle(&room_id, durability, vec![queued]).await?;
        }
        *guard = Some(room);
        Ok(room_id)
    }

    /// Appends a local event from `sender`. With a `txn`, a repeated request returns the
    /// event of the first one instead of sending again.
    pub async fn append(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        txn: Option<TxnKey<'_>>,
    ) -> Result<OwnedEventId, RoomError> {
        self.append_cosigned(room_id, sender, kind, state_key, content, txn, None).await
    }

    /// [`Rooms::append`], with a co-signing step (a remote invite) before the event is stored.
    #[allow(clippy::too_many_arguments)]
    pub async fn append_cosigned(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        txn: Option<TxnKey<'_>>,
        cosign: Option<Cosigner>,
    ) -> Result<OwnedEventId, RoomError> {
        if let Some(txn) = &txn
            && let Some(id) = self.storage.get(cf::TXNID_EVENTID, &txn_key(sender, txn))?
        {
            return parse_event_id(&id);
        }
        let slot = self.slot(room_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.load(room_id)?.ok_or(RoomError::UnknownRoom)?);
        }
        let Some(room) = guard.as_mut() else { return Err(RoomError::UnknownRoom) };
        // Re-check under the lock: a concurrent retry of the same transaction may have won,
        // durably or still in the commit queue.
        if let Some(txn) = &txn {
            let key = txn_key(sender, txn);
            if let Some(id) = self.storage.get(cf::TXNID_EVENTID, &key)? {
                return parse_event_id(&id);
            }
            let pending = self.pending_txns.locked().get(&key).cloned();
            if let Some((event_id, mut outcome)) = pending {
                drop(guard);
                let durable = outcome.wait_for(Option::is_some).await.map(|o| *o == Some(true));
                return match durable {
                    Ok(true) => Ok(event_id),
                    _ => Err(RoomError::Storage(crate::storage::StorageError::WriterStopped)),
                };
            }
        }
        let (queued, durability) = self
            .append_loaded(room_id, room, sender, kind, state_key, content, txn, cosign)
            .await?;
        // The next event may be built and queued while this one waits for its fsync: group
        // commit then makes a room's events durable together instead of one fsync each.
        drop(guard);
        let event_id = queued.event_id.clone();
        self.settle(room_id, durability, vec![queued]).await?;
        Ok(event_id)
    }

    #[allow(clippy::too_many_arguments)]
    async fn append_loaded(
        &self,
        room_id: &RoomId,
        room: &mut LoadedRoom,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        txn: Option<TxnKey<'_>>,
        cosign: Option<Cosigner>,
    ) -> Result<(QueuedEvent, Durability), RoomError> {
        let mut signed = self.prepare(room_id, room, sender, kind, state_key, content)?;
        if let Some(cosign) = cosign {
            let event_id = signed.event_id.clone();
            signed = cosign(signed).await?;
            if signed.event_id != event_id {
                return Err(RoomError::Invalid("the co-signed event is another event".to_owned()));
            }
        }
        let redacted = redaction::redacted_target(
            &self.storage,
            room_id,
            room.version,
            &room.state,
            &room.events,
            &signed.pdu,
            &signed.json,
        )?;
        self.store(room_id, room, signed, txn.map(|txn| txn_key(sender, &txn)), redacted).await
    }

    /// Builds, signs and authorizes the room's next local event, without storing it.
    fn prepare(
        &self,
        room_id: &RoomId,
        room: &LoadedRoom,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<SignedEvent, RoomError> {
        medrix_contents::check_local(kind, state_key, &content, sender)?;
        self.check_device_write(&room.state, &room.events, sender, kind, state_key)?;
        if kind == "m.room.member"
            && let (Some(target), Some(membership)) = (state_key, content["membership"].as_str())
        {
            let target =
                UserId::parse(target).map_err(|err| RoomError::Invalid(err.to_string()))?;
            let now = crate::clock::now_ms();
            self.check_record_membership(
                room_id,
                &room.state,
                &room.events,
                &target,
                membership,
                now,
            )?;
        }
        let draft = self.draft(room_id, room, sender, kind, state_key, content)?;
        let signed = sign_new_event(&draft, room.version, &self.key)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        match decide(room.version, &signed.pdu, &room.events, &room.state, None).verdict {
            Verdict::Accepted => Ok(signed),
            Verdict::Rejected(reason) | Verdict::SoftFailed(reason) => {
                Err(RoomError::Forbidden(reason))
            }
        }
    }

    /// The unsigned next event of a room: `prev_events` are its forward extremities,
    /// `auth_events` chosen from its current state.
    fn draft(
        &self,
        room_id: &RoomId,
        room: &LoadedRoom,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
    ) -> Result<EventDraft, RoomError> {
        let content =
            object_from_value(content).map_err(|err| RoomError::Invalid(err.to_string()))?;
        let raw_content = serde_json::value::to_raw_value(&content)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        let auth_events =
            select_auth_events(room.version, kind, sender, state_key, &raw_content, &room.state)
                .map_err(|err| RoomError::Invalid(err.to_string()))?;
        let redacts = (kind == "m.room.redaction")
            .then(|| content.get("redacts").and_then(|v| v.as_str()).and_then(|id| id.parse().ok()))
            .flatten();
        let skip = room.head.extremities.len().saturating_sub(MAX_PREV_EVENTS);
        Ok(EventDraft {
            room_id: Some(room_id.to_owned()),
            sender: sender.to_owned(),
            kind: kind.to_owned(),
            state_key: state_key.map(ToOwned::to_owned),
            content,
            prev_events: room.head.extremities[skip..].to_vec(),
            auth_events,
            depth: room.head.depth + 1,
            origin_server_ts: crate::clock::now_ms(),
            redacts,
        })
    }

    /// Refuses another server's join of `user_id` into a record room it holds no contract
    /// for (`send_join`: a server may skip `make_join`).
    pub async fn check_received_membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        now_ms: u64,
    ) -> Result<(), RoomError> {
        let slot = self.slot(room_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.load(room_id)?.ok_or(RoomError::UnknownRoom)?);
        }
        let Some(room) = guard.as_ref() else { return Err(RoomError::UnknownRoom) };
        self.check_record_membership(
            room_id,
            &room.state,
            &room.events,
            user_id,
            membership,
            now_ms,
        )
    }

    /// The room's place in a patient's record, if it is one (see `record_gate`).
    pub async fn record_place_of(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<record_gate::RecordPlace>, RoomError> {
        let slot = self.slot(room_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            let Some(room) = self.load(room_id)? else { return Ok(None) };
            *guard = Some(room);
        }
        Ok(guard.as_ref().and_then(|room| record_gate::record_place(&room.state, &room.events)))
    }

    /// A join (or leave) template for a user of another server (`make_join`/`make_leave`):
    /// the event unsigned, checked against the current state as if it were sent now.
    pub async fn membership_template(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
    ) -> Result<(RoomVersion, CanonicalJsonObject), RoomError> {
        let slot = self.slot(room_id);
        let mut guard = slot.lock().await;
        if guard.is_none() {
            *guard = Some(self.load(room_id)?.ok_or(RoomError::UnknownRoom)?);
        }
        let Some(room) = guard.as_ref() else { return Err(RoomError::UnknownRoom) };
        let now = crate::clock::now_ms();
        self.check_record_membership(room_id, &room.state, &room.events, user_id, membership, now)?;
        let content = json!({ "membership": membership });
        let draft =
            self.draft(room_id, room, user_id, "m.room.member", Some(user_id.as_str()), content)?;
        // Authorize a copy signed by this server: the rules read no signature, so the verdict
        // is the one the joining server's signed event will get (barring a state change).
        let trial = sign_new_event(&draft, room.version, &self.key)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        if let Verdict::Rejected(reason) | Verdict::SoftFailed(reason) =
            decide(room.version, &trial.pdu, &room.events, &room.state, None).verdict
        {
            return Err(RoomError::Forbidden(reason));
        }
        let template = medrix_protocol::build::unsigned_event_json(&draft, room.version)
            .map_err(|err| RoomError::Invalid(err.to_string()))?;
        Ok((room.version, template))
    }

    /// Queues an accepted local event and everything indexing it as one batch, and moves the
    /// in-memory room past it; [`Rooms::settle`] then waits for durability.
    async fn store(
        &self,
        room_id: &RoomId,
        room: &mut LoadedRoom,
        signed: SignedEvent,
        txn: Option<Vec<u8>>,
        redacted: Option<(OwnedEventId, Vec<u8>)>,
    ) -> Result<(QueuedEvent, Durability), RoomError> {
        let reservation = self.stream.allocate().await?;
        let position = reservation.position();
        let mut batch = self.storage.batch();
        let is_create = room.head.extremities.is_empty();
        let before_group = if is_create {
            self.state_store.put_group(&mut batch, None, &StateMap::new())
        } else {
            room.head.state_group
        };
        let mut new_state = None;
        let mut state_group = before_group;
        if let Some(slot) = signed.pdu.state_slot() {
            let mut state = room.state.clone();
            state.insert(slot, signed.event_id.clone());
            state_group =
                self.state_store.put_group(&mut batch, Some(room.head.state_group), &state);
            new_state = Some((state, vec![signed.pdu.clone()]));
        }
        let extremities = if is_create {
            vec![signed.event_id.clone()]
        } else {
            room.head.extremities_after(signed.pdu.prev_events(), &signed.event_id)
        };
        let head = RoomHead {
            version: room.version.as_str().to_owned(),
            extremities,
            depth: signed.pdu.depth(),
            state_group,
        };
        let json = encode(&signed.json);
        write_accepted(
            &mut batch,
            AcceptedEvent {
                room_id,
                event_id: &signed.event_id,
                json: json.as_bytes(),
                before_group,
                position,
                entered: new_state.as_ref().map_or(&[], |(_, entered)| entered.as_slice()),
                left: vec![],
                head: &head,
                redacted,
            },
        );
        if let Some(txn) = &txn {
            batch.put(cf::TXNID_EVENTID, txn, signed.event_id.as_bytes());
        }
        // Servers with members before or after the event: a kick, ban or leave must reach
        // the server whose user it removes, an invite the server of the invitee.
        let mut servers = room.remote_servers.clone();
        if let Some((state, entered)) = &new_state
            && *entered[0].kind() == TimelineEventType::RoomMember
        {
            let mut events = room.events.clone();
            events.insert(entered[0].event_id().to_owned(), entered[0].clone());
            servers.extend(joined_servers(state, &events, &self.server_name));
        }
        if let Some(target) = member_target_server(&signed.pdu) {
            servers.insert(target);
        }
        let destinations = self.queue_outbound(&mut batch, servers, &signed.event_id, position);
        // Not queued (failed, or the caller dropped), the reservation gives the position back;
        // queued, the position travels with the event and `settle` gives it back.
        let durability = self.storage.enqueue(batch).await?;
        let position = reservation.into_position();
        room.advance(head, new_state, &self.server_name);
        let txn = txn.map(|key| {
            let (sender, receiver) = watch::channel(None);
            self.pending_txns.locked().insert(key.clone(), (signed.event_id.clone(), receiver));
            (key, sender)
        });
        let queued = QueuedEvent {
            event_id: signed.event_id,
            position: Some(position),
            txn,
            destinations,
            in_flight: room.in_flight.begin(),
        };
        Ok((queued, durability))
    }

    /// Puts `event_id` in the outbound queue of each of `servers`, in `batch`.
    fn queue_outbound(
        &self,
        batch: &mut crate::storage::Batch<'_>,
        servers: BTreeSet<OwnedServerName>,
        event_id: &EventId,
        position: u64,
    ) -> Vec<OwnedServerName> {
        if self.sender.is_none() {
            return Vec::new();
        }
        let servers: Vec<_> = servers.into_iter().filter(|s| *s != self.server_name).collect();
        for server in &servers {
            Sender::queue_pdu_in(batch, server, position, event_id);
        }
        servers
    }

    /// Queues the write of events already applied to the in-memory room. If it cannot be
    /// queued, their stream positions are released and the room is dropped from memory (it
    /// ran ahead of storage), to reload on next use.
    async fn enqueue_or_reload<'e>(
        &self,
        room: &mut Option<LoadedRoom>,
        batch: crate::storage::Batch<'_>,
        events: impl IntoIterator<Item = &'e QueuedEvent>,
    ) -> Result<Durability, StorageError> {
        match self.storage.enqueue(batch).await {
            Ok(durability) => Ok(durability),
            Err(err) => {
                self.forget_unwritten(room, events);
                Err(err)
            }
        }
    }

    /// After a failed write of events applied to the in-memory room: releases their stream
    /// positions and drops the room from memory, to reload from storage on next use.
    fn forget_unwritten<'e>(
        &self,
        room: &mut Option<LoadedRoom>,
        events: impl IntoIterator<Item = &'e QueuedEvent>,
    ) {
        for position in events.into_iter().filter_map(|event| event.position) {
            self.stream.finish(position);
        }
        *room = None;
    }

    /// Waits until queued events (written together) are durable, then lets readers see them.
    /// If the write failed, the room is dropped from memory (it ran ahead of storage) and
    /// reloads on next use.
    ///
    /// The bookkeeping after durability runs in a task of its own, started before the first
    /// await: if the caller goes away (a client hanging up mid-send), the events' stream
    /// positions are still released and their room no longer counts them in flight.
    async fn settle(
        &self,
        room_id: &RoomId,
        durability: Durability,
        events: Vec<QueuedEvent>,
    ) -> Result<(), StorageError> {
        let (stream, pending_txns) = (self.stream.clone(), self.pending_txns.clone());
        let sender = self.sender.clone();
        let settled = tokio::spawn(async move {
            let result = durability.wait().await;
            let mut woken = BTreeSet::new();
            for QueuedEvent { position, txn, destinations, in_flight, .. } in events {
                if let Some(position) = position {
                    stream.finish(position);
                }
                drop(in_flight);
                if let Some((key, outcome)) = txn {
                    pending_txns.locked().remove(&key);
                    let _ = outcome.send(Some(result.is_ok()));
                }
                woken.extend(destinations);
            }
            if result.is_ok()
                && let Some(sender) = &sender
                && !woken.is_empty()
            {
                sender.wake(&woken.into_iter().collect::<Vec<_>>());
            }
            result
        });
        let result = settled.await.unwrap_or(Err(StorageError::WriterStopped));
        if let Err(err) = &result {
            tracing::error!(room = %room_id, %err, "event write failed; reloading the room");
            *self.slot(room_id).lock().await = None;
        }
        result
    }

    /// Loads a room's head and current state from storage.
    fn load(&self, room_id: &RoomId) -> Result<Option<LoadedRoom>, RoomError> {
        let Some((head, version)) = self.head(room_id)? else { return Ok(None) };
        let mut state = StateMap::new();
        let mut events = HashMap::new();
        for (event_id, pdu) in self.current_state_events(room_id, version)? {
            if let Some(slot) = pdu.state_slot() {
                state.insert(slot, event_id.clone());
            }
            events.insert(event_id, pdu);
        }
        let remote_servers = joined_servers(&state, &events, &self.server_name);
        Ok(Some(LoadedRoom {
            version,
            head,
            state,
            events,
            remote_servers,
            in_flight: Arc::default(),
        }))
    }

    /// The stored head of a room and its parsed version, if the room exists here.
    fn head(&self, room_id: &RoomId) -> Result<Option<(RoomHead, RoomVersion)>, RoomError> {
        let Some(bytes) = self.storage.get(cf::ROOMID_HEAD, room_id.as_bytes())? else {
            return Ok(None);
        };
        let head: RoomHead = serde_json::from_slice(&bytes)
            .map_err(|err| StorageError::Corrupt(format!("room head: {err}")))?;
        let version = RoomVersion::parse(&head.version)
            .map_err(|err| StorageError::Corrupt(err.to_string()))?;
        Ok(Some((head, version)))
    }

    /// The room's version, if the room exists here.
    pub fn version(&self, room_id: &RoomId) -> Result<Option<RoomVersion>, RoomError> {
        Ok(self.head(room_id)?.map(|(_, version)| version))
    }

    /// The current state events of a room.
    pub fn current_state_events(
        &self,
        room_id: &RoomId,
        version: RoomVersion,
    ) -> Result<Vec<(OwnedEventId, Pdu)>, RoomError> {
        let prefix = compound_key(&[room_id.as_bytes(), b""]);
        let mut out = Vec::new();
        for (_, event_id) in self.storage.scan_prefix(cf::ROOMSTATEKEY_EVENTID, &prefix)? {
            let event_id = parse_event_id(&event_id)?;
            let pdu = self
                .pdu(&event_id, version)?
                .ok_or_else(|| StorageError::Corrupt(format!("missing state event {event_id}")))?;
            out.push((event_id, pdu));
        }
        Ok(out)
    }

    /// One current state event by type and state key.
    pub fn state_event(
        &self,
        room_id: &RoomId,
        kind: &StateEventType,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>, RoomError> {
        let key =
            compound_key(&[room_id.as_bytes(), kind.to_string().as_bytes(), state_key.as_bytes()]);
        self.storage.get(cf::ROOMSTATEKEY_EVENTID, &key)?.map(|id| parse_event_id(&id)).transpose()
    }

    /// A stored event's federation JSON.
    pub fn event_json(
        &self,
        event_id: &ruma::EventId,
    ) -> Result<Option<serde_json::Map<String, Value>>, RoomError> {
        let Some(bytes) = self.storage.get(cf::EVENTID_PDU, event_id.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| StorageError::Corrupt(format!("event: {err}")).into())
    }

    /// A stored event's `content` (`Null` if it has none), parsing nothing else of it: the
    /// contract and record checks read only that, many times per second under load.
    pub fn event_content(&self, event_id: &ruma::EventId) -> Result<Option<Value>, RoomError> {
        #[derive(Deserialize)]
        struct ContentOnly {
            #[serde(default)]
            content: Value,
        }
        let Some(bytes) = self.storage.get(cf::EVENTID_PDU, event_id.as_bytes())? else {
            return Ok(None);
        };
        serde_json::from_slice::<ContentOnly>(&bytes)
            .map(|event| Some(event.content))
            .map_err(|err| StorageError::Corrupt(format!("event: {err}")).into())
    }

    /// A stored event, typed.
    pub fn pdu(
        &self,
        event_id: &ruma::EventId,
        version: RoomVersion,
    ) -> Result<Option<Pdu>, RoomError> {
        Ok(state_store::load_pdu(&self.storage, event_id, version)?)
    }

    /// The rooms a user has a membership in, with it.
    pub fn memberships(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, String)>, RoomError> {
        let prefix = compound_key(&[user_id.as_bytes(), b""]);
        let mut out = Vec::new();
        for (key, value) in self.storage.scan_prefix(cf::USERROOMID_MEMBERSHIP, &prefix)? {
            let room = RoomId::parse(String::from_utf8_lossy(&key[prefix.len()..]).as_ref())
                .map_err(|err| StorageError::Corrupt(format!("room ID: {err}")))?;
            out.push((room, String::from_utf8_lossy(&value).into_owned()));
        }
        Ok(out)
    }

    /// The user's current membership in a room, if any.
    pub fn membership(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<String>, RoomError> {
        let key = compound_key(&[user_id.as_bytes(), room_id.as_bytes()]);
        Ok(self
            .storage
            .get(cf::USERROOMID_MEMBERSHIP, &key)?
            .map(|value| String::from_utf8_lossy(&value).into_owned()))
    }

    /// Whether the user is joined to the room now.
    pub fn is_joined(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool, RoomError> {
        Ok(self.membership(room_id, user_id)?.as_deref() == Some("join"))
    }

    /// Forgets a room the user has left or was removed from: it leaves their room list and
    /// `/sync`. Their membership history stays, since visibility and the audit trail use it.
    pub async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<(), RoomError> {
        // Under the room's lock, so a join being appended cannot be forgotten by mistake.
        let slot = self.slot(room_id);
        let _guard = slot.lock().await;
        match self.membership(room_id, user_id)?.as_deref() {
            None => Err(RoomError::UnknownRoom),
            Some("join" | "invite" | "knock") => {
                Err(RoomError::Forbidden("leave the room before forgetting it".to_owned()))
            }
            Some(_) => {
                let mut batch = self.storage.batch();
                batch.delete(
                    cf::USERROOMID_MEMBERSHIP,
                    &compound_key(&[user_id.as_bytes(), room_id.as_bytes()]),
                );
                Ok(self.storage.commit(batch).await?)
            }
        }
    }

    fn slot(&self, room_id: &RoomId) -> RoomSlot {
        let mut rooms = self.rooms.locked();
        if rooms.len() >= MAX_CACHED_ROOMS && !rooms.contains_key(room_id) {
            rooms.retain(|_, slot| Arc::strong_count(slot) > 1);
        }
        rooms.entry(room_id.to_owned()).or_default().clone()
    }
}

/// The `membership` of a member event's content.
pub fn membership_of(pdu: &Pdu) -> Option<String> {
    #[derive(Deserialize)]
    struct Content {
        membership: String,
    }
    serde_json::from_str::<Content>(pdu.content().get()).ok().map(|c| c.membership)
}

/// The rows that put an event in the timeline at `position` (what `/sync` and `/messages`
/// read).
fn index_timeline(batch: &mut Batch<'_>, room_id: &RoomId, event_id: &EventId, position: u64) {
    let (room_key, event_key) = (room_id.as_bytes(), event_id.as_bytes());
    batch.put(cf::EVENTID_POSITION, event_key, &position.to_be_bytes());
    batch.put(
        cf::POSITION_ROOMEVENT,
        &position.to_be_bytes(),
        &compound_key(&[room_key, event_key]),
    );
    batch.put(
        cf::ROOMPOSITION_EVENTID,
        &compound_key(&[room_key, &position.to_be_bytes()]),
        event_key,
    );
}

/// The rows that make a state event the current holder of its slot, as of `position`: the
/// current-state index, and for a member event the membership indexes.
fn index_state_slot(batch: &mut Batch<'_>, room_id: &RoomId, pdu: &Pdu, position: u64) {
    let Some((kind, state_key)) = pdu.state_slot() else { return };
    let room_key = room_id.as_bytes();
    let kind = kind.to_string();
    batch.put(
        cf::ROOMSTATEKEY_EVENTID,
        &compound_key(&[room_key, kind.as_bytes(), state_key.as_bytes()]),
        pdu.event_id().as_bytes(),
    );
    if kind == "m.room.member"
        && let Some(membership) = membership_of(pdu)
    {
        batch.put(
            cf::USERROOMID_MEMBERSHIP,
            &compound_key(&[state_key.as_bytes(), room_key]),
            membership.as_bytes(),
        );
        batch.put(
            cf::ROOMUSERPOSITION_MEMBERSHIP,
            &compound_key(&[room_key, state_key.as_bytes(), &position.to_be_bytes()]),
            membership.as_bytes(),
        );
    }
}

/// The server of the user a member event is about.
fn member_target_server(pdu: &Pdu) -> Option<OwnedServerName> {
    if *pdu.kind() != TimelineEventType::RoomMember {
        return None;
    }
    pdu.state_key().and_then(|key| UserId::parse(key).ok()).map(|u| u.server_name().to_owned())
}

fn txn_key(sender: &UserId, txn: &TxnKey<'_>) -> Vec<u8> {
    compound_key(&[sender.as_bytes(), txn.device_id.as_bytes(), txn.txn_id.as_bytes()])
}

fn parse_event_id(bytes: &[u8]) -> Result<OwnedEventId, RoomError> {
    ruma::EventId::parse(String::from_utf8_lossy(bytes).as_ref())
        .map_err(|err| StorageError::Corrupt(format!("event ID: {err}")).into())
}

/// The position encoded in the last 8 bytes of a key.
pub fn position_from(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&key[key.len() - 8..]);
    u64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> OwnedEventId {
        format!("$e{n}").try_into().unwrap()
    }

    fn head(extremities: Vec<OwnedEventId>) -> RoomHead {
        RoomHead { version: "12".to_owned(), extremities, depth: 1, state_group: 0 }
    }

    #[test]
    fn an_event_replaces_the_extremities_it_cites() {
        let head = head(vec![id(1), id(2), id(3)]);
        assert_eq!(head.extremities_after(&[id(1), id(3)], &id(4)), vec![id(2), id(4)]);
    }

    #[test]
    fn a_flood_of_forks_leaves_at_most_the_bound_the_newest_kept() {
        let mut room = head(vec![id(0)]);
        // Each fork cites an event far back in the DAG, none of the extremities.
        for n in 1..=100 {
            room.extremities = room.extremities_after(&[id(0)], &id(n));
            assert!(room.extremities.len() <= MAX_FORWARD_EXTREMITIES);
        }
        let newest: Vec<OwnedEventId> = (81..=100).map(id).collect();
        assert_eq!(room.extremities, newest);
        // A local event citing the newest `MAX_PREV_EVENTS` merges them into one.
        let cited = room.extremities[MAX_PREV_EVENTS..].to_vec();
        let merged = room.extremities_after(&cited, &id(101));
        assert_eq!(merged.len(), MAX_FORWARD_EXTREMITIES - MAX_PREV_EVENTS + 1);
    }
}
