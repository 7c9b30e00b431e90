//! Readings in, as a gateway hands them over: one per line, `CHARACTERISTIC HEX [RECEIVED_AT]`
//! (`2A35 00780050005d00 2026-03-01T08:00:00Z`; blank lines and `#` comments skipped). Each
//! becomes the FHIR Observations `medrix_devices` makes of it, and each Observation gets its
//! reading ID: a hash of the device account and the Observation itself. A reading the device
//! time-stamped has the same Observation, so the same ID, however often the gateway reads it
//! from the device's memory; one without a time stamp is dated by its receipt, so two
//! readings of the same value at two moments stay two. Heart rates are batched, a minute to
//! an Observation (`Batcher`).

use std::collections::BTreeMap;

use medrix_client::ALERT_KEY;
use medrix_devices::alerts::{Alert, alerts};
use medrix_devices::fhir::{ObservationContext, observations};
use medrix_devices::{decode, omh, sampled};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::{OffsetDateTime, UtcOffset};

use crate::args::{parse_characteristic, parse_hex, parse_instant};
use crate::queue::{Kind, Queued};

/// The system of the reading IDs in an Observation's `identifier`.
pub const READING_ID_SYSTEM: &str = "https://medrix.org/fhir/sid/reading-id";

/// Whose readings these are, as the Observations name them.
pub struct Identity {
    /// The device account's user ID (part of every reading ID).
    pub device_user: String,
    /// The patient, as a FHIR reference.
    pub subject: String,
    /// The device, as a FHIR reference.
    pub device: String,
    /// The offset from UTC the device's clock keeps.
    pub clock_offset: UtcOffset,
}

impl Identity {
    /// The FHIR references a paired device uses: `Patient/` and `Device/` with the Matrix
    /// localparts, made FHIR ids (letters, digits, `-`, `.`).
    pub fn of(device_user: &str, patient: &str, clock_offset: UtcOffset) -> Identity {
        Identity {
            device_user: device_user.to_owned(),
            subject: format!("Patient/{}", fhir_id(patient)),
            device: format!("Device/{}", fhir_id(device_user)),
            clock_offset,
        }
    }
}

/// The Observations of one line, not yet identified; `Ok(empty)` for a blank line or a
/// comment; `Err` says why the line is not a reading.
pub fn observations_of_line(
    line: &str,
    identity: &Identity,
    now: OffsetDateTime,
) -> Result<Vec<Map<String, Value>>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(Vec::new());
    }
    let mut words: Vec<&str> = line.split_whitespace().collect();
    let characteristic = parse_characteristic(words.remove(0))?;
    let received_at = match words.last().map(|word| parse_instant(word)) {
        Some(Ok(at)) => {
            words.pop();
            at
        }
        _ => now,
    };
    if words.is_empty() {
        return Err("no HEX value after the characteristic".to_owned());
    }
    let payload = parse_hex(&words.concat())?;
    let reading = decode(characteristic, &payload).map_err(|error| error.to_string())?;
    let context = ObservationContext {
        subject: identity.subject.clone(),
        device: Some(identity.device.clone()),
        received_at,
        device_clock_offset: identity.clock_offset,
        cgm_session_start: None,
    };
    observations(&reading, &context)
        .into_iter()
        .map(|text| match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(observation)) => Ok(observation),
            _ => Err("the decoder made an Observation that is not a JSON object".to_owned()),
        })
        .collect()
}

/// The Observations of one line of Open mHealth NDJSON: a data point (or an array of them);
/// `Ok(empty)` for a blank line.
pub fn omh_observations_of_line(
    line: &str,
    identity: &Identity,
) -> Result<Vec<Map<String, Value>>, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Value = serde_json::from_str(line).map_err(|err| format!("not JSON: {err}"))?;
    let points = match parsed {
        Value::Array(points) => points,
        point => vec![point],
    };
    points.iter().map(|point| omh_observation(point, identity)).collect()
}

/// One Open mHealth data point (or body) as this device's Observation.
pub fn omh_observation(point: &Value, identity: &Identity) -> Result<Map<String, Value>, String> {
    let context = omh::Context { subject: &identity.subject, device: Some(&identity.device) };
    omh::observation(point, &context)
}

/// The readings of one line, each Observation a reading of its own (no batches): what
/// [`Batcher`] makes of a line whose readings are not batched.
#[cfg(test)]
pub fn readings_of_line(
    line: &str,
    identity: &Identity,
    now: OffsetDateTime,
) -> Result<Vec<Queued>, String> {
    let mut queued = Vec::new();
    for observation in observations_of_line(line, identity, now)? {
        identified(&identity.device_user, observation, &[], &mut queued);
    }
    Ok(queued)
}

/// How many minutes of heart rates wait for their batch at once; past it the oldest is
/// closed (memory stays bounded on a large file; readings come roughly in time order).
const OPEN_MINUTES: usize = 10;

/// Observations into queue items: heart rates gathered into one SampledData Observation per
/// minute (`medrix_devices::sampled`), everything else as it comes. Each item identified,
/// each followed by the alerts its readings raise.
pub struct Batcher {
    device_user: String,
    batching: bool,
    minutes: BTreeMap<OffsetDateTime, Vec<Map<String, Value>>>,
}

impl Batcher {
    pub fn new(device_user: &str, batching: bool) -> Batcher {
        Batcher { device_user: device_user.to_owned(), batching, minutes: BTreeMap::new() }
    }

    pub fn push(&mut self, observation: Map<String, Value>, out: &mut Vec<Queued>) {
        let minute = self.batching && sampled::is_batched(&observation);
        match minute.then(|| sampled::minute_of(&observation)).flatten() {
            Some(minute) => {
                self.minutes.entry(minute).or_default().push(observation);
                if self.minutes.len() > OPEN_MINUTES {
                    self.close_oldest(out);
                }
            }
            None => identified(&self.device_user, observation, &[], out),
        }
    }

    /// Closes every open minute.
    pub fn finish(&mut self, out: &mut Vec<Queued>) {
        while !self.minutes.is_empty() {
            self.close_oldest(out);
        }
    }

    fn close_oldest(&mut self, out: &mut Vec<Queued>) {
        let Some((_, readings)) = self.minutes.pop_first() else { return };
        let Some((batch, single)) = sampled::sampled_minute(readings.clone()) else { return };
        // Alerts are judged reading by reading; they name the batch that holds the reading.
        let batched: Vec<Map<String, Value>> =
            readings.into_iter().filter(|reading| !single.contains(reading)).collect();
        identified(&self.device_user, batch, &batched, out);
        for reading in single {
            identified(&self.device_user, reading, &[], out);
        }
    }
}

/// One Observation identified and queued, followed by the alerts it raises (or, for a
/// batch, that the readings it holds raise).
fn identified(
    device_user: &str,
    observation: Map<String, Value>,
    batched: &[Map<String, Value>],
    out: &mut Vec<Queued>,
) {
    // Wrapped once, read twice: the ID hashes the JSON text, the clinical time reads a field.
    let resource = Value::Object(observation);
    let id = reading_id(device_user, &resource.to_string());
    let clinical_time_ms =
        medrix_records::fhir::clinical_time::clinical_time_ms(&resource).ok().flatten();
    let Value::Object(mut observation) = resource else {
        unreachable!("wrapped as an object just above")
    };
    stamp(&mut observation, &id);
    let judged: Vec<&Map<String, Value>> =
        if batched.is_empty() { vec![&observation] } else { batched.iter().collect() };
    let mut raised = Vec::new();
    for reading in judged {
        for alert in alerts(reading) {
            // One alert per rule per item: a minute of tachycardia is one alert.
            if !raised.iter().any(|(seen, _): &(Alert, _)| seen.rule == alert.rule) {
                raised.push((alert, reading.clone()));
            }
        }
    }
    out.push(Queued {
        id: id.clone(),
        kind: Kind::Reading,
        content: observation,
        clinical_time_ms,
    });
    for (alert, reading) in raised {
        out.push(Queued {
            id: format!("{id}-{}", alert.rule),
            kind: Kind::Alert,
            content: notice(&alert, &id, &reading),
            clinical_time_ms,
        });
    }
}

/// An alert as the message every Matrix client shows (an `m.notice`), with what raised it
/// under `org.medrix.alert`.
fn notice(alert: &Alert, reading_id: &str, observation: &Map<String, Value>) -> Map<String, Value> {
    let effective = observation.get("effectiveDateTime").cloned().unwrap_or(Value::Null);
    let body = format!(
        "Alert, {}. Reading {reading_id} at {}.",
        alert.describe(),
        effective.as_str().unwrap_or("an unknown time")
    );
    let content = json!({
        "msgtype": "m.notice",
        "body": body,
        ALERT_KEY: {
            "rule": alert.rule,
            "severity": alert.severity.as_str(),
            "measured": alert.measured,
            "value": alert.value,
            "unit": alert.unit,
            "comparison": alert.comparison,
            "threshold": alert.threshold,
            "threshold_unit": alert.threshold_unit,
            "reading_id": reading_id,
            "effective": effective,
        },
    });
    let Value::Object(content) = content else { unreachable!("a JSON object literal") };
    content
}

/// The reading ID: SHA-256 of the device account and the Observation's JSON, 32 hex digits
/// (a FHIR id, and a Matrix transaction ID).
pub fn reading_id(device_user: &str, observation: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(device_user.as_bytes());
    hash.update([0]);
    hash.update(observation.as_bytes());
    hash.finalize().iter().take(16).map(|byte| format!("{byte:02x}")).collect()
}

/// The ID as the Observation's `id` and an `identifier`, so every reader can tell the same
/// reading apart from a second one.
fn stamp(resource: &mut Map<String, Value>, id: &str) {
    resource.insert("id".to_owned(), json!(id));
    resource.insert("identifier".to_owned(), json!([{"system": READING_ID_SYSTEM, "value": id}]));
}

fn fhir_id(user_id: &str) -> String {
    let localpart = user_id.trim_start_matches('@').split(':').next().unwrap_or_default();
    let id: String = localpart
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .take(64)
        .collect();
    if id.is_empty() { "unknown".to_owned() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity::of("@device-0123:home.example", "@alice:home.example", UtcOffset::UTC)
    }

    fn at(text: &str) -> OffsetDateTime {
        parse_instant(text).unwrap()
    }

    #[test]
    fn a_time_stamped_reading_has_one_id_whenever_it_is_received() {
        // Blood pressure 120/80, MAP 93, time-stamped 2024-03-05 07:30:00 by the cuff.
        let line = "2A35 02 7800 5000 5d00 e807 03 05 07 1e 00";
        let first = readings_of_line(line, &identity(), at("2024-03-05T07:31:00Z")).unwrap();
        let again = readings_of_line(line, &identity(), at("2024-03-06T10:00:00Z")).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first, again);
        assert_eq!(first[0].content["id"], json!(first[0].id));
        assert_eq!(first[0].content["subject"], json!({"reference": "Patient/alice"}));
        // Another device's identical reading is another reading.
        let other =
            Identity::of("@device-4567:home.example", "@alice:home.example", UtcOffset::UTC);
        let theirs = readings_of_line(line, &other, at("2024-03-05T07:31:00Z")).unwrap();
        assert_ne!(theirs[0].id, first[0].id);
    }

    #[test]
    fn an_untimed_reading_is_dated_and_identified_by_its_receipt() {
        let one = readings_of_line(
            "2A37 00 48 2024-03-05T07:30:00Z",
            &identity(),
            at("2030-01-01T00:00:00Z"),
        )
        .unwrap();
        let two = readings_of_line(
            "2A37 00 48 2024-03-05T07:30:01Z",
            &identity(),
            at("2030-01-01T00:00:00Z"),
        )
        .unwrap();
        assert_ne!(one[0].id, two[0].id);
        assert_eq!(one[0].content["effectiveDateTime"], json!("2024-03-05T07:30:00Z"));
        assert_eq!(one[0].clinical_time_ms, Some(1_709_623_800_000));
    }

    #[test]
    fn a_reading_past_a_threshold_is_followed_by_its_alert() {
        // 185/95 mmHg: a hypertensive crisis; 120/80 raises nothing.
        let high = "2A35 02 b900 5f00 6f00 e807 03 05 07 1e 00";
        let queued = readings_of_line(high, &identity(), at("2024-03-05T07:31:00Z")).unwrap();
        assert_eq!(queued.len(), 2);
        assert_eq!((queued[0].kind, queued[1].kind), (Kind::Reading, Kind::Alert));
        assert_eq!(queued[1].id, format!("{}-hypertensive-crisis", queued[0].id));
        let alert = &queued[1].content[ALERT_KEY];
        assert_eq!(alert["severity"], "critical");
        assert_eq!(alert["value"], json!(185.0));
        assert_eq!(alert["reading_id"], json!(queued[0].id));
        assert_eq!(queued[1].content["msgtype"], "m.notice");
        let normal = readings_of_line(
            "2A35 02 7800 5000 5d00 e807 03 05 07 1e 00",
            &identity(),
            at("2024-03-05T07:31:00Z"),
        );
        assert_eq!(normal.unwrap().len(), 1);
    }

    /// 72, 133 and 73 bpm at 07:30:00, :01 and :02, through a batcher.
    fn heart_rate_minute() -> Vec<Queued> {
        let mut batcher = Batcher::new("@device-0123:home.example", true);
        let mut out = Vec::new();
        for (second, bpm) in [(0, 0x48), (1, 0x85), (2, 0x49)] {
            let line = format!("2A37 00 {bpm:02x} 2024-03-05T07:30:{second:02}Z");
            let now = at("2030-01-01T00:00:00Z");
            for observation in observations_of_line(&line, &identity(), now).unwrap() {
                batcher.push(observation, &mut out);
            }
        }
        assert!(out.is_empty(), "the minute is still open");
        batcher.finish(&mut out);
        out
    }

    #[test]
    fn a_minute_of_heart_rates_is_one_item_and_its_alert_names_it() {
        let out = heart_rate_minute();
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].content["valueSampledData"]["data"], "72 133 73");
        assert_eq!(out[0].clinical_time_ms, Some(1_709_623_800_000));
        // 133 bpm: severe tachycardia, raised once, naming the batch.
        assert_eq!(out[1].kind, Kind::Alert);
        assert_eq!(out[1].content[ALERT_KEY]["reading_id"], json!(out[0].id));
        assert_eq!(out[1].content[ALERT_KEY]["effective"], "2024-03-05T07:30:01Z");
        // The same minute read again is the same item, with the same ID.
        assert_eq!(heart_rate_minute(), out);
    }

    #[test]
    fn open_mhealth_lines_are_data_points_or_arrays_of_them() {
        let point = r#"{"heart_rate": {"value": 72, "unit": "beats/min"}, "effective_time_frame": {"date_time": "2024-03-05T07:30:00Z"}}"#;
        let one = omh_observations_of_line(point, &identity()).unwrap();
        assert_eq!(one[0]["subject"], json!({"reference": "Patient/alice"}));
        assert_eq!(one[0]["device"], json!({"reference": "Device/device-0123"}));
        assert_eq!(
            omh_observations_of_line(&format!("[{point}, {point}]"), &identity()).unwrap().len(),
            2
        );
        assert_eq!(omh_observations_of_line("  ", &identity()), Ok(vec![]));
        assert!(omh_observations_of_line("{", &identity()).unwrap_err().starts_with("not JSON"));
    }

    #[test]
    fn lines_that_are_not_readings_say_why() {
        assert_eq!(
            readings_of_line("  # a comment", &identity(), at("2024-03-05T07:30:00Z")),
            Ok(vec![])
        );
        assert!(
            readings_of_line("2A35", &identity(), at("2024-03-05T07:30:00Z"))
                .unwrap_err()
                .contains("HEX")
        );
        assert!(
            readings_of_line("2A35 0078", &identity(), at("2024-03-05T07:30:00Z"))
                .unwrap_err()
                .contains("malformed")
        );
        assert!(readings_of_line("9999 00", &identity(), at("2024-03-05T07:30:00Z")).is_err());
    }
}
