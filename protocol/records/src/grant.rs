//! The consent contract, `org.medrix.grant`: a state event in the record space whose state
//! key is the grantee. Parsed once at the edge into a typed [`Grant`]; every field the event
//! lacks or mistypes is a shape error, every rule it breaks a value error.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::class::DataClass;
use crate::error::Error;
use crate::ids::{ContractId, ServerName, UserId};
use crate::json::Object;
use crate::period::{DataPeriod, Validity};
use crate::purpose::Purpose;
use crate::terms::{RawTerms, Terms};

/// The event type of a consent contract (state event in the record space).
pub const GRANT_EVENT_TYPE: &str = "org.medrix.grant";

/// The longest break-glass access a standing emergency contract may give: 24 hours.
pub const MAX_EMERGENCY_ACCESS_MS: u64 = 24 * 60 * 60 * 1000;

/// What a contract lets its grantee do in the rooms of its classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mode {
    /// Be a member and read (decrypt) the entries the data period covers.
    Read,
    /// Everything `Read` allows, and add entries. Contributing implies reading: a member of an
    /// encrypted room receives the keys of what is sent while it is a member, so a write-only
    /// member could not be enforced.
    Contribute,
}

impl Mode {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Read => "read",
            Mode::Contribute => "contribute",
        }
    }

    /// The mode a wire string names.
    pub fn parse(wire: &str) -> Option<Mode> {
        [Mode::Read, Mode::Contribute].into_iter().find(|mode| mode.as_str() == wire)
    }
}

/// Where a contract is in its life. Only `Active` ever allows anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// In force during its validity.
    Active,
    /// Ended early by the patient.
    Revoked,
    /// Ended by the executor when its validity ran out.
    Expired,
}

impl Status {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Revoked => "revoked",
            Status::Expired => "expired",
        }
    }

    /// The status a wire string names.
    pub fn parse(wire: &str) -> Option<Status> {
        [Status::Active, Status::Revoked, Status::Expired]
            .into_iter()
            .find(|status| status.as_str() == wire)
    }
}

/// Who a contract is for; its state key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Grantee {
    /// A person (a clinician, a relative, a carer).
    User(UserId),
    /// An organisation's server: a standing emergency contract, which admits nobody by itself;
    /// a clinician of that server invokes it by break-glass (see `break_glass`).
    Server(ServerName),
}

impl Grantee {
    /// The grantee as written in `grantee` and the state key.
    pub fn as_str(&self) -> &str {
        match self {
            Grantee::User(user) => user.as_str(),
            Grantee::Server(server) => server.as_str(),
        }
    }
}

/// Where a break-glass grant comes from: the standing contract it was invoked under, and the
/// reason the clinician gave.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BreakGlassOrigin {
    /// The standing emergency contract's ID.
    pub standing_contract: ContractId,
    /// The clinician's stated reason, shown to the patient.
    pub reason: String,
}

/// A consent contract, typed. Built by [`Grant::from_event`] (which enforces every rule) or by
/// the functions that derive one (request approval, break-glass); [`Grant::check`] holds
/// any other construction to the same rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The contract's identifier, stable across status changes; logged with every access.
    pub contract_id: ContractId,
    /// Who the contract is for (also the state key).
    pub grantee: Grantee,
    /// Why the grantee may use the data.
    pub purpose: Purpose,
    /// The classes granted (never empty).
    pub classes: BTreeSet<DataClass>,
    /// Which entries, by clinical time.
    pub data_period: DataPeriod,
    /// When the contract is in force.
    pub valid: Validity,
    /// Read, or read and contribute.
    pub mode: Mode,
    /// The human-readable terms the patient agreed to.
    pub text: String,
    /// Active, revoked or expired.
    pub status: Status,
    /// For a standing emergency contract (a server grantee) only: how long one break-glass
    /// access lasts, 1 ms to 24 h.
    pub emergency_access_ms: Option<u64>,
    /// For a grant created by break-glass (purpose `BTG`) only: what it was invoked under.
    pub break_glass: Option<BreakGlassOrigin>,
    /// For a standing emergency contract only, when the patient opts in: the custodian, a
    /// user of the patient's server that holds the keys of the contract's classes (it may
    /// read them, as under a read-only contract of its own) so that a clinician who breaks
    /// the glass can decrypt them while the patient's devices are offline.
    pub custodian: Option<UserId>,
}

/// What precedes the grantee's user ID in a personal contract's state key.
pub const USER_STATE_KEY_PREFIX: &str = "user:";

impl Grant {
    /// Parses an `org.medrix.grant` event's content, given its state key.
    pub fn from_event(state_key: &str, content: &Value) -> Result<Grant, Error> {
        let raw = RawGrant::read(content)?;
        raw.validate(state_key)
    }

    /// The state key the event must have: `user:` and the grantee's user ID for a personal
    /// contract, the server name for a standing one. A user ID alone cannot be the key:
    /// Matrix's authorization rules (every room version) let only that user send a state
    /// event whose key starts with `@`, and contracts are the patient's to send.
    pub fn state_key(&self) -> String {
        Grant::state_key_of(&self.grantee)
    }

    /// The state key of the contract whose grantee is `grantee`.
    pub fn state_key_of(grantee: &Grantee) -> String {
        match grantee {
            Grantee::User(user) => format!("{USER_STATE_KEY_PREFIX}{user}"),
            Grantee::Server(server) => server.to_string(),
        }
    }

    /// Whether this is a standing emergency contract (its grantee is a server).
    pub fn is_standing_emergency(&self) -> bool {
        matches!(self.grantee, Grantee::Server(_))
    }

    /// The event content, as [`Grant::from_event`] reads it back.
    pub fn to_content(&self) -> Value {
        let mut content = json!({
            "contract_id": self.contract_id,
            "grantee": self.grantee.as_str(),
            "purpose": self.purpose,
            "classes": self.classes,
            "data_period": {"start": self.data_period.start(), "end": self.data_period.end()},
            "valid": {"start": self.valid.start(), "end": self.valid.end()},
            "mode": self.mode.as_str(),
            "text": self.text,
            "status": self.status.as_str(),
        });
        if let Some(duration) = self.emergency_access_ms {
            content["emergency_access_ms"] = duration.into();
        }
        if let Some(origin) = &self.break_glass {
            content["break_glass"] =
                json!({"standing_contract": origin.standing_contract, "reason": origin.reason});
        }
        if let Some(custodian) = &self.custodian {
            content["custodian"] = custodian.as_str().into();
        }
        content
    }

    /// The rules that tie fields together; [`Grant::from_event`] applies them, and so does
    /// anything that derives a grant.
    pub fn check(&self) -> Result<(), Error> {
        if self.classes.is_empty() {
            return Err(Error::value("classes", "must name at least one class"));
        }
        if self.text.trim().is_empty() {
            return Err(Error::value("text", "must state the terms (it is empty)"));
        }
        match (&self.grantee, self.emergency_access_ms) {
            (Grantee::Server(_), None) => {
                // Required only because of another value (the grantee), so a value error.
                return Err(Error::value(
                    "emergency_access_ms",
                    "must be given for a standing emergency contract (a server grantee)",
                ));
            }
            (Grantee::Server(_), Some(duration)) => {
                if !(1..=MAX_EMERGENCY_ACCESS_MS).contains(&duration) {
                    return Err(Error::value(
                        "emergency_access_ms",
                        "must be from 1 ms to 24 hours (86400000)",
                    ));
                }
                if !self.purpose.is_a(Purpose::EmergencyTreatment)
                    || self.purpose == Purpose::BreakTheGlass
                {
                    return Err(Error::value(
                        "purpose",
                        "must be ETREAT (or ERTREAT) for a standing emergency contract",
                    ));
                }
            }
            (Grantee::User(_), Some(_)) => {
                return Err(Error::value(
                    "emergency_access_ms",
                    "is only for a standing emergency contract, whose grantee is a server",
                ));
            }
            (Grantee::User(_), None) => {}
        }
        if self.custodian.is_some() && !self.is_standing_emergency() {
            return Err(Error::value(
                "custodian",
                "is only for a standing emergency contract, whose grantee is a server",
            ));
        }
        let is_break_glass = self.purpose == Purpose::BreakTheGlass;
        match (&self.break_glass, is_break_glass) {
            (Some(_), false) => Err(Error::value(
                "break_glass",
                "is only for a grant made by break-glass, whose purpose is BTG",
            )),
            (None, true) => Err(Error::value(
                "purpose",
                "BTG is given only by break-glass under a standing emergency contract",
            )),
            (Some(origin), true) if origin.reason.trim().is_empty() => {
                Err(Error::value("break_glass.reason", "must give the reason (it is empty)"))
            }
            _ => Ok(()),
        }
    }
}

/// Every field of the content read for its shape, before any value is judged, so a
/// malformed event is always a shape error whatever its values.
struct RawGrant<'a> {
    contract_id: &'a str,
    grantee: &'a str,
    terms: RawTerms<'a>,
    mode: &'a str,
    text: &'a str,
    status: &'a str,
    emergency_access_ms: Option<i64>,
    break_glass: Option<(&'a str, &'a str)>,
    custodian: Option<&'a str>,
}

impl<'a> RawGrant<'a> {
    fn read(content: &'a Value) -> Result<RawGrant<'a>, Error> {
        let object = Object::root(content, "content")?;
        let break_glass = match object.optional_object("break_glass")? {
            Some(origin) => Some((origin.string("standing_contract")?, origin.string("reason")?)),
            None => None,
        };
        Ok(RawGrant {
            contract_id: object.string("contract_id")?,
            grantee: object.string("grantee")?,
            terms: RawTerms::read(&object)?,
            mode: object.string("mode")?,
            text: object.string("text")?,
            status: object.string("status")?,
            emergency_access_ms: object.optional_integer("emergency_access_ms")?,
            break_glass,
            custodian: object.optional_string("custodian")?,
        })
    }

    fn validate(self, state_key: &str) -> Result<Grant, Error> {
        let contract_id = ContractId::parse(self.contract_id).ok_or_else(|| {
            Error::value("contract_id", "must be 1 to 64 characters from A-Z a-z 0-9 - .")
        })?;
        let grantee = if state_key.starts_with(USER_STATE_KEY_PREFIX) {
            UserId::parse(self.grantee).map(Grantee::User).ok_or_else(|| {
                Error::value("grantee", "must be a Matrix user ID (the state key names a user)")
            })?
        } else {
            ServerName::parse(self.grantee).map(Grantee::Server).ok_or_else(|| {
                Error::value("grantee", "must be a server name (the state key is not a user ID)")
            })?
        };
        if Grant::state_key_of(&grantee) != state_key {
            return Err(Error::value("grantee", "must be the one the event's state key names"));
        }
        let Terms { purpose, classes, data_period, valid } = self.terms.validate()?;
        let mode = Mode::parse(self.mode)
            .ok_or_else(|| Error::value("mode", "must be \"read\" or \"contribute\""))?;
        let status = Status::parse(self.status).ok_or_else(|| {
            Error::value("status", "must be \"active\", \"revoked\" or \"expired\"")
        })?;
        let emergency_access_ms = match self.emergency_access_ms {
            Some(duration) => Some(u64::try_from(duration).map_err(|_| {
                Error::value("emergency_access_ms", "must be from 1 ms to 24 hours (86400000)")
            })?),
            None => None,
        };
        let break_glass = match self.break_glass {
            Some((standing, reason)) => Some(BreakGlassOrigin {
                standing_contract: ContractId::parse(standing).ok_or_else(|| {
                    Error::value("break_glass.standing_contract", "must be a contract ID")
                })?,
                reason: reason.to_owned(),
            }),
            None => None,
        };
        let custodian = match self.custodian {
            Some(custodian) => Some(
                UserId::parse(custodian)
                    .ok_or_else(|| Error::value("custodian", "must be a Matrix user ID"))?,
            ),
            None => None,
        };
        let grant = Grant {
            contract_id,
            grantee,
            purpose,
            classes,
            data_period,
            valid,
            mode,
            text: self.text.to_owned(),
            status,
            emergency_access_ms,
            break_glass,
            custodian,
        };
        grant.check()?;
        Ok(grant)
    }
}
