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
mod server_reads;
mod timeline;
mod view;

use std::collections::BTreeSet;

use ruma::{OwnedRoomId, OwnedServerName, RoomId, ServerName, UserId};

use crate::{
    service::{
        federation::destinations,
        rooms::{RoomError, Rooms},
    },
    storage::{Storage, StorageError, catalogue as cf, compound_key},
};

pub use client_reads::{INVITE_STATE_TYPES, VisibleEvent};
pub use server_reads::HistoryWalk;
pub use timeline::TimelinePoint;
pub use view::{Reader, RoomView};

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
}

impl Access {
    pub fn new(rooms: Rooms, storage: Storage) -> Self {
        Self { rooms, storage }
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
    pub fn require_joined(&self, room_id: &RoomId, user: &UserId) -> Result<(), AccessError> {
        if self.rooms.is_joined(room_id, user)? {
            Ok(())
        } else {
            Err(AccessError::Forbidden("you are not joined to this room"))
        }
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
    ) -> Result<bool, AccessError> {
        if user == uploader {
            return Ok(true);
        }
        for (room_id, membership_now) in self.rooms.memberships(user)? {
            if self.room_lets_download(&room_id, user, &membership_now, uploader, position)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Whether another server may have a file of this server's user `uploader`: when one of
    /// its users could download it here (the rule of [`Access::may_download`], over the
    /// uploader's rooms and that server's members of them).
    pub fn server_may_download(
        &self,
        server: &ServerName,
        uploader: &UserId,
        position: u64,
    ) -> Result<bool, AccessError> {
        for (room_id, _) in self.rooms.memberships(uploader)? {
            for (user, membership_now) in self.members_of_server(&room_id, server)? {
                if self.room_lets_download(&room_id, &user, &membership_now, uploader, position)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
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
