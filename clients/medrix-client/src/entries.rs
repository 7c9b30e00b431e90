//! Entries (spec/records.md §3): FHIR resources read from a file, routed to classes and sent
//! as encrypted `org.medrix.entry` events, one per resource; the record's entries read back,
//! decrypted, corrections applied; the record as a `collection` Bundle.

use std::collections::{HashMap, hash_map};

use matrix_sdk::{
    Room,
    deserialized_responses::{TimelineEvent, TimelineEventKind},
    room::MessagesOptions,
    ruma::{OwnedTransactionId, UInt},
};
use medrix_records::fhir::{bundle, clinical_time::clinical_time_ms, route::route};
use medrix_records::{DataClass, ENTRY_EVENT_TYPE, Entry, EventId, Source, SourceKind, UserId};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::client::MedrixClient;
use crate::error::{ClientError, Result};
use crate::key_scope::KeyScope;
use crate::keys::{OutgoingEntry, RoomRecipients, now_ms};
use crate::record::Record;

/// A resource ready to be sent: its class and clinical time are known, so a file is refused
/// whole before anything of it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntry {
    /// The class the resource routes to.
    pub class: DataClass,
    /// The resource, as given.
    pub resource: Map<String, Value>,
    /// Its clinical time, in ms since the epoch, if it carries one.
    pub clinical_time_ms: Option<i64>,
}

/// An entry sent.
#[derive(Debug, Clone, PartialEq)]
pub struct AddedEntry {
    /// The entry's event.
    pub event_id: String,
    /// What was sent.
    pub entry: NewEntry,
}

/// An entry as read back: the latest version (a correction replaces the original).
#[derive(Debug, Clone, PartialEq)]
pub struct ListedEntry {
    /// The original entry's event: the entry's identity.
    pub event_id: String,
    /// The correction this version comes from, if corrected.
    pub corrected_by: Option<String>,
    /// The entry (its class, resource and source).
    pub entry: Entry,
    /// The resource's clinical time, if it carries one.
    pub clinical_time_ms: Option<i64>,
    /// When the original was sent (`origin_server_ts`).
    pub sent_at_ms: u64,
}

/// An event in a class room the caller could not read as an entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableEntry {
    /// The event.
    pub event_id: String,
    /// The class of its room.
    pub class: DataClass,
    /// When it was sent.
    pub sent_at_ms: u64,
    /// Why: no key, or what is wrong with it.
    pub reason: String,
}

/// The entries of a record the caller can read, and what it could not.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryList {
    /// The patient.
    pub patient: UserId,
    /// Readable entries, by clinical time (unknown last), then by sending.
    pub entries: Vec<ListedEntry>,
    /// Events that were not readable entries.
    pub unreadable: Vec<UnreadableEntry>,
}

/// Reads the resources of a FHIR file (one resource, a Bundle, or NDJSON) and routes each:
/// every resource must go to a class and have a readable clinical time, or none is taken.
pub fn read_resources(text: &str) -> Result<Vec<NewEntry>> {
    let resources = bundle::parse_resources(text)?;
    resources
        .into_iter()
        .enumerate()
        .map(|(index, resource)| {
            let at = |error| ClientError::Resource {
                position: index + 1,
                what: describe(&resource),
                error,
            };
            let class = route(&resource).map_err(at)?;
            let clinical_time_ms = clinical_time_ms(&resource).map_err(at)?;
            let Value::Object(resource) = resource else {
                unreachable!("a routed resource is an object")
            };
            Ok(NewEntry { class, resource, clinical_time_ms })
        })
        .collect()
}

impl MedrixClient {
    /// Sends one entry per resource into the record's class rooms; `progress(done, total)`
    /// after each. The source is the patient when the caller is the patient, else a provider.
    /// Each entry's transaction ID is a hash of its room and resource, so sending a file
    /// again after an interruption does not duplicate what already went.
    pub async fn add_entries(
        &self,
        record: &Record,
        entries: &[NewEntry],
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<AddedEntry>> {
        let kind =
            if record.patient() == &self.user { SourceKind::Patient } else { SourceKind::Provider };
        let grants = self.grants(record).await?;
        let scope = KeyScope::new(record.patient(), &grants, now_ms());
        let mut rooms: HashMap<DataClass, (Room, RoomRecipients)> = HashMap::new();
        for entry in entries {
            if let hash_map::Entry::Vacant(slot) = rooms.entry(entry.class) {
                let room = self.class_room(record, entry.class).await?;
                let recipients = self.room_recipients(&room, record.patient()).await?;
                slot.insert((room, recipients));
            }
        }
        let mut added = Vec::with_capacity(entries.len());
        for (done, new) in entries.iter().enumerate() {
            let (room, recipients) = &rooms[&new.class];
            let entry = Entry {
                class: new.class,
                resource: new.resource.clone(),
                source: Source { kind, id: self.user.clone() },
                replaces: None,
            };
            let content = entry.to_content();
            let txn = transaction_id(room, &content);
            let outgoing = OutgoingEntry {
                event_type: ENTRY_EVENT_TYPE,
                class: new.class,
                clinical_time_ms: new.clinical_time_ms,
                content,
                txn,
            };
            let event_id = self.send_entry(room, recipients, &scope, outgoing).await?;
            added.push(AddedEntry { event_id: event_id.to_string(), entry: new.clone() });
            progress(done + 1, entries.len());
        }
        Ok(added)
    }

    /// Corrects an entry: a new entry replacing `original` (an `m.replace` relation; the
    /// original stays in the record). Only the original's sender can correct it.
    pub async fn correct_entry(
        &self,
        record: &Record,
        original: &EventId,
        replacement: &NewEntry,
    ) -> Result<AddedEntry> {
        let list = self.entries(record, None, &mut |_, _| {}).await?;
        let listed = list
            .entries
            .iter()
            .find(|listed| listed.event_id == original.as_str())
            .ok_or_else(|| ClientError::NoEntry(original.to_string()))?;
        if listed.entry.source.id != self.user {
            return Err(ClientError::NotYours(original.to_string()));
        }
        if listed.entry.class != replacement.class {
            return Err(ClientError::ClassChange {
                from: listed.entry.class,
                to: replacement.class,
            });
        }
        let room = self.class_room(record, replacement.class).await?;
        let entry = Entry {
            class: replacement.class,
            resource: replacement.resource.clone(),
            source: listed.entry.source.clone(),
            replaces: Some(original.clone()),
        };
        let content = entry.to_content();
        let txn = transaction_id(&room, &content);
        let grants = self.grants(record).await?;
        let scope = KeyScope::new(record.patient(), &grants, now_ms());
        let recipients = self.room_recipients(&room, record.patient()).await?;
        let outgoing = OutgoingEntry {
            event_type: ENTRY_EVENT_TYPE,
            class: replacement.class,
            clinical_time_ms: replacement.clinical_time_ms,
            content,
            txn,
        };
        let event_id = self.send_entry(&room, &recipients, &scope, outgoing).await?;
        Ok(AddedEntry { event_id: event_id.to_string(), entry: replacement.clone() })
    }

    /// The room entries of `class` go to: the first of the class the caller has joined.
    /// The room a person's entries of `class` go to: the first the caller has joined that is
    /// not a device's own room (there, only the device sends, so that no reader's keys reach
    /// it).
    async fn class_room(&self, record: &Record, class: DataClass) -> Result<Room> {
        for room in record.joined_rooms(self, class) {
            let is_device_room = crate::record::record_room_state(&room)
                .await
                .is_some_and(|state| state.device.is_some());
            if !is_device_room {
                return Ok(room);
            }
        }
        Err(ClientError::NoClassAccess { class, patient: record.patient().to_string() })
    }

    /// The entries of the record the caller can read (of one class, or all), decrypted, each
    /// in its latest version; `progress(rooms read, rooms)` as the class rooms are read.
    pub async fn entries(
        &self,
        record: &Record,
        class: Option<DataClass>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<EntryList> {
        let classes: Vec<DataClass> = match class {
            Some(class) => vec![class],
            None => record.state.classes.keys().copied().collect(),
        };
        let rooms: Vec<(DataClass, Room)> = classes
            .into_iter()
            .flat_map(|class| {
                record.joined_rooms(self, class).into_iter().map(move |room| (class, room))
            })
            .collect();
        let mut read = Reader::default();
        for (done, (class, room)) in rooms.iter().enumerate() {
            for event in room_history(room).await? {
                read.take(*class, event);
            }
            progress(done + 1, rooms.len());
        }
        Ok(read.finish(record.patient().clone()))
    }

    /// The record as a FHIR R4 `collection` Bundle of every entry the caller can read,
    /// stamped `exported_at_ms`; also the entries it holds.
    pub async fn export_bundle(
        &self,
        record: &Record,
        exported_at_ms: u64,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Value, EntryList)> {
        let list = self.entries(record, None, progress).await?;
        let resources: Vec<Value> = list
            .entries
            .iter()
            .map(|listed| Value::Object(listed.entry.resource.clone()))
            .collect();
        Ok((bundle::collection_bundle(&resources, exported_at_ms), list))
    }
}

/// A room's whole timeline the caller may see, oldest first, decrypted where it has keys.
pub(crate) async fn room_history(room: &Room) -> Result<Vec<TimelineEvent>> {
    let mut options = MessagesOptions::backward();
    options.limit = UInt::from(100u32);
    let mut events = Vec::new();
    loop {
        let page = room.messages(options).await?;
        let last = page.end.is_none() || page.chunk.is_empty();
        events.extend(page.chunk);
        if last {
            break;
        }
        options = MessagesOptions::backward().from(page.end.as_deref());
        options.limit = UInt::from(100u32);
    }
    events.reverse();
    Ok(events)
}

/// Entries and corrections as they are read, put together at the end.
#[derive(Default)]
struct Reader {
    originals: Vec<ListedEntry>,
    /// Corrections by the original they replace: (sent at, event, entry, sender).
    corrections: HashMap<String, Vec<(u64, String, Entry)>>,
    unreadable: Vec<UnreadableEntry>,
}

impl Reader {
    fn take(&mut self, class: DataClass, event: TimelineEvent) {
        let sent_at_ms = event.timestamp.map(|ts| u64::from(ts.0)).unwrap_or_default();
        let (raw, encrypted) = match &event.kind {
            TimelineEventKind::Decrypted(decrypted) => (decrypted.event.json().get(), true),
            TimelineEventKind::UnableToDecrypt { event, utd_info } => {
                use matrix_sdk::deserialized_responses::UnableToDecryptReason;
                let event_id = event_field(event.json().get(), "event_id");
                let withheld = matches!(
                    utd_info.reason,
                    UnableToDecryptReason::MissingMegolmSession { withheld_code: Some(_) }
                );
                let reason = if withheld {
                    "its key was withheld by the sender: your contract does not cover it"
                } else {
                    "no key to decrypt it"
                };
                self.unreadable.push(UnreadableEntry {
                    event_id,
                    class,
                    sent_at_ms,
                    reason: reason.to_owned(),
                });
                return;
            }
            TimelineEventKind::PlainText { event } => (event.json().get(), false),
        };
        if let Ok(json) = serde_json::from_str::<Value>(raw) {
            self.take_event(class, &json, encrypted, sent_at_ms);
        }
    }

    /// An event read (decrypted, or sent in the clear): an entry, a correction, or neither.
    fn take_event(&mut self, class: DataClass, json: &Value, encrypted: bool, sent_at_ms: u64) {
        if json["type"] != ENTRY_EVENT_TYPE || json.get("state_key").is_some() {
            return;
        }
        let event_id = json["event_id"].as_str().unwrap_or_default().to_owned();
        let mut unreadable = |reason: String| {
            self.unreadable.push(UnreadableEntry {
                event_id: event_id.clone(),
                class,
                sent_at_ms,
                reason,
            })
        };
        if !encrypted {
            return unreadable("it was sent unencrypted".to_owned());
        }
        let entry = match Entry::from_content(&json["content"]) {
            Ok(entry) => entry,
            Err(err) => return unreadable(err.to_string()),
        };
        let sender = json["sender"].as_str().unwrap_or_default();
        if entry.source.id.as_str() != sender {
            return unreadable(format!(
                "it names {} as its source but {sender} sent it",
                entry.source.id
            ));
        }
        if entry.class != class {
            return unreadable(format!("it is a {} entry in the {class} room", entry.class));
        }
        match &entry.replaces {
            Some(original) => self
                .corrections
                .entry(original.to_string())
                .or_default()
                .push((sent_at_ms, event_id, entry)),
            None => self.originals.push(ListedEntry {
                clinical_time_ms: clinical_time(&entry),
                event_id,
                corrected_by: None,
                entry,
                sent_at_ms,
            }),
        }
    }

    fn finish(mut self, patient: UserId) -> EntryList {
        for listed in &mut self.originals {
            let Some(corrections) = self.corrections.get_mut(&listed.event_id) else { continue };
            // A correction counts only from the original's author (as Matrix edits do).
            corrections.retain(|(_, _, entry)| entry.source.id == listed.entry.source.id);
            corrections.sort_by_key(|(sent_at, ..)| *sent_at);
            if let Some((_, event_id, entry)) = corrections.pop() {
                listed.clinical_time_ms = clinical_time(&entry);
                listed.corrected_by = Some(event_id);
                listed.entry = Entry { replaces: None, ..entry };
            }
        }
        self.originals.sort_by_key(|listed| {
            (listed.clinical_time_ms.is_none(), listed.clinical_time_ms, listed.sent_at_ms)
        });
        EntryList { patient, entries: self.originals, unreadable: self.unreadable }
    }
}

pub(crate) fn clinical_time(entry: &Entry) -> Option<i64> {
    clinical_time_ms(&Value::Object(entry.resource.clone())).ok().flatten()
}

fn event_field(raw: &str, field: &str) -> String {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|json| json.get(field).and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default()
}

/// The transaction ID of an entry: the same entry into the same room is the same request.
fn transaction_id(room: &Room, content: &Value) -> OwnedTransactionId {
    let mut hash = Sha256::new();
    hash.update(room.room_id().as_str().as_bytes());
    hash.update([0]);
    hash.update(content.to_string().as_bytes());
    let digest = hash.finalize();
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    OwnedTransactionId::from(format!("medrix-entry-{hex}"))
}

/// A resource for a person: its type and ID.
pub fn describe(resource: &Value) -> String {
    let kind = resource.get("resourceType").and_then(Value::as_str).unwrap_or("not a resource");
    match resource.get("id").and_then(Value::as_str) {
        Some(id) => format!("{kind} {id}"),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry_event(id: &str, sender: &str, content: Value, sent_at: u64) -> (Value, u64) {
        let event = json!({"type": ENTRY_EVENT_TYPE, "event_id": id, "sender": sender,
            "content": content, "origin_server_ts": sent_at});
        (event, sent_at)
    }

    fn observation(id: &str, value: f64, when: &str) -> Value {
        json!({"resourceType": "Observation", "id": id, "effectiveDateTime": when,
            "valueQuantity": {"value": value}, "category": [{"coding": [{"system":
            "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]})
    }

    fn content(resource: Value, author: &str) -> Value {
        json!({"class": "laboratory", "resource": resource,
            "source": {"kind": "patient", "id": author}})
    }

    fn correction(of: &str, resource: Value, author: &str) -> Value {
        let mut body = content(resource, author);
        body["m.new_content"] = body.clone();
        body["m.relates_to"] = json!({"rel_type": "m.replace", "event_id": of});
        body
    }

    fn read(events: &[(Value, u64)]) -> EntryList {
        let mut reader = Reader::default();
        for (event, sent_at) in events {
            reader.take_event(DataClass::Laboratory, event, true, *sent_at);
        }
        reader.finish(UserId::parse("@p:x").unwrap())
    }

    #[test]
    fn the_latest_correction_by_the_author_is_the_entry() {
        let list = read(&[
            entry_event("$a", "@p:x", content(observation("a", 1.0, "2024"), "@p:x"), 1),
            entry_event("$c2", "@p:x", correction("$a", observation("a", 3.0, "2024"), "@p:x"), 3),
            entry_event("$c1", "@p:x", correction("$a", observation("a", 2.0, "2024"), "@p:x"), 2),
            entry_event("$x", "@q:x", correction("$a", observation("a", 9.0, "2024"), "@q:x"), 4),
        ]);
        assert_eq!(list.entries.len(), 1);
        let entry = &list.entries[0];
        assert_eq!((entry.event_id.as_str(), entry.corrected_by.as_deref()), ("$a", Some("$c2")));
        assert_eq!(entry.entry.resource["valueQuantity"]["value"], 3.0);
        assert_eq!(entry.entry.replaces, None);
    }

    #[test]
    fn entries_sort_by_clinical_time_with_unknown_times_last() {
        let undated = json!({"resourceType": "Observation", "id": "u"});
        let list = read(&[
            entry_event("$u", "@p:x", content(undated, "@p:x"), 1),
            entry_event("$late", "@p:x", content(observation("l", 1.0, "2024"), "@p:x"), 2),
            entry_event("$early", "@p:x", content(observation("e", 1.0, "1999"), "@p:x"), 3),
        ]);
        let order: Vec<&str> = list.entries.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(order, ["$early", "$late", "$u"]);
    }

    #[test]
    fn an_entry_claiming_another_author_or_class_or_unencrypted_is_not_read() {
        let mut other_class = content(observation("c", 1.0, "2024"), "@p:x");
        other_class["class"] = json!("notes");
        let list = read(&[
            entry_event("$forged", "@mallory:x", content(observation("f", 1.0, "2024"), "@p:x"), 1),
            entry_event("$moved", "@p:x", other_class, 2),
            entry_event("$broken", "@p:x", json!({"class": "laboratory"}), 3),
        ]);
        assert!(list.entries.is_empty());
        let reasons: Vec<&str> = list.unreadable.iter().map(|u| u.reason.as_str()).collect();
        assert!(reasons[0].contains("@mallory:x sent it"), "{reasons:?}");
        assert!(reasons[1].contains("notes entry in the laboratory room"), "{reasons:?}");
        assert!(reasons[2].contains("resource"), "{reasons:?}");
        let mut reader = Reader::default();
        let (clear, _) =
            entry_event("$c", "@p:x", content(observation("c", 1.0, "2024"), "@p:x"), 1);
        reader.take_event(DataClass::Laboratory, &clear, false, 1);
        assert_eq!(reader.unreadable[0].reason, "it was sent unencrypted");
    }

    #[test]
    fn a_file_is_refused_whole_naming_the_resource_at_fault() {
        let ndjson = [
            observation("ok", 1.0, "2024").to_string(),
            json!({"resourceType": "Patient", "id": "p1"}).to_string(),
        ]
        .join("\n");
        let err = read_resources(&ndjson).unwrap_err().to_string();
        assert!(err.starts_with("resource 2 (Patient p1): "), "{err}");
        let bad_date = observation("d", 1.0, "2024-13-01");
        let err = read_resources(&bad_date.to_string()).unwrap_err().to_string();
        assert!(err.contains("effectiveDateTime"), "{err}");
    }
}
