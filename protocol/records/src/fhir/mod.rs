//! FHIR R4 in and out: dates, routing resources to classes, their clinical time, Bundles and
//! NDJSON, and contracts as `Consent`. The URIs Medrix defines for FHIR (code systems,
//! identifier systems, extensions) live under `https://medrix.org/fhir/`, after the
//! `org.medrix` namespace of its event types.

pub mod bundle;
pub mod clinical_time;
pub mod consent;
pub mod datetime;
pub mod route;
