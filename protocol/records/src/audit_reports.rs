//! What the law asks the read log to answer, as pure functions over logged reads:
//!
//! - the HIPAA §164.528 accounting of disclosures: for each recipient and the contract it
//!   received data under, when (first and last), what (the classes and how many entries),
//!   and why (the contract's purpose; break-glass flagged);
//! - the GDPR Art. 15(1)(c) recipients: who has received data, and who holds access now and
//!   so may receive more;
//! - each read as a FHIR R4 `AuditEvent`, shaped after IHE BALP's "read" and "query" events.
//!
//! The patient's own reads and the contract executor's are not disclosures; a user's read
//! under no contract (only their own membership events, see `spec/audit.md` §4) carries no
//! record data and is left out too. Reads by other servers are disclosures to that server
//! (the organisation), under the contract of one of its users.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::class::DataClass;
use crate::fhir::datetime::format_instant;
use crate::read_log::{LogReader, ReadBasis, ReadEntry, ReadPath};

/// A logged read with the class of its room (`None`: the record's space) and the server
/// whose log it is (the server that served it).
#[derive(Debug, Clone)]
pub struct ClassedRead {
    pub class: Option<DataClass>,
    pub server: String,
    pub entry: ReadEntry,
}

/// What one recipient received under one contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosure {
    /// A user ID, or a server name.
    pub recipient: String,
    pub recipient_is_server: bool,
    pub contract_id: String,
    pub purpose: String,
    pub break_glass: bool,
    /// The classes whose rooms were read (`space` for the record's space).
    pub classes: BTreeSet<String>,
    pub first_ms: u64,
    pub last_ms: u64,
    /// Reads logged, and distinct events they served.
    pub reads: usize,
    pub events: usize,
}

/// The disclosures at or after `since_ms`, ordered by first read.
pub fn disclosures(reads: &[ClassedRead], since_ms: u64) -> Vec<Disclosure> {
    let mut grouped: BTreeMap<(String, String), (Disclosure, BTreeSet<&str>)> = BTreeMap::new();
    for read in reads.iter().filter(|read| read.entry.ts >= since_ms) {
        let ReadBasis::Contract { contract_id, purpose, break_glass } = &read.entry.basis else {
            continue;
        };
        let (recipient, is_server) = recipient_of(&read.entry.reader);
        let (disclosure, events) =
            grouped.entry((recipient.clone(), contract_id.clone())).or_insert_with(|| {
                let disclosure = Disclosure {
                    recipient,
                    recipient_is_server: is_server,
                    contract_id: contract_id.clone(),
                    purpose: purpose.clone(),
                    break_glass: *break_glass,
                    classes: BTreeSet::new(),
                    first_ms: read.entry.ts,
                    last_ms: read.entry.ts,
                    reads: 0,
                    events: 0,
                };
                (disclosure, BTreeSet::new())
            });
        disclosure.classes.insert(class_name(read.class).to_owned());
        disclosure.first_ms = disclosure.first_ms.min(read.entry.ts);
        disclosure.last_ms = disclosure.last_ms.max(read.entry.ts);
        disclosure.reads += 1;
        events.extend(read.entry.events.iter().map(String::as_str));
        disclosure.events = events.len();
    }
    let mut out: Vec<Disclosure> = grouped.into_values().map(|(d, _)| d).collect();
    out.sort_by(|a, b| (a.first_ms, &a.recipient).cmp(&(b.first_ms, &b.recipient)));
    out
}

/// One recipient: what they received, and whether they hold access now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub recipient: String,
    pub recipient_is_server: bool,
    pub classes: BTreeSet<String>,
    pub contracts: BTreeSet<String>,
    pub first_ms: Option<u64>,
    pub last_ms: Option<u64>,
    /// Holds a contract in force now, so may receive more: a personal contract that allows
    /// access, or a standing emergency contract (an organisation whose clinicians may break
    /// the glass).
    pub holds_access: bool,
}

impl Recipient {
    /// A recipient with nothing received and no access yet.
    fn named(recipient: &str, is_server: bool) -> Self {
        Self {
            recipient: recipient.to_owned(),
            recipient_is_server: is_server,
            classes: BTreeSet::new(),
            contracts: BTreeSet::new(),
            first_ms: None,
            last_ms: None,
            holds_access: false,
        }
    }
}

/// Everyone who received record data, and everyone who holds access now (`holding`: user
/// IDs or server names with a contract in force, and its classes).
pub fn recipients(reads: &[ClassedRead], holding: &[(String, Vec<DataClass>)]) -> Vec<Recipient> {
    let mut by_recipient: BTreeMap<String, Recipient> = BTreeMap::new();
    for disclosure in disclosures(reads, 0) {
        let recipient = by_recipient.entry(disclosure.recipient.clone()).or_insert_with(|| {
            Recipient::named(&disclosure.recipient, disclosure.recipient_is_server)
        });
        recipient.classes.extend(disclosure.classes);
        recipient.contracts.insert(disclosure.contract_id);
        recipient.first_ms =
            Some(recipient.first_ms.map_or(disclosure.first_ms, |t| t.min(disclosure.first_ms)));
        recipient.last_ms =
            Some(recipient.last_ms.map_or(disclosure.last_ms, |t| t.max(disclosure.last_ms)));
    }
    for (holder, classes) in holding {
        let recipient = by_recipient
            .entry(holder.clone())
            .or_insert_with(|| Recipient::named(holder, !holder.starts_with('@')));
        recipient.holds_access = true;
        recipient.classes.extend(classes.iter().map(|class| class.as_str().to_owned()));
    }
    by_recipient.into_values().collect()
}

/// A read as a FHIR R4 `AuditEvent` (IHE BALP: a `read` of one event, else a query), for the
/// record of `patient`.
pub fn audit_event(read: &ClassedRead, patient: &str) -> Value {
    let entry = &read.entry;
    let server = read.server.as_str();
    let single = matches!(entry.path, ReadPath::Event | ReadPath::FederationEvent);
    let (subtype, subtype_display, action) =
        if single { ("read", "read", "R") } else { ("search-type", "search type", "E") };
    let (who, _) = recipient_of(&entry.reader);
    let mut reader = json!({
        "type": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "code": "IRCP", "display": "information recipient",
        }]},
        "who": {"identifier": {"system": "urn:ietf:rfc:3986", "value": matrix_uri(&who)}, "display": who},
        "requestor": true,
    });
    if let LogReader::User { device_id: Some(device), .. } = &entry.reader {
        reader["network"] = json!({"address": device, "type": "5"});
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": event_id(entry),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest", "display": "RESTful Operation",
        },
        "subtype": [{
            "system": "http://hl7.org/fhir/restful-interaction",
            "code": subtype, "display": subtype_display,
        }],
        "action": action,
        "recorded": format_instant(entry.ts as i64).unwrap_or_default(),
        "outcome": "0",
        "agent": [reader, {
            "type": {"coding": [{
                "system": "http://dicom.nema.org/resources/ontology/DCM",
                "code": "110153", "display": "Source Role ID",
            }]},
            "who": {"display": server},
            "requestor": false,
        }],
        "source": {
            "observer": {"display": server},
            "type": [{
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4", "display": "Application Server",
            }],
        },
        "entity": [
            {
                "what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": matrix_uri(patient)}, "display": patient},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1", "display": "Person",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "1", "display": "Patient",
                },
            },
            {
                "what": {"identifier": {"system": "urn:ietf:rfc:3986", "value": format!("matrix:roomid/{}", entry.room_id.trim_start_matches('!'))}},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "2", "display": "System Object",
                },
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "4", "display": "Domain Resource",
                },
                "description": format!(
                    "{} event(s) of the record's {} via {} (read-log entry {})",
                    entry.events.len(), class_name(read.class), entry.path.as_str(), entry.index
                ),
            },
        ],
    });
    match &entry.basis {
        ReadBasis::Contract { contract_id, purpose, break_glass } => {
            event["purposeOfEvent"] = json!([{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": purpose,
            }]}]);
            event["agent"][0]["policy"] = json!([format!("urn:medrix:contract:{contract_id}")]);
            if *break_glass {
                event["agent"][0]["purposeOfUse"] = json!([{"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG",
                }]}]);
            }
        }
        ReadBasis::Patient | ReadBasis::Executor | ReadBasis::Membership | ReadBasis::Device => {}
    }
    event
}

/// The recipient a reader names: the user, or the server.
fn recipient_of(reader: &LogReader) -> (String, bool) {
    match reader {
        LogReader::User { user_id, .. } => (user_id.clone(), false),
        LogReader::Server { server_name } => (server_name.clone(), true),
    }
}

fn class_name(class: Option<DataClass>) -> &'static str {
    class.map_or("space", DataClass::as_str)
}

/// A user ID or server name as a URI (the `matrix:` scheme of MSC2312 for users).
fn matrix_uri(id: &str) -> String {
    match id.strip_prefix('@') {
        Some(user) => format!("matrix:u/{user}"),
        None => format!("https://{id}"),
    }
}

/// A FHIR id for the entry: stable, at most 64 of `[A-Za-z0-9-.]`.
fn event_id(entry: &ReadEntry) -> String {
    let digest = Sha256::digest(format!("{}\u{0}{}", entry.room_id, entry.index).as_bytes());
    let hex: String = digest.iter().take(16).map(|byte| format!("{byte:02x}")).collect();
    format!("read-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(
        ts: u64,
        reader: &str,
        contract: Option<(&str, &str, bool)>,
        events: &[&str],
    ) -> ClassedRead {
        let reader = match reader.strip_prefix('@') {
            Some(_) => LogReader::User { user_id: reader.to_owned(), device_id: None },
            None => LogReader::Server { server_name: reader.to_owned() },
        };
        let basis = match contract {
            Some((contract_id, purpose, break_glass)) => ReadBasis::Contract {
                contract_id: contract_id.into(),
                purpose: purpose.into(),
                break_glass,
            },
            None => ReadBasis::Patient,
        };
        ClassedRead {
            class: Some(DataClass::Laboratory),
            server: "s".into(),
            entry: ReadEntry {
                room_id: "!lab:s".into(),
                index: ts,
                prev_hash: None,
                ts,
                reader,
                path: ReadPath::Messages,
                events: events.iter().map(|e| (*e).to_owned()).collect(),
                basis,
            },
        }
    }

    #[test]
    fn disclosures_group_by_recipient_and_contract_and_leave_out_the_patient() {
        let reads = [
            read(10, "@p:s", None, &["$a"]),
            read(20, "@d:s", Some(("c1", "TREAT", false)), &["$a", "$b"]),
            read(30, "@d:s", Some(("c1", "TREAT", false)), &["$b", "$c"]),
            read(40, "h.example", Some(("c2", "BTG", true)), &["$a"]),
        ];
        let all = disclosures(&reads, 0);
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].recipient.as_str(), all[0].reads, all[0].events), ("@d:s", 2, 3));
        assert_eq!((all[0].first_ms, all[0].last_ms), (20, 30));
        assert!(all[1].recipient_is_server && all[1].break_glass);
        assert_eq!(disclosures(&reads, 35).len(), 1);
        let holders = [("@n:s".to_owned(), vec![DataClass::Allergies])];
        let listed = recipients(&reads, &holders);
        assert_eq!(listed.len(), 3);
        let nurse = listed.iter().find(|r| r.recipient == "@n:s").unwrap();
        assert!(nurse.holds_access && nurse.first_ms.is_none());
    }
}
