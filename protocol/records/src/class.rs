//! The data classes of a record: one encrypted room each, the unit a contract grants.

use std::fmt;

use serde::{Serialize, Serializer};

/// A kind of health data, with one record room per class. The classes follow the FHIR
/// categories a personal record needs (research/health-anchors.md §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DataClass {
    /// Vital signs and device readings (blood pressure, heart rate, weight, activity).
    VitalSigns,
    /// Laboratory results.
    Laboratory,
    /// The problem list: diagnoses and conditions.
    Conditions,
    /// Medications taken and prescribed.
    Medications,
    /// Allergies and intolerances.
    Allergies,
    /// Vaccinations.
    Immunizations,
    /// Procedures and surgery.
    Procedures,
    /// Documents: reports, scans, letters.
    Documents,
    /// Clinical and personal notes.
    Notes,
    /// Visits and consultations.
    Consultations,
}

impl DataClass {
    /// Every class, in the order of the specification.
    pub const ALL: [DataClass; 10] = [
        DataClass::VitalSigns,
        DataClass::Laboratory,
        DataClass::Conditions,
        DataClass::Medications,
        DataClass::Allergies,
        DataClass::Immunizations,
        DataClass::Procedures,
        DataClass::Documents,
        DataClass::Notes,
        DataClass::Consultations,
    ];

    /// The wire string (`vital-signs`, `laboratory`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DataClass::VitalSigns => "vital-signs",
            DataClass::Laboratory => "laboratory",
            DataClass::Conditions => "conditions",
            DataClass::Medications => "medications",
            DataClass::Allergies => "allergies",
            DataClass::Immunizations => "immunizations",
            DataClass::Procedures => "procedures",
            DataClass::Documents => "documents",
            DataClass::Notes => "notes",
            DataClass::Consultations => "consultations",
        }
    }

    /// The class a wire string names, if any (exact, case-sensitive).
    pub fn parse(wire: &str) -> Option<DataClass> {
        DataClass::ALL.into_iter().find(|class| class.as_str() == wire)
    }

    /// The name shown to people (and the `display` of its FHIR coding).
    pub fn display(self) -> &'static str {
        match self {
            DataClass::VitalSigns => "Vital signs",
            DataClass::Laboratory => "Laboratory",
            DataClass::Conditions => "Conditions",
            DataClass::Medications => "Medications",
            DataClass::Allergies => "Allergies",
            DataClass::Immunizations => "Immunizations",
            DataClass::Procedures => "Procedures",
            DataClass::Documents => "Documents",
            DataClass::Notes => "Notes",
            DataClass::Consultations => "Consultations",
        }
    }
}

impl fmt::Display for DataClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DataClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_parses_back_from_its_wire_string() {
        for class in DataClass::ALL {
            assert_eq!(DataClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(DataClass::parse("Vital-Signs"), None);
        assert_eq!(DataClass::parse("vitals"), None);
    }
}
