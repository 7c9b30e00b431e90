//! Open mHealth data points (IEEE 1752.1 schemas) as FHIR R4 Observations
//! (spec/devices.md, "Other sources"): heart rate, blood pressure, body weight, oxygen
//! saturation, body temperature, blood glucose and step count, shaped as the readings of
//! `fhir` are (LOINC, UCUM, the vital-signs profiles where they apply). A data point is taken
//! whole (`{"header": {"schema_id": {"name": …}}, "body": …}`) or as its body alone, whose
//! measure names the schema. Values keep the digits JSON gave them.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The schemas read, by their `schema_id.name`.
pub const SCHEMAS: &[&str] = &[
    "heart-rate",
    "blood-pressure",
    "body-weight",
    "oxygen-saturation",
    "body-temperature",
    "blood-glucose",
    "step-count",
];

/// Whose data it is and what measured it, as FHIR references.
pub struct Context<'a> {
    pub subject: &'a str,
    pub device: Option<&'a str>,
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/";

/// The Observation a data point becomes, or why it cannot be one.
pub fn observation(point: &Value, context: &Context<'_>) -> Result<Map<String, Value>, String> {
    let body = point.get("body").unwrap_or(point);
    let body = body.as_object().ok_or("the data point's body is not an object")?;
    let named = point["header"]["schema_id"]["name"].as_str();
    let schema = match named {
        Some(name) => SCHEMAS.iter().find(|known| **known == name).copied().ok_or_else(|| {
            format!("schema `{name}` is not one Medrix reads ({})", SCHEMAS.join(", "))
        })?,
        None => schema_of_body(body)?,
    };
    let mut observation = match schema {
        "heart-rate" => {
            let (value, _) = quantity(body, "heart_rate", &[("beats/min", "/min")])?;
            measured(
                "8867-4",
                "Heart rate",
                "vital-signs",
                Some("heartrate"),
                value,
                "/min",
                "beats/minute",
            )
        }
        "blood-pressure" => {
            let units = [("mmHg", "mm[Hg]")];
            let (systolic, unit) = quantity(body, "systolic_blood_pressure", &units)?;
            let (diastolic, _) = quantity(body, "diastolic_blood_pressure", &units)?;
            // The base vital-signs profile, as `fhir` claims for a cuff: the pinned validator
            // reports the `bp` profile's component slices missing on correct data.
            let mut observation = base(
                "85354-9",
                "Blood pressure panel with all children optional",
                "vital-signs",
                Some("vitalsigns"),
            );
            observation.insert(
                "component".to_owned(),
                json!([
                    component("8480-6", "Systolic blood pressure", systolic, unit),
                    component("8462-4", "Diastolic blood pressure", diastolic, unit),
                ]),
            );
            observation
        }
        "body-weight" => {
            let (value, unit) =
                quantity(body, "body_weight", &[("kg", "kg"), ("lb", "[lb_av]"), ("g", "g")])?;
            measured("29463-7", "Body weight", "vital-signs", Some("bodyweight"), value, unit, unit)
        }
        "oxygen-saturation" => {
            let (value, _) = quantity(body, "oxygen_saturation", &[("%", "%")])?;
            let mut observation = measured(
                "2708-6",
                "Oxygen saturation in Arterial blood",
                "vital-signs",
                Some("oxygensat"),
                value,
                "%",
                "%",
            );
            // As `fhir` writes it: US Core's pulse oximetry code beside the one R4 fixes.
            if let Some(codings) = observation["code"]["coding"].as_array_mut() {
                codings.push(json!({"system": LOINC, "code": "59408-5",
                    "display": "Oxygen saturation in Arterial blood by Pulse oximetry"}));
            }
            observation
        }
        "body-temperature" => {
            let (value, unit) =
                quantity(body, "body_temperature", &[("C", "Cel"), ("F", "[degF]"), ("K", "K")])?;
            measured(
                "8310-5",
                "Body temperature",
                "vital-signs",
                Some("bodytemp"),
                value,
                unit,
                unit,
            )
        }
        "blood-glucose" => {
            let (value, unit) =
                quantity(body, "blood_glucose", &[("mg/dL", "mg/dL"), ("mmol/L", "mmol/L")])?;
            let source = body.get("specimen_source").and_then(Value::as_str);
            let (code, display) = glucose_code(source, unit == "mg/dL");
            measured(code, display, "laboratory", None, value, unit, unit)
        }
        "step-count" => {
            let steps = match body.get("step_count") {
                Some(Value::Number(count)) => Value::Number(count.clone()),
                Some(object) => object
                    .get("value")
                    .filter(|value| value.is_number())
                    .cloned()
                    .ok_or("`step_count.value` must be a number")?,
                None => return Err("`step_count` is missing".to_owned()),
            };
            measured(
                "55423-8",
                "Number of steps in unspecified time Pedometer",
                "activity",
                None,
                steps,
                "{steps}",
                "steps",
            )
        }
        _ => unreachable!("every schema in SCHEMAS is matched"),
    };
    observation.insert("subject".to_owned(), json!({"reference": context.subject}));
    if let Some(device) = context.device {
        observation.insert("device".to_owned(), json!({"reference": device}));
    }
    let (key, time) = effective(body)?;
    observation.insert(key.to_owned(), time);
    Ok(observation)
}

/// The schema a bare body is, by the measure it carries.
fn schema_of_body(body: &Map<String, Value>) -> Result<&'static str, String> {
    let by_key = [
        ("heart_rate", "heart-rate"),
        ("systolic_blood_pressure", "blood-pressure"),
        ("body_weight", "body-weight"),
        ("oxygen_saturation", "oxygen-saturation"),
        ("body_temperature", "body-temperature"),
        ("blood_glucose", "blood-glucose"),
        ("step_count", "step-count"),
    ];
    by_key.iter().find(|(key, _)| body.contains_key(*key)).map(|(_, schema)| *schema).ok_or_else(
        || "no header names the schema, and the body carries no measure Medrix reads".to_owned(),
    )
}

/// A `{"value", "unit"}` measure: its value (as given) and the UCUM code of its unit.
fn quantity(
    body: &Map<String, Value>,
    key: &str,
    units: &[(&str, &'static str)],
) -> Result<(Value, &'static str), String> {
    let measure = body.get(key).ok_or_else(|| format!("`{key}` is missing"))?;
    let value = measure
        .get("value")
        .filter(|value| value.is_number())
        .ok_or_else(|| format!("`{key}.value` must be a number"))?;
    let unit = measure.get("unit").and_then(Value::as_str).unwrap_or_default();
    let ucum =
        units.iter().find(|(given, _)| *given == unit).map(|(_, ucum)| *ucum).ok_or_else(|| {
            let known: Vec<&str> = units.iter().map(|(given, _)| *given).collect();
            format!("`{key}.unit` `{unit}` is not one of {}", known.join(", "))
        })?;
    Ok((value.clone(), ucum))
}

/// `effectiveDateTime` from `effective_time_frame.date_time`, or `effectivePeriod` from its
/// `time_interval` (`start_date_time` and `end_date_time`).
fn effective(body: &Map<String, Value>) -> Result<(&'static str, Value), String> {
    let frame = body.get("effective_time_frame").ok_or("`effective_time_frame` is missing")?;
    let instant = |at: &str, what: &str| -> Result<(), String> {
        OffsetDateTime::parse(at, &Rfc3339)
            .map(drop)
            .map_err(|_| format!("`{what}` `{at}` is not an RFC 3339 date-time with its zone"))
    };
    if let Some(at) = frame.get("date_time").and_then(Value::as_str) {
        instant(at, "date_time")?;
        return Ok(("effectiveDateTime", json!(at)));
    }
    let interval = frame
        .get("time_interval")
        .ok_or("`effective_time_frame` has neither `date_time` nor `time_interval`")?;
    match (interval["start_date_time"].as_str(), interval["end_date_time"].as_str()) {
        (Some(start), Some(end)) => {
            instant(start, "start_date_time")?;
            instant(end, "end_date_time")?;
            Ok(("effectivePeriod", json!({"start": start, "end": end})))
        }
        _ => Err("`time_interval` needs `start_date_time` and `end_date_time`".to_owned()),
    }
}

fn glucose_code(source: Option<&str>, mass: bool) -> (&'static str, &'static str) {
    match (source, mass) {
        (Some("interstitial fluid"), true) => {
            ("99504-3", "Glucose [Mass/volume] in Interstitial fluid")
        }
        (Some("interstitial fluid"), false) => {
            ("105272-9", "Glucose [Moles/volume] in Interstitial fluid")
        }
        (Some("plasma" | "serum"), true) => ("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
        (Some("plasma" | "serum"), false) => {
            ("14749-6", "Glucose [Moles/volume] in Serum or Plasma")
        }
        (_, true) => ("2339-0", "Glucose [Mass/volume] in Blood"),
        (_, false) => ("15074-8", "Glucose [Moles/volume] in Blood"),
    }
}

fn base(code: &str, display: &str, category: &str, profile: Option<&str>) -> Map<String, Value> {
    let category_display = match category {
        "vital-signs" => "Vital Signs",
        "laboratory" => "Laboratory",
        _ => "Activity",
    };
    let mut observation = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": CATEGORY, "code": category, "display": category_display}]}],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
    });
    if let Some(profile) = profile {
        observation["meta"] = json!({"profile": [format!("{PROFILE}{profile}")]});
    }
    let Value::Object(observation) = observation else { unreachable!("an object literal") };
    observation
}

fn measured(
    code: &str,
    display: &str,
    category: &str,
    profile: Option<&str>,
    value: Value,
    unit: &str,
    unit_display: &str,
) -> Map<String, Value> {
    let mut observation = base(code, display, category, profile);
    observation.insert(
        "valueQuantity".to_owned(),
        json!({"value": value, "unit": unit_display, "system": UCUM, "code": unit}),
    );
    observation
}

fn component(code: &str, display: &str, value: Value, unit: &str) -> Value {
    json!({
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> Context<'static> {
        Context { subject: "Patient/p1", device: Some("Device/watch") }
    }

    #[test]
    fn a_whole_data_point_and_a_bare_body_read_the_same() {
        let body = json!({
            "heart_rate": {"value": 72, "unit": "beats/min"},
            "effective_time_frame": {"date_time": "2024-03-05T07:30:00Z"},
        });
        let point = json!({"header": {"schema_id": {"namespace": "omh", "name": "heart-rate", "version": "2.0"}}, "body": body});
        let whole = observation(&point, &context()).unwrap();
        assert_eq!(whole, observation(&body, &context()).unwrap());
        assert_eq!(whole["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(
            whole["valueQuantity"],
            json!({"value": 72, "unit": "beats/minute", "system": UCUM, "code": "/min"})
        );
        assert_eq!(whole["effectiveDateTime"], "2024-03-05T07:30:00Z");
        assert_eq!(whole["device"], json!({"reference": "Device/watch"}));
    }

    #[test]
    fn each_schema_maps_to_its_loinc_code_and_unit() {
        let at = json!({"date_time": "2024-03-05T07:30:00Z"});
        let cases = [
            (
                json!({"systolic_blood_pressure": {"value": 120, "unit": "mmHg"}, "diastolic_blood_pressure": {"value": 80, "unit": "mmHg"}, "effective_time_frame": at}),
                "85354-9",
            ),
            (
                json!({"body_weight": {"value": 67.5, "unit": "kg"}, "effective_time_frame": at}),
                "29463-7",
            ),
            (
                json!({"oxygen_saturation": {"value": 97, "unit": "%"}, "effective_time_frame": at}),
                "2708-6",
            ),
            (
                json!({"body_temperature": {"value": 98.6, "unit": "F"}, "effective_time_frame": at}),
                "8310-5",
            ),
            (
                json!({"blood_glucose": {"value": 5.4, "unit": "mmol/L"}, "specimen_source": "capillary blood", "effective_time_frame": at}),
                "15074-8",
            ),
            (
                json!({"step_count": 3214, "effective_time_frame": {"time_interval": {"start_date_time": "2024-03-05T00:00:00Z", "end_date_time": "2024-03-06T00:00:00Z"}}}),
                "55423-8",
            ),
        ];
        for (body, code) in cases {
            let found = observation(&body, &context()).unwrap();
            assert_eq!(found["code"]["coding"][0]["code"], code, "{body}");
        }
        let weight = observation(
            &json!({"body_weight": {"value": 67.5, "unit": "kg"}, "effective_time_frame": at}),
            &context(),
        )
        .unwrap();
        assert_eq!(weight["valueQuantity"]["value"].to_string(), "67.5");
    }

    #[test]
    fn what_cannot_be_read_says_why() {
        let at = json!({"date_time": "2024-03-05T07:30:00Z"});
        let refused = |point: Value| observation(&point, &context()).unwrap_err();
        assert!(
            refused(json!({"heart_rate": {"value": 72, "unit": "Hz"}, "effective_time_frame": at}))
                .contains("unit")
        );
        assert!(refused(json!({"heart_rate": {"value": "72", "unit": "beats/min"}, "effective_time_frame": at})).contains("number"));
        assert!(
            refused(json!({"heart_rate": {"value": 72, "unit": "beats/min"}}))
                .contains("effective_time_frame")
        );
        assert!(
            refused(json!({"sleep_duration": {"value": 8, "unit": "h"}})).contains("no measure")
        );
        assert!(
            refused(json!({"header": {"schema_id": {"name": "sleep-duration"}}, "body": {}}))
                .contains("sleep-duration")
        );
        assert!(refused(json!([1, 2])).contains("object"));
        let local = json!({"date_time": "2024-03-05 07:30"});
        assert!(refused(json!({"heart_rate": {"value": 72, "unit": "beats/min"}, "effective_time_frame": local})).contains("RFC 3339"));
    }
}
