//! The Medrix client library: a patient's or a provider's health record over matrix-sdk,
//! speaking the record model of `spec/records.md` with the pure logic of `medrix-records`
//! (routing, clinical time, contracts and their evaluation, Bundles, `Consent`).
//!
//! A [`MedrixClient`] is one device, kept in a [`Profile`] directory (the session and
//! matrix-sdk's SQLite stores), so every process that opens the profile is the same device
//! with the same keys. The record is created with standard Matrix calls: a space and one
//! encrypted room per class, with the server's contract executor invited; entries are
//! encrypted `org.medrix.entry` events; a grant is an `org.medrix.grant` state event and
//! invitations that hand over the rooms' keys (MSC4268); a revocation, the revoked contract
//! and kicks. A grantee reads a shared record after accepting the patient's invitations.

mod audit;
mod client;
mod custodian;
mod devices;
mod entries;
mod error;
mod grants;
mod key_scope;
mod keys;
mod profile;
mod record;
mod requests;

pub use audit::{Change, LoggedRead};
pub use client::{MedrixClient, Session};
pub use custodian::{KEY_RELEASE_NOTICE_KEY, KeyRelease};
pub use devices::{
    ALERT_KEY, DeviceCredentials, Reading, ReadingBody, RegisteredDevice, class_of_kind,
};
pub use entries::{
    AddedEntry, EntryList, ListedEntry, NewEntry, UnreadableEntry, describe, read_resources,
};
pub use error::{ClientError, Result};
pub use grants::{
    Access, Contract, EmergencyTerms, GrantTerms, Granted, Revoked, access_at, consent,
    grant_state_key, new_contract_id, terms_text,
};
pub use profile::Profile;
pub use record::{Record, executor_of};
pub use requests::{BrokenGlass, PendingRequest};
