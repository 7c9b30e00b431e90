//! Medrix health records, as pure functions: the record model (a space with one encrypted
//! room per data class, entries holding FHIR R4 resources), consent contracts and the one
//! function that evaluates them, access requests, break-glass, and FHIR R4 in and out
//! (routing to classes, clinical time, collection Bundles, `Consent`).
//!
//! No I/O, no clock, no randomness: moments and identifiers are parameters, so the server,
//! the clients and the audit verifier reach the same decision from the same inputs. JSON is
//! parsed once at the edge into typed values; errors say which field is at fault and whether
//! its shape or its value is wrong. The normative text is `spec/records.md`.

pub mod audit_reports;
pub mod break_glass;
pub mod class;
pub mod entry;
pub mod error;
pub mod evaluate;
pub mod fhir;
pub mod grant;
pub mod ids;
mod json;
pub mod period;
pub mod purpose;
pub mod read_log;
pub mod record;
pub mod request;
mod terms;
pub mod vectors;

pub use break_glass::{
    BREAK_GLASS_KEY, BreakGlassError, BreakGlassWindow, break_glass_grant, break_glass_window,
};
pub use class::DataClass;
pub use entry::{ENTRY_EVENT_TYPE, Entry, Source, SourceKind};
pub use error::Error;
pub use evaluate::{Action, Decision, Denial, covering, evaluate, expiry_at};
pub use grant::{
    BreakGlassOrigin, GRANT_EVENT_TYPE, Grant, Grantee, Mode, Status, USER_STATE_KEY_PREFIX,
};
pub use ids::{ContractId, EventId, RoomId, ServerName, UserId};
pub use json::MAX_SAFE_INTEGER;
pub use period::{DataPeriod, Validity};
pub use purpose::{PURPOSE_SYSTEM, Purpose};
pub use read_log::{
    CHECKPOINT_EVENT_TYPE, ChainHead, DELEGATE_EVENT_TYPE, LogReader, ReadBasis, ReadEntry,
    ReadLogError, ReadPath, verify_chain,
};
pub use record::{RECORD_EVENT_TYPE, RECORD_STATE_KEY, RecordRoom, RecordSpace};
pub use request::{AccessRequest, REQUEST_KEY};
