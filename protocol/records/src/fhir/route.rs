//! Which class a FHIR R4 resource is filed into: by `resourceType`, and for `Observation`,
//! `DiagnosticReport` and `DocumentReference` by category. Resources that are not clinical
//! entries of a personal record (Patient, Practitioner, Consent, AuditEvent, ...) are not
//! routable; the caller files them elsewhere or asks the user.

use serde_json::Value;

use crate::class::DataClass;
use crate::error::Error;

/// The code system of `Observation.category`.
pub const OBSERVATION_CATEGORY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";

/// The code system of `DiagnosticReport.category` (HL7 v2 table 0074, diagnostic service
/// sections).
pub const DIAGNOSTIC_SERVICE_SECTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";

/// The US Core code system of `DocumentReference.category`, whose `clinical-note` marks notes.
pub const US_CORE_DOCUMENT_CATEGORY_SYSTEM: &str =
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";

/// The v2-0074 sections that are laboratory disciplines; a DiagnosticReport of any other
/// section (imaging, cardiology, ...) or of none is a document.
const LABORATORY_SECTIONS: [&str; 20] = [
    "LAB", "BG", "BLB", "CG", "CH", "CP", "GE", "HM", "IMM", "MB", "MCB", "MYC", "OSL", "PAR",
    "PAT", "SP", "SR", "TX", "URN", "VR",
];

/// The class a resource is filed into.
pub fn route(resource: &Value) -> Result<DataClass, Error> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::fhir("resource", "has no resourceType: it is not a FHIR resource"))?;
    let class = match resource_type {
        "Observation" => return route_observation(resource),
        "DiagnosticReport" => {
            let lab = categories(resource, DIAGNOSTIC_SERVICE_SECTION_SYSTEM)
                .any(|code| LABORATORY_SECTIONS.contains(&code));
            if lab { DataClass::Laboratory } else { DataClass::Documents }
        }
        "DocumentReference" => {
            let note = categories(resource, US_CORE_DOCUMENT_CATEGORY_SYSTEM)
                .any(|code| code == "clinical-note");
            if note { DataClass::Notes } else { DataClass::Documents }
        }
        "Condition" => DataClass::Conditions,
        "MedicationStatement"
        | "MedicationRequest"
        | "MedicationAdministration"
        | "MedicationDispense" => DataClass::Medications,
        "AllergyIntolerance" => DataClass::Allergies,
        "Immunization" => DataClass::Immunizations,
        "Procedure" => DataClass::Procedures,
        "Media" | "ImagingStudy" | "Composition" => DataClass::Documents,
        "Encounter" | "ClinicalImpression" | "Communication" => DataClass::Consultations,
        other => {
            return Err(Error::NotRoutable {
                resource_type: other.to_owned(),
                reason: "it is not a kind of entry a record keeps (see the routing table in \
                         spec/records.md)"
                    .to_owned(),
            });
        }
    };
    Ok(class)
}

/// An Observation goes by its first `observation-category` code that has a class: the
/// order of `category` is the author's, and the first is their main one.
fn route_observation(resource: &Value) -> Result<DataClass, Error> {
    categories(resource, OBSERVATION_CATEGORY_SYSTEM)
        .find_map(|code| match code {
            "vital-signs" | "activity" => Some(DataClass::VitalSigns),
            "laboratory" => Some(DataClass::Laboratory),
            "imaging" => Some(DataClass::Documents),
            "procedure" => Some(DataClass::Procedures),
            "exam" => Some(DataClass::Consultations),
            "social-history" | "survey" | "therapy" => Some(DataClass::Notes),
            _ => None,
        })
        .ok_or_else(|| Error::NotRoutable {
            resource_type: "Observation".to_owned(),
            reason: "it has no category of the observation-category code system, which tells \
                     vital signs from laboratory and the rest"
                .to_owned(),
        })
}

/// The codes of `category` (one CodeableConcept or a list of them) in `system`, in order.
fn categories<'a>(resource: &'a Value, system: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    let concepts: &[Value] = match resource.get("category") {
        Some(Value::Array(list)) => list,
        Some(single @ Value::Object(_)) => std::slice::from_ref(single),
        _ => &[],
    };
    concepts
        .iter()
        .filter_map(|concept| concept.get("coding").and_then(Value::as_array))
        .flatten()
        .filter(move |coding| coding.get("system").and_then(Value::as_str) == Some(system))
        .filter_map(|coding| coding.get("code").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn observation(category: &str) -> Value {
        json!({"resourceType": "Observation", "category": [{"coding": [
            {"system": OBSERVATION_CATEGORY_SYSTEM, "code": category}]}]})
    }

    #[test]
    fn observations_go_by_category() {
        assert_eq!(route(&observation("vital-signs")).unwrap(), DataClass::VitalSigns);
        assert_eq!(route(&observation("laboratory")).unwrap(), DataClass::Laboratory);
        let uncategorised = json!({"resourceType": "Observation"});
        assert!(matches!(route(&uncategorised), Err(Error::NotRoutable { .. })));
        let other_system = json!({"resourceType": "Observation", "category": [{"coding": [
            {"system": "http://example.org", "code": "vital-signs"}]}]});
        assert!(route(&other_system).is_err());
    }

    #[test]
    fn diagnostic_reports_of_a_lab_section_are_laboratory_the_rest_documents() {
        let lab = json!({"resourceType": "DiagnosticReport", "category": [{"coding": [
            {"system": DIAGNOSTIC_SERVICE_SECTION_SYSTEM, "code": "HM"}]}]});
        let radiology = json!({"resourceType": "DiagnosticReport", "category": [{"coding": [
            {"system": DIAGNOSTIC_SERVICE_SECTION_SYSTEM, "code": "RAD"}]}]});
        assert_eq!(route(&lab).unwrap(), DataClass::Laboratory);
        assert_eq!(route(&radiology).unwrap(), DataClass::Documents);
    }

    #[test]
    fn resources_that_are_not_entries_are_refused_by_name() {
        let err = route(&json!({"resourceType": "Patient"})).unwrap_err();
        assert!(err.to_string().starts_with("Patient cannot be filed"), "{err}");
        assert!(matches!(route(&json!({"id": "x"})), Err(Error::Fhir { .. })));
    }
}
