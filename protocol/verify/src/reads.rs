//! A room's read log: its hash chain, its agreement with the checkpoints the serving server
//! anchored in the DAG, and every read's basis judged again by the contract rules.
//!
//! The contracts in force at a read are the record space's `org.medrix.grant` events as of
//! the read's moment, by `origin_server_ts`: the patient's server stamps both, so its own
//! clock orders them.

use std::collections::HashMap;

use medrix_protocol::Pdu;
use medrix_records::{
    Action, CHECKPOINT_EVENT_TYPE, DataClass, GRANT_EVENT_TYPE, Grant, Grantee, LogReader,
    RECORD_EVENT_TYPE, ReadBasis, ReadEntry, RecordRoom, RecordSpace, USER_STATE_KEY_PREFIX,
    UserId, covering, verify_chain,
};
use serde_json::Value;

use crate::{Export, Problem, RoomExport, events::RoomEvents};

/// What the record says, gathered from all its rooms.
pub struct Record {
    pub patient: String,
    /// The server of the patient, whose read logs the export holds.
    pub server: String,
    /// Room ID → its class (`None` for the space).
    pub classes: HashMap<String, Option<DataClass>>,
    /// The space's contracts: state key → (ts, content), oldest first.
    pub grants: HashMap<String, Vec<(u64, Value)>>,
    /// The patient's device accounts: those a device room's record state names.
    pub devices: Vec<String>,
}

impl Record {
    pub fn find(export: &Export, rooms: &[RoomEvents]) -> Self {
        let server = export.patient.split_once(':').map(|(_, s)| s.to_owned()).unwrap_or_default();
        let mut record = Record {
            patient: export.patient.clone(),
            server,
            classes: HashMap::new(),
            grants: HashMap::new(),
            devices: Vec::new(),
        };
        for (room, events) in export.rooms.iter().zip(rooms) {
            let in_order = events.order.iter().map(|id| &events.events[id]);
            let mut place = None;
            for pdu in in_order {
                let content: Value = serde_json::from_str(pdu.content().get()).unwrap_or_default();
                match (pdu.kind().to_string().as_str(), pdu.state_key()) {
                    (RECORD_EVENT_TYPE, Some("")) => {
                        if let Ok(class_room) = RecordRoom::from_content(&content) {
                            place = Some(Some(class_room.class));
                            record.devices.extend(class_room.device.map(|d| d.to_string()));
                        } else if RecordSpace::from_content(&content).is_ok() {
                            place = Some(None);
                        }
                    }
                    (GRANT_EVENT_TYPE, Some(key)) => {
                        let ts = u64::from(pdu.origin_server_ts().0);
                        record.grants.entry(key.to_owned()).or_default().push((ts, content));
                    }
                    _ => {}
                }
            }
            if let Some(place) = place {
                record.classes.insert(room.room_id.clone(), place);
            }
        }
        for history in record.grants.values_mut() {
            history.sort_by_key(|(ts, _)| *ts);
        }
        record
    }

    /// The contract under `state_key` as of `at`.
    fn grant_at(&self, state_key: &str, at: u64) -> Option<Grant> {
        let history = self.grants.get(state_key)?;
        let (_, content) = history.iter().rev().find(|(ts, _)| *ts <= at)?;
        Grant::from_event(state_key, content).ok()
    }
}

/// How much of a room's log was checked.
pub struct Checked {
    pub entries: usize,
    pub checkpoints: usize,
}

/// One server's log of one room.
pub struct Log<'a> {
    pub room: &'a RoomExport,
    /// The server that kept it (whose checkpoints anchor it).
    pub server: &'a str,
    pub entries: &'a [Value],
}

pub fn check_room_log(
    log: &Log<'_>,
    events: &RoomEvents,
    record: &Record,
    problems: &mut Vec<Problem>,
) -> Checked {
    let room = log.room;
    let whose =
        if log.server == record.server { String::new() } else { format!(" of {}", log.server) };
    let entry_place =
        |index: usize| format!("room {}, read log{whose} entry {index}", room.room_id);
    let mut entries = Vec::with_capacity(log.entries.len());
    for (index, value) in log.entries.iter().enumerate() {
        match ReadEntry::from_json(value) {
            Ok(entry) => entries.push(entry),
            Err(err) => {
                problems.push(Problem { place: entry_place(index), what: err.to_string() });
                return Checked { entries: index, checkpoints: 0 };
            }
        }
    }
    if let Err(err) = verify_chain(&room.room_id, &entries) {
        let (place, what) = match err {
            medrix_records::ReadLogError::Broken { index, what } => {
                (entry_place(index as usize), what)
            }
            other => (format!("room {}, read log", room.room_id), other.to_string()),
        };
        problems.push(Problem { place, what });
    }
    let checkpoints = check_checkpoints(room, log.server, events, &entries, problems);
    let class = record.classes.get(&room.room_id).copied();
    let by_id: HashMap<&str, &Pdu> =
        events.events.iter().map(|(id, pdu)| (id.as_str(), pdu)).collect();
    for (index, entry) in entries.iter().enumerate() {
        // What was served was in the room: an event a read names that the export lacks was
        // removed from the DAG (even a tip, which no later event names).
        for id in entry.events.iter().filter(|_| !entry.path.serves_files()) {
            if !by_id.contains_key(id.as_str()) {
                problems.push(Problem {
                    place: entry_place(index),
                    what: format!("names {id}, which is not in the room (removed from the DAG?)"),
                });
            }
        }
        if let Err(what) = check_basis(entry, class, &by_id, record) {
            problems.push(Problem { place: entry_place(index), what });
        }
    }
    Checked { entries: entries.len(), checkpoints }
}

/// Every checkpoint anchoring `server`'s log of the room must name a head the log reaches.
fn check_checkpoints(
    room: &RoomExport,
    server: &str,
    events: &RoomEvents,
    entries: &[ReadEntry],
    problems: &mut Vec<Problem>,
) -> usize {
    let mut count = 0;
    for id in &events.order {
        let pdu: &Pdu = &events.events[id];
        if pdu.kind().to_string() != CHECKPOINT_EVENT_TYPE || pdu.state_key() != Some(server) {
            continue;
        }
        count += 1;
        let place = format!("room {}, checkpoint {id}", room.room_id);
        let content: Value = serde_json::from_str(pdu.content().get()).unwrap_or_default();
        let (Some(anchored), Some(hash)) = (
            content.get("count").and_then(Value::as_u64),
            content.get("hash").and_then(Value::as_str),
        ) else {
            problems.push(Problem { place, what: "has no `count` and `hash`".to_owned() });
            continue;
        };
        if anchored == 0 {
            continue;
        }
        match entries.get(anchored as usize - 1) {
            None => problems.push(Problem {
                place,
                what: format!(
                    "anchors {anchored} log entries, but the log holds {} (entries removed)",
                    entries.len()
                ),
            }),
            Some(entry) if entry.hash() != hash => problems.push(Problem {
                place,
                what: format!(
                    "anchors a log whose entry {} had another hash: the log was rewritten after it",
                    anchored - 1
                ),
            }),
            Some(_) => {}
        }
    }
    count
}

/// Whether the entry's basis holds: judged again from the DAG and the contract rules.
fn check_basis(
    entry: &ReadEntry,
    class: Option<Option<DataClass>>,
    by_id: &HashMap<&str, &Pdu>,
    record: &Record,
) -> Result<(), String> {
    let Some(class) = class else {
        return Err("logged in a room that is not part of the record".to_owned());
    };
    let executor = format!("@medrix-contracts:{}", record.server);
    match (&entry.basis, &entry.reader) {
        (ReadBasis::Patient, LogReader::User { user_id, .. }) if *user_id == record.patient => {
            Ok(())
        }
        (ReadBasis::Patient, _) => Err("logged as the patient's read, by someone else".to_owned()),
        (ReadBasis::Executor, LogReader::User { user_id, .. }) if *user_id == executor => Ok(()),
        (ReadBasis::Executor, _) => {
            Err("logged as the executor's read, by someone else".to_owned())
        }
        (ReadBasis::Device, LogReader::User { user_id, .. })
            if record.devices.contains(user_id) =>
        {
            let others = |id: &&String| {
                by_id.get(id.as_str()).is_some_and(|pdu| {
                    pdu.state_key().is_none() && pdu.sender().as_str() != user_id
                })
            };
            match entry.events.iter().find(others) {
                None => Ok(()),
                Some(id) => Err(format!("the device {user_id} was served {id}, another's event")),
            }
        }
        (ReadBasis::Device, _) => {
            Err("logged as a device's read, by no device of the record".to_owned())
        }
        (ReadBasis::Membership, LogReader::Server { .. }) => Ok(()),
        (ReadBasis::Membership, LogReader::User { user_id, .. }) => {
            let own_membership = |id: &String| {
                by_id.get(id.as_str()).is_some_and(|pdu| {
                    pdu.kind().to_string() == "m.room.member"
                        && pdu.state_key() == Some(user_id.as_str())
                })
            };
            match entry.events.iter().find(|id| !own_membership(id)) {
                None => Ok(()),
                Some(id) => Err(format!(
                    "{user_id} was served {id} under no contract (only their own membership may be)"
                )),
            }
        }
        (ReadBasis::Contract { contract_id, purpose, .. }, reader) => {
            let keys: Vec<String> = match reader {
                // Their personal contract, and any standing contract (keyed by a server
                // name) that may name them custodian: `covering` decides among them.
                LogReader::User { user_id, .. } => {
                    let personal = format!("{USER_STATE_KEY_PREFIX}{user_id}");
                    let standing = record
                        .grants
                        .keys()
                        .filter(|key| !key.starts_with(USER_STATE_KEY_PREFIX))
                        .cloned();
                    std::iter::once(personal).chain(standing).collect()
                }
                LogReader::Server { server_name } => record
                    .grants
                    .keys()
                    .filter(|key| {
                        key.strip_prefix(USER_STATE_KEY_PREFIX)
                            .and_then(|user| user.split_once(':'))
                            .is_some_and(|(_, server)| server == server_name)
                    })
                    .cloned()
                    .collect(),
            };
            let classes: Vec<DataClass> = match class {
                Some(class) => vec![class],
                None => DataClass::ALL.to_vec(),
            };
            let grants: Vec<Grant> =
                keys.iter().filter_map(|key| record.grant_at(key, entry.ts)).collect();
            let allowed = grants.iter().any(|grant| {
                // Whom the read is judged for: the reading user, or (a server's read) the
                // contract's own grantee among that server's users.
                let user = match (reader, &grant.grantee) {
                    (LogReader::User { user_id, .. }, _) => UserId::parse(user_id),
                    (LogReader::Server { .. }, Grantee::User(grantee)) => Some(grantee.clone()),
                    (LogReader::Server { .. }, Grantee::Server(_)) => None,
                };
                let Some(user) = user else { return false };
                grant.contract_id.as_str() == contract_id
                    && grant.purpose.code() == purpose
                    && classes.iter().any(|class| {
                        covering([grant], &user, &Action::Hold { class: *class }, entry.ts)
                            .is_allowed()
                    })
            });
            if allowed {
                Ok(())
            } else {
                Err(format!(
                    "logged under contract {contract_id} ({purpose}), which did not allow this read at {}",
                    entry.ts
                ))
            }
        }
    }
}
