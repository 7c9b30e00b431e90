//! Break-glass: a patient's standing emergency contract with an organisation's server lets any
//! clinician of that server admit themselves for a short, fixed time. The standing contract
//! is an `org.medrix.grant` whose state key and grantee are the server name, with purpose
//! `ETREAT` and `emergency_access_ms`. Invoking it yields an ordinary personal grant (purpose
//! `BTG`, pointing back at the standing contract), so joins, reads, expiry and the audit log
//! treat break-glass access like any contract, flagged by its purpose.

use crate::error::Error;
use crate::evaluate::Denial;
use crate::grant::{BreakGlassOrigin, Grant, Grantee, Status};
use crate::ids::{ContractId, UserId};
use crate::period::Validity;
use crate::purpose::Purpose;

/// The field of a knock's content that invokes break-glass: `{"reason": "..."}`. A clinician
/// knocks on the record's space with it; the patient's server answers at once (see
/// `spec/contracts-enforcement.md`).
pub const BREAK_GLASS_KEY: &str = "org.medrix.break_glass";

/// The access one break-glass gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakGlassWindow {
    /// The standing contract invoked.
    pub standing_contract: ContractId,
    /// When the access begins (the moment of invocation).
    pub from_ms: u64,
    /// When it ends: `emergency_access_ms` later, but never past the standing contract's own
    /// `valid.end`.
    pub until_ms: u64,
}

/// Whether `clinician` may invoke `standing` at `at_ms`, and until when. Allowed when the
/// contract is a standing emergency contract, active, in force at `at_ms`, and the clinician's
/// user ID is on the contract's server.
pub fn break_glass_window(
    standing: &Grant,
    clinician: &UserId,
    at_ms: u64,
) -> Result<BreakGlassWindow, Denial> {
    let Grantee::Server(server) = &standing.grantee else {
        return Err(Denial::NotGrantee);
    };
    if clinician.server_name() != *server {
        return Err(Denial::NotGrantee);
    }
    if standing.status != Status::Active {
        return Err(Denial::NotActive);
    }
    if at_ms < standing.valid.start() {
        return Err(Denial::NotYetValid);
    }
    if at_ms >= standing.valid.end() {
        return Err(Denial::Expired);
    }
    let duration = standing.emergency_access_ms.unwrap_or(0);
    let until_ms = at_ms.saturating_add(duration).min(standing.valid.end());
    Ok(BreakGlassWindow {
        standing_contract: standing.contract_id.clone(),
        from_ms: at_ms,
        until_ms,
    })
}

/// The personal grant a break-glass at `at_ms` creates for `clinician`: the standing
/// contract's classes, data period and mode, purpose `BTG`, valid for the window, with the
/// clinician's reason. `contract_id` is the new grant's own ID (the caller picks it, as for
/// any contract; this crate has no randomness).
pub fn break_glass_grant(
    standing: &Grant,
    clinician: &UserId,
    at_ms: u64,
    contract_id: ContractId,
    reason: &str,
) -> Result<Grant, BreakGlassError> {
    let window = break_glass_window(standing, clinician, at_ms).map_err(BreakGlassError::Denied)?;
    if reason.trim().is_empty() {
        return Err(BreakGlassError::Invalid(Error::value(
            "break_glass.reason",
            "must give the reason (it is empty)",
        )));
    }
    // A window is never empty: at_ms < valid.end and the duration is at least 1 ms.
    let valid = Validity::new(window.from_ms, window.until_ms).ok_or_else(|| {
        BreakGlassError::Invalid(Error::value("emergency_access_ms", "gives an empty window"))
    })?;
    let grant = Grant {
        contract_id,
        grantee: Grantee::User(clinician.clone()),
        purpose: Purpose::BreakTheGlass,
        classes: standing.classes.clone(),
        data_period: standing.data_period,
        valid,
        mode: standing.mode,
        text: standing.text.clone(),
        status: Status::Active,
        emergency_access_ms: None,
        break_glass: Some(BreakGlassOrigin {
            standing_contract: window.standing_contract,
            reason: reason.to_owned(),
        }),
        // The custodian stays the standing contract's: it releases keys, it is no grantee.
        custodian: None,
    };
    grant.check().map_err(BreakGlassError::Invalid)?;
    Ok(grant)
}

/// Why no break-glass grant was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakGlassError {
    /// The standing contract does not admit this clinician now.
    Denied(Denial),
    /// The request itself is malformed (an empty reason).
    Invalid(Error),
}
