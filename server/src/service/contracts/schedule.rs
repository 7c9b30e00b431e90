//! The contract executor's durable schedule: which user's place in which room to re-check,
//! and from when. Rows are written by the rooms' one write path in the same batch as the
//! event that calls for them, so a crash loses no due check, and a contract that ended while
//! the server was down is acted on at its next start. Rows live in RocksDB, ordered by due
//! time, so memory does not grow with the number of active contracts.

use std::borrow::Cow;

use medrix_protocol::Pdu;
use medrix_records::{
    GRANT_EVENT_TYPE, Grant, RECORD_EVENT_TYPE, USER_STATE_KEY_PREFIX, expiry_at,
};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, events::TimelineEventType};

use crate::{
    service::rooms::record_gate::EXECUTOR_LOCALPART,
    storage::{Batch, Entry, Storage, StorageError, catalogue as cf, compound_key},
};

/// One due check: at or after `due_ms`, look at `user`'s place in `room`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    pub due_ms: u64,
    pub room: OwnedRoomId,
    pub user: OwnedUserId,
    /// How many times acting on it failed before (the row's value).
    attempts: u8,
    key: Vec<u8>,
}

/// How often a failed check is tried again: 10 s, doubling, 8 times (about 40 minutes in
/// all). A check fails when the executor cannot act yet (its invitation not yet accepted,
/// the room being joined); past the last try it is dropped and logged.
const MAX_ATTEMPTS: u8 = 8;
const FIRST_RETRY_MS: u64 = 10_000;

fn key(due_ms: u64, room: &RoomId, user: &str) -> Vec<u8> {
    compound_key(&[&due_ms.to_be_bytes(), room.as_bytes(), user.as_bytes()])
}

/// Notes in `batch` the checks the state events entering `room` call for: a contract is
/// due at its end (at once when revoked or expired); a join or invite is checked at once
/// (it may have come through another server, which does not know the patient's contracts),
/// and so is a knock (it may invoke break-glass);
/// a room becoming part of a record is looked at once through its patient (the executor
/// may be waiting there with an invitation).
pub fn note_entered(batch: &mut Batch<'_>, room: &RoomId, entered: &[Pdu]) {
    for event in entered {
        let Some(state_key) = event.state_key() else { continue };
        // Most entering state is membership: matched without building the type's string.
        let kind = event.kind();
        let custom = match kind {
            TimelineEventType::RoomMember => None,
            _ => Some(kind.to_string()),
        };
        let (due_ms, user) = match custom.as_deref().unwrap_or("m.room.member") {
            GRANT_EVENT_TYPE => {
                let grant = serde_json::from_str(event.content().get())
                    .ok()
                    .and_then(|content| Grant::from_event(state_key, &content).ok());
                let due = grant.as_ref().and_then(expiry_at);
                // The executor ending a contract removes its grantee in the same act (which
                // comes back if that fails): nothing more to check.
                let executor = event.sender().localpart() == EXECUTOR_LOCALPART;
                if due.is_none() && executor {
                    continue;
                }
                let due = due.unwrap_or(0);
                match state_key.strip_prefix(USER_STATE_KEY_PREFIX) {
                    Some(user) => (due, Cow::Borrowed(user)),
                    // A standing contract admits its custodian: checked at its end (at once
                    // when revoked), like a personal contract's grantee.
                    None => match grant.and_then(|grant| grant.custodian) {
                        Some(custodian) => (due, Cow::Owned(custodian.as_str().to_owned())),
                        None => continue,
                    },
                }
            }
            "m.room.member" => match crate::service::rooms::membership_of(event).as_deref() {
                Some("join" | "invite" | "knock") => (0, Cow::Borrowed(state_key)),
                _ => continue,
            },
            RECORD_EVENT_TYPE => (0, Cow::Borrowed(event.sender().as_str())),
            _ => continue,
        };
        batch.put(cf::DUEROOMUSER_CONTRACTCHECK, &key(due_ms, room, &user), b"");
    }
}

/// Checks due at or before `now_ms`, earliest first, at most `limit`; and when the next one
/// after them is due, if any.
pub fn due(
    storage: &Storage,
    now_ms: u64,
    limit: usize,
) -> Result<(Vec<DueCheck>, Option<u64>), StorageError> {
    let rows = storage.scan_range(cf::DUEROOMUSER_CONTRACTCHECK, &[], &[0xFF; 9], limit + 1)?;
    let mut checks: Vec<DueCheck> = rows.into_iter().filter_map(parse).collect();
    let later = checks.iter().position(|check| check.due_ms > now_ms).unwrap_or(checks.len());
    let next = checks.get(later).map(|check| check.due_ms);
    checks.truncate(later.min(limit));
    Ok((checks, next))
}

/// Removes checks once acted on, in one write; those in `failed` come back later (see
/// `MAX_ATTEMPTS`).
pub async fn done(
    storage: &Storage,
    checks: &[DueCheck],
    failed: &[&DueCheck],
    now_ms: u64,
) -> Result<(), StorageError> {
    let mut batch = storage.batch();
    for check in checks {
        batch.delete(cf::DUEROOMUSER_CONTRACTCHECK, &check.key);
    }
    for check in failed {
        if check.attempts + 1 >= MAX_ATTEMPTS {
            tracing::warn!(room = %check.room, "contract executor: a check failed too often; dropped");
            continue;
        }
        let retry_ms = now_ms + (FIRST_RETRY_MS << check.attempts);
        let key = key(retry_ms, &check.room, check.user.as_str());
        batch.put(cf::DUEROOMUSER_CONTRACTCHECK, &key, &[check.attempts + 1]);
    }
    storage.commit(batch).await
}

fn parse((key, value): Entry) -> Option<DueCheck> {
    let attempts = value.first().copied().unwrap_or(0);
    let due_ms = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
    let rest = key.get(9..)?;
    let split = rest.iter().position(|&byte| byte == 0xFF)?;
    let room = std::str::from_utf8(&rest[..split]).ok()?.try_into().ok()?;
    let user = std::str::from_utf8(&rest[split + 1..]).ok()?.try_into().ok()?;
    Some(DueCheck { due_ms, room, user, attempts, key: key.to_vec() })
}
