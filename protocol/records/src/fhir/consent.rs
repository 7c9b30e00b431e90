//! A contract as a FHIR R4 `Consent`, and back. The mapping is exact both ways for every
//! contract Medrix holds (property-tested); the export is valid R4 (checked by a real
//! validator in `tests/fhir_validation.rs`). The table is in `spec/records.md`.
//!
//! FHIR's `Period.end` is inclusive while a contract's ends are exclusive: at millisecond
//! precision the export writes `end − 1 ms`, and the import reads an end as the first moment
//! after everything its value matches (`2024-12-31` ends at 2025-01-01T00:00:00Z).

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::class::DataClass;
use crate::error::Error;
use crate::fhir::datetime::{format_instant, parse_interval};
use crate::grant::{BreakGlassOrigin, Grant, Grantee, Mode, Status};
use crate::ids::{ContractId, ServerName, UserId};
use crate::period::{DataPeriod, Validity};
use crate::purpose::{PURPOSE_SYSTEM, Purpose};

/// Identifier system of contract IDs (`Consent.identifier`).
pub const CONTRACT_ID_SYSTEM: &str = "https://medrix.org/fhir/sid/contract-id";
/// Identifier system of Matrix user IDs (the patient, a grantee).
pub const MATRIX_USER_ID_SYSTEM: &str = "https://medrix.org/fhir/sid/matrix-user-id";
/// Identifier system of Matrix server names (the grantee of a standing emergency contract).
pub const MATRIX_SERVER_NAME_SYSTEM: &str = "https://medrix.org/fhir/sid/matrix-server-name";
/// Code system of the record classes (`Consent.provision.class`).
pub const RECORD_CLASS_SYSTEM: &str = "https://medrix.org/fhir/CodeSystem/record-class";
/// Extension: `revoked` or `expired`, which FHIR's `inactive` does not tell apart.
pub const GRANT_STATUS_EXTENSION: &str = "https://medrix.org/fhir/StructureDefinition/grant-status";
/// Extension: a standing emergency contract's break-glass duration (a UCUM `ms` Duration).
pub const EMERGENCY_ACCESS_EXTENSION: &str =
    "https://medrix.org/fhir/StructureDefinition/emergency-access-duration";
/// Extension: where a break-glass grant comes from (`standingContract`, `reason`).
pub const BREAK_GLASS_EXTENSION: &str = "https://medrix.org/fhir/StructureDefinition/break-glass";
/// Extension: the custodian a standing emergency contract names (a Matrix user ID). An
/// extension rather than a second `provision.actor`: the actor is whom the contract admits,
/// and the custodian is admitted only to hold keys.
pub const CUSTODIAN_EXTENSION: &str = "https://medrix.org/fhir/StructureDefinition/custodian";

const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const CONSENT_ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
const PARTICIPATION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const TEXT_CONTENT_TYPE: &str = "text/plain;charset=utf-8";

/// A contract read back from a `Consent`, with the two facts a Consent holds beyond it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedConsent {
    /// The contract.
    pub grant: Grant,
    /// Whose record it is about (`Consent.patient`).
    pub patient: UserId,
    /// When it was agreed (`Consent.dateTime`), if given.
    pub recorded_at_ms: Option<i64>,
}

/// The `Consent` of `grant`, about `patient`'s record, agreed at `recorded_at_ms` (the grant
/// event's `origin_server_ts`).
pub fn to_consent(grant: &Grant, patient: &UserId, recorded_at_ms: u64) -> Value {
    let patient_reference = json!({
        "type": "Patient",
        "identifier": {"system": MATRIX_USER_ID_SYSTEM, "value": patient},
    });
    let actor_reference = match &grant.grantee {
        Grantee::User(user) => {
            json!({"identifier": {"system": MATRIX_USER_ID_SYSTEM, "value": user}})
        }
        Grantee::Server(server) => json!({
            "type": "Organization",
            "identifier": {"system": MATRIX_SERVER_NAME_SYSTEM, "value": server},
        }),
    };
    let mut actions = vec![coding_concept(CONSENT_ACTION_SYSTEM, "access", "Access")];
    if grant.mode == Mode::Contribute {
        actions.push(coding_concept(CONSENT_ACTION_SYSTEM, "correct", "Access and Correct"));
    }
    let mut provision = json!({
        "type": "permit",
        "period": period(Some(grant.valid.start() as i64), Some(grant.valid.end() as i64)),
        "actor": [{
            "role": coding_concept(PARTICIPATION_TYPE_SYSTEM, "IRCP", "information recipient"),
            "reference": actor_reference,
        }],
        "action": actions,
        "purpose": [coding(PURPOSE_SYSTEM, grant.purpose.code(), grant.purpose.display())],
        "class": grant.classes.iter()
            .map(|class| coding(RECORD_CLASS_SYSTEM, class.as_str(), class.display()))
            .collect::<Vec<_>>(),
    });
    if !grant.data_period.is_unbounded() {
        provision["dataPeriod"] = period(grant.data_period.start(), grant.data_period.end());
    }
    let mut consent = json!({
        "resourceType": "Consent",
        "id": grant.contract_id,
        "text": {"status": "additional", "div": narrative(&grant.text)},
        "identifier": [{"system": CONTRACT_ID_SYSTEM, "value": grant.contract_id}],
        "status": if grant.status == Status::Active { "active" } else { "inactive" },
        "scope": coding_concept(CONSENT_SCOPE_SYSTEM, "patient-privacy", "Privacy Consent"),
        "category": [coding_concept(LOINC, "59284-0", "Patient Consent")],
        "patient": patient_reference,
        "performer": [patient_reference],
        "sourceAttachment": {
            "contentType": TEXT_CONTENT_TYPE,
            "data": BASE64.encode(grant.text.as_bytes()),
            "title": "Terms of the contract",
        },
        "policyRule": coding_concept(ACT_CODE_SYSTEM, "OPTIN", "opt-in"),
        "provision": provision,
    });
    if let Some(date_time) = format_instant(recorded_at_ms as i64) {
        consent["dateTime"] = date_time.into();
    }
    let mut extensions = Vec::new();
    if grant.status != Status::Active {
        extensions.push(json!({"url": GRANT_STATUS_EXTENSION, "valueCode": grant.status.as_str()}));
    }
    if let Some(duration) = grant.emergency_access_ms {
        extensions.push(json!({"url": EMERGENCY_ACCESS_EXTENSION, "valueDuration": {
            "value": duration, "unit": "ms", "system": UCUM, "code": "ms"}}));
    }
    if let Some(origin) = &grant.break_glass {
        extensions.push(json!({"url": BREAK_GLASS_EXTENSION, "extension": [
            {"url": "standingContract", "valueString": origin.standing_contract},
            {"url": "reason", "valueString": origin.reason},
        ]}));
    }
    if let Some(custodian) = &grant.custodian {
        extensions.push(json!({"url": CUSTODIAN_EXTENSION, "valueIdentifier": {
            "system": MATRIX_USER_ID_SYSTEM, "value": custodian}}));
    }
    if !extensions.is_empty() {
        consent["extension"] = extensions.into();
    }
    consent
}

/// The contract a `Consent` describes, if it is one Medrix can hold: a permit with one
/// actor (a Matrix user, or a server for a standing emergency contract), one purpose, record
/// classes, and a validity period with both ends.
pub fn from_consent(consent: &Value) -> Result<ImportedConsent, Error> {
    if consent.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        return Err(Error::fhir("resourceType", "must be Consent"));
    }
    let provision =
        consent.get("provision").ok_or_else(|| Error::fhir("Consent.provision", "is missing"))?;
    if provision.get("type").and_then(Value::as_str) != Some("permit") {
        return Err(Error::fhir("Consent.provision.type", "must be permit"));
    }
    let status = match consent.get("status").and_then(Value::as_str) {
        Some("active") => Status::Active,
        Some("inactive") => match extension(consent, GRANT_STATUS_EXTENSION)
            .and_then(|ext| ext.get("valueCode"))
            .and_then(Value::as_str)
        {
            Some("expired") => Status::Expired,
            // An inactive Consent from elsewhere was ended by someone: revoked.
            _ => Status::Revoked,
        },
        other => {
            return Err(Error::fhir(
                "Consent.status",
                format!("{other:?} has no contract equivalent: only active or inactive"),
            ));
        }
    };
    let contract_id = consent
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|identifier| identifier["system"] == CONTRACT_ID_SYSTEM)
        .and_then(|identifier| identifier["value"].as_str())
        .ok_or_else(|| Error::fhir("Consent.identifier", "has no Medrix contract ID"))?;
    let contract_id = ContractId::parse(contract_id)
        .ok_or_else(|| Error::fhir("Consent.identifier", "holds a malformed contract ID"))?;
    let patient = consent
        .get("patient")
        .and_then(|reference| identifier_value(reference, MATRIX_USER_ID_SYSTEM))
        .and_then(UserId::parse)
        .ok_or_else(|| Error::fhir("Consent.patient", "must identify a Matrix user"))?;
    let recorded_at_ms = match consent.get("dateTime").and_then(Value::as_str) {
        None => None,
        Some(text) => Some(
            parse_interval(text)
                .ok_or_else(|| Error::fhir("Consent.dateTime", "is not a FHIR dateTime"))?
                .0,
        ),
    };
    let grant = Grant {
        contract_id,
        grantee: read_grantee(provision)?,
        purpose: read_purpose(provision)?,
        classes: read_classes(provision)?,
        data_period: match provision.get("dataPeriod") {
            None => DataPeriod::ALL,
            Some(period) => {
                let (start, end) = read_period(period, "Consent.provision.dataPeriod")?;
                DataPeriod::new(start, end).ok_or_else(|| {
                    Error::fhir("Consent.provision.dataPeriod", "must end after it starts")
                })?
            }
        },
        valid: {
            let location = "Consent.provision.period";
            let period =
                provision.get("period").ok_or_else(|| Error::fhir(location, "is missing"))?;
            let (Some(start), Some(end)) = read_period(period, location)? else {
                return Err(Error::fhir(location, "must have a start and an end"));
            };
            let (start, end) = (u64::try_from(start), u64::try_from(end));
            let (Ok(start), Ok(end)) = (start, end) else {
                return Err(Error::fhir(location, "must not start before 1970"));
            };
            Validity::new(start, end)
                .ok_or_else(|| Error::fhir(location, "must end after it starts"))?
        },
        mode: read_mode(provision)?,
        text: read_text(consent)?,
        status,
        emergency_access_ms: match extension(consent, EMERGENCY_ACCESS_EXTENSION) {
            None => None,
            Some(ext) => Some(read_duration_ms(ext)?),
        },
        break_glass: match extension(consent, BREAK_GLASS_EXTENSION) {
            None => None,
            Some(ext) => Some(read_break_glass(ext)?),
        },
        custodian: match extension(consent, CUSTODIAN_EXTENSION) {
            None => None,
            Some(ext) => Some(
                Some(&ext["valueIdentifier"])
                    .filter(|identifier| identifier["system"] == MATRIX_USER_ID_SYSTEM)
                    .and_then(|identifier| identifier["value"].as_str())
                    .and_then(UserId::parse)
                    .ok_or_else(|| {
                        Error::fhir("Consent.extension", "custodian must identify a Matrix user")
                    })?,
            ),
        },
    };
    grant.check()?;
    Ok(ImportedConsent { grant, patient, recorded_at_ms })
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn coding_concept(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [coding(system, code, display)]})
}

/// A FHIR Period of exclusive bounds: the end written inclusively, one millisecond earlier.
fn period(start: Option<i64>, end: Option<i64>) -> Value {
    let mut period = json!({});
    if let Some(start) = start.and_then(format_instant) {
        period["start"] = start.into();
    }
    if let Some(end) = end.and_then(|end| format_instant(end - 1)) {
        period["end"] = end.into();
    }
    period
}

/// Exclusive bounds of a FHIR Period: its start's first moment, its end's first moment after.
fn read_period(period: &Value, location: &str) -> Result<(Option<i64>, Option<i64>), Error> {
    let bound =
        |key: &str| -> Result<Option<(i64, i64)>, Error> {
            match period.get(key) {
                None => Ok(None),
                Some(value) => value.as_str().and_then(parse_interval).map(Some).ok_or_else(|| {
                    Error::fhir(format!("{location}.{key}"), "is not a FHIR dateTime")
                }),
            }
        };
    Ok((bound("start")?.map(|(first, _)| first), bound("end")?.map(|(_, after)| after)))
}

/// Escapes the terms into one XHTML paragraph.
fn narrative(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            _ => escaped.push(c),
        }
    }
    format!("<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>{escaped}</p></div>")
}

fn extension<'a>(resource: &'a Value, url: &str) -> Option<&'a Value> {
    resource.get("extension")?.as_array()?.iter().find(|ext| ext["url"] == url)
}

fn identifier_value<'a>(reference: &'a Value, system: &str) -> Option<&'a str> {
    let identifier = reference.get("identifier")?;
    (identifier["system"] == system).then(|| identifier["value"].as_str()).flatten()
}

fn read_grantee(provision: &Value) -> Result<Grantee, Error> {
    let location = "Consent.provision.actor";
    let actors = provision.get("actor").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let [actor] = actors else {
        return Err(Error::fhir(location, "must name exactly one actor, the grantee"));
    };
    let reference = actor.get("reference").unwrap_or(&Value::Null);
    if let Some(user) = identifier_value(reference, MATRIX_USER_ID_SYSTEM) {
        return UserId::parse(user)
            .map(Grantee::User)
            .ok_or_else(|| Error::fhir(location, "holds a malformed Matrix user ID"));
    }
    if let Some(server) = identifier_value(reference, MATRIX_SERVER_NAME_SYSTEM) {
        return ServerName::parse(server)
            .map(Grantee::Server)
            .ok_or_else(|| Error::fhir(location, "holds a malformed Matrix server name"));
    }
    Err(Error::fhir(location, "must identify a Matrix user or server"))
}

fn read_purpose(provision: &Value) -> Result<Purpose, Error> {
    let location = "Consent.provision.purpose";
    let purposes =
        provision.get("purpose").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let [purpose] = purposes else {
        return Err(Error::fhir(location, "must hold exactly one purpose"));
    };
    if purpose["system"] != PURPOSE_SYSTEM {
        return Err(Error::fhir(location, "must be a v3-ActReason PurposeOfUse code"));
    }
    purpose["code"]
        .as_str()
        .and_then(Purpose::parse)
        .ok_or_else(|| Error::fhir(location, "must be a v3-ActReason PurposeOfUse code"))
}

fn read_classes(provision: &Value) -> Result<BTreeSet<DataClass>, Error> {
    let location = "Consent.provision.class";
    let codings =
        provision.get("class").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    let mut classes = BTreeSet::new();
    for coding in codings {
        let class = (coding["system"] == RECORD_CLASS_SYSTEM)
            .then(|| coding["code"].as_str().and_then(DataClass::parse))
            .flatten()
            .ok_or_else(|| {
                Error::fhir(
                    location,
                    "must list Medrix record classes only (whole classes are granted)",
                )
            })?;
        classes.insert(class);
    }
    if classes.is_empty() {
        return Err(Error::fhir(location, "must list at least one record class"));
    }
    Ok(classes)
}

fn read_mode(provision: &Value) -> Result<Mode, Error> {
    let mut codes = BTreeSet::new();
    for concept in provision.get("action").and_then(Value::as_array).into_iter().flatten() {
        for coding in concept.get("coding").and_then(Value::as_array).into_iter().flatten() {
            if coding["system"] == CONSENT_ACTION_SYSTEM
                && let Some(code) = coding["code"].as_str()
            {
                codes.insert(code);
            }
        }
    }
    let codes: Vec<_> = codes.into_iter().collect();
    match codes.as_slice() {
        ["access"] => Ok(Mode::Read),
        ["correct"] | ["access", "correct"] => Ok(Mode::Contribute),
        _ => Err(Error::fhir(
            "Consent.provision.action",
            "must be access (read) or access and correct (contribute)",
        )),
    }
}

fn read_text(consent: &Value) -> Result<String, Error> {
    if let Some(attachment) = consent.get("sourceAttachment")
        && let Some(data) = attachment["data"].as_str()
    {
        let bytes = BASE64
            .decode(data)
            .map_err(|_| Error::fhir("Consent.sourceAttachment.data", "is not base64"))?;
        return String::from_utf8(bytes)
            .map_err(|_| Error::fhir("Consent.sourceAttachment.data", "is not UTF-8 text"));
    }
    // A Consent from elsewhere: its narrative, without markup, is what the patient read.
    let div = consent
        .pointer("/text/div")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::fhir("Consent.text", "is missing: the terms are needed"))?;
    Ok(strip_markup(div))
}

fn strip_markup(xhtml: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in xhtml.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            _ if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

fn read_duration_ms(extension: &Value) -> Result<u64, Error> {
    let duration = &extension["valueDuration"];
    let value = duration["value"].as_u64();
    let unit_ms = match (duration["system"].as_str(), duration["code"].as_str()) {
        (Some(UCUM), Some("ms")) => Some(1),
        (Some(UCUM), Some("s")) => Some(1000),
        (Some(UCUM), Some("min")) => Some(60_000),
        (Some(UCUM), Some("h")) => Some(3_600_000),
        _ => None,
    };
    match value.zip(unit_ms).and_then(|(value, unit)| value.checked_mul(unit)) {
        Some(ms) => Ok(ms),
        None => Err(Error::fhir(
            "Consent.extension(emergency-access-duration)",
            "must be a whole UCUM duration in ms, s, min or h",
        )),
    }
}

fn read_break_glass(extension: &Value) -> Result<BreakGlassOrigin, Error> {
    let part = |url: &str| {
        extension["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|inner| inner["url"] == url)
            .and_then(|inner| inner["valueString"].as_str())
    };
    let location = "Consent.extension(break-glass)";
    Ok(BreakGlassOrigin {
        standing_contract: part("standingContract")
            .and_then(ContractId::parse)
            .ok_or_else(|| Error::fhir(location, "must name the standing contract"))?,
        reason: part("reason")
            .ok_or_else(|| Error::fhir(location, "must give the reason"))?
            .to_owned(),
    })
}
