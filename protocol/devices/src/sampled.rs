//! High-rate streams batched (spec/devices.md, "Batches"): the heart rates a chest strap sends
//! about once a second become one Observation per minute whose value is a `SampledData` (one
//! slot per second from the minute's start, `E` where no reading fell), instead of sixty
//! events. A reading that shares its second with an earlier one of the minute cannot take a
//! slot of its own and stays a single Observation: nothing is dropped or averaged.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::fhir::fhir_date_time;

/// An Observation as JSON.
type Observation = Map<String, Value>;

/// The LOINC code of the readings batched: heart rate.
const HEART_RATE: &str = "8867-4";
/// One slot per second.
const PERIOD_MS: u64 = 1000;

/// Whether a single Observation is one the batches take: a heart rate with a numeric value
/// and a time.
pub fn is_batched(observation: &Map<String, Value>) -> bool {
    let heart_rate = field(observation, "code")["coding"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|coding| coding["code"] == HEART_RATE);
    heart_rate
        && field(observation, "valueQuantity")["value"].is_number()
        && time_of(observation).is_some()
}

/// The minute a batched Observation falls in: the batch it joins.
pub fn minute_of(observation: &Map<String, Value>) -> Option<OffsetDateTime> {
    let at = time_of(observation)?;
    at.replace_second(0).ok()?.replace_nanosecond(0).ok()
}

/// One minute's heart rates (all with the same `minute_of`, the same subject and device) as
/// one SampledData Observation, and the readings that had to stay single (a second already
/// taken). The batch takes everything else from the first reading.
pub fn sampled_minute(readings: Vec<Observation>) -> Option<(Observation, Vec<Observation>)> {
    let first = readings.first()?.clone();
    let start = minute_of(&first)?;
    let mut slots: BTreeMap<i64, String> = BTreeMap::new();
    let mut single = Vec::new();
    for reading in readings {
        let Some(at) = time_of(&reading) else { continue };
        let slot = (at - start).whole_seconds();
        let value = field(&reading, "valueQuantity")["value"].to_string();
        if (0..60).contains(&slot) && !slots.contains_key(&slot) {
            slots.insert(slot, value);
        } else {
            single.push(reading);
        }
    }
    let last = *slots.keys().next_back()?;
    let data: Vec<&str> =
        (0..=last).map(|slot| slots.get(&slot).map_or("E", String::as_str)).collect();
    let quantity = field(&first, "valueQuantity");
    let mut batch = Map::new();
    batch.insert("resourceType".to_owned(), json!("Observation"));
    batch.insert("status".to_owned(), json!("final"));
    for key in ["category", "code", "subject", "device"] {
        if let Some(value) = first.get(key) {
            batch.insert(key.to_owned(), value.clone());
        }
    }
    let end = start + time::Duration::seconds(last);
    batch.insert(
        "effectivePeriod".to_owned(),
        json!({"start": fhir_date_time(start), "end": fhir_date_time(end)}),
    );
    batch.insert(
        "valueSampledData".to_owned(),
        json!({
            "origin": {"value": 0, "unit": quantity["unit"], "system": quantity["system"],
                       "code": quantity["code"]},
            "period": PERIOD_MS,
            "dimensions": 1,
            "data": data.join(" "),
        }),
    );
    Some((batch, single))
}

/// The samples of a batch as (moment, value text), `E` slots left out: what a reader gets
/// back, reading by reading.
pub fn samples(observation: &Map<String, Value>) -> Vec<(OffsetDateTime, String)> {
    let sampled = field(observation, "valueSampledData");
    let Some(start) = field(observation, "effectivePeriod")["start"]
        .as_str()
        .and_then(|text| OffsetDateTime::parse(text, &Rfc3339).ok())
    else {
        return Vec::new();
    };
    let period = sampled["period"].as_u64().unwrap_or(PERIOD_MS) as i64;
    sampled["data"]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .enumerate()
        .filter(|(_, value)| !matches!(*value, "E" | "L" | "U" | ""))
        .map(|(slot, value)| {
            (start + time::Duration::milliseconds(slot as i64 * period), value.to_owned())
        })
        .collect()
}

/// A member of an Observation, `null` when it has none (a `Map` index would panic).
fn field<'a>(observation: &'a Map<String, Value>, key: &str) -> &'a Value {
    observation.get(key).unwrap_or(&Value::Null)
}

fn time_of(observation: &Map<String, Value>) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(observation.get("effectiveDateTime")?.as_str()?, &Rfc3339).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heart_rate(at: &str, bpm: u32) -> Map<String, Value> {
        json!({
            "resourceType": "Observation", "status": "final",
            "category": [{"coding": [{"code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/p1"}, "device": {"reference": "Device/strap"},
            "effectiveDateTime": at,
            "valueQuantity": {"value": bpm, "unit": "beats/minute",
                              "system": "http://unitsofmeasure.org", "code": "/min"},
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn a_minute_of_heart_rates_is_one_observation_with_every_reading() {
        let readings = vec![
            heart_rate("2024-03-05T07:30:00Z", 72),
            heart_rate("2024-03-05T07:30:01Z", 73),
            heart_rate("2024-03-05T07:30:03Z", 75),
            // The same second again: it stays a reading of its own.
            heart_rate("2024-03-05T07:30:03Z", 76),
        ];
        assert!(readings.iter().all(is_batched));
        let (batch, single) = sampled_minute(readings).unwrap();
        assert_eq!(batch["valueSampledData"]["data"], "72 73 E 75");
        assert_eq!(batch["valueSampledData"]["origin"]["code"], "/min");
        assert_eq!(
            batch["effectivePeriod"],
            json!({"start": "2024-03-05T07:30:00Z", "end": "2024-03-05T07:30:03Z"})
        );
        assert_eq!(batch["device"], json!({"reference": "Device/strap"}));
        assert_eq!(single.len(), 1);
        assert_eq!(single[0]["valueQuantity"]["value"], 76);
        let back: Vec<String> = samples(&batch).into_iter().map(|(_, v)| v).collect();
        assert_eq!(back, ["72", "73", "75"]);
    }

    #[test]
    fn minutes_keep_their_zone_and_other_readings_are_not_batched() {
        let reading = heart_rate("2024-03-05T07:30:59+01:00", 80);
        assert_eq!(fhir_date_time(minute_of(&reading).unwrap()), "2024-03-05T07:30:00+01:00");
        let mut weight = reading.clone();
        weight["code"]["coding"][0]["code"] = json!("29463-7");
        assert!(!is_batched(&weight));
        let mut absent = reading;
        absent.remove("valueQuantity");
        assert!(!is_batched(&absent));
    }
}
