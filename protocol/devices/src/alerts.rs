//! Alert rules over the Observations readings become (spec/devices.md, "Alerts"): a value past
//! a default threshold raises an alert, one within raises nothing. The thresholds are the
//! single-reading ones of the research note (`health-anchors.md` §5: AHA, NEWS2, ADA); rules
//! that need a confirmation window (a re-measure, a sustained level, a 7-day trend) are not
//! here. Values are compared in the rule's unit: a reading in another unit its quantity has
//! (kPa, mmol/L, °F) is converted first. A value the device marked absent raises nothing.

use serde_json::{Map, Value};

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// One alert a reading raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The rule's name, e.g. `hypertensive-crisis`.
    pub rule: &'static str,
    pub severity: Severity,
    /// What was measured, e.g. `systolic blood pressure`.
    pub measured: &'static str,
    /// The value as the Observation holds it, and its UCUM unit.
    pub value: f64,
    pub unit: String,
    /// The threshold, in the rule's unit, and how it was passed (`≥`, `≤`, `<`, `>`).
    pub threshold: f64,
    pub threshold_unit: &'static str,
    pub comparison: &'static str,
}

impl Alert {
    /// One sentence for a person.
    pub fn describe(&self) -> String {
        format!(
            "{}: {}: {} {} {} {} {} {}",
            self.severity.as_str(),
            self.rule.replace('-', " "),
            self.measured,
            trim(self.value),
            self.unit,
            self.comparison,
            trim(self.threshold),
            self.threshold_unit
        )
    }
}

#[derive(Clone, Copy)]
enum Comparison {
    AtLeast,
    AtMost,
    Below,
    Above,
}

impl Comparison {
    fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::AtLeast => value >= threshold,
            Comparison::AtMost => value <= threshold,
            Comparison::Below => value < threshold,
            Comparison::Above => value > threshold,
        }
    }

    fn sign(self) -> &'static str {
        match self {
            Comparison::AtLeast => "≥",
            Comparison::AtMost => "≤",
            Comparison::Below => "<",
            Comparison::Above => ">",
        }
    }
}

/// A quantity by its LOINC codes, with the unit rules are written in and the other units it
/// arrives in, each with the factor into the rule's unit (or an offset pair for °F).
struct Quantity {
    name: &'static str,
    loinc: &'static [&'static str],
    unit: &'static str,
    other_units: &'static [OtherUnit],
}

/// A UCUM unit a quantity also arrives in, and how to bring a value of it into the rule unit.
type OtherUnit = (&'static str, fn(f64) -> f64);

struct Rule {
    name: &'static str,
    quantity: &'static Quantity,
    comparison: Comparison,
    threshold: f64,
    severity: Severity,
}

const SYSTOLIC: Quantity = Quantity {
    name: "systolic blood pressure",
    loinc: &["8480-6"],
    unit: "mm[Hg]",
    other_units: &[("kPa", kpa_to_mmhg)],
};
const DIASTOLIC: Quantity = Quantity {
    name: "diastolic blood pressure",
    loinc: &["8462-4"],
    unit: "mm[Hg]",
    other_units: &[("kPa", kpa_to_mmhg)],
};
const HEART_RATE: Quantity =
    Quantity { name: "heart rate", loinc: &["8867-4"], unit: "/min", other_units: &[] };
const SPO2: Quantity = Quantity {
    name: "oxygen saturation",
    loinc: &["2708-6", "59408-5"],
    unit: "%",
    other_units: &[],
};
const GLUCOSE: Quantity = Quantity {
    name: "glucose",
    loinc: &["2339-0", "2345-7", "99504-3", "15074-8", "14749-6", "105272-9"],
    unit: "mg/dL",
    // Glucose's molar mass, 180.16 g/mol: 1 mmol/L is 18.016 mg/dL.
    other_units: &[("mmol/L", |mmol| mmol * 18.016)],
};
const TEMPERATURE: Quantity = Quantity {
    name: "body temperature",
    loinc: &["8310-5"],
    unit: "Cel",
    other_units: &[("[degF]", |f| (f - 32.0) * 5.0 / 9.0)],
};

fn kpa_to_mmhg(kpa: f64) -> f64 {
    kpa * 7.500_615_76
}

/// The default rules, most severe first within a quantity: a reading raises at most one
/// alert per quantity (the most severe).
const RULES: &[Rule] = &[
    rule("hypertensive-crisis", &SYSTOLIC, Comparison::AtLeast, 180.0, Severity::Critical),
    rule("hypertensive-crisis", &DIASTOLIC, Comparison::AtLeast, 120.0, Severity::Critical),
    rule("hypotension", &SYSTOLIC, Comparison::AtMost, 90.0, Severity::High),
    rule("severe-tachycardia", &HEART_RATE, Comparison::AtLeast, 131.0, Severity::High),
    rule("bradycardia", &HEART_RATE, Comparison::AtMost, 40.0, Severity::High),
    rule("hypoxaemia", &SPO2, Comparison::AtMost, 88.0, Severity::Critical),
    rule("hypoxaemia", &SPO2, Comparison::AtMost, 91.0, Severity::High),
    rule("hypoglycaemia-level-2", &GLUCOSE, Comparison::Below, 54.0, Severity::Critical),
    rule("hypoglycaemia-level-1", &GLUCOSE, Comparison::Below, 70.0, Severity::High),
    rule("hyperglycaemia-level-2", &GLUCOSE, Comparison::Above, 250.0, Severity::High),
    rule("hypothermia", &TEMPERATURE, Comparison::AtMost, 35.0, Severity::High),
    rule("high-fever", &TEMPERATURE, Comparison::AtLeast, 39.1, Severity::High),
];

const fn rule(
    name: &'static str,
    quantity: &'static Quantity,
    comparison: Comparison,
    threshold: f64,
    severity: Severity,
) -> Rule {
    Rule { name, quantity, comparison, threshold, severity }
}

/// The alerts an Observation raises under the default rules: at most one per measured
/// quantity (the first, most severe, rule that holds), in the rules' order.
pub fn alerts(observation: &Map<String, Value>) -> Vec<Alert> {
    let mut measured: Vec<(&Value, &Value)> = vec![];
    if let (Some(code), Some(quantity)) =
        (observation.get("code"), observation.get("valueQuantity"))
    {
        measured.push((code, quantity));
    }
    for component in observation.get("component").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(code), Some(quantity)) =
            (component.get("code"), component.get("valueQuantity"))
        {
            measured.push((code, quantity));
        }
    }
    let mut raised: Vec<Alert> = Vec::new();
    for (code, quantity) in measured {
        let Some(value) = quantity.get("value").and_then(Value::as_f64) else { continue };
        let unit = quantity.get("code").and_then(Value::as_str).unwrap_or_default();
        let first = RULES.iter().find_map(|rule| {
            if !has_loinc(code, rule.quantity.loinc) {
                return None;
            }
            let in_rule_unit = convert(value, unit, rule.quantity)?;
            rule.comparison.holds(in_rule_unit, rule.threshold).then(|| Alert {
                rule: rule.name,
                severity: rule.severity,
                measured: rule.quantity.name,
                value,
                unit: unit.to_owned(),
                threshold: rule.threshold,
                threshold_unit: rule.quantity.unit,
                comparison: rule.comparison.sign(),
            })
        });
        raised.extend(first);
    }
    raised
}

fn has_loinc(code: &Value, loinc: &[&str]) -> bool {
    code.get("coding").and_then(Value::as_array).into_iter().flatten().any(|coding| {
        coding.get("system").and_then(Value::as_str) == Some("http://loinc.org")
            && coding.get("code").and_then(Value::as_str).is_some_and(|c| loinc.contains(&c))
    })
}

/// `value` in `unit`, in the quantity's rule unit; `None` for a unit it does not know.
fn convert(value: f64, unit: &str, quantity: &Quantity) -> Option<f64> {
    if unit == quantity.unit {
        return Some(value);
    }
    quantity.other_units.iter().find(|(other, _)| *other == unit).map(|(_, into)| into(value))
}

/// A number as people write it: no trailing `.0`.
fn trim(value: f64) -> String {
    let text = format!("{value}");
    text.strip_suffix(".0").map(str::to_owned).unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn quantity(loinc: &str, value: Value, unit: &str) -> Map<String, Value> {
        let observation = json!({
            "resourceType": "Observation",
            "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
            "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
        });
        observation.as_object().unwrap().clone()
    }

    fn blood_pressure(systolic: f64, diastolic: f64, unit: &str) -> Map<String, Value> {
        let component = |loinc: &str, value: f64| {
            json!({"code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
                   "valueQuantity": {"value": value, "code": unit}})
        };
        json!({"resourceType": "Observation",
               "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
               "component": [component("8480-6", systolic), component("8462-4", diastolic)]})
        .as_object()
        .unwrap()
        .clone()
    }

    fn rules(observation: &Map<String, Value>) -> Vec<(&'static str, Severity)> {
        alerts(observation).iter().map(|alert| (alert.rule, alert.severity)).collect()
    }

    #[test]
    fn blood_pressure_thresholds_are_inclusive_where_the_sources_say_so() {
        assert_eq!(rules(&blood_pressure(120.0, 80.0, "mm[Hg]")), []);
        assert_eq!(rules(&blood_pressure(179.0, 119.0, "mm[Hg]")), []);
        assert_eq!(
            rules(&blood_pressure(180.0, 80.0, "mm[Hg]")),
            [("hypertensive-crisis", Severity::Critical)]
        );
        // Both components past their thresholds: one alert each.
        assert_eq!(rules(&blood_pressure(185.0, 125.0, "mm[Hg]")).len(), 2);
        assert_eq!(rules(&blood_pressure(90.0, 60.0, "mm[Hg]")), [("hypotension", Severity::High)]);
        assert_eq!(rules(&blood_pressure(91.0, 60.0, "mm[Hg]")), []);
        // 24.0 kPa is 180.01 mmHg; 23.9 kPa is 179.3.
        assert_eq!(rules(&blood_pressure(24.0, 10.0, "kPa")).len(), 1);
        assert_eq!(rules(&blood_pressure(23.9, 10.0, "kPa")), []);
    }

    #[test]
    fn the_most_severe_rule_of_a_quantity_is_the_one_raised() {
        assert_eq!(
            rules(&quantity("2708-6", json!(88), "%")),
            [("hypoxaemia", Severity::Critical)]
        );
        assert_eq!(rules(&quantity("2708-6", json!(91), "%")), [("hypoxaemia", Severity::High)]);
        assert_eq!(rules(&quantity("2708-6", json!(92), "%")), []);
        assert_eq!(
            rules(&quantity("2339-0", json!(53), "mg/dL")),
            [("hypoglycaemia-level-2", Severity::Critical)]
        );
        assert_eq!(
            rules(&quantity("2339-0", json!(54), "mg/dL")),
            [("hypoglycaemia-level-1", Severity::High)]
        );
        assert_eq!(rules(&quantity("2339-0", json!(70), "mg/dL")), []);
        // 2.9 mmol/L is 52.2 mg/dL; 14.0 mmol/L is 252.2.
        assert_eq!(
            rules(&quantity("15074-8", json!(2.9), "mmol/L")),
            [("hypoglycaemia-level-2", Severity::Critical)]
        );
        assert_eq!(
            rules(&quantity("15074-8", json!(14.0), "mmol/L")),
            [("hyperglycaemia-level-2", Severity::High)]
        );
        assert_eq!(
            rules(&quantity("8867-4", json!(131), "/min")),
            [("severe-tachycardia", Severity::High)]
        );
        assert_eq!(rules(&quantity("8867-4", json!(72), "/min")), []);
        assert_eq!(
            rules(&quantity("8867-4", json!(40), "/min")),
            [("bradycardia", Severity::High)]
        );
        assert_eq!(
            rules(&quantity("8310-5", json!(39.1), "Cel")),
            [("high-fever", Severity::High)]
        );
        assert_eq!(
            rules(&quantity("8310-5", json!(102.4), "[degF]")),
            [("high-fever", Severity::High)]
        );
        assert_eq!(rules(&quantity("8310-5", json!(98.6), "[degF]")), []);
    }

    #[test]
    fn absent_values_unknown_units_and_other_codes_raise_nothing() {
        let mut absent = quantity("8867-4", json!(200), "/min");
        absent.remove("valueQuantity");
        absent.insert("dataAbsentReason".to_owned(), json!({"text": "not-a-number"}));
        assert_eq!(rules(&absent), []);
        assert_eq!(rules(&quantity("8867-4", json!(200), "/s")), []);
        assert_eq!(rules(&quantity("29463-7", json!(200), "kg")), []);
    }

    #[test]
    fn an_alert_says_what_and_why_in_one_sentence() {
        let alert = &alerts(&blood_pressure(185.0, 80.0, "mm[Hg]"))[0];
        assert_eq!(
            alert.describe(),
            "critical: hypertensive crisis: systolic blood pressure 185 mm[Hg] ≥ 180 mm[Hg]"
        );
    }
}
