//! FHIR R4 in and out: dates, routing resources to classes, their clinical time, Bundles and
//! NDJSON, and contracts as `Consent`.

pub mod bundle;
pub mod clinical_time;
pub mod consent;
pub mod datetime;
pub mod route;

/// The base of the URIs Medrix defines for FHIR (code systems, identifier systems,
/// extensions), after the `org.medrix` namespace of its event types.
pub const MEDRIX_FHIR_BASE: &str = "https://medrix.org/fhir";
