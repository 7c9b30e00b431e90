//! Purposes of use: the HL7 v3 PurposeOfUse codes (the `PurposeOfUse` branch of the code
//! system `v3-ActReason`, value set `v3-PurposeOfUse`, the binding of FHIR R4
//! `Consent.provision.purpose`), with their display names and hierarchy as the FHIR R4
//! package (4.0.1, v3-ActReason 2018-08-12) ships them.

use std::fmt;

use serde::{Serialize, Serializer};

/// The code system of every purpose.
pub const PURPOSE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Why a grantee may use the data: one HL7 v3 PurposeOfUse code. Narrower codes sit under
/// broader ones (`BTG` under `ETREAT` under `TREAT`); see [`Purpose::is_a`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Purpose {
    /// HMARKT: healthcare marketing.
    HealthcareMarketing,
    /// HOPERAT: healthcare operations.
    HealthcareOperations,
    /// CAREMGT: care management.
    CareManagement,
    /// DONAT: donation.
    Donation,
    /// FRAUD: fraud.
    Fraud,
    /// GOV: government.
    Government,
    /// HACCRED: health accreditation.
    HealthAccreditation,
    /// HCOMPL: health compliance.
    HealthCompliance,
    /// HDECD: decedent.
    Decedent,
    /// HDIRECT: directory.
    Directory,
    /// HDM: healthcare delivery management.
    HealthcareDeliveryManagement,
    /// HLEGAL: legal.
    Legal,
    /// HOUTCOMS: health outcome measure.
    HealthOutcomeMeasure,
    /// HPRGRP: health program reporting.
    HealthProgramReporting,
    /// HQUALIMP: health quality improvement.
    HealthQualityImprovement,
    /// HSYSADMIN: health system administration.
    HealthSystemAdministration,
    /// LABELING: labeling.
    Labeling,
    /// METAMGT: metadata management.
    MetadataManagement,
    /// MEMADMIN: member administration.
    MemberAdministration,
    /// MILCDM: military command.
    MilitaryCommand,
    /// PATADMIN: patient administration.
    PatientAdministration,
    /// PATSFTY: patient safety.
    PatientSafety,
    /// PERFMSR: performance measure.
    PerformanceMeasure,
    /// RECORDMGT: records management.
    RecordsManagement,
    /// SYSDEV: system development.
    SystemDevelopment,
    /// HTEST: test health data.
    TestHealthData,
    /// TRAIN: training.
    Training,
    /// HPAYMT: healthcare payment.
    HealthcarePayment,
    /// CLMATTCH: claim attachment.
    ClaimAttachment,
    /// COVAUTH: coverage authorization.
    CoverageAuthorization,
    /// COVERAGE: coverage under policy or program.
    Coverage,
    /// ELIGDTRM: eligibility determination.
    EligibilityDetermination,
    /// ELIGVER: eligibility verification.
    EligibilityVerification,
    /// ENROLLM: enrollment.
    Enrollment,
    /// MILDCRG: military discharge.
    MilitaryDischarge,
    /// REMITADV: remittance advice.
    RemittanceAdvice,
    /// HRESCH: healthcare research.
    HealthcareResearch,
    /// BIORCH: biomedical research.
    BiomedicalResearch,
    /// CLINTRCH: clinical trial research.
    ClinicalTrialResearch,
    /// CLINTRCHNPC: clinical trial research without patient care.
    ClinicalTrialResearchWithoutPatientCare,
    /// CLINTRCHPC: clinical trial research with patient care.
    ClinicalTrialResearchWithPatientCare,
    /// PRECLINTRCH: preclinical trial research.
    PreclinicalTrialResearch,
    /// DSRCH: disease specific healthcare research.
    DiseaseSpecificResearch,
    /// POARCH: population origins or ancestry healthcare research.
    PopulationOriginsResearch,
    /// TRANSRCH: translational healthcare research.
    TranslationalHealthcareResearch,
    /// PATRQT: patient requested.
    PatientRequested,
    /// FAMRQT: family requested.
    FamilyRequested,
    /// PWATRNY: power of attorney.
    PowerOfAttorney,
    /// SUPNWK: support network.
    SupportNetwork,
    /// PUBHLTH: public health.
    PublicHealth,
    /// DISASTER: disaster.
    Disaster,
    /// THREAT: threat.
    Threat,
    /// TREAT: treatment.
    Treatment,
    /// CLINTRL: clinical trial.
    ClinicalTrial,
    /// COC: coordination of care.
    CoordinationOfCare,
    /// ETREAT: Emergency Treatment.
    EmergencyTreatment,
    /// BTG: break the glass.
    BreakTheGlass,
    /// ERTREAT: emergency room treatment.
    EmergencyRoomTreatment,
    /// POPHLTH: population health.
    PopulationHealth,
}

/// (purpose, code, display, broader purpose), in declaration order of [`Purpose`].
const TABLE: [(Purpose, &str, &str, Option<Purpose>); 59] = [
    (Purpose::HealthcareMarketing, "HMARKT", "healthcare marketing", None),
    (Purpose::HealthcareOperations, "HOPERAT", "healthcare operations", None),
    (Purpose::CareManagement, "CAREMGT", "care management", Some(Purpose::HealthcareOperations)),
    (Purpose::Donation, "DONAT", "donation", Some(Purpose::HealthcareOperations)),
    (Purpose::Fraud, "FRAUD", "fraud", Some(Purpose::HealthcareOperations)),
    (Purpose::Government, "GOV", "government", Some(Purpose::HealthcareOperations)),
    (
        Purpose::HealthAccreditation,
        "HACCRED",
        "health accreditation",
        Some(Purpose::HealthcareOperations),
    ),
    (Purpose::HealthCompliance, "HCOMPL", "health compliance", Some(Purpose::HealthcareOperations)),
    (Purpose::Decedent, "HDECD", "decedent", Some(Purpose::HealthcareOperations)),
    (Purpose::Directory, "HDIRECT", "directory", Some(Purpose::HealthcareOperations)),
    (
        Purpose::HealthcareDeliveryManagement,
        "HDM",
        "healthcare delivery management",
        Some(Purpose::HealthcareOperations),
    ),
    (Purpose::Legal, "HLEGAL", "legal", Some(Purpose::HealthcareOperations)),
    (
        Purpose::HealthOutcomeMeasure,
        "HOUTCOMS",
        "health outcome measure",
        Some(Purpose::HealthcareOperations),
    ),
    (
        Purpose::HealthProgramReporting,
        "HPRGRP",
        "health program reporting",
        Some(Purpose::HealthcareOperations),
    ),
    (
        Purpose::HealthQualityImprovement,
        "HQUALIMP",
        "health quality improvement",
        Some(Purpose::HealthcareOperations),
    ),
    (
        Purpose::HealthSystemAdministration,
        "HSYSADMIN",
        "health system administration",
        Some(Purpose::HealthcareOperations),
    ),
    (Purpose::Labeling, "LABELING", "labeling", Some(Purpose::HealthSystemAdministration)),
    (
        Purpose::MetadataManagement,
        "METAMGT",
        "metadata management",
        Some(Purpose::HealthSystemAdministration),
    ),
    (
        Purpose::MemberAdministration,
        "MEMADMIN",
        "member administration",
        Some(Purpose::HealthcareOperations),
    ),
    (Purpose::MilitaryCommand, "MILCDM", "military command", Some(Purpose::HealthcareOperations)),
    (
        Purpose::PatientAdministration,
        "PATADMIN",
        "patient administration",
        Some(Purpose::HealthcareOperations),
    ),
    (Purpose::PatientSafety, "PATSFTY", "patient safety", Some(Purpose::HealthcareOperations)),
    (
        Purpose::PerformanceMeasure,
        "PERFMSR",
        "performance measure",
        Some(Purpose::HealthcareOperations),
    ),
    (
        Purpose::RecordsManagement,
        "RECORDMGT",
        "records management",
        Some(Purpose::HealthcareOperations),
    ),
    (
        Purpose::SystemDevelopment,
        "SYSDEV",
        "system development",
        Some(Purpose::HealthcareOperations),
    ),
    (Purpose::TestHealthData, "HTEST", "test health data", Some(Purpose::SystemDevelopment)),
    (Purpose::Training, "TRAIN", "training", Some(Purpose::HealthcareOperations)),
    (Purpose::HealthcarePayment, "HPAYMT", "healthcare payment", None),
    (Purpose::ClaimAttachment, "CLMATTCH", "claim attachment", Some(Purpose::HealthcarePayment)),
    (
        Purpose::CoverageAuthorization,
        "COVAUTH",
        "coverage authorization",
        Some(Purpose::HealthcarePayment),
    ),
    (
        Purpose::Coverage,
        "COVERAGE",
        "coverage under policy or program",
        Some(Purpose::HealthcarePayment),
    ),
    (
        Purpose::EligibilityDetermination,
        "ELIGDTRM",
        "eligibility determination",
        Some(Purpose::Coverage),
    ),
    (
        Purpose::EligibilityVerification,
        "ELIGVER",
        "eligibility verification",
        Some(Purpose::Coverage),
    ),
    (Purpose::Enrollment, "ENROLLM", "enrollment", Some(Purpose::Coverage)),
    (Purpose::MilitaryDischarge, "MILDCRG", "military discharge", Some(Purpose::Coverage)),
    (Purpose::RemittanceAdvice, "REMITADV", "remittance advice", Some(Purpose::HealthcarePayment)),
    (Purpose::HealthcareResearch, "HRESCH", "healthcare research", None),
    (
        Purpose::BiomedicalResearch,
        "BIORCH",
        "biomedical research",
        Some(Purpose::HealthcareResearch),
    ),
    (
        Purpose::ClinicalTrialResearch,
        "CLINTRCH",
        "clinical trial research",
        Some(Purpose::HealthcareResearch),
    ),
    (
        Purpose::ClinicalTrialResearchWithoutPatientCare,
        "CLINTRCHNPC",
        "clinical trial research without patient care",
        Some(Purpose::ClinicalTrialResearch),
    ),
    (
        Purpose::ClinicalTrialResearchWithPatientCare,
        "CLINTRCHPC",
        "clinical trial research with patient care",
        Some(Purpose::ClinicalTrialResearch),
    ),
    (
        Purpose::PreclinicalTrialResearch,
        "PRECLINTRCH",
        "preclinical trial research",
        Some(Purpose::ClinicalTrialResearch),
    ),
    (
        Purpose::DiseaseSpecificResearch,
        "DSRCH",
        "disease specific healthcare research",
        Some(Purpose::HealthcareResearch),
    ),
    (
        Purpose::PopulationOriginsResearch,
        "POARCH",
        "population origins or ancestry healthcare research",
        Some(Purpose::HealthcareResearch),
    ),
    (
        Purpose::TranslationalHealthcareResearch,
        "TRANSRCH",
        "translational healthcare research",
        Some(Purpose::HealthcareResearch),
    ),
    (Purpose::PatientRequested, "PATRQT", "patient requested", None),
    (Purpose::FamilyRequested, "FAMRQT", "family requested", Some(Purpose::PatientRequested)),
    (Purpose::PowerOfAttorney, "PWATRNY", "power of attorney", Some(Purpose::PatientRequested)),
    (Purpose::SupportNetwork, "SUPNWK", "support network", Some(Purpose::PatientRequested)),
    (Purpose::PublicHealth, "PUBHLTH", "public health", None),
    (Purpose::Disaster, "DISASTER", "disaster", Some(Purpose::PublicHealth)),
    (Purpose::Threat, "THREAT", "threat", Some(Purpose::PublicHealth)),
    (Purpose::Treatment, "TREAT", "treatment", None),
    (Purpose::ClinicalTrial, "CLINTRL", "clinical trial", Some(Purpose::Treatment)),
    (Purpose::CoordinationOfCare, "COC", "coordination of care", Some(Purpose::Treatment)),
    (Purpose::EmergencyTreatment, "ETREAT", "Emergency Treatment", Some(Purpose::Treatment)),
    (Purpose::BreakTheGlass, "BTG", "break the glass", Some(Purpose::EmergencyTreatment)),
    (
        Purpose::EmergencyRoomTreatment,
        "ERTREAT",
        "emergency room treatment",
        Some(Purpose::EmergencyTreatment),
    ),
    (Purpose::PopulationHealth, "POPHLTH", "population health", Some(Purpose::Treatment)),
];

impl Purpose {
    /// The v3 code (`TREAT`, `ETREAT`, ...).
    pub fn code(self) -> &'static str {
        TABLE[self as usize].1
    }

    /// The display name HL7 gives the code.
    pub fn display(self) -> &'static str {
        TABLE[self as usize].2
    }

    /// The broader purpose this one specialises, if any.
    pub fn parent(self) -> Option<Purpose> {
        TABLE[self as usize].3
    }

    /// The purpose a code names, if it is a PurposeOfUse code (exact, case-sensitive).
    pub fn parse(code: &str) -> Option<Purpose> {
        TABLE.iter().find(|row| row.1 == code).map(|row| row.0)
    }

    /// Whether this purpose is `ancestor` or falls under it (`BTG` is an `ETREAT` and a
    /// `TREAT`).
    pub fn is_a(self, ancestor: Purpose) -> bool {
        let mut purpose = Some(self);
        while let Some(current) = purpose {
            if current == ancestor {
                return true;
            }
            purpose = current.parent();
        }
        false
    }

    /// Every purpose, in the order of the code system.
    pub fn all() -> impl Iterator<Item = Purpose> {
        TABLE.iter().map(|row| row.0)
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Purpose {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_declaration_order_and_codes_are_unique() {
        for (index, row) in TABLE.iter().enumerate() {
            assert_eq!(row.0 as usize, index, "{}", row.1);
            assert_eq!(Purpose::parse(row.1), Some(row.0));
        }
    }

    #[test]
    fn the_usual_purposes_are_there_with_hl7_displays() {
        assert_eq!(Purpose::parse("TREAT"), Some(Purpose::Treatment));
        assert_eq!(Purpose::EmergencyTreatment.code(), "ETREAT");
        assert_eq!(Purpose::EmergencyTreatment.display(), "Emergency Treatment");
        for code in ["CAREMGT", "HRESCH", "PATRQT", "HPAYMT", "HOPERAT", "PUBHLTH", "HMARKT", "BTG"]
        {
            assert!(Purpose::parse(code).is_some(), "{code}");
        }
        assert_eq!(Purpose::parse("treat"), None);
        assert_eq!(Purpose::parse("PurposeOfUse"), None, "the abstract head is not a purpose");
    }

    #[test]
    fn break_the_glass_is_emergency_treatment_is_treatment() {
        assert!(Purpose::BreakTheGlass.is_a(Purpose::EmergencyTreatment));
        assert!(Purpose::BreakTheGlass.is_a(Purpose::Treatment));
        assert!(!Purpose::Treatment.is_a(Purpose::EmergencyTreatment));
        assert!(Purpose::CareManagement.is_a(Purpose::HealthcareOperations));
    }
}
