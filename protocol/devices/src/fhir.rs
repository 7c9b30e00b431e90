//! Readings as FHIR R4 Observations, shaped as the core vital-signs profiles and the HL7
//! Personal Health Device IG ask: a LOINC code, a UCUM quantity, `subject`, `device`, and
//! `effectiveDateTime` from the device's time stamp (or when the gateway received the
//! reading, for a characteristic without one or a clock the device says is not set).
//!
//! Values keep the device's exact decimals: a unit conversion that is a power of ten (kg/L to
//! mg/dL, mol/L to mmol/L, 0.001 m to cm) only moves the decimal point. A special value
//! (NaN, NRes, ±INF, reserved) becomes a `dataAbsentReason`, never a number.
//!
//! Written with this crate's JSON writer, not `serde_json`, for the same reason as the
//! readings themselves: numbers must stay the digits the device sent.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

use crate::Reading;
use crate::blood_pressure::{BloodPressureMeasurement, PressureUnit};
use crate::date_time::DateTime;
use crate::decimal::Decimal;
use crate::glucose::{ConcentrationUnit, GlucoseMeasurement};
use crate::json::{Object, array};
use crate::medfloat::Medfloat;
use crate::pulse_oximetry::Spo2Pr;
use crate::temperature::TemperatureUnit;
use crate::weight::{WeightMeasurement, WeightUnits};

/// What a reading alone does not say: whose it is, which device sent it, when it arrived and
/// the zone of the device's clock (GATT time stamps carry none; FHIR times must).
#[derive(Debug, Clone)]
pub struct ObservationContext {
    /// The patient, as a FHIR reference (`Patient/…`).
    pub subject: String,
    /// The device, as a FHIR reference (`Device/…`), if it has one.
    pub device: Option<String>,
    /// When the gateway received the reading.
    pub received_at: OffsetDateTime,
    /// The offset from UTC the device's clock keeps.
    pub device_clock_offset: UtcOffset,
    /// When the CGM sensor's session started (its Session Start Time, 0x2AAA), which the
    /// records' time offsets count from.
    pub cgm_session_start: Option<OffsetDateTime>,
}

/// The Observations a reading becomes, each one JSON object's text: none for a reading that
/// is not about the patient (a glucose meter's control solution) or carries no value.
pub fn observations(reading: &Reading, context: &ObservationContext) -> Vec<String> {
    let received = context.received_at;
    let at =
        |stamp: Option<DateTime>| stamp.and_then(|s| device_time(s, context)).unwrap_or(received);
    match reading {
        Reading::HeartRate(measurement) => {
            let bpm = Medfloat::Number(Decimal::new(i64::from(measurement.heart_rate.bpm()), 0));
            vec![quantity(context, received, &HEART_RATE, bpm, &PER_MINUTE)]
        }
        Reading::BloodPressure(measurement) => {
            blood_pressure(measurement, context, at(measurement.time_stamp))
        }
        Reading::Temperature(measurement) => {
            let unit = match measurement.unit {
                TemperatureUnit::Celsius => &CELSIUS,
                TemperatureUnit::Fahrenheit => &FAHRENHEIT,
            };
            let value = measurement.temperature.value();
            vec![quantity(context, at(measurement.time_stamp), &BODY_TEMPERATURE, value, unit)]
        }
        Reading::Weight(measurement) => weight(measurement, context, at(measurement.time_stamp)),
        Reading::Glucose(measurement) => glucose(measurement, context).into_iter().collect(),
        Reading::PlxSpotCheck(measurement) => {
            // A clock the device says is not set gives a time stamp nobody should chart.
            let stamp = measurement.time_stamp.filter(|_| !measurement.device_clock_not_set);
            oximetry(&measurement.reading, context, at(stamp))
        }
        Reading::PlxContinuous(measurement) => oximetry(&measurement.normal, context, received),
        Reading::Cgm(measurement) => {
            // Offsets count from the sensor session's start, which this characteristic does
            // not carry: when the caller does not know it either, the newest record is taken
            // as just received and the others are placed before it.
            let newest = measurement.records.iter().map(|r| r.time_offset_minutes).max();
            measurement
                .records
                .iter()
                .map(|record| {
                    let offset = Duration::minutes(i64::from(record.time_offset_minutes));
                    let behind = newest.unwrap_or(0) - record.time_offset_minutes;
                    let when = match context.cgm_session_start {
                        Some(start) => start + offset,
                        None => received - Duration::minutes(i64::from(behind)),
                    };
                    let value = record.glucose_concentration.value();
                    quantity(context, when, &CGM_GLUCOSE, value, &MG_PER_DL)
                })
                .collect()
        }
    }
}

/// A LOINC-coded measurement: its codes, its category, and the profile it conforms to.
struct Measured {
    /// `(code, display)`; the first is the one the profile fixes.
    loinc: &'static [(&'static str, &'static str)],
    category: Category,
    profile: Option<&'static str>,
}

#[derive(Clone, Copy)]
enum Category {
    VitalSigns,
    Laboratory,
}

/// A UCUM unit: the code (what machines compare) and the text people read.
struct Unit {
    code: &'static str,
    display: &'static str,
}

const VITAL_SIGNS_PROFILE: &str = "http://hl7.org/fhir/StructureDefinition/vitalsigns";

const HEART_RATE: Measured = Measured {
    loinc: &[("8867-4", "Heart rate")],
    category: Category::VitalSigns,
    profile: Some("http://hl7.org/fhir/StructureDefinition/heartrate"),
};
const BLOOD_PRESSURE: Measured = Measured {
    loinc: &[("85354-9", "Blood pressure panel with all children optional")],
    category: Category::VitalSigns,
    // The `bp` profile fixes mm[Hg]; a cuff set to kPa is still a vital sign.
    profile: Some(VITAL_SIGNS_PROFILE),
};
const SYSTOLIC: &[(&str, &str)] = &[("8480-6", "Systolic blood pressure")];
const DIASTOLIC: &[(&str, &str)] = &[("8462-4", "Diastolic blood pressure")];
const MEAN_ARTERIAL: &[(&str, &str)] = &[("8478-0", "Mean blood pressure")];
const BODY_TEMPERATURE: Measured = Measured {
    loinc: &[("8310-5", "Body temperature")],
    category: Category::VitalSigns,
    profile: Some("http://hl7.org/fhir/StructureDefinition/bodytemp"),
};
const BODY_WEIGHT: Measured = Measured {
    loinc: &[("29463-7", "Body weight")],
    category: Category::VitalSigns,
    profile: Some("http://hl7.org/fhir/StructureDefinition/bodyweight"),
};
const BODY_HEIGHT: Measured = Measured {
    loinc: &[("8302-2", "Body height")],
    category: Category::VitalSigns,
    profile: Some("http://hl7.org/fhir/StructureDefinition/bodyheight"),
};
const BMI: Measured = Measured {
    loinc: &[("39156-5", "Body mass index (BMI) [Ratio]")],
    category: Category::VitalSigns,
    profile: Some("http://hl7.org/fhir/StructureDefinition/bmi"),
};
const OXYGEN_SATURATION: Measured = Measured {
    // The R4 profile fixes 2708-6; US Core's pulse oximetry profile wants 59408-5 beside it.
    loinc: &[
        ("2708-6", "Oxygen saturation in Arterial blood"),
        ("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),
    ],
    category: Category::VitalSigns,
    profile: Some("http://hl7.org/fhir/StructureDefinition/oxygensat"),
};
const CGM_GLUCOSE: Measured = Measured {
    loinc: &[("99504-3", "Glucose [Mass/volume] in Interstitial fluid")],
    category: Category::Laboratory,
    profile: None,
};

const PER_MINUTE: Unit = Unit { code: "/min", display: "beats/minute" };
const MM_HG: Unit = Unit { code: "mm[Hg]", display: "mmHg" };
const KPA: Unit = Unit { code: "kPa", display: "kPa" };
const CELSIUS: Unit = Unit { code: "Cel", display: "C" };
const FAHRENHEIT: Unit = Unit { code: "[degF]", display: "F" };
const KG: Unit = Unit { code: "kg", display: "kg" };
const POUND: Unit = Unit { code: "[lb_av]", display: "lb" };
const CM: Unit = Unit { code: "cm", display: "cm" };
const INCH: Unit = Unit { code: "[in_i]", display: "in" };
const KG_PER_M2: Unit = Unit { code: "kg/m2", display: "kg/m2" };
const PERCENT: Unit = Unit { code: "%", display: "%" };
const MG_PER_DL: Unit = Unit { code: "mg/dL", display: "mg/dL" };
const MMOL_PER_L: Unit = Unit { code: "mmol/L", display: "mmol/L" };

fn blood_pressure(
    measurement: &BloodPressureMeasurement,
    context: &ObservationContext,
    when: OffsetDateTime,
) -> Vec<String> {
    let unit = match measurement.unit {
        PressureUnit::MmHg => &MM_HG,
        PressureUnit::KPa => &KPA,
    };
    let mut components = vec![
        component(SYSTOLIC, measurement.systolic.value(), unit),
        component(DIASTOLIC, measurement.diastolic.value(), unit),
    ];
    // NaN is how a cuff says it does not compute the mean: nothing was measured, so nothing
    // is reported (the other specials are about a value that was).
    let mean = measurement.mean_arterial_pressure.value();
    if mean != Medfloat::NaN {
        components.push(component(MEAN_ARTERIAL, mean, unit));
    }
    let mut panel = base(context, when, &BLOOD_PRESSURE);
    panel.raw("component", &array(components));
    let mut found = vec![panel.finish()];
    if let Some(pulse) = measurement.pulse_rate {
        found.push(quantity(context, when, &HEART_RATE, pulse.value(), &PER_MINUTE));
    }
    found
}

fn weight(
    measurement: &WeightMeasurement,
    context: &ObservationContext,
    when: OffsetDateTime,
) -> Vec<String> {
    let (mass, length) = match measurement.units {
        WeightUnits::Si => (&KG, &CM),
        WeightUnits::Imperial => (&POUND, &INCH),
    };
    // 0xFFFF is the scale saying the measurement failed: reported as an error, not a mass.
    let weight = measurement.weight().map(Medfloat::Number).unwrap_or(Medfloat::NRes);
    let mut found = vec![quantity(context, when, &BODY_WEIGHT, weight, mass)];
    if let Some(height) = measurement.height() {
        // Metres to centimetres, the vital-signs unit: the point moves, the digits stay.
        let height = match measurement.units {
            WeightUnits::Si => height.times_power_of_ten(2),
            WeightUnits::Imperial => Some(height),
        };
        let value = height.map(Medfloat::Number).unwrap_or(Medfloat::NRes);
        found.push(quantity(context, when, &BODY_HEIGHT, value, length));
    }
    if let Some(bmi) = measurement.bmi() {
        found.push(quantity(context, when, &BMI, Medfloat::Number(bmi), &KG_PER_M2));
    }
    found
}

/// Type nibble values (GATT Glucose Service): 10 is the meter's control solution.
const CONTROL_SOLUTION: u8 = 10;
/// Type nibble values for plasma samples (capillary, venous, arterial, undetermined).
const PLASMA_TYPES: [u8; 4] = [2, 4, 6, 8];
/// Type nibble value for interstitial fluid.
const INTERSTITIAL_FLUID: u8 = 9;

fn glucose(measurement: &GlucoseMeasurement, context: &ObservationContext) -> Option<String> {
    let concentration = measurement.concentration?;
    if concentration.glucose_type == CONTROL_SOLUTION {
        return None; // a check of the meter, not a reading of the patient
    }
    let sample = concentration.glucose_type;
    // kg/L × 10^5 = mg/dL and mol/L × 10^3 = mmol/L: the units FHIR readers chart.
    let (unit, shift, loinc): (&Unit, i8, &'static [(&'static str, &'static str)]) =
        match (concentration.unit, sample) {
            (ConcentrationUnit::KgPerL, INTERSTITIAL_FLUID) => (&MG_PER_DL, 5, CGM_GLUCOSE.loinc),
            (ConcentrationUnit::KgPerL, s) if PLASMA_TYPES.contains(&s) => {
                (&MG_PER_DL, 5, &[("2345-7", "Glucose [Mass/volume] in Serum or Plasma")])
            }
            (ConcentrationUnit::KgPerL, _) => {
                (&MG_PER_DL, 5, &[("2339-0", "Glucose [Mass/volume] in Blood")])
            }
            (ConcentrationUnit::MolPerL, INTERSTITIAL_FLUID) => {
                (&MMOL_PER_L, 3, &[("105272-9", "Glucose [Moles/volume] in Interstitial fluid")])
            }
            (ConcentrationUnit::MolPerL, s) if PLASMA_TYPES.contains(&s) => {
                (&MMOL_PER_L, 3, &[("14749-6", "Glucose [Moles/volume] in Serum or Plasma")])
            }
            (ConcentrationUnit::MolPerL, _) => {
                (&MMOL_PER_L, 3, &[("15074-8", "Glucose [Moles/volume] in Blood")])
            }
        };
    let value = match concentration.value.value() {
        Medfloat::Number(decimal) => {
            decimal.times_power_of_ten(shift).map(Medfloat::Number).unwrap_or(Medfloat::NRes)
        }
        special => special,
    };
    let offset = Duration::minutes(i64::from(measurement.time_offset_minutes.unwrap_or(0)));
    let when = device_time(measurement.base_time, context)
        .map(|base| base + offset)
        .unwrap_or(context.received_at);
    let measured = Measured { loinc, category: Category::Laboratory, profile: None };
    Some(quantity(context, when, &measured, value, unit))
}

fn oximetry(reading: &Spo2Pr, context: &ObservationContext, when: OffsetDateTime) -> Vec<String> {
    vec![
        quantity(context, when, &OXYGEN_SATURATION, reading.spo2.value(), &PERCENT),
        quantity(context, when, &HEART_RATE, reading.pulse_rate.value(), &PER_MINUTE),
    ]
}

/// An Observation with one quantity (or the reason it has none).
fn quantity(
    context: &ObservationContext,
    when: OffsetDateTime,
    measured: &Measured,
    value: Medfloat,
    unit: &Unit,
) -> String {
    let mut observation = base(context, when, measured);
    put_value(&mut observation, value, unit);
    observation.finish()
}

fn component(loinc: &[(&str, &str)], value: Medfloat, unit: &Unit) -> String {
    let mut component = Object::new();
    component.raw("code", &codeable(LOINC, loinc));
    put_value(&mut component, value, unit);
    component.finish()
}

/// What every Observation here has: status, category, code, subject, time and device.
fn base(context: &ObservationContext, when: OffsetDateTime, measured: &Measured) -> Object {
    let mut observation = Object::new();
    observation.string("resourceType", "Observation");
    if let Some(profile) = measured.profile {
        let mut meta = Object::new();
        meta.raw("profile", &array([crate::json::string(profile)]));
        observation.raw("meta", &meta.finish());
    }
    observation.string("status", "final");
    let category = match measured.category {
        Category::VitalSigns => ("vital-signs", "Vital Signs"),
        Category::Laboratory => ("laboratory", "Laboratory"),
    };
    observation.raw("category", &array([codeable(OBSERVATION_CATEGORY, &[category])]));
    observation.raw("code", &codeable(LOINC, measured.loinc));
    observation.raw("subject", &reference(&context.subject));
    observation.string("effectiveDateTime", &fhir_date_time(when));
    if let Some(device) = &context.device {
        observation.raw("device", &reference(device));
    }
    observation
}

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const DATA_ABSENT_REASON: &str = "http://terminology.hl7.org/CodeSystem/data-absent-reason";

/// `valueQuantity`, or for a special value the `dataAbsentReason` the PHD IG maps it to.
fn put_value(object: &mut Object, value: Medfloat, unit: &Unit) {
    let absent = match value {
        Medfloat::Number(decimal) => {
            let mut quantity = Object::new();
            quantity.decimal("value", decimal);
            quantity.string("unit", unit.display);
            quantity.string("system", UCUM);
            quantity.string("code", unit.code);
            object.raw("valueQuantity", &quantity.finish());
            return;
        }
        Medfloat::NaN => ("not-a-number", "Not a Number (NaN)"),
        Medfloat::PositiveInfinity => ("positive-infinity", "Positive Infinity (PINF)"),
        Medfloat::NegativeInfinity => ("negative-infinity", "Negative Infinity (NINF)"),
        // Not at this resolution, reserved, or a failed measurement: the device erred.
        Medfloat::NRes | Medfloat::Reserved => ("error", "Error"),
    };
    object.raw("dataAbsentReason", &codeable(DATA_ABSENT_REASON, &[absent]));
}

fn codeable(system: &str, codes: &[(&str, &str)]) -> String {
    let codings = codes.iter().map(|(code, display)| {
        let mut coding = Object::new();
        coding.string("system", system).string("code", code).string("display", display);
        coding.finish()
    });
    let mut concept = Object::new();
    concept.raw("coding", &array(codings));
    concept.finish()
}

fn reference(target: &str) -> String {
    let mut reference = Object::new();
    reference.string("reference", target);
    reference.finish()
}

/// A device time stamp as an instant, in the zone of the device's clock; `None` when the
/// device does not know the date, or sent one the calendar does not have (30 February).
fn device_time(stamp: DateTime, context: &ObservationContext) -> Option<OffsetDateTime> {
    if stamp.year() == 0 || stamp.month() == 0 || stamp.day() == 0 {
        return None;
    }
    let month = Month::try_from(stamp.month()).ok()?;
    let date = Date::from_calendar_date(i32::from(stamp.year()), month, stamp.day()).ok()?;
    let time = Time::from_hms(stamp.hours(), stamp.minutes(), stamp.seconds()).ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_offset(context.device_clock_offset))
}

/// FHIR `dateTime` to the second, with its offset (`Z` for UTC).
pub fn fhir_date_time(at: OffsetDateTime) -> String {
    let offset = at.offset();
    let zone = if offset.is_utc() {
        "Z".to_owned()
    } else {
        let (hours, minutes, _) = offset.as_hms();
        let sign = if offset.is_negative() { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", hours.unsigned_abs(), minutes.unsigned_abs())
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}{zone}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use time::{OffsetDateTime, UtcOffset};

    use super::{ObservationContext, observations};
    use crate::{Characteristic, decode};

    fn context() -> ObservationContext {
        ObservationContext {
            subject: "Patient/p1".to_owned(),
            device: Some("Device/cuff-1".to_owned()),
            received_at: OffsetDateTime::from_unix_timestamp(1_733_572_800).unwrap(),
            device_clock_offset: UtcOffset::from_hms(1, 0, 0).unwrap(),
            cgm_session_start: None,
        }
    }

    fn mapped(characteristic: Characteristic, payload: &[u8]) -> Vec<serde_json::Value> {
        let reading = decode(characteristic, payload).unwrap();
        observations(&reading, &context())
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect()
    }

    #[test]
    fn a_blood_pressure_keeps_its_exact_values_and_its_pulse_becomes_a_heart_rate() {
        // 120/80 mmHg, MAP 93.3 (exponent -1), 2024-03-05 07:30:00, pulse 64.
        let payload =
            [0x06, 0x78, 0x00, 0x50, 0x00, 0xA5, 0xF3, 0xE8, 0x07, 3, 5, 7, 30, 0, 0x40, 0x00];
        let found = mapped(Characteristic::BloodPressureMeasurement, &payload);
        assert_eq!(found.len(), 2);
        let panel = &found[0];
        assert_eq!(panel["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(panel["effectiveDateTime"], "2024-03-05T07:30:00+01:00");
        assert_eq!(panel["device"]["reference"], "Device/cuff-1");
        let components = panel["component"].as_array().unwrap();
        let text: Vec<String> =
            components.iter().map(|c| c["valueQuantity"]["value"].to_string()).collect();
        assert_eq!(text, ["120", "80", "93.3"]);
        assert!(components.iter().all(|c| c["valueQuantity"]["code"] == "mm[Hg]"));
        assert_eq!(found[1]["code"]["coding"][0]["code"], "8867-4");
        assert_eq!(found[1]["valueQuantity"]["value"], 64);
    }

    #[test]
    fn a_special_value_is_a_data_absent_reason_not_a_number() {
        // Heart rate from an oximeter spot check whose SpO2 is +INF, pulse NaN.
        let found =
            mapped(Characteristic::PlxSpotCheckMeasurement, &[0x00, 0xFE, 0x07, 0xFF, 0x07]);
        assert_eq!(found[0]["dataAbsentReason"]["coding"][0]["code"], "positive-infinity");
        assert!(found[0].get("valueQuantity").is_none());
        assert_eq!(found[1]["dataAbsentReason"]["coding"][0]["code"], "not-a-number");
        // No time stamp: the moment the gateway received it.
        assert_eq!(found[0]["effectiveDateTime"], "2024-12-07T12:00:00Z");
    }

    #[test]
    fn glucose_in_kg_per_litre_becomes_mg_per_dl_by_moving_the_point() {
        // Sequence 1, 2024-01-02 08:00:00, offset +5 min, 0.00095 kg/L (95 × 10^-5),
        // capillary whole blood at the finger.
        let payload = [0x03, 0x01, 0x00, 0xE8, 0x07, 1, 2, 8, 0, 0, 0x05, 0x00, 0x5F, 0xB0, 0x11];
        let found = mapped(Characteristic::GlucoseMeasurement, &payload);
        assert_eq!(found[0]["valueQuantity"]["value"].to_string(), "95");
        assert_eq!(found[0]["valueQuantity"]["code"], "mg/dL");
        assert_eq!(found[0]["code"]["coding"][0]["code"], "2339-0");
        assert_eq!(found[0]["effectiveDateTime"], "2024-01-02T08:05:00+01:00");
    }

    #[test]
    fn a_control_solution_reading_is_not_the_patients() {
        let payload = [0x02, 0x01, 0x00, 0xE8, 0x07, 1, 2, 8, 0, 0, 0x5F, 0xB0, 0x1A];
        assert!(mapped(Characteristic::GlucoseMeasurement, &payload).is_empty());
    }

    #[test]
    fn a_failed_weighing_is_an_error_and_height_moves_to_centimetres() {
        // SI, BMI and height present: weight 0xFFFF (unsuccessful), BMI 24.5, height 1.805 m.
        let payload = [0x08, 0xFF, 0xFF, 0xF5, 0x00, 0x0D, 0x07];
        let found = mapped(Characteristic::WeightMeasurement, &payload);
        assert_eq!(found[0]["dataAbsentReason"]["coding"][0]["code"], "error");
        assert_eq!(found[1]["valueQuantity"]["value"].to_string(), "180.5");
        assert_eq!(found[1]["valueQuantity"]["code"], "cm");
        assert_eq!(found[2]["valueQuantity"]["value"].to_string(), "24.5");
    }

    #[test]
    fn cgm_records_count_from_the_session_start_when_it_is_known() {
        // Two records, at 5 and 10 minutes into the session.
        let record = |offset: u8| [0x06, 0x00, 0x64, 0x00, offset, 0x00];
        let payload = [record(5), record(10)].concat();
        let reading = decode(Characteristic::CgmMeasurement, &payload).unwrap();
        let times = |context: &ObservationContext| -> Vec<String> {
            observations(&reading, context)
                .iter()
                .map(|text| serde_json::from_str::<serde_json::Value>(text).unwrap())
                .map(|o| o["effectiveDateTime"].as_str().unwrap().to_owned())
                .collect()
        };
        // Unknown start: the newest as received (12:00), the other five minutes before.
        assert_eq!(times(&context()), ["2024-12-07T11:55:00Z", "2024-12-07T12:00:00Z"]);
        let started = OffsetDateTime::from_unix_timestamp(1_733_565_600).unwrap(); // 10:00
        let known = ObservationContext { cgm_session_start: Some(started), ..context() };
        assert_eq!(times(&known), ["2024-12-07T10:05:00Z", "2024-12-07T10:10:00Z"]);
    }
}
