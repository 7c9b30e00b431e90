//! Who may see which event: the one place every read of room data asks. Today's rule is the
//! strict one health records need: a user sees an event only if they were joined to the room
//! at that point of the stream, or it is their own membership change. After a kick or ban,
//! nothing newer reaches them through any read path. (The patient-visible read log will hook
//! in here.)

use ruma::{RoomId, UserId};

use crate::storage::{Storage, StorageError, catalogue as cf, compound_key};

/// The user's membership in the room as of stream position `position` (inclusive).
pub fn membership_at(
    storage: &Storage,
    room_id: &RoomId,
    user_id: &UserId,
    position: u64,
) -> Result<Option<String>, StorageError> {
    let prefix = compound_key(&[room_id.as_bytes(), user_id.as_bytes(), b""]);
    Ok(storage
        .last_in_prefix(cf::ROOMUSERPOSITION_MEMBERSHIP, &prefix, &position.to_be_bytes())?
        .map(|(_, membership)| String::from_utf8_lossy(&membership).into_owned()))
}

/// Whether `user_id` may see the event at `position` in `room_id`, whose state key (for a
/// membership event) is `member_state_key`.
pub fn may_see(
    storage: &Storage,
    room_id: &RoomId,
    user_id: &UserId,
    position: u64,
    member_state_key: Option<&str>,
) -> Result<bool, StorageError> {
    if member_state_key == Some(user_id.as_str()) {
        return Ok(true);
    }
    Ok(membership_at(storage, room_id, user_id, position)?.as_deref() == Some("join"))
}

/// [`may_see`] for a stored event given as its JSON: a membership event's state key comes
/// from the event itself.
pub fn may_see_event(
    storage: &Storage,
    room_id: &RoomId,
    user_id: &UserId,
    position: u64,
    event: &serde_json::Map<String, serde_json::Value>,
) -> Result<bool, StorageError> {
    let member_state_key = (event.get("type").and_then(|t| t.as_str()) == Some("m.room.member"))
        .then(|| event.get("state_key").and_then(|k| k.as_str()))
        .flatten();
    may_see(storage, room_id, user_id, position, member_state_key)
}

/// Whether `user` may download a file `uploader` uploaded at stream position `position`:
/// their own, or one uploaded while both were joined to a room they share. So a kicked
/// member gets no file uploaded after the kick (as with events), and a stranger gets none.
/// `rooms` are the rooms `user` has had a membership in.
pub fn may_see_media(
    storage: &Storage,
    rooms: &[ruma::OwnedRoomId],
    user_id: &UserId,
    uploader: &UserId,
    position: u64,
) -> Result<bool, StorageError> {
    if user_id == uploader {
        return Ok(true);
    }
    for room_id in rooms {
        let joined = |who: &UserId| -> Result<bool, StorageError> {
            Ok(membership_at(storage, room_id, who, position)?.as_deref() == Some("join"))
        };
        if joined(user_id)? && joined(uploader)? {
            return Ok(true);
        }
    }
    Ok(false)
}
