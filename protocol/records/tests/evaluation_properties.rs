//! The invariants of contract evaluation, over generated contracts, actions and moments.
//! `spec/records.md` states them; each property here is one of its sentences.

mod common;

use common::{arb_class, arb_clinical_time, arb_grant, arb_moment, arb_user_grant, user};
use medrix_records::{
    Action, DataPeriod, Decision, Denial, Grant, Grantee, Mode, Status, Validity, covering,
    evaluate, expiry_at,
};
use proptest::prelude::*;

fn arb_action() -> impl Strategy<Value = Action> {
    prop_oneof![
        arb_class().prop_map(|class| Action::Hold { class }),
        (arb_class(), arb_clinical_time())
            .prop_map(|(class, clinical_time_ms)| Action::Read { class, clinical_time_ms }),
        arb_class().prop_map(|class| Action::Contribute { class }),
    ]
}

/// Narrows a grant in one of the ways a patient can restrict a contract.
fn narrowed(grant: &Grant, how: u8, pick: u64) -> Grant {
    let mut narrower = grant.clone();
    match how % 5 {
        0 => {
            // Drop a class (keeping at least one).
            if narrower.classes.len() > 1 {
                let drop =
                    *narrower.classes.iter().nth(pick as usize % grant.classes.len()).unwrap();
                narrower.classes.remove(&drop);
            }
        }
        1 => {
            // Shorten the validity from either end.
            let (start, end) = (grant.valid.start(), grant.valid.end());
            let cut = start + pick % (end - start);
            narrower.valid = if pick.is_multiple_of(2) {
                Validity::new(cut, end).unwrap()
            } else {
                Validity::new(start, cut.max(start + 1)).unwrap()
            };
        }
        2 => {
            // Bound the data period further.
            let bound = pick as i64 % 2_000 - 500;
            let start = grant.data_period.start().map_or(bound, |s| s.max(bound));
            narrower.data_period =
                DataPeriod::new(Some(start), grant.data_period.end()).unwrap_or(grant.data_period);
        }
        3 => narrower.mode = Mode::Read,
        _ => {
            narrower.status = if pick.is_multiple_of(2) { Status::Revoked } else { Status::Expired }
        }
    }
    narrower
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn nothing_is_allowed_outside_the_validity(grant in arb_grant(), action in arb_action(), at in arb_moment()) {
        if evaluate(&grant, &action, at).is_allowed() {
            prop_assert!(grant.valid.start() <= at && at < grant.valid.end());
        }
        prop_assert!(!evaluate(&grant, &action, grant.valid.end()).is_allowed());
        if grant.valid.start() > 0 {
            prop_assert!(!evaluate(&grant, &action, grant.valid.start() - 1).is_allowed());
        }
    }

    #[test]
    fn nothing_is_allowed_for_a_class_not_granted(grant in arb_grant(), action in arb_action(), at in arb_moment()) {
        if !grant.classes.contains(&action.class()) {
            prop_assert!(!evaluate(&grant, &action, at).is_allowed());
        }
    }

    #[test]
    fn a_revoked_or_expired_contract_never_allows(grant in arb_grant(), action in arb_action(), at in arb_moment()) {
        if grant.status != Status::Active {
            let decision = evaluate(&grant, &action, at);
            prop_assert!(!decision.is_allowed());
            if !grant.is_standing_emergency() {
                prop_assert_eq!(decision, Decision::Denied(Denial::NotActive));
            }
        }
    }

    #[test]
    fn a_standing_emergency_contract_admits_nobody_by_itself(grant in arb_grant(), action in arb_action(), at in arb_moment()) {
        if grant.is_standing_emergency() {
            prop_assert_eq!(evaluate(&grant, &action, at), Decision::Denied(Denial::StandingContract));
        }
    }

    #[test]
    fn an_allowed_action_names_its_contract_and_purpose(grant in arb_grant(), action in arb_action(), at in arb_moment()) {
        if let Decision::Allowed { contract_id, purpose } = evaluate(&grant, &action, at) {
            prop_assert_eq!(contract_id, grant.contract_id.clone());
            prop_assert_eq!(purpose, grant.purpose);
        }
    }

    #[test]
    fn reading_outside_the_data_period_is_denied_and_unknown_times_only_pass_an_unbounded_one(
        grant in arb_user_grant(), class in arb_class(), time in arb_clinical_time(), at in arb_moment()
    ) {
        let read = Action::Read { class, clinical_time_ms: time };
        if evaluate(&grant, &read, at).is_allowed() {
            prop_assert!(grant.data_period.covers(time));
            if time.is_none() {
                prop_assert!(grant.data_period.is_unbounded());
            }
        }
    }

    #[test]
    fn reading_an_entry_implies_holding_its_room(grant in arb_grant(), class in arb_class(), time in arb_clinical_time(), at in arb_moment()) {
        let hold = Action::Hold { class };
        if evaluate(&grant, &Action::Read { class, clinical_time_ms: time }, at).is_allowed() {
            prop_assert!(evaluate(&grant, &hold, at).is_allowed());
        }
    }

    #[test]
    fn contributing_needs_contribute_mode_and_implies_reading(grant in arb_grant(), class in arb_class(), time in arb_clinical_time(), at in arb_moment()) {
        let contribute = evaluate(&grant, &Action::Contribute { class }, at);
        let hold = Action::Hold { class };
        if contribute.is_allowed() {
            prop_assert_eq!(grant.mode, Mode::Contribute);
            prop_assert!(evaluate(&grant, &hold, at).is_allowed());
        }
        // The same contract in read mode reads exactly what the contribute one reads.
        let read = Action::Read { class, clinical_time_ms: time };
        let as_read = Grant { mode: Mode::Read, ..grant.clone() };
        let as_contribute = Grant { mode: Mode::Contribute, ..grant };
        prop_assert_eq!(evaluate(&as_read, &read, at), evaluate(&as_contribute, &read, at));
    }

    #[test]
    fn the_moments_allowed_form_one_interval(grant in arb_grant(), action in arb_action(), a in arb_moment(), b in arb_moment(), c in arb_moment()) {
        let mut moments = [a, b, c];
        moments.sort_unstable();
        let [first, middle, last] = moments;
        if evaluate(&grant, &action, first).is_allowed() && evaluate(&grant, &action, last).is_allowed() {
            prop_assert!(evaluate(&grant, &action, middle).is_allowed());
        }
    }

    #[test]
    fn narrowing_a_contract_never_allows_more(grant in arb_grant(), action in arb_action(), at in arb_moment(), how in any::<u8>(), pick in any::<u64>()) {
        let narrower = narrowed(&grant, how, pick);
        if evaluate(&narrower, &action, at).is_allowed() {
            prop_assert!(evaluate(&grant, &action, at).is_allowed());
        }
    }

    #[test]
    fn the_executor_acts_at_the_end_of_an_active_contract_only(grant in arb_grant()) {
        match expiry_at(&grant) {
            Some(at) => {
                prop_assert_eq!(grant.status, Status::Active);
                prop_assert_eq!(at, grant.valid.end());
            }
            None => prop_assert_ne!(grant.status, Status::Active),
        }
    }

    #[test]
    fn covering_allows_exactly_when_one_of_the_users_contracts_does(
        grants in proptest::collection::vec(arb_grant(), 0..5), action in arb_action(), at in arb_moment()
    ) {
        let grants: Vec<Grant> = grants
            .into_iter()
            .enumerate()
            .map(|(index, grant)| Grant {
                contract_id: common::id(&format!("c-{index}")),
                grantee: if index % 3 == 2 { Grantee::User(user("@other:x.example")) } else { grant.grantee.clone() },
                ..grant
            })
            .collect();
        let who = user("@someone:provider.example");
        let mine: Vec<Grant> = grants
            .iter()
            .filter(|g| matches!(&g.grantee, Grantee::User(u) if u.as_str().ends_with(":provider.example")))
            .map(|g| Grant { grantee: Grantee::User(who.clone()), ..g.clone() })
            .collect();
        let any_allows = mine.iter().any(|g| evaluate(g, &action, at).is_allowed());
        let decision = covering(&mine, &who, &action, at);
        prop_assert_eq!(decision.is_allowed(), any_allows);
        if let Decision::Allowed { contract_id, .. } = &decision {
            let chosen = mine.iter().find(|g| &g.contract_id == contract_id).unwrap();
            prop_assert!(mine.iter().filter(|g| evaluate(g, &action, at).is_allowed()).all(|g| g.valid.end() <= chosen.valid.end()));
        }
        if mine.is_empty() {
            prop_assert_eq!(decision, Decision::Denied(Denial::NoContract));
        }
        // Contracts of other users never count.
        let others: Vec<Grant> = grants.iter().filter(|g| !matches!(&g.grantee, Grantee::User(u) if *u == who)).cloned().collect();
        prop_assert_eq!(covering(&others, &who, &action, at), Decision::Denied(Denial::NoContract));
    }
}

#[test]
fn denials_say_why_in_the_order_of_the_checks() {
    let grant = common::lab_grant();
    let in_2024 = 1_710_000_000_000;
    let lab_2023 = Action::Read {
        class: medrix_records::DataClass::Laboratory,
        clinical_time_ms: Some(1_690_000_000_000),
    };
    assert!(evaluate(&grant, &lab_2023, in_2024).is_allowed());
    let cases = [
        (Grant { status: Status::Revoked, ..grant.clone() }, lab_2023, in_2024, Denial::NotActive),
        (grant.clone(), lab_2023, 1_700_000_000_000, Denial::NotYetValid),
        (grant.clone(), lab_2023, grant.valid.end(), Denial::Expired),
        (
            grant.clone(),
            Action::Hold { class: medrix_records::DataClass::Notes },
            in_2024,
            Denial::ClassNotGranted,
        ),
        (
            grant.clone(),
            Action::Read { class: medrix_records::DataClass::Laboratory, clinical_time_ms: None },
            in_2024,
            Denial::OutsideDataPeriod,
        ),
        (
            grant.clone(),
            Action::Contribute { class: medrix_records::DataClass::Laboratory },
            in_2024,
            Denial::ReadOnly,
        ),
    ];
    for (grant, action, at, denial) in cases {
        assert_eq!(evaluate(&grant, &action, at), Decision::Denied(denial), "{denial:?}");
    }
}
