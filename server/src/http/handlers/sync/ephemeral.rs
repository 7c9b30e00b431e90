//! The `ephemeral` section of joined rooms: read receipts (`m.receipt`) and who is typing
//! (`m.typing`). Private receipts reach only their owner.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::{Value, json};

use crate::{
    http::error::ApiError,
    service::{Services, receipts::Receipt},
};

/// Receipt changes read per sync at most.
const MAX_RECEIPTS_PER_SYNC: usize = 10_000;

/// What an initial sync shows for a room: every receipt, and who is typing now.
pub fn current(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    upto: u64,
) -> Result<Vec<Value>, ApiError> {
    let mut events = Vec::new();
    let receipts = services.receipts.in_room(room_id)?;
    if let Some(event) = receipt_event(receipts.iter(), user) {
        events.push(event);
    }
    if let Some(typing) = services.typing.changed(room_id, None, upto)
        && !typing.is_empty()
    {
        events.push(json!({ "type": "m.typing", "content": { "user_ids": typing } }));
    }
    Ok(events)
}

/// What changed in `(since, upto]` in the user's joined rooms, per room.
pub fn changed(
    services: &Services,
    user: &UserId,
    joined: &BTreeSet<OwnedRoomId>,
    since: u64,
    upto: u64,
) -> Result<BTreeMap<OwnedRoomId, Vec<Value>>, ApiError> {
    let mut per_room: BTreeMap<OwnedRoomId, Vec<Receipt>> = BTreeMap::new();
    for receipt in services.receipts.changed(since, upto, MAX_RECEIPTS_PER_SYNC)? {
        if let Ok(room_id) = RoomId::parse(&receipt.room_id)
            && joined.contains(&room_id)
        {
            per_room.entry(room_id).or_default().push(receipt);
        }
    }
    let mut out: BTreeMap<OwnedRoomId, Vec<Value>> = BTreeMap::new();
    for (room_id, receipts) in per_room {
        if let Some(event) = receipt_event(receipts.iter(), user) {
            out.entry(room_id).or_default().push(event);
        }
    }
    for room_id in joined {
        if let Some(typing) = services.typing.changed(room_id, Some(since), upto) {
            out.entry(room_id.clone())
                .or_default()
                .push(json!({ "type": "m.typing", "content": { "user_ids": typing } }));
        }
    }
    Ok(out)
}

/// One `m.receipt` event: `{event_id: {type: {user: {ts, thread_id?}}}}`.
fn receipt_event<'a>(receipts: impl Iterator<Item = &'a Receipt>, user: &UserId) -> Option<Value> {
    let mut content = json!({});
    let mut any = false;
    for receipt in receipts {
        if receipt.receipt_type == "m.read.private" && receipt.user_id != user.as_str() {
            continue;
        }
        let mut info = json!({ "ts": receipt.ts });
        if let Some(thread) = &receipt.thread_id {
            info["thread_id"] = json!(thread);
        }
        content[&receipt.event_id][&receipt.receipt_type][&receipt.user_id] = info;
        any = true;
    }
    any.then(|| json!({ "type": "m.receipt", "content": content }))
}
