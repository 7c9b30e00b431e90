//! Typing notifications: who is typing in which room, in memory only (they last seconds).
//! Each change takes a stream position, so a long-polling `/sync` wakes for it and delivers
//! the room's typing list once. A sweeper ends notifications whose timeout passed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{locks::LockExt, service::rooms::stream::StreamPositions, storage::StorageError};

/// The longest a client may say it will keep typing.
const MAX_TYPING_TIMEOUT: Duration = Duration::from_secs(120);
/// How often expired notifications are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_millis(500);
/// The most rooms whose typing lists are remembered.
const MAX_TRACKED_ROOMS: usize = 100_000;

#[derive(Default)]
struct RoomTyping {
    users: HashMap<OwnedUserId, Instant>,
    /// The stream position of the last change of this room's list.
    changed_at: u64,
}

#[derive(Clone)]
pub struct Typing {
    rooms: Arc<Mutex<HashMap<OwnedRoomId, RoomTyping>>>,
    stream: Arc<StreamPositions>,
}

impl Typing {
    pub fn new(stream: Arc<StreamPositions>) -> Self {
        Self { rooms: Default::default(), stream }
    }

    /// Starts ending expired notifications in the background (needs a tokio runtime).
    pub fn start_sweeper(&self) {
        let typing = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            loop {
                tick.tick().await;
                let _ = typing.sweep().await;
            }
        });
    }

    /// Sets whether `user` is typing in `room`, for at most `timeout`.
    pub async fn set(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        typing: Option<Duration>,
    ) -> Result<(), StorageError> {
        let reservation = self.stream.allocate().await?;
        {
            let mut rooms = self.rooms.locked();
            let room = rooms.entry(room_id.to_owned()).or_default();
            match typing {
                Some(timeout) => {
                    room.users.insert(
                        user_id.to_owned(),
                        Instant::now() + timeout.min(MAX_TYPING_TIMEOUT),
                    );
                }
                None => {
                    room.users.remove(user_id);
                }
            }
            room.changed_at = reservation.position();
            // Rooms where nobody types any more are kept so that "nobody is typing" still
            // reaches clients that sync later; past the bound they go.
            if rooms.len() > MAX_TRACKED_ROOMS {
                rooms.retain(|_, room| !room.users.is_empty());
            }
        }
        // Readers see the position only now that the change is made.
        drop(reservation);
        Ok(())
    }

    /// Who is typing in `room`, if that list changed in `(since, upto]` (or always, with no
    /// `since`).
    pub fn changed(&self, room_id: &RoomId, since: Option<u64>, upto: u64) -> Option<Vec<String>> {
        let rooms = self.rooms.locked();
        let room = rooms.get(room_id)?;
        let in_window =
            since.is_none_or(|since| room.changed_at > since) && room.changed_at <= upto;
        in_window.then(|| room.users.keys().map(ToString::to_string).collect())
    }

    async fn sweep(&self) -> Result<(), StorageError> {
        let now = Instant::now();
        let expired: Vec<OwnedRoomId> = {
            let rooms = self.rooms.locked();
            rooms
                .iter()
                .filter(|(_, room)| room.users.values().any(|until| *until <= now))
                .map(|(id, _)| id.clone())
                .collect()
        };
        for room_id in expired {
            let reservation = self.stream.allocate().await?;
            if let Some(room) = self.rooms.locked().get_mut(&room_id) {
                room.users.retain(|_, until| *until > now);
                room.changed_at = reservation.position();
            }
            drop(reservation);
        }
        Ok(())
    }
}
