//! Whether a contract allows an action at a moment: the one decision the server, the clients
//! and the audit verifier all make, so it is a pure function of its arguments. The moment is
//! a parameter (an event's `origin_server_ts` on the server), never a clock.

use crate::class::DataClass;
use crate::grant::{Grant, Grantee, Mode, Status};
use crate::ids::{ContractId, UserId};
use crate::purpose::Purpose;

/// What a grantee wants to do in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Join, or stay a member of, a record room of this class.
    Hold {
        /// The room's class.
        class: DataClass,
    },
    /// Read (be given the keys of) an entry of this class, whose clinical time is known in
    /// ms since the epoch, or not.
    Read {
        /// The entry's class.
        class: DataClass,
        /// The entry's clinical time, `None` when the resource carries none.
        clinical_time_ms: Option<i64>,
    },
    /// Add an entry, or a correction, to a record room of this class. Not bounded by the data
    /// period: that says what the grantee may read of the record, and a provider adds today's
    /// results whatever period of the past it was shown.
    Contribute {
        /// The room's class.
        class: DataClass,
    },
}

impl Action {
    /// The class the action concerns.
    pub fn class(&self) -> DataClass {
        match *self {
            Action::Hold { class } | Action::Read { class, .. } | Action::Contribute { class } => {
                class
            }
        }
    }
}

/// Why a contract does not allow an action. Checks run in the order of the variants; the
/// first that fails is the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Denial {
    /// No contract was given for this grantee at all.
    NoContract,
    /// The user is not the contract's grantee (or, for break-glass, not of its server).
    NotGrantee,
    /// A standing emergency contract admits nobody by itself: break-glass first.
    StandingContract,
    /// The contract's status is revoked or expired.
    NotActive,
    /// The moment is before `valid.start`.
    NotYetValid,
    /// The moment is at or after `valid.end`.
    Expired,
    /// The class is not among the contract's classes.
    ClassNotGranted,
    /// The entry's clinical time is outside the data period (or unknown, with a bounded one).
    OutsideDataPeriod,
    /// The contract's mode is `read`: contributing is not allowed.
    ReadOnly,
}

impl Denial {
    /// The reason as test vectors and logs write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::NoContract => "no_contract",
            Denial::NotGrantee => "not_grantee",
            Denial::StandingContract => "standing_contract",
            Denial::NotActive => "not_active",
            Denial::NotYetValid => "not_yet_valid",
            Denial::Expired => "expired",
            Denial::ClassNotGranted => "class_not_granted",
            Denial::OutsideDataPeriod => "outside_data_period",
            Denial::ReadOnly => "read_only",
        }
    }

    /// One sentence for a person (an error message, a notice).
    pub fn describe(self) -> &'static str {
        match self {
            Denial::NoContract => "No consent contract covers this user.",
            Denial::NotGrantee => "The contract is for someone else.",
            Denial::StandingContract => {
                "A standing emergency contract admits nobody until a clinician invokes break-glass."
            }
            Denial::NotActive => "The contract has been revoked or has expired.",
            Denial::NotYetValid => "The contract is not in force yet.",
            Denial::Expired => "The contract's validity has ended.",
            Denial::ClassNotGranted => "The contract does not grant this class of data.",
            Denial::OutsideDataPeriod => "The entry's clinical time is outside the data period.",
            Denial::ReadOnly => "The contract allows reading only, not contributing.",
        }
    }
}

/// The outcome of an evaluation. An allowed action names the contract and purpose it rests
/// on, which is what the audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The contract allows the action.
    Allowed {
        /// The contract that allows it.
        contract_id: ContractId,
        /// The purpose it is allowed for.
        purpose: Purpose,
    },
    /// It does not, and why.
    Denied(Denial),
}

impl Decision {
    /// Whether the action is allowed.
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allowed { .. })
    }

    /// The denial, if the action is denied.
    pub fn denial(&self) -> Option<Denial> {
        match self {
            Decision::Allowed { .. } => None,
            Decision::Denied(denial) => Some(*denial),
        }
    }
}

/// Whether `grant` allows `action` at `at_ms` (ms since the epoch). The caller has matched
/// the acting user to the grantee (see [`covering`], which does).
///
/// Allowed exactly when: the grantee is a user (a standing contract needs break-glass); the
/// status is `active`; `valid.start ≤ at_ms < valid.end`; the action's class is granted; a read
/// entry's clinical time is covered by the data period (an unknown time only by an unbounded
/// one); a contribution has mode `contribute`.
pub fn evaluate(grant: &Grant, action: &Action, at_ms: u64) -> Decision {
    match check(grant, action, at_ms) {
        Ok(()) => {
            Decision::Allowed { contract_id: grant.contract_id.clone(), purpose: grant.purpose }
        }
        Err(denial) => Decision::Denied(denial),
    }
}

fn check(grant: &Grant, action: &Action, at_ms: u64) -> Result<(), Denial> {
    if let Grantee::Server(_) = grant.grantee {
        return Err(Denial::StandingContract);
    }
    check_terms(grant, grant.mode, action, at_ms)
}

/// What a standing emergency contract allows the custodian it names: to hold its classes'
/// rooms and read what its data period covers while it is in force (the keys a clinician
/// who breaks the glass will need), never to contribute.
fn check_as_custodian(grant: &Grant, action: &Action, at_ms: u64) -> Result<(), Denial> {
    check_terms(grant, Mode::Read, action, at_ms)
}

/// The contract's terms (status, validity, classes, data period) applied to `action`, with
/// `mode` as what the holder may do.
fn check_terms(grant: &Grant, mode: Mode, action: &Action, at_ms: u64) -> Result<(), Denial> {
    if grant.status != Status::Active {
        return Err(Denial::NotActive);
    }
    if at_ms < grant.valid.start() {
        return Err(Denial::NotYetValid);
    }
    if at_ms >= grant.valid.end() {
        return Err(Denial::Expired);
    }
    if !grant.classes.contains(&action.class()) {
        return Err(Denial::ClassNotGranted);
    }
    match *action {
        Action::Hold { .. } => Ok(()),
        Action::Read { clinical_time_ms, .. } => {
            if grant.data_period.covers(clinical_time_ms) {
                Ok(())
            } else {
                Err(Denial::OutsideDataPeriod)
            }
        }
        Action::Contribute { .. } => match mode {
            Mode::Contribute => Ok(()),
            Mode::Read => Err(Denial::ReadOnly),
        },
    }
}

/// The contract that allows `user` the action at `at_ms`, among several (a user may hold
/// more than one). Grants for other grantees are ignored, except that a standing emergency
/// contract counts for the custodian it names, as a read-only contract. Among those that allow it, the one
/// in force longest (latest `valid.end`) is chosen, then the smallest contract ID, so every
/// party picks the same. When none allows it, the denial of the contract that came closest
/// (the latest check it failed, then the smallest contract ID); [`Denial::NoContract`] when the
/// user holds none.
pub fn covering<'a>(
    grants: impl IntoIterator<Item = &'a Grant>,
    user: &UserId,
    action: &Action,
    at_ms: u64,
) -> Decision {
    let mut best_allowed: Option<&Grant> = None;
    let mut best_denied: Option<(Denial, &ContractId)> = None;
    for grant in grants {
        let checked = match &grant.grantee {
            Grantee::User(grantee) if grantee == user => check(grant, action, at_ms),
            Grantee::Server(_) if grant.custodian.as_ref() == Some(user) => {
                check_as_custodian(grant, action, at_ms)
            }
            _ => continue,
        };
        match checked {
            Ok(()) => {
                let better = best_allowed.is_none_or(|best| {
                    (grant.valid.end(), std::cmp::Reverse(&grant.contract_id))
                        > (best.valid.end(), std::cmp::Reverse(&best.contract_id))
                });
                if better {
                    best_allowed = Some(grant);
                }
            }
            Err(denial) => {
                let closer = best_denied.is_none_or(|(best, id)| {
                    (denial, std::cmp::Reverse(&grant.contract_id)) > (best, std::cmp::Reverse(id))
                });
                if closer {
                    best_denied = Some((denial, &grant.contract_id));
                }
            }
        }
    }
    match (best_allowed, best_denied) {
        (Some(grant), _) => {
            Decision::Allowed { contract_id: grant.contract_id.clone(), purpose: grant.purpose }
        }
        (None, Some((denial, _))) => Decision::Denied(denial),
        (None, None) => Decision::Denied(Denial::NoContract),
    }
}

/// When the executor must next act on this contract: `valid.end` while it is active (remove
/// the grantee, set `expired`), `None` once it is revoked or expired (nothing is scheduled; a
/// revocation is acted on when it is received). A standing emergency contract also expires
/// at `valid.end`, though no member is removed for it: its break-glass grants expire on their
/// own.
pub fn expiry_at(grant: &Grant) -> Option<u64> {
    (grant.status == Status::Active).then(|| grant.valid.end())
}
