//! The one way to read room data. Every read of a room's events, state or members, by a local
//! user (the client API) or by another server (the federation API), goes through this
//! service, which decides what the reader may see and reads only that. Handlers do no storage
//! work of their own. (The patient-visible read log hooks in here.)
//!
//! Whether a reader may see an event is decided by the history-visibility rules of
//! `medrix_protocol::history_visibility`, over the room's state *at the event*: its place in
//! the DAG (its state group), not the order in which events reached this server. An event
//! from before a user's join that arrives late (gap filling, a healed partition) is judged by
//! where it sits.

mod client_reads;
mod export;
mod read_log;
mod record_reads;
mod server_reads;
mod timeline;
mod view;

use std::{collections::BTreeSet, sync::Arc};

use medrix_records::{LogReader, ReadEntry};

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};

use crate::{
    service::{
        federation::destinations,
        rooms::{RoomError, Rooms},
    },
    storage::{Storage, StorageError, catalogue as cf, compound_key},
};

pub use client_reads::{INVITE_STATE_TYPES, VisibleEvent};
pub use read_log::MAX_LISTED;
pub use server_reads::HistoryWalk;
pub use timeline::TimelinePoint;
pub use view::{Reader, RoomView};

use read_log::{Disclosure, ReadLogStore};

use crate::service::rooms::record_gate::RecordPlace;

/// Record places by their `org.medrix.record` event (see `record_reads`).
type PlaceCache = std::sync::Mutex<
    std::collections::HashMap<
        ruma::OwnedEventId,
        Option<crate::service::rooms::record_gate::RecordPlace>,
    >,
>;

/// Room data read but not yet handed out: a handler gets it through [`Access::log`] (or,
/// for a response put together from several reads, [`Unlogged::defer`] and
/// [`Access::log_pending`]), which first makes the read's log entry durable.
#[must_use = "record data goes out only once its read is logged (Access::log)"]
pub struct Unlogged<T> {
    value: T,
    disclosures: Vec<Disclosure>,
}

impl<T> Unlogged<T> {
    fn new(value: T, disclosures: impl IntoIterator<Item = Disclosure>) -> Self {
        Self { value, disclosures: disclosures.into_iter().collect() }
    }

    /// A look at the data to decide what to do next (read again, say), not to hand it out.
    pub fn peek(&self) -> &T {
        &self.value
    }

    /// The data, its reads added to `pending`, which must then be logged before the
    /// response goes out.
    pub fn defer(self, pending: &mut PendingReads) -> T {
        pending.0.extend(self.disclosures);
        self.value
    }
}

/// A page of a room's read log, where the next starts (none at the end), and for the patient
/// the chain's head.
pub struct ReadLogPage {
    pub entries: Vec<ReadEntry>,
    pub next: Option<u64>,
    pub head: Option<medrix_records::ChainHead>,
    /// On the first page of the record's space, for the patient and their delegates: the
    /// record's class rooms.
    pub rooms:
        Option<std::collections::BTreeMap<medrix_records::DataClass, Vec<medrix_records::RoomId>>>,
}

/// Reads gathered for one response (`/sync`), logged together by [`Access::log_pending`].
#[derive(Default)]
#[must_use = "gathered reads must be logged before the response goes out"]
pub struct PendingReads(Vec<Disclosure>);

/// Why a read was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The room or event is not known here, or not to this reader (which learns no more).
    #[error("{0}")]
    NotFound(&'static str),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Room(#[from] RoomError),
}

impl From<StorageError> for AccessError {
    fn from(err: StorageError) -> Self {
        Self::Room(RoomError::Storage(err))
    }
}

/// The access service: reads room data for one reader at a time.
#[derive(Clone)]
pub struct Access {
    rooms: Rooms,
    storage: Storage,
    read_log: Arc<ReadLogStore>,
    record_places: Arc<PlaceCache>,
}

impl Access {
    pub fn new(rooms: Rooms, storage: Storage) -> Self {
        Self {
            read_log: Arc::new(ReadLogStore::new(storage.clone())),
            record_places: Arc::default(),
            rooms,
            storage,
        }
    }

    /// Logs the reads behind `unlogged` as `reader`'s (durably), then hands out the data.
    pub async fn log<T>(
        &self,
        reader: &LogReader,
        unlogged: Unlogged<T>,
    ) -> Result<T, AccessError> {
        self.read_log.append(reader, unlogged.disclosures).await?;
        Ok(unlogged.value)
    }

    /// Logs the reads gathered for one response.
    pub async fn log_pending(
        &self,
        reader: &LogReader,
        pending: PendingReads,
    ) -> Result<(), AccessError> {
        Ok(self.read_log.append(reader, pending.0).await?)
    }

    /// This server's read log of a record room, for the server of the room's patient (which
    /// shows its patient the reads this server's users made): every entry, with the head.
    /// Not found for anyone else, or a room that is not part of a record.
    pub fn read_log_for_patients_server(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        from: u64,
        limit: usize,
    ) -> Result<ReadLogPage, AccessError> {
        let place = self.record_place(room_id)?;
        let patients_server = place
            .as_ref()
            .and_then(|place| UserId::parse(place.patient()).ok())
            .map(|patient| patient.server_name().to_owned());
        if patients_server.as_deref() != Some(server) {
            return Err(AccessError::NotFound("no health record of your patients by this ID"));
        }
        let limit = limit.clamp(1, MAX_LISTED);
        let entries = self.read_log.entries(room_id, from, limit)?;
        let next = entries.last().filter(|_| entries.len() == limit).map(|last| last.index + 1);
        let head = Some(self.read_log.stored_head(room_id)?);
        Ok(ReadLogPage { entries, next, head, rooms: None })
    }

    /// Logs what a `/send` transaction to `server` discloses: per record room, the events it
    /// carries, under the basis of that server (its users' contracts). Called by the sender
    /// before the transaction first goes out; durable when it returns.
    pub async fn log_push(
        &self,
        server: &ServerName,
        events: Vec<(OwnedRoomId, String)>,
    ) -> Result<(), AccessError> {
        let now = crate::clock::now_ms();
        let mut by_room: std::collections::BTreeMap<OwnedRoomId, Vec<String>> = Default::default();
        for (room, event) in events {
            by_room.entry(room).or_default().push(event);
        }
        let mut disclosures = Vec::new();
        for (room_id, events) in by_room {
            if let Some(facts) = self.record_facts(&room_id, Reader::Server(server), now)? {
                disclosures.push(Disclosure {
                    room_id,
                    at: now,
                    path: medrix_records::ReadPath::FederationSend,
                    events,
                    basis: facts.basis,
                });
            }
        }
        let reader = LogReader::Server { server_name: server.to_string() };
        Ok(self.read_log.append(&reader, disclosures).await?)
    }

    /// The record rooms of this server's patients whose read log grew since the last call,
    /// with their heads: what the executor anchors next (`spec/audit.md` §5).
    pub fn grown_read_logs(
        &self,
        executor: &UserId,
    ) -> Result<Vec<(OwnedRoomId, medrix_records::ChainHead)>, AccessError> {
        let now = crate::clock::now_ms();
        let mut grown = Vec::new();
        for room in self.read_log.take_grown() {
            // The executor's basis is `Executor` only in records of this server's patients.
            let facts = self.record_facts(&room, Reader::User(executor), now)?;
            if facts.is_some_and(|facts| facts.basis == medrix_records::ReadBasis::Executor) {
                let head = self.read_log.stored_head(&room)?;
                grown.push((room, head));
            }
        }
        Ok(grown)
    }

    /// The read log of a room of a patient's record, from entry `from`, at most `limit`
    /// entries looked at: all of them for the patient, only their own reads for anyone else
    /// who has been in the room (a grantee). Not found for a room that is not part of a
    /// record, or for a user who has never been in it.
    pub fn read_log(
        &self,
        user: &UserId,
        room_id: &RoomId,
        from: u64,
        limit: usize,
    ) -> Result<ReadLogPage, AccessError> {
        let not_found = AccessError::NotFound("no health record room of yours by this ID");
        let facts = self.record_facts(room_id, Reader::User(user), crate::clock::now_ms())?;
        let Some(facts) = facts else { return Err(not_found) };
        // The patient, and whom they named to read their audit trail, see all of it.
        let is_patient = facts.basis == medrix_records::ReadBasis::Patient
            || self.is_audit_delegate(room_id, user)?;
        if !is_patient && self.rooms.membership(room_id, user)?.is_none() {
            return Err(not_found);
        }
        let limit = limit.clamp(1, MAX_LISTED);
        let mut entries = self.read_log.entries(room_id, from, limit)?;
        let next = entries.last().filter(|_| entries.len() == limit).map(|last| last.index + 1);
        if !is_patient {
            entries.retain(|entry| {
                matches!(&entry.reader, LogReader::User { user_id, .. } if user_id == user.as_str())
            });
        }
        let head = if is_patient { Some(self.read_log.stored_head(room_id)?) } else { None };
        // The space's first page names the record's rooms, for a delegate who is in none.
        let rooms = match self.record_place(room_id)? {
            Some(RecordPlace::Space(space)) if is_patient && from == 0 => Some(space.classes),
            _ => None,
        };
        Ok(ReadLogPage { entries, next, head, rooms })
    }

    /// A reader's view of one room, which decides event by event (remembering per state
    /// group what it found).
    pub fn view<'a>(
        &'a self,
        room_id: &RoomId,
        reader: Reader<'a>,
    ) -> Result<RoomView<'a>, AccessError> {
        RoomView::open(self, room_id, reader)
    }

    /// Refuses unless `user` is joined to the room now: what the current state, the member
    /// list and a room's ephemeral data are shown to (nothing after a removal).
    /// In a patient's record, a member no contract covers any more is refused too.
    pub fn require_joined(&self, room_id: &RoomId, user: &UserId) -> Result<(), AccessError> {
        if !self.rooms.is_joined(room_id, user)? {
            return Err(AccessError::Forbidden("you are not joined to this room"));
        }
        let facts = self.record_facts(room_id, Reader::User(user), crate::clock::now_ms())?;
        if facts.is_some_and(|facts| facts.withheld) {
            return Err(AccessError::Forbidden("no contract of the patient's covers you now"));
        }
        Ok(())
    }

    /// Whether `user` may download a file `uploader` uploaded at stream position `position`:
    /// their own; one uploaded while both were joined to a room they share (a removed
    /// member keeps what was shared with them); or one uploaded while the uploader was
    /// joined to a room the user is joined to now, unless the user had been removed from it
    /// before the upload. So a removed member gets no file uploaded after the removal (as
    /// with events), a stranger gets none, and a member who joined later gets the files of
    /// the room's time before them, as they get its `shared` history. That includes the key
    /// bundle an inviter uploads just before inviting (MSC4268), which the invitee fetches
    /// once joined. (Files are not in a room's DAG, so the stream order is what dates them;
    /// media in record rooms is end-to-end encrypted, so what this widens is ciphertext.)
    pub fn may_download(
        &self,
        user: &UserId,
        uploader: &UserId,
        position: u64,
        media: &str,
    ) -> Result<Unlogged<bool>, AccessError> {
        if user == uploader {
            return Ok(Unlogged::new(true, None));
        }
        // A device reads nothing of anyone else's, files included.
        if crate::service::device_accounts::is_device_account(&self.storage, user)? {
            return Ok(Unlogged::new(false, None));
        }
        let now = crate::clock::now_ms();
        let mut allowed = false;
        let mut disclosures = Vec::new();
        for (room_id, membership_now) in self.rooms.memberships(user)? {
            if !self.room_lets_download(&room_id, user, &membership_now, uploader, position)? {
                continue;
            }
            // In a record of a patient of this server, a member no contract covers now gets
            // no file through that room; a file of a record room is logged there.
            match self.record_facts(&room_id, Reader::User(user), now)? {
                Some(facts) if facts.withheld => continue,
                Some(facts) => disclosures.push(Disclosure {
                    room_id,
                    at: now,
                    path: medrix_records::ReadPath::Media,
                    events: vec![media.to_owned()],
                    basis: facts.basis,
                }),
                None => {}
            }
            allowed = true;
        }
        Ok(Unlogged::new(allowed, disclosures))
    }

    /// Whether another server may have a file of this server's user `uploader`: when one of
    /// its users could download it here (the rule of [`Access::may_download`], over the
    /// uploader's rooms and that server's members of them). Logged in each record room that
    /// lets it.
    pub fn server_may_download(
        &self,
        server: &ServerName,
        uploader: &UserId,
        position: u64,
        media: &str,
    ) -> Result<Unlogged<bool>, AccessError> {
        let now = crate::clock::now_ms();
        let mut allowed = false;
        let mut disclosures = Vec::new();
        for (room_id, _) in self.rooms.memberships(uploader)? {
            let mut lets = false;
            for (user, membership_now) in self.members_of_server(&room_id, server)? {
                if self.room_lets_download(&room_id, &user, &membership_now, uploader, position)? {
                    lets = true;
                    break;
                }
            }
            if !lets {
                continue;
            }
            allowed = true;
            if let Some(facts) = self.record_facts(&room_id, Reader::Server(server), now)? {
                disclosures.push(Disclosure {
                    room_id,
                    at: now,
                    path: medrix_records::ReadPath::FederationMedia,
                    events: vec![media.to_owned()],
                    basis: facts.basis,
                });
            }
        }
        Ok(Unlogged::new(allowed, disclosures))
    }

    /// Whether the room makes a file of `uploader` (uploaded at `position`) `user`'s to
    /// download: the uploader was joined then, and the user was joined then too, or joined
    /// since without having been removed before.
    fn room_lets_download(
        &self,
        room_id: &RoomId,
        user: &UserId,
        membership_now: &str,
        uploader: &UserId,
        position: u64,
    ) -> Result<bool, AccessError> {
        let uploader_then = self.membership_at_position(room_id, uploader, position)?;
        if uploader_then.as_deref() != Some("join") {
            return Ok(false);
        }
        let user_then = self.membership_at_position(room_id, user, position)?;
        let shared_then = user_then.as_deref() == Some("join");
        let joined_since =
            membership_now == "join" && !matches!(user_then.as_deref(), Some("leave" | "ban"));
        Ok(shared_then || joined_since)
    }

    /// The users of `server` with a membership in the room now, with it.
    fn members_of_server(
        &self,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<Vec<(ruma::OwnedUserId, String)>, AccessError> {
        let mut members = destinations::current_memberships(&self.storage, room_id)?;
        members.retain(|(user, _)| user.server_name() == server);
        Ok(members)
    }

    /// The user's membership in the room as of stream position `position`, if they had one.
    fn membership_at_position(
        &self,
        room_id: &RoomId,
        user: &UserId,
        position: u64,
    ) -> Result<Option<String>, StorageError> {
        let prefix = compound_key(&[room_id.as_bytes(), user.as_bytes(), b""]);
        Ok(self
            .storage
            .last_in_prefix(cf::ROOMUSERPOSITION_MEMBERSHIP, &prefix, &position.to_be_bytes())?
            .map(|(_, membership)| String::from_utf8_lossy(&membership).into_owned()))
    }

    /// The rooms `user` has a membership in, with it (their own data: their room list).
    pub fn memberships(&self, user: &UserId) -> Result<Vec<(OwnedRoomId, String)>, AccessError> {
        Ok(self.rooms.memberships(user)?)
    }

    /// The other servers with a member joined to the room now (`own` left out): whom a
    /// room's events go to, and what `send_join` tells a joining server.
    pub fn servers_in_room(
        &self,
        room_id: &RoomId,
        own: &ServerName,
    ) -> Result<BTreeSet<OwnedServerName>, AccessError> {
        Ok(destinations::servers_in_room(&self.storage, room_id, own)?)
    }

    /// The other servers sharing a joined room with `user`: the servers that may read the
    /// user's profile.
    pub fn servers_sharing_rooms_with(
        &self,
        user: &UserId,
        own: &ServerName,
    ) -> Result<BTreeSet<OwnedServerName>, AccessError> {
        Ok(destinations::servers_sharing_rooms_with(&self.storage, user, own)?)
    }
}
