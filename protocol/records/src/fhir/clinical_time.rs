//! The clinical time of a resource: when what it records happened (the measurement was
//! taken, the condition began, the vaccine was given), as opposed to when it was uploaded.
//! Contracts' data periods are about this time.
//!
//! Each resource type has an ordered list of elements; the first that is present gives the
//! time (a Period gives its start). A present element that is not a valid FHIR date is an
//! error, never skipped, so a typo cannot move an entry into or out of a data period. A
//! resource with none of them (or of a type without a list) has no known clinical time.

use serde_json::Value;

use crate::error::Error;
use crate::fhir::datetime::parse_date_time;

/// The elements read for each resource type, in order. A dotted path reaches into an
/// element (`effectivePeriod.start`).
pub const CLINICAL_TIME_ELEMENTS: &[(&str, &[&str])] = &[
    ("Observation", &["effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"]),
    ("DiagnosticReport", &["effectiveDateTime", "effectivePeriod.start", "issued"]),
    ("Condition", &["onsetDateTime", "onsetPeriod.start", "recordedDate"]),
    ("AllergyIntolerance", &["onsetDateTime", "onsetPeriod.start", "recordedDate"]),
    ("MedicationStatement", &["effectiveDateTime", "effectivePeriod.start", "dateAsserted"]),
    ("MedicationRequest", &["authoredOn"]),
    ("MedicationAdministration", &["effectiveDateTime", "effectivePeriod.start"]),
    ("MedicationDispense", &["whenHandedOver", "whenPrepared"]),
    ("Immunization", &["occurrenceDateTime", "recorded"]),
    ("Procedure", &["performedDateTime", "performedPeriod.start"]),
    ("DocumentReference", &["context.period.start", "date"]),
    ("Media", &["createdDateTime", "createdPeriod.start", "issued"]),
    ("ImagingStudy", &["started"]),
    ("Composition", &["date"]),
    ("Encounter", &["period.start"]),
    ("ClinicalImpression", &["effectiveDateTime", "effectivePeriod.start", "date"]),
    ("Communication", &["sent", "received"]),
];

/// The clinical time of `resource` in ms since the epoch (see `datetime` for partial dates),
/// `Ok(None)` when it has none.
pub fn clinical_time_ms(resource: &Value) -> Result<Option<i64>, Error> {
    let resource_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let Some((_, elements)) = CLINICAL_TIME_ELEMENTS.iter().find(|(t, _)| *t == resource_type)
    else {
        return Ok(None);
    };
    for path in elements.iter() {
        let Some(value) = path.split('.').try_fold(resource, |node, key| node.get(key)) else {
            continue;
        };
        let location = format!("{resource_type}.{path}");
        let text = value
            .as_str()
            .ok_or_else(|| Error::fhir(&location, "must be a date or dateTime string"))?;
        let ms = parse_date_time(text).ok_or_else(|| {
            Error::fhir(&location, format!("`{text}` is not a FHIR R4 date or dateTime"))
        })?;
        return Ok(Some(ms));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_first_present_element_gives_the_time() {
        let both = json!({"resourceType": "Observation", "effectivePeriod": {"start": "1970-01-02"},
            "issued": "1970-01-01T00:00:00Z"});
        assert_eq!(clinical_time_ms(&both).unwrap(), Some(86_400_000));
        let issued_only = json!({"resourceType": "Observation", "issued": "1970-01-01T00:00:01Z"});
        assert_eq!(clinical_time_ms(&issued_only).unwrap(), Some(1000));
        let nested = json!({"resourceType": "DocumentReference",
            "context": {"period": {"start": "1970"}}, "date": "2024-01-01T00:00:00Z"});
        assert_eq!(clinical_time_ms(&nested).unwrap(), Some(0));
    }

    #[test]
    fn no_element_means_unknown_and_a_bad_one_is_an_error() {
        let none = json!({"resourceType": "Condition", "onsetString": "childhood"});
        assert_eq!(clinical_time_ms(&none).unwrap(), None);
        assert_eq!(clinical_time_ms(&json!({"resourceType": "Patient"})).unwrap(), None);
        let bad = json!({"resourceType": "Procedure", "performedDateTime": "yesterday"});
        let err = clinical_time_ms(&bad).unwrap_err();
        assert!(err.to_string().contains("Procedure.performedDateTime"), "{err}");
    }
}
