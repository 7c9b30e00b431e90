//! The export file (`spec/audit.md` §6), parsed at the edge: rooms with their events and read
//! logs, and the key documents of the servers that signed.

use std::collections::BTreeMap;

use medrix_protocol::{
    RoomVersion, keys::VerifyKeys, ruma::ServerName, server_keys::check_key_document,
};
use serde_json::Value;

use crate::Problem;

/// What `format` must say.
pub const FORMAT: &str = "medrix-audit-export/1";

pub struct Export {
    /// The record's patient.
    pub patient: String,
    pub rooms: Vec<RoomExport>,
    /// Server name → its key document, as the server published it (JSON text).
    pub server_keys: BTreeMap<String, String>,
}

pub struct RoomExport {
    pub room_id: String,
    pub version: RoomVersion,
    /// The events, in the federation format.
    pub events: Vec<Value>,
    /// The read log's entries as exported (parsed when checked, so a damaged one is named).
    pub read_log: Vec<Value>,
    /// The other Medrix servers' logs of their own users' reads in the room, by server.
    pub remote_logs: BTreeMap<String, Vec<Value>>,
}

/// Why a file is not an export this verifier reads.
#[derive(Debug, thiserror::Error)]
#[error("not a Medrix audit export: {0}")]
pub struct ExportError(pub String);

impl Export {
    /// Parses an export file's JSON.
    pub fn parse(value: &Value) -> Result<Self, ExportError> {
        let bad = |what: &str| ExportError(what.to_owned());
        if value.get("format").and_then(Value::as_str) != Some(FORMAT) {
            return Err(bad(&format!("`format` must be {FORMAT:?}")));
        }
        let patient =
            value.get("patient").and_then(Value::as_str).ok_or_else(|| bad("no `patient`"))?;
        let rooms = value
            .get("rooms")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("`rooms` must be a list"))?
            .iter()
            .map(|room| {
                let room_id = room
                    .get("room_id")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("a room without `room_id`"))?;
                let version = room
                    .get("room_version")
                    .and_then(Value::as_str)
                    .and_then(|v| RoomVersion::parse(v).ok())
                    .ok_or_else(|| bad(&format!("{room_id}: no room version Medrix speaks")))?;
                let list = |key: &str| {
                    room.get(key)
                        .and_then(Value::as_array)
                        .cloned()
                        .ok_or_else(|| bad(&format!("{room_id}: `{key}` must be a list")))
                };
                let mut remote_logs = BTreeMap::new();
                if let Some(logs) = room.get("remote_logs") {
                    let logs = logs.as_object().ok_or_else(|| {
                        bad(&format!("{room_id}: `remote_logs` must be an object"))
                    })?;
                    for (server, entries) in logs {
                        let entries = entries.as_array().cloned().ok_or_else(|| {
                            bad(&format!("{room_id}: the log of {server} must be a list"))
                        })?;
                        remote_logs.insert(server.clone(), entries);
                    }
                }
                Ok(RoomExport {
                    room_id: room_id.to_owned(),
                    version,
                    events: list("events")?,
                    read_log: list("read_log")?,
                    remote_logs,
                })
            })
            .collect::<Result<_, ExportError>>()?;
        let server_keys = value
            .get("server_keys")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("`server_keys` must be an object"))?
            .iter()
            .map(|(server, document)| (server.clone(), document.to_string()))
            .collect();
        Ok(Self { patient: patient.to_owned(), rooms, server_keys })
    }
}

/// The keys of every server whose key document checks (self-signed by a key it lists); a
/// document that does not is a problem, and its server's events will not verify.
pub(crate) fn verify_keys(export: &Export, problems: &mut Vec<Problem>) -> VerifyKeys {
    let mut keys = VerifyKeys::default();
    for (server, document) in &export.server_keys {
        let checked = ServerName::parse(server).map_err(|err| err.to_string()).and_then(|name| {
            check_key_document(document.as_bytes(), &name).map_err(|e| e.to_string())
        });
        let checked = match checked {
            Ok(checked) => checked,
            Err(why) => {
                problems.push(Problem {
                    place: format!("the key document of {server}"),
                    what: format!("does not check: {why}"),
                });
                continue;
            }
        };
        let old = checked.old_verify_keys.into_iter().map(|(id, (key, _))| (id, key));
        for (key_id, key) in checked.verify_keys.into_iter().chain(old) {
            if keys.insert_base64(server, &key_id, &key).is_err() {
                problems.push(Problem {
                    place: format!("the key document of {server}"),
                    what: format!("key {key_id} is not an ed25519 public key"),
                });
            }
        }
    }
    keys
}
