//! The read log: one entry for every read of record data a server serves, per room a hash
//! chain (each entry carries the hash of the one before), so an entry cannot be dropped,
//! altered or moved without breaking every hash after it. The server appends; the patient,
//! the grantees and the independent verifier read and check with the same functions.
//! Normative text: `spec/audit.md`.
//!
//! An entry's hash is SHA-256 over its canonical JSON (keys sorted at every level, no
//! insignificant whitespace, integers only), unpadded base64, as Matrix hashes events.

use std::collections::BTreeMap;

use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// The state event that anchors a read log's head in the room's DAG; its state key is the
/// server whose log it anchors, its content `{"count", "hash"}` (`spec/audit.md` §5).
pub const CHECKPOINT_EVENT_TYPE: &str = "org.medrix.audit.checkpoint";

/// The state event by which a patient names someone who reads the record's whole audit trail
/// as the patient does (a relative, a carer, a privacy officer) without any access to the
/// record itself: in the record's space, state key `user:` + the delegate's user ID (as for
/// contracts: a state key that is a bare user ID is that user's own to set), content
/// `{"delegate": true}` (`false`, or any other content, ends it). `spec/audit.md` §4.
pub const DELEGATE_EVENT_TYPE: &str = "org.medrix.audit.delegate";

/// Who read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogReader {
    /// A user of the serving server, through the client API, from one of their devices.
    User { user_id: String, device_id: Option<String> },
    /// Another server, through the federation API (on behalf of its users; which of them
    /// read is in that server's own log, if it keeps one).
    Server { server_name: String },
}

/// Through which request the data went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReadPath {
    Sync,
    Messages,
    Event,
    Context,
    /// The room exported whole for the verifier (the patient's `audit export`).
    Export,
    /// A file downloaded (`events` holds its `mxc://` URI).
    Media,
    FederationEvent,
    FederationBackfill,
    FederationMissingEvents,
    FederationState,
    FederationStateIds,
    FederationEventAuth,
    FederationSendJoin,
    /// A file another server downloaded (`events` holds its `mxc://` URI).
    FederationMedia,
    /// Events this server pushed to another server in a `/send` transaction.
    FederationSend,
}

impl ReadPath {
    pub const ALL: [ReadPath; 15] = [
        ReadPath::Sync,
        ReadPath::Messages,
        ReadPath::Event,
        ReadPath::Context,
        ReadPath::Export,
        ReadPath::Media,
        ReadPath::FederationEvent,
        ReadPath::FederationBackfill,
        ReadPath::FederationMissingEvents,
        ReadPath::FederationState,
        ReadPath::FederationStateIds,
        ReadPath::FederationEventAuth,
        ReadPath::FederationSendJoin,
        ReadPath::FederationMedia,
        ReadPath::FederationSend,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReadPath::Sync => "sync",
            ReadPath::Messages => "messages",
            ReadPath::Event => "event",
            ReadPath::Context => "context",
            ReadPath::Export => "export",
            ReadPath::Media => "media",
            ReadPath::FederationEvent => "federation/event",
            ReadPath::FederationBackfill => "federation/backfill",
            ReadPath::FederationMissingEvents => "federation/get_missing_events",
            ReadPath::FederationState => "federation/state",
            ReadPath::FederationStateIds => "federation/state_ids",
            ReadPath::FederationEventAuth => "federation/event_auth",
            ReadPath::FederationSendJoin => "federation/send_join",
            ReadPath::FederationMedia => "federation/media",
            ReadPath::FederationSend => "federation/send",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|path| path.as_str() == text)
    }

    /// Whether the entry's `events` are files (`mxc://` URIs) rather than event IDs.
    pub fn serves_files(self) -> bool {
        matches!(self, ReadPath::Media | ReadPath::FederationMedia)
    }
}

/// What allowed the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadBasis {
    /// The record's patient.
    Patient,
    /// The patient's server's contract executor, which acts for contracts.
    Executor,
    /// A consent contract covering the reader (a server: one of its users) and the room's
    /// class at the moment of the read. `break_glass` flags a contract made by break-glass.
    Contract { contract_id: String, purpose: String, break_glass: bool },
    /// One of the patient's device accounts, in the record's space or its own device room
    /// (the class room whose `org.medrix.record` names it): it is shown the rooms' state
    /// and its own events, never anyone else's.
    Device,
    /// Room membership alone: no contract covers the reader now. In a record room this is
    /// what a server is served for the room's structure (state, auth chains) and what a
    /// removed member is served of their own removal.
    Membership,
}

/// One entry of a room's read log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadEntry {
    pub room_id: String,
    /// Its place in the room's chain, from 0.
    pub index: u64,
    /// The hash of entry `index - 1`; `None` for the first.
    pub prev_hash: Option<String>,
    /// When the read was decided, ms since the epoch (the serving server's clock): the moment
    /// its basis holds at.
    pub ts: u64,
    pub reader: LogReader,
    pub path: ReadPath,
    /// The events served, in the order served.
    pub events: Vec<String>,
    pub basis: ReadBasis,
}

/// A chain's head: how many entries, and the last one's hash.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainHead {
    pub count: u64,
    pub hash: Option<String>,
}

/// Why an entry does not parse, or a chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadLogError {
    #[error("read-log entry: {0}")]
    Malformed(String),
    #[error("read-log entry {index}: {what}")]
    Broken { index: u64, what: String },
}

impl ReadEntry {
    /// The entry that follows `head` in `room_id`'s chain.
    pub fn next(
        head: &ChainHead,
        room_id: &str,
        ts: u64,
        reader: LogReader,
        path: ReadPath,
        events: Vec<String>,
        basis: ReadBasis,
    ) -> Self {
        Self {
            room_id: room_id.to_owned(),
            index: head.count,
            prev_hash: head.hash.clone(),
            ts,
            reader,
            path,
            events,
            basis,
        }
    }

    /// The head of the chain this entry ends.
    pub fn head_after(&self) -> ChainHead {
        ChainHead { count: self.index + 1, hash: Some(self.hash()) }
    }

    pub fn to_json(&self) -> Value {
        let reader = match &self.reader {
            LogReader::User { user_id, device_id } => {
                let mut reader = json!({ "user_id": user_id });
                if let Some(device) = device_id {
                    reader["device_id"] = json!(device);
                }
                reader
            }
            LogReader::Server { server_name } => json!({ "server_name": server_name }),
        };
        let basis = match &self.basis {
            ReadBasis::Patient => json!({ "kind": "patient" }),
            ReadBasis::Executor => json!({ "kind": "executor" }),
            ReadBasis::Membership => json!({ "kind": "membership" }),
            ReadBasis::Device => json!({ "kind": "device" }),
            ReadBasis::Contract { contract_id, purpose, break_glass } => json!({
                "kind": "contract", "contract_id": contract_id, "purpose": purpose,
                "break_glass": break_glass,
            }),
        };
        let mut entry = json!({
            "room_id": self.room_id, "index": self.index, "ts": self.ts, "reader": reader,
            "path": self.path.as_str(), "events": self.events, "basis": basis,
        });
        if let Some(prev) = &self.prev_hash {
            entry["prev_hash"] = json!(prev);
        }
        entry
    }

    /// Parses an entry as `to_json` writes it. Unknown fields are refused: everything an
    /// exported entry shows is covered by its hash.
    pub fn from_json(value: &Value) -> Result<Self, ReadLogError> {
        let bad = |what: &str| ReadLogError::Malformed(what.to_owned());
        let object = value.as_object().ok_or_else(|| bad("not an object"))?;
        only_fields(
            object,
            &["room_id", "index", "prev_hash", "ts", "reader", "path", "events", "basis"],
        )?;
        let text = |object: &Map<String, Value>, key: &str| {
            object
                .get(key)
                .and_then(Value::as_str)
                .map(ToOwned::to_owned)
                .ok_or_else(|| bad(&format!("`{key}` must be a string")))
        };
        let integer = |key: &str| {
            object
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(&format!("`{key}` must be a non-negative integer")))
        };
        let reader = object
            .get("reader")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("`reader` must be an object"))?;
        let reader = if reader.contains_key("server_name") {
            only_fields(reader, &["server_name"])?;
            LogReader::Server { server_name: text(reader, "server_name")? }
        } else {
            only_fields(reader, &["user_id", "device_id"])?;
            let device_id = match reader.get("device_id") {
                None => None,
                Some(_) => Some(text(reader, "device_id")?),
            };
            LogReader::User { user_id: text(reader, "user_id")?, device_id }
        };
        let basis = object
            .get("basis")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("`basis` must be an object"))?;
        let basis = match text(basis, "kind")?.as_str() {
            "patient" => ReadBasis::Patient,
            "executor" => ReadBasis::Executor,
            "membership" => ReadBasis::Membership,
            "device" => ReadBasis::Device,
            "contract" => ReadBasis::Contract {
                contract_id: text(basis, "contract_id")?,
                purpose: text(basis, "purpose")?,
                break_glass: basis
                    .get("break_glass")
                    .and_then(Value::as_bool)
                    .ok_or_else(|| bad("`basis.break_glass` must be a boolean"))?,
            },
            other => return Err(bad(&format!("unknown basis `{other}`"))),
        };
        let path = text(object, "path")?;
        let events = object
            .get("events")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("`events` must be a list"))?
            .iter()
            .map(|id| {
                id.as_str().map(ToOwned::to_owned).ok_or_else(|| bad("`events` must hold strings"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            room_id: text(object, "room_id")?,
            index: integer("index")?,
            prev_hash: match object.get("prev_hash") {
                None => None,
                Some(_) => Some(text(object, "prev_hash")?),
            },
            ts: integer("ts")?,
            reader,
            path: ReadPath::parse(&path).ok_or_else(|| bad(&format!("unknown path `{path}`")))?,
            events,
            basis,
        })
    }

    /// Its canonical JSON: what is stored, exported and hashed.
    pub fn canonical(&self) -> String {
        canonical_json(&self.to_json())
    }

    /// SHA-256 over the canonical JSON, unpadded base64.
    pub fn hash(&self) -> String {
        STANDARD_NO_PAD.encode(Sha256::digest(self.canonical().as_bytes()))
    }
}

fn only_fields(object: &Map<String, Value>, allowed: &[&str]) -> Result<(), ReadLogError> {
    match object.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(ReadLogError::Malformed(format!("unknown field `{key}`"))),
        None => Ok(()),
    }
}

/// Checks that `entries` are one room's chain from its start: indexes 0, 1, 2, …, each
/// naming the hash of the one before and the same room. Answers the head, or the first
/// entry at fault.
pub fn verify_chain(room_id: &str, entries: &[ReadEntry]) -> Result<ChainHead, ReadLogError> {
    let mut head = ChainHead::default();
    for entry in entries {
        let broken = |what: String| ReadLogError::Broken { index: head.count, what };
        if entry.room_id != room_id {
            return Err(broken(format!("belongs to room {}, not {room_id}", entry.room_id)));
        }
        if entry.index != head.count {
            return Err(broken(format!(
                "carries index {} where {} belongs (an entry missing or moved)",
                entry.index, head.count
            )));
        }
        if entry.prev_hash != head.hash {
            return Err(broken(
                "does not carry the hash of the entry before it (an entry before it altered, missing or moved)"
                    .to_owned(),
            ));
        }
        head = entry.head_after();
    }
    Ok(head)
}

/// Matrix-style canonical JSON of a value holding no floats: object keys sorted by code
/// point at every level, no whitespace. (Read-log entries hold only strings, integers,
/// booleans, lists and objects.)
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            // Sorted here, whatever order the map keeps (serde_json's `preserve_order`
            // feature, which another crate of the build may turn on, keeps insertion order).
            let sorted: BTreeMap<&String, &Value> = object.iter().collect();
            out.push('{');
            for (n, (key, value)) in sorted.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<ReadEntry> {
        let mut head = ChainHead::default();
        let mut entries = Vec::new();
        for i in 0..n {
            let entry = ReadEntry::next(
                &head,
                "!r:s",
                1_000 + i,
                LogReader::User { user_id: "@d:s".into(), device_id: Some("DEV".into()) },
                ReadPath::Messages,
                vec![format!("$e{i}")],
                ReadBasis::Contract {
                    contract_id: "c1".into(),
                    purpose: "TREAT".into(),
                    break_glass: false,
                },
            );
            head = entry.head_after();
            entries.push(entry);
        }
        entries
    }

    #[test]
    fn an_untouched_chain_verifies_and_json_round_trips() {
        let entries = chain(5);
        let head = verify_chain("!r:s", &entries).unwrap();
        assert_eq!(head.count, 5);
        for entry in &entries {
            assert_eq!(&ReadEntry::from_json(&entry.to_json()).unwrap(), entry);
            let reparsed: Value = serde_json::from_str(&entry.canonical()).unwrap();
            assert_eq!(ReadEntry::from_json(&reparsed).unwrap().hash(), entry.hash());
        }
    }

    #[test]
    fn a_dropped_altered_or_reordered_entry_is_named() {
        let mut dropped = chain(5);
        dropped.remove(2);
        assert!(matches!(
            verify_chain("!r:s", &dropped),
            Err(ReadLogError::Broken { index: 2, .. })
        ));

        let mut altered = chain(5);
        altered[1].events = vec!["$other".into()];
        assert!(matches!(
            verify_chain("!r:s", &altered),
            Err(ReadLogError::Broken { index: 2, .. })
        ));

        let mut reordered = chain(5);
        reordered.swap(3, 4);
        assert!(matches!(
            verify_chain("!r:s", &reordered),
            Err(ReadLogError::Broken { index: 3, .. })
        ));
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": 1, "a": {"d": [true, "x"], "c": null}});
        assert_eq!(canonical_json(&value), r#"{"a":{"c":null,"d":[true,"x"]},"b":1}"#);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let mut entry = chain(1)[0].to_json();
        entry["note"] = json!("unhashed");
        assert!(ReadEntry::from_json(&entry).is_err());
    }
}
