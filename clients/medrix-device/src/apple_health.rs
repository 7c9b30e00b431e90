//! Apple Health's `export.xml` (spec/devices.md, "Other sources: Apple Health"), streamed:
//! `quick-xml` reads it event by event into one reused buffer, so a multi-gigabyte export
//! takes the memory of one element at a time. Each `Record` of a type Medrix reads becomes an
//! Open mHealth body, which then takes the Open mHealth path into Observations; blood
//! pressure comes from each `Correlation` of its two records. Everything else (the many
//! types Medrix does not read, workouts, metadata) is passed over.

use std::io::BufRead;

use quick_xml::Reader;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Value, json};

/// One unit of the export: the bodies it gives, or why it gives none (with the byte offset
/// where it starts, for the report).
pub struct Unit {
    pub offset: u64,
    pub bodies: Result<Vec<Value>, String>,
}

/// Streams an export, handing each `Record` (or blood-pressure `Correlation`) Medrix reads to
/// `each`, and `progress(bytes read)` now and then. Stops at the first XML error, naming it.
pub fn read(
    input: impl BufRead,
    each: &mut dyn FnMut(Unit),
    progress: &mut dyn FnMut(u64),
) -> Result<(), String> {
    let mut reader = Reader::from_reader(input);
    let mut buffer = Vec::new();
    // The two records of the blood-pressure correlation being read, if inside one.
    let mut pressure: Option<(u64, Option<Measure>, Option<Measure>, String)> = None;
    let mut reported = 0u64;
    loop {
        let offset = reader.buffer_position();
        let event = reader
            .read_event_into(&mut buffer)
            .map_err(|err| format!("the XML at byte {offset}: {err}"))?;
        match event {
            Event::Eof => break,
            Event::Start(element) | Event::Empty(element) => match element.name().into_inner() {
                "Correlation" => {
                    let attributes = attributes(&element)?;
                    if attribute(&attributes, "type")
                        == Some("HKCorrelationTypeIdentifierBloodPressure")
                    {
                        let at = attribute(&attributes, "startDate").unwrap_or_default().to_owned();
                        pressure = Some((offset, None, None, at));
                    }
                }
                "Record" => {
                    let attributes = attributes(&element)?;
                    match (&mut pressure, attribute(&attributes, "type")) {
                        (
                            Some((_, systolic, _, _)),
                            Some("HKQuantityTypeIdentifierBloodPressureSystolic"),
                        ) => {
                            *systolic = Some(measure(&attributes, &[("mmHg", "mmHg")]));
                        }
                        (
                            Some((_, _, diastolic, _)),
                            Some("HKQuantityTypeIdentifierBloodPressureDiastolic"),
                        ) => {
                            *diastolic = Some(measure(&attributes, &[("mmHg", "mmHg")]));
                        }
                        // Blood pressure is read from its correlation, whole.
                        (None, Some(kind))
                            if kind.starts_with("HKQuantityTypeIdentifierBloodPressure") => {}
                        (_, Some(kind)) => {
                            if let Some(bodies) = record(kind, &attributes) {
                                each(Unit { offset, bodies: bodies.map(|body| vec![body]) });
                            }
                        }
                        (_, None) => {}
                    }
                }
                _ => {}
            },
            Event::End(element) if element.name().into_inner() == "Correlation" => {
                if let Some((start, systolic, diastolic, at)) = pressure.take() {
                    each(Unit { offset: start, bodies: blood_pressure(systolic, diastolic, &at) });
                }
            }
            _ => {}
        }
        buffer.clear();
        let position = reader.buffer_position();
        if position - reported >= 1 << 24 {
            progress(position);
            reported = position;
        }
    }
    progress(reader.buffer_position());
    Ok(())
}

type Attributes = Vec<(String, String)>;
/// A measure read from a record, or why it could not be.
type Measure = Result<Value, String>;

fn attributes(element: &BytesStart<'_>) -> Result<Attributes, String> {
    element
        .attributes()
        .map(|attribute| {
            let attribute = attribute.map_err(|err| format!("an attribute: {err}"))?;
            let key = attribute.key.as_ref().to_owned();
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|err| format!("the attribute `{key}`: {err}"))?
                .into_owned();
            Ok((key, value))
        })
        .collect()
}

fn attribute<'a>(attributes: &'a Attributes, key: &str) -> Option<&'a str> {
    attributes.iter().find(|(name, _)| name == key).map(|(_, value)| value.as_str())
}

/// A record's body: `None` for a type Medrix does not read.
fn record(kind: &str, attributes: &Attributes) -> Option<Result<Value, String>> {
    let at = || time(attribute(attributes, "startDate").unwrap_or_default());
    let single = |key: &str, units: &[(&str, &str)]| -> Result<Value, String> {
        let measure = measure(attributes, units)?;
        Ok(json!({key: measure, "effective_time_frame": {"date_time": at()?}}))
    };
    Some(match kind {
        "HKQuantityTypeIdentifierHeartRate" => single("heart_rate", &[("count/min", "beats/min")]),
        "HKQuantityTypeIdentifierBodyMass" => {
            single("body_weight", &[("kg", "kg"), ("lb", "lb"), ("g", "g")])
        }
        "HKQuantityTypeIdentifierBodyTemperature" => {
            single("body_temperature", &[("degC", "C"), ("degF", "F")])
        }
        "HKQuantityTypeIdentifierBloodGlucose" => {
            single("blood_glucose", &[("mg/dL", "mg/dL"), ("mmol<180.1558800000541>/L", "mmol/L")])
        }
        "HKQuantityTypeIdentifierOxygenSaturation" => (|| {
            // Apple keeps a fraction (0.97) under the unit `%`: the percentage is the same
            // digits with the point moved two places.
            let value = attribute(attributes, "value").ok_or("a record without `value`")?;
            let percent = percent_of_fraction(value)?;
            Ok(json!({"oxygen_saturation": {"value": percent, "unit": "%"},
                      "effective_time_frame": {"date_time": at()?}}))
        })(),
        "HKQuantityTypeIdentifierStepCount" => (|| {
            let value = attribute(attributes, "value").ok_or("a record without `value`")?;
            let steps: serde_json::Number =
                value.parse().map_err(|_| format!("`{value}` is not a number"))?;
            let end = time(attribute(attributes, "endDate").unwrap_or_default())?;
            Ok(json!({"step_count": {"value": steps, "unit": "steps"},
                      "effective_time_frame": {"time_interval": {
                          "start_date_time": at()?, "end_date_time": end}}}))
        })(),
        _ => return None,
    })
}

/// `{"value", "unit"}` from a record's `value` and `unit`, the unit turned into Open
/// mHealth's.
fn measure(attributes: &Attributes, units: &[(&str, &str)]) -> Result<Value, String> {
    let value = attribute(attributes, "value").ok_or("a record without `value`")?;
    let number: serde_json::Number =
        value.parse().map_err(|_| format!("`{value}` is not a number"))?;
    let unit = attribute(attributes, "unit").unwrap_or_default();
    let (_, omh) = units
        .iter()
        .find(|(apple, _)| *apple == unit)
        .ok_or_else(|| format!("the unit `{unit}` is not one Medrix reads here"))?;
    Ok(json!({"value": number, "unit": omh}))
}

fn blood_pressure(
    systolic: Option<Measure>,
    diastolic: Option<Measure>,
    at: &str,
) -> Result<Vec<Value>, String> {
    let (Some(systolic), Some(diastolic)) = (systolic, diastolic) else {
        return Err("a blood-pressure correlation without both its records".to_owned());
    };
    Ok(vec![json!({
        "systolic_blood_pressure": systolic?,
        "diastolic_blood_pressure": diastolic?,
        "effective_time_frame": {"date_time": time(at)?},
    })])
}

/// Apple's `2024-03-05 07:30:00 +0100` as RFC 3339 (`2024-03-05T07:30:00+01:00`).
fn time(apple: &str) -> Result<String, String> {
    let bad = || format!("`{apple}` is not a time as Apple Health writes one");
    let (date, rest) = apple.split_once(' ').ok_or_else(bad)?;
    let (clock, zone) = rest.split_once(' ').ok_or_else(bad)?;
    let zone_ok = zone.len() == 5
        && matches!(zone.as_bytes()[0], b'+' | b'-')
        && zone[1..].bytes().all(|b| b.is_ascii_digit());
    if date.len() != 10 || clock.len() != 8 || !zone_ok {
        return Err(bad());
    }
    Ok(format!("{date}T{clock}{}:{}", &zone[..3], &zone[3..]))
}

/// `0.97` → `97`, `0.955` → `95.5`, `1` → `100`: the decimal point moved two places, digits
/// kept (no binary floating point in between).
fn percent_of_fraction(text: &str) -> Result<serde_json::Number, String> {
    let bad = || format!("`{text}` is not a fraction");
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let padded = format!("{fraction:0<2}");
    let (moved, rest) = padded.split_at(2);
    let integer = format!("{whole}{moved}").trim_start_matches('0').to_owned();
    let integer = if integer.is_empty() { "0".to_owned() } else { integer };
    let rest = rest.trim_end_matches('0');
    let text = if rest.is_empty() { integer } else { format!("{integer}.{rest}") };
    text.parse().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout)*)>
]>
<HealthData locale="en_GB">
 <ExportDate value="2024-03-06 10:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="1980-01-01"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Watch" unit="count/min" creationDate="2024-03-05 07:30:05 +0100" startDate="2024-03-05 07:30:00 +0100" endDate="2024-03-05 07:30:00 +0100" value="72">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
 <Record type="HKQuantityTypeIdentifierActiveEnergyBurned" unit="kcal" startDate="2024-03-05 07:30:00 +0100" endDate="2024-03-05 07:31:00 +0100" value="1.2"/>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" unit="%" startDate="2024-03-05 07:31:00 +0100" endDate="2024-03-05 07:31:00 +0100" value="0.955"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" unit="mmHg" startDate="2024-03-05 08:00:00 +0100" endDate="2024-03-05 08:00:00 +0100" value="121"/>
 <Correlation type="HKCorrelationTypeIdentifierBloodPressure" startDate="2024-03-05 08:00:00 +0100" endDate="2024-03-05 08:00:00 +0100">
  <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" unit="mmHg" startDate="2024-03-05 08:00:00 +0100" endDate="2024-03-05 08:00:00 +0100" value="121"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" unit="mmHg" startDate="2024-03-05 08:00:00 +0100" endDate="2024-03-05 08:00:00 +0100" value="79"/>
 </Correlation>
 <Record type="HKQuantityTypeIdentifierStepCount" unit="count" startDate="2024-03-05 09:00:00 +0100" endDate="2024-03-05 09:10:00 +0100" value="812"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" unit="count/s" startDate="2024-03-05 09:00:00 +0100" endDate="2024-03-05 09:00:00 +0100" value="1.2"/>
</HealthData>
"#;

    #[test]
    fn an_export_yields_the_records_medrix_reads_and_names_the_others() {
        let mut units = Vec::new();
        let mut progress = Vec::new();
        read(EXPORT.as_bytes(), &mut |unit| units.push(unit), &mut |at| progress.push(at)).unwrap();
        assert_eq!(progress.last().copied(), Some(EXPORT.len() as u64));
        let bodies: Vec<Result<Vec<Value>, String>> =
            units.into_iter().map(|unit| unit.bodies).collect();
        assert_eq!(bodies.len(), 5, "{bodies:?}");
        let body = |index: usize| bodies[index].as_ref().unwrap()[0].clone();
        assert_eq!(body(0)["heart_rate"], json!({"value": 72, "unit": "beats/min"}));
        assert_eq!(body(0)["effective_time_frame"]["date_time"], "2024-03-05T07:30:00+01:00");
        assert_eq!(body(1)["oxygen_saturation"]["value"].to_string(), "95.5");
        assert_eq!(body(2)["systolic_blood_pressure"]["value"], 121);
        assert_eq!(body(2)["diastolic_blood_pressure"]["value"], 79);
        assert_eq!(body(3)["step_count"]["value"], 812);
        assert_eq!(
            body(3)["effective_time_frame"]["time_interval"]["end_date_time"],
            "2024-03-05T09:10:00+01:00"
        );
        assert!(bodies[4].as_ref().unwrap_err().contains("count/s"));
    }

    #[test]
    fn fractions_become_percentages_digit_for_digit() {
        for (fraction, percent) in
            [("0.97", "97"), ("0.955", "95.5"), ("1", "100"), ("0.9", "90"), ("0.0012", "0.12")]
        {
            assert_eq!(percent_of_fraction(fraction).unwrap().to_string(), percent, "{fraction}");
        }
        assert!(percent_of_fraction("-0.5").is_err());
        assert!(percent_of_fraction("abc").is_err());
    }

    #[test]
    fn broken_xml_is_named_with_its_place() {
        let broken = "<HealthData><Record type=\"x\" value=\"1\"></HealthData>";
        let err = read(broken.as_bytes(), &mut |_| {}, &mut |_| {}).unwrap_err();
        assert!(err.starts_with("the XML at byte"), "{err}");
    }
}
