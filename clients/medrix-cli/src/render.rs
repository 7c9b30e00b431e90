//! How results read: JSON with the spec's field names, and text lines for a person.

use medrix_client::{
    Access, AddedEntry, Change, ListedEntry, LoggedRead, PendingRequest, UnreadableEntry,
};
use medrix_records::audit_reports::{Disclosure, Recipient};
use medrix_records::fhir::datetime::format_instant;
use medrix_records::{Denial, Grant, LogReader, Purpose, ReadBasis};
use serde_json::{Map, Value, json};

use crate::time::describe_duration;

/// A moment for a person: `2024-03-05 14:30` (UTC), or the ms if outside FHIR's years.
pub fn moment(ms: i64) -> String {
    match format_instant(ms) {
        Some(instant) => format!("{} {}", &instant[..10], &instant[11..16]),
        None => ms.to_string(),
    }
}

/// An entry as JSON: the entry's content fields, its event, clinical time and when it was
/// sent.
pub fn entry_json(listed: &ListedEntry) -> Value {
    json!({
        "event_id": listed.event_id,
        "class": listed.entry.class,
        "resource": listed.entry.resource,
        "source": {"kind": listed.entry.source.kind.as_str(), "id": listed.entry.source.id},
        "clinical_time": listed.clinical_time_ms,
        "sent_at": listed.sent_at_ms,
        "corrected_by": listed.corrected_by,
    })
}

/// An entry as one line: when, class, what, who added it, its event.
pub fn entry_line(listed: &ListedEntry) -> String {
    let when = listed.clinical_time_ms.map(moment).unwrap_or_else(|| "(no date)".to_owned());
    let resource = Value::Object(listed.entry.resource.clone());
    let corrected = if listed.corrected_by.is_some() { " (corrected)" } else { "" };
    let what = match value_text(&resource) {
        Some(value) => format!("{}: {value}", title(&resource)),
        None => title(&resource),
    };
    format!(
        "{when:<16}  {class:<14} {what}{corrected}  [{kind} {id}]  {event}",
        class = listed.entry.class.as_str(),
        kind = listed.entry.source.kind.as_str(),
        id = listed.entry.source.id,
        event = listed.event_id,
    )
}

/// What an Observation measured, for a person: `72 /min`, `120/80 mm[Hg]` (components
/// joined by `/`), or `60 samples` for a SampledData series; `None` for anything else.
fn value_text(resource: &Value) -> Option<String> {
    let quantity = |quantity: &Value| -> Option<(String, String)> {
        let value = quantity.get("value")?.to_string();
        let unit = quantity.get("code").or(quantity.get("unit"))?.as_str()?.to_owned();
        Some((value, unit))
    };
    if let Some((value, unit)) = resource.get("valueQuantity").and_then(quantity) {
        return Some(format!("{value} {unit}"));
    }
    if let Some(components) = resource.get("component").and_then(Value::as_array) {
        let parts: Vec<(String, String)> = components
            .iter()
            .filter_map(|component| component.get("valueQuantity").and_then(quantity))
            .collect();
        let (_, unit) = parts.first()?.clone();
        let values: Vec<&str> = parts.iter().map(|(value, _)| value.as_str()).collect();
        return Some(format!("{} {unit}", values.join("/")));
    }
    let data = resource.get("valueSampledData")?.get("data")?.as_str()?;
    let samples = data.split(' ').filter(|value| !matches!(*value, "E" | "L" | "U")).count();
    Some(format!("{samples} samples"))
}

/// An event that could not be read, as JSON.
pub fn unreadable_json(unreadable: &UnreadableEntry) -> Value {
    json!({
        "event_id": unreadable.event_id,
        "class": unreadable.class,
        "sent_at": unreadable.sent_at_ms,
        "reason": unreadable.reason,
    })
}

/// An entry sent, as JSON.
pub fn added_json(added: &AddedEntry) -> Value {
    json!({
        "event_id": added.event_id,
        "class": added.entry.class,
        "resourceType": added.entry.resource.get("resourceType"),
        "id": added.entry.resource.get("id"),
        "clinical_time": added.entry.clinical_time_ms,
    })
}

/// A contract with what `access` adds: when it was agreed, whether it is in force now,
/// how long it has left, or why it gives no access.
pub fn access_json(access: &Access) -> Value {
    let mut content = access.contract.grant.to_content();
    content["agreed_at"] = json!(access.contract.agreed_at_ms);
    content["in_force"] = json!(access.decision.is_allowed());
    content["time_left_ms"] = json!(access.time_left_ms);
    content["denial"] = json!(access.decision.denial().map(|denial| denial.as_str()));
    content
}

/// A contract as one line.
pub fn access_line(access: &Access) -> String {
    let grant = &access.contract.grant;
    let state = match (access.time_left_ms, access.decision.denial()) {
        (Some(left), _) => format!("{} left", describe_duration(left)),
        (None, Some(Denial::NotActive)) => grant.status.as_str().to_owned(),
        (None, Some(denial)) => denial.as_str().replace('_', " "),
        (None, None) => String::new(),
    };
    format!(
        "{grantee}  {id}  {purpose}  {classes}  {mode}  until {until}  ({state})",
        grantee = grant.grantee.as_str(),
        id = grant.contract_id,
        purpose = grant.purpose.code(),
        classes = classes(grant),
        mode = grant.mode.as_str(),
        until = moment(grant.valid.end() as i64),
    )
}

/// A grant's classes, comma-separated.
pub fn classes(grant: &Grant) -> String {
    grant.classes.iter().map(|class| class.as_str()).collect::<Vec<_>>().join(",")
}

/// The grant's content with extra keys.
pub fn grant_json(grant: &Grant, extra: Map<String, Value>) -> Value {
    let mut content = grant.to_content();
    if let Value::Object(object) = &mut content {
        object.extend(extra);
    }
    content
}

/// What a resource is, for a person: its code's text or display, else its type and ID.
pub fn title(resource: &Value) -> String {
    let concept_text = |concept: &Value| -> Option<String> {
        concept
            .get("text")
            .and_then(Value::as_str)
            .or_else(|| concept.pointer("/coding/0/display").and_then(Value::as_str))
            .map(str::to_owned)
    };
    let named = ["code", "vaccineCode", "medicationCodeableConcept", "type", "category"]
        .iter()
        .filter_map(|field| resource.get(*field))
        .find_map(|concept| match concept {
            Value::Array(list) => list.first().and_then(concept_text),
            concept => concept_text(concept),
        });
    let kind = medrix_client::describe(resource);
    match named {
        Some(name) => format!("{kind}: {name}"),
        None => kind,
    }
}

/// A pending request, as JSON: who, why, the terms asked for (`null` for a plain knock).
pub fn request_json(pending: &PendingRequest) -> Value {
    let mut json = json!({
        "user": pending.user,
        "reason": pending.reason,
        "request": null,
        "knocked_at": pending.knocked_at_ms,
    });
    match &pending.request {
        Some(Ok(request)) => json["request"] = request.to_content(),
        Some(Err(err)) => json["request_error"] = json!(err.to_string()),
        None => {}
    }
    json
}

/// A pending request, on one line.
pub fn request_line(pending: &PendingRequest) -> String {
    let asked = match &pending.request {
        Some(Ok(request)) => format!(
            "asks {} access to {} for {} until {}",
            request.mode.as_str(),
            request.classes.iter().map(|class| class.as_str()).collect::<Vec<_>>().join(","),
            request.purpose.code(),
            moment(request.valid.end() as i64)
        ),
        Some(Err(err)) => format!("asks for terms that are not valid ({err})"),
        None => "knocked without terms (use grant)".to_owned(),
    };
    let reason = pending.reason.as_deref().map(|r| format!(": \"{r}\"")).unwrap_or_default();
    format!("{}  {}  {asked}{reason}", moment(pending.knocked_at_ms as i64), pending.user)
}

/// Whether a logged reader is `who`: a user ID, or a server name (that server, or any of its
/// users).
pub fn reader_is(reader: &LogReader, who: &str) -> bool {
    match reader {
        // A user ID's server is everything after its first colon (a port included).
        LogReader::User { user_id, .. } => {
            user_id == who || user_id.split_once(':').is_some_and(|(_, server)| server == who)
        }
        LogReader::Server { server_name } => server_name == who,
    }
}

/// A logged read as `audit --json` prints it: the spec's entry, with the room's class and
/// the time written out.
pub fn read_json(read: &LoggedRead) -> Value {
    let mut entry = read.entry.to_json();
    entry["logged_by"] = json!(read.server);
    entry["class"] = json!(read.class.map_or("space", |class| class.as_str()));
    entry["time"] = json!(moment(read.entry.ts as i64));
    entry
}

/// A logged read as one line: when, who, what, how and why; break-glass flagged.
pub fn read_line(read: &LoggedRead) -> String {
    let entry = &read.entry;
    let who = match &entry.reader {
        LogReader::User { user_id, device_id: Some(device) } => format!("{user_id} ({device})"),
        LogReader::User { user_id, device_id: None } => user_id.clone(),
        LogReader::Server { server_name } => format!("server {server_name}"),
    };
    let why = match &entry.basis {
        ReadBasis::Patient => "as the patient".to_owned(),
        ReadBasis::Executor => "as the contract executor".to_owned(),
        ReadBasis::Membership => "by room membership, under no contract".to_owned(),
        ReadBasis::Device => "as one of the patient's devices (its own events only)".to_owned(),
        ReadBasis::Contract { contract_id, purpose, break_glass } => format!(
            "under contract {contract_id} ({purpose}){}",
            if *break_glass { "  BREAK-GLASS" } else { "" }
        ),
    };
    format!(
        "{time}  {who}  {count} event(s) of {class} via {path} on {server}  {why}",
        server = read.server,
        time = moment(entry.ts as i64),
        count = entry.events.len(),
        class = read.class.map_or("the record space", |class| class.as_str()),
        path = entry.path.as_str(),
    )
}

/// A disclosure as `disclosures --json` prints it.
pub fn disclosure_json(disclosure: &Disclosure) -> Value {
    json!({
        "recipient": disclosure.recipient,
        "recipient_kind": if disclosure.recipient_is_server { "server" } else { "user" },
        "contract_id": disclosure.contract_id,
        "purpose": disclosure.purpose,
        "break_glass": disclosure.break_glass,
        "classes": disclosure.classes,
        "first": moment(disclosure.first_ms as i64),
        "last": moment(disclosure.last_ms as i64),
        "first_ms": disclosure.first_ms,
        "last_ms": disclosure.last_ms,
        "reads": disclosure.reads,
        "events": disclosure.events,
    })
}

/// A disclosure as one line: when, to whom, what, why.
pub fn disclosure_line(disclosure: &Disclosure) -> String {
    let purpose = Purpose::parse(&disclosure.purpose)
        .map_or(disclosure.purpose.clone(), |p| format!("{} ({})", p.code(), p.display()));
    format!(
        "{first} to {last}  {recipient}  {events} entr(y/ies) of {classes}  for {purpose}  under {contract}{glass}",
        first = moment(disclosure.first_ms as i64),
        last = moment(disclosure.last_ms as i64),
        recipient = disclosure.recipient,
        events = disclosure.events,
        classes = disclosure.classes.iter().cloned().collect::<Vec<_>>().join(","),
        contract = disclosure.contract_id,
        glass = if disclosure.break_glass { "  BREAK-GLASS" } else { "" },
    )
}

/// A recipient as `recipients --json` prints it.
pub fn recipient_json(recipient: &Recipient) -> Value {
    json!({
        "recipient": recipient.recipient,
        "recipient_kind": if recipient.recipient_is_server { "server" } else { "user" },
        "classes": recipient.classes,
        "contracts": recipient.contracts,
        "first_ms": recipient.first_ms,
        "last_ms": recipient.last_ms,
        "holds_access": recipient.holds_access,
    })
}

/// A recipient as one line.
pub fn recipient_line(recipient: &Recipient) -> String {
    let received = match (recipient.first_ms, recipient.last_ms) {
        (Some(first), Some(last)) => {
            format!("received data {} to {}", moment(first as i64), moment(last as i64))
        }
        _ => "has received nothing yet".to_owned(),
    };
    format!(
        "{}  {}  classes {}  {}",
        recipient.recipient,
        received,
        recipient.classes.iter().cloned().collect::<Vec<_>>().join(","),
        if recipient.holds_access { "holds access now" } else { "no access now" },
    )
}

/// Whether a change's sender is `who`: a user ID, or a server name (any of its users).
pub fn sender_is(sender: &str, who: &str) -> bool {
    sender == who || sender.split_once(':').is_some_and(|(_, server)| server == who)
}

/// A change as `audit --json` prints it.
pub fn change_json(change: &Change) -> Value {
    json!({
        "ts": change.ts,
        "time": moment(change.ts as i64),
        "room_id": change.room_id,
        "class": change.class.map_or("space", |class| class.as_str()),
        "sender": change.sender,
        "type": change.kind,
        "state_key": change.state_key,
        "summary": change.summary,
    })
}

/// A change as one line: when, who, what, where.
pub fn change_line(change: &Change) -> String {
    format!(
        "{time}  {sender}  changed {class}: {summary}",
        time = moment(change.ts as i64),
        sender = change.sender,
        class = change.class.map_or("the record space", |class| class.as_str()),
        summary = change.summary,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_observation_says_what_it_measured() {
        let bp = json!({"component": [
            {"valueQuantity": {"value": 120, "code": "mm[Hg]"}},
            {"valueQuantity": {"value": 80, "code": "mm[Hg]"}},
            {"dataAbsentReason": {"text": "not-a-number"}}]});
        assert_eq!(value_text(&bp).as_deref(), Some("120/80 mm[Hg]"));
        let weight = json!({"valueQuantity": {"value": 67.5, "code": "kg"}});
        assert_eq!(value_text(&weight).as_deref(), Some("67.5 kg"));
        let minute = json!({"valueSampledData": {"data": "72 E 73"}});
        assert_eq!(value_text(&minute).as_deref(), Some("2 samples"));
        assert_eq!(value_text(&json!({"resourceType": "Condition"})), None);
    }

    #[test]
    fn a_resource_reads_by_its_code() {
        let glucose = json!({"resourceType": "Observation", "id": "g1",
            "code": {"coding": [{"display": "Glucose"}]}});
        assert_eq!(title(&glucose), "Observation g1: Glucose");
        let flu = json!({"resourceType": "Immunization", "vaccineCode": {"text": "Influenza"}});
        assert_eq!(title(&flu), "Immunization: Influenza");
        assert_eq!(title(&json!({"resourceType": "Encounter", "id": "v"})), "Encounter v");
    }

    #[test]
    fn moments_read_in_utc_to_the_minute() {
        assert_eq!(moment(1_709_649_000_000), "2024-03-05 14:30");
    }
}
