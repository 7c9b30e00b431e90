//! Access requests: a provider knocks on the record space (Matrix knocking, which standard
//! clients speak) with an `org.medrix.request` object in the knock's member content, naming
//! the terms it asks for. The patient approves (a contract with those terms, and invites) or
//! declines.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::class::DataClass;
use crate::error::Error;
use crate::grant::{Grant, Grantee, Mode, Status};
use crate::ids::{ContractId, UserId};
use crate::json::Object;
use crate::period::{DataPeriod, Validity};
use crate::purpose::Purpose;
use crate::terms::RawTerms;

/// The key of the request object in a knock's `m.room.member` content.
pub const REQUEST_KEY: &str = "org.medrix.request";

/// The terms a provider asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// Why they want the data.
    pub purpose: Purpose,
    /// Which classes (never empty).
    pub classes: BTreeSet<DataClass>,
    /// Which entries, by clinical time.
    pub data_period: DataPeriod,
    /// For how long.
    pub valid: Validity,
    /// Read, or read and contribute; `read` when the request does not say.
    pub mode: Mode,
}

impl AccessRequest {
    /// Parses the `org.medrix.request` object (not the whole member content), with the same
    /// shape and value rules as a contract's terms. `BTG` cannot be requested: break-glass has
    /// its own path.
    pub fn from_content(request: &Value) -> Result<AccessRequest, Error> {
        let object = Object::root(request, REQUEST_KEY)?;
        let raw = RawTerms::read(&object)?;
        let mode = object.optional_string("mode")?;
        let terms = raw.validate()?;
        let mode = match mode {
            None => Mode::Read,
            Some(wire) => Mode::parse(wire)
                .ok_or_else(|| Error::value("mode", "must be \"read\" or \"contribute\""))?,
        };
        if terms.purpose == Purpose::BreakTheGlass {
            return Err(Error::value("purpose", "BTG cannot be requested; invoke break-glass"));
        }
        Ok(AccessRequest {
            purpose: terms.purpose,
            classes: terms.classes,
            data_period: terms.data_period,
            valid: terms.valid,
            mode,
        })
    }

    /// Finds and parses the request in a knock's whole `m.room.member` content; `None` when
    /// the knock carries none (a plain knock).
    pub fn from_knock(member_content: &Value) -> Option<Result<AccessRequest, Error>> {
        member_content.get(REQUEST_KEY).map(AccessRequest::from_content)
    }

    /// The request object, as [`AccessRequest::from_content`] reads it back.
    pub fn to_content(&self) -> Value {
        json!({
            "purpose": self.purpose,
            "classes": self.classes,
            "data_period": {"start": self.data_period.start(), "end": self.data_period.end()},
            "valid": {"start": self.valid.start(), "end": self.valid.end()},
            "mode": self.mode.as_str(),
        })
    }

    /// The contract the patient grants by approving this request as asked: the requested
    /// terms, for the knocking user, active, with the contract ID and the text the patient's
    /// client supplies.
    pub fn approve(
        &self,
        requester: &UserId,
        contract_id: ContractId,
        text: &str,
    ) -> Result<Grant, Error> {
        let grant = Grant {
            contract_id,
            grantee: Grantee::User(requester.clone()),
            purpose: self.purpose,
            classes: self.classes.clone(),
            data_period: self.data_period,
            valid: self.valid,
            mode: self.mode,
            text: text.to_owned(),
            status: Status::Active,
            emergency_access_ms: None,
            break_glass: None,
            custodian: None,
        };
        grant.check()?;
        Ok(grant)
    }
}
