//! Which entry keys a member may hold (spec/records.md §5, "Keys follow contracts"). The
//! server never sees an entry, so it cannot hold a contract's data period; the sender's client
//! does, by choosing who gets each Megolm session:
//! - every entry is sent with a session of its own (the sender rotates before each one), so a
//!   session's key opens exactly one entry and choosing sessions is choosing entries;
//! - a live entry's session goes only to the patient and to members whose contract lets them
//!   read that entry (its class, its clinical time) now;
//! - at a grant, the grantee is handed the sessions whose every event the contract covers.
//!
//! Pure decisions over `medrix_records::covering`, so the server, the clients and the audit
//! verifier agree on what a contract allows.

use std::collections::BTreeSet;

use medrix_records::{Action, DataClass, Grant, UserId, covering};

/// The contracts of a record at one moment, and whose record it is.
pub(crate) struct KeyScope<'a> {
    patient: &'a UserId,
    grants: &'a [Grant],
    now_ms: u64,
}

/// One encrypted event of a class room as the patient's client read it: the session that
/// encrypted it and what it holds. `clinical_time_ms` is `None` for an event with no clinical
/// time (an entry whose resource carries none, or another kind of event), which only a
/// contract with an unbounded data period covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionUse {
    pub session_id: String,
    pub class: DataClass,
    pub clinical_time_ms: Option<i64>,
}

impl<'a> KeyScope<'a> {
    pub(crate) fn new(patient: &'a UserId, grants: &'a [Grant], now_ms: u64) -> KeyScope<'a> {
        KeyScope { patient, grants, now_ms }
    }

    /// Whether `member` may be given the key of an entry of `class` dated `clinical_time_ms`:
    /// the patient always, anyone else under a contract that allows reading it now.
    pub(crate) fn may_read(
        &self,
        member: &UserId,
        class: DataClass,
        clinical_time_ms: Option<i64>,
    ) -> bool {
        member == self.patient
            || covering(self.grants, member, &Action::Read { class, clinical_time_ms }, self.now_ms)
                .is_allowed()
    }

    /// The sessions `member` may be handed: those whose every event they may read. A session
    /// that also opens one event they may not read is withheld whole (sessions made before
    /// per-entry rotation can hold several entries).
    pub(crate) fn sessions_for<'u>(
        &self,
        member: &UserId,
        uses: impl IntoIterator<Item = &'u SessionUse>,
    ) -> BTreeSet<String> {
        let mut allowed = BTreeSet::new();
        let mut refused = BTreeSet::new();
        for used in uses {
            if self.may_read(member, used.class, used.clinical_time_ms) {
                allowed.insert(used.session_id.clone());
            } else {
                refused.insert(used.session_id.clone());
            }
        }
        &allowed - &refused
    }
}

#[cfg(test)]
mod tests {
    use medrix_records::{ContractId, DataPeriod, Grantee, Mode, Purpose, Status, Validity};

    use super::*;

    const NOW: u64 = 1_767_225_600_000; // 2026-01-01
    const Y2021: i64 = 1_609_459_200_000;
    const Y2024: i64 = 1_704_067_200_000;

    fn user(name: &str) -> UserId {
        UserId::parse(&format!("@{name}:home.example")).unwrap()
    }

    fn grant(grantee: &str, classes: &[DataClass], data_from: Option<i64>) -> Grant {
        Grant {
            contract_id: ContractId::parse(&format!("c-{grantee}")).unwrap(),
            grantee: Grantee::User(user(grantee)),
            purpose: Purpose::Treatment,
            classes: classes.iter().copied().collect(),
            data_period: DataPeriod::new(data_from, None).unwrap(),
            valid: Validity::new(NOW - 1_000, NOW + 1_000).unwrap(),
            mode: Mode::Read,
            text: "terms".to_owned(),
            status: Status::Active,
            emergency_access_ms: None,
            break_glass: None,
            custodian: None,
        }
    }

    fn used(session: &str, class: DataClass, at: Option<i64>) -> SessionUse {
        SessionUse { session_id: session.to_owned(), class, clinical_time_ms: at }
    }

    #[test]
    fn a_live_entry_goes_to_the_patient_and_to_whom_its_date_and_class_are_granted() {
        let grants = [grant("doctor", &[DataClass::Laboratory], Some(Y2024))];
        let patient = user("patient");
        let scope = KeyScope::new(&patient, &grants, NOW);
        assert!(scope.may_read(&patient, DataClass::Laboratory, Some(Y2021)));
        assert!(scope.may_read(&user("doctor"), DataClass::Laboratory, Some(Y2024)));
        assert!(!scope.may_read(&user("doctor"), DataClass::Laboratory, Some(Y2021)));
        assert!(!scope.may_read(&user("doctor"), DataClass::Laboratory, None));
        assert!(!scope.may_read(&user("doctor"), DataClass::Notes, Some(Y2024)));
        assert!(!scope.may_read(&user("stranger"), DataClass::Laboratory, Some(Y2024)));
        // The same contract, ended: nothing more.
        let later = KeyScope::new(&patient, &grants, NOW + 1_000);
        assert!(!later.may_read(&user("doctor"), DataClass::Laboratory, Some(Y2024)));
    }

    #[test]
    fn a_grant_hands_over_only_sessions_wholly_inside_the_contract() {
        let grants = [grant("doctor", &[DataClass::Laboratory], Some(Y2024))];
        let patient = user("patient");
        let scope = KeyScope::new(&patient, &grants, NOW);
        let uses = [
            used("s-2024", DataClass::Laboratory, Some(Y2024 + 5)),
            used("s-2021", DataClass::Laboratory, Some(Y2021)),
            // An old session opening entries of both periods is withheld whole.
            used("s-mixed", DataClass::Laboratory, Some(Y2024)),
            used("s-mixed", DataClass::Laboratory, Some(Y2021)),
            used("s-undated", DataClass::Laboratory, None),
        ];
        let handed = scope.sessions_for(&user("doctor"), &uses);
        assert_eq!(handed, BTreeSet::from(["s-2024".to_owned()]));
        // The patient's own devices may hold them all; a stranger none.
        assert_eq!(scope.sessions_for(&patient, &uses).len(), 4);
        assert!(scope.sessions_for(&user("stranger"), &uses).is_empty());
        // An unbounded data period covers undated events too.
        let open = [grant("doctor", &[DataClass::Laboratory], None)];
        let scope = KeyScope::new(&patient, &open, NOW);
        assert_eq!(scope.sessions_for(&user("doctor"), &uses).len(), 4);
    }
}
