//! Contracts the tests share: a fixed set covering every kind, and proptest strategies.
#![allow(dead_code)]

use std::collections::BTreeSet;

use medrix_records::period::{EARLIEST_MS, LATEST_MS};
use medrix_records::{
    BreakGlassOrigin, ContractId, DataClass, DataPeriod, Grant, Grantee, Mode, Purpose, ServerName,
    Status, UserId, Validity,
};
use proptest::prelude::*;

pub fn user(text: &str) -> UserId {
    UserId::parse(text).unwrap()
}

pub fn id(text: &str) -> ContractId {
    ContractId::parse(text).unwrap()
}

/// A read contract for Dr Lee: laboratory and vital signs of 2023, valid for 2024.
pub fn lab_grant() -> Grant {
    Grant {
        contract_id: id("c-lab-2024"),
        grantee: Grantee::User(user("@dr.lee:clinic.example")),
        purpose: Purpose::Treatment,
        classes: [DataClass::Laboratory, DataClass::VitalSigns].into(),
        data_period: DataPeriod::new(Some(1_672_531_200_000), Some(1_704_067_200_000)).unwrap(),
        valid: Validity::new(1_704_067_200_000, 1_735_689_600_000).unwrap(),
        mode: Mode::Read,
        text: "Dr Lee may read my 2023 lab results and vital signs during 2024 for my care."
            .to_owned(),
        status: Status::Active,
        emergency_access_ms: None,
        break_glass: None,
        custodian: None,
    }
}

/// One contract of every kind: read and contribute, open and bounded data periods, every
/// status, a standing emergency contract and a break-glass grant made under it.
pub fn sample_grants() -> Vec<Grant> {
    let lab = lab_grant();
    let contribute = Grant {
        contract_id: id("c-gp.1"),
        purpose: Purpose::CareManagement,
        classes: DataClass::ALL.into_iter().collect(),
        data_period: DataPeriod::ALL,
        mode: Mode::Contribute,
        text: "My GP may read and add to my whole record <for care> & \"coordination\".".to_owned(),
        ..lab.clone()
    };
    let revoked = Grant { contract_id: id("c-revoked"), status: Status::Revoked, ..lab.clone() };
    let expired = Grant {
        contract_id: id("c-expired"),
        status: Status::Expired,
        purpose: Purpose::HealthcareResearch,
        data_period: DataPeriod::new(Some(-315_619_200_000), None).unwrap(),
        ..lab.clone()
    };
    let standing = Grant {
        contract_id: id("c-er-standing"),
        grantee: Grantee::Server(ServerName::parse("hospital.example").unwrap()),
        purpose: Purpose::EmergencyTreatment,
        classes: [DataClass::Allergies, DataClass::Medications, DataClass::Conditions].into(),
        data_period: DataPeriod::ALL,
        emergency_access_ms: Some(3_600_000),
        text: "In an emergency, clinicians of hospital.example may see my allergies, \
               medications and conditions for one hour."
            .to_owned(),
        ..lab.clone()
    };
    let break_glass = Grant {
        contract_id: id("c-btg-1"),
        grantee: Grantee::User(user("@er.doc:hospital.example")),
        purpose: Purpose::BreakTheGlass,
        classes: standing.classes.clone(),
        data_period: DataPeriod::ALL,
        valid: Validity::new(1_709_600_000_000, 1_709_603_600_000).unwrap(),
        break_glass: Some(BreakGlassOrigin {
            standing_contract: id("c-er-standing"),
            reason: "Unconscious patient in the emergency room".to_owned(),
        }),
        text: standing.text.clone(),
        ..lab.clone()
    };
    vec![lab, contribute, revoked, expired, standing, break_glass]
}

pub fn arb_class() -> impl Strategy<Value = DataClass> {
    proptest::sample::select(DataClass::ALL.to_vec())
}

pub fn arb_classes() -> impl Strategy<Value = BTreeSet<DataClass>> {
    proptest::collection::btree_set(arb_class(), 1..=DataClass::ALL.len())
}

pub fn arb_purpose() -> impl Strategy<Value = Purpose> {
    let purposes: Vec<Purpose> = Purpose::all().filter(|p| *p != Purpose::BreakTheGlass).collect();
    proptest::sample::select(purposes)
}

pub fn arb_status() -> impl Strategy<Value = Status> {
    prop_oneof![Just(Status::Active), Just(Status::Revoked), Just(Status::Expired)]
}

pub fn arb_mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Read), Just(Mode::Contribute)]
}

/// Moments concentrated in a small range, so they often meet the bounds, plus the extremes.
pub fn arb_moment() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..2_000, 1 => 0u64..=LATEST_MS as u64]
}

pub fn arb_clinical_time() -> impl Strategy<Value = Option<i64>> {
    prop_oneof![1 => Just(None), 4 => (-1_000i64..2_000).prop_map(Some), 1 => (EARLIEST_MS..=LATEST_MS).prop_map(Some)]
}

pub fn arb_validity() -> impl Strategy<Value = Validity> {
    (arb_moment(), arb_moment())
        .prop_filter_map("start < end", |(a, b)| Validity::new(a.min(b), a.max(b)))
}

pub fn arb_data_period() -> impl Strategy<Value = DataPeriod> {
    let bound = prop_oneof![1 => Just(None), 3 => (-1_000i64..2_000).prop_map(Some)];
    (bound.clone(), bound).prop_filter_map("start < end", |(a, b)| match (a, b) {
        (Some(a), Some(b)) => DataPeriod::new(Some(a.min(b)), Some(a.max(b))),
        (a, b) => DataPeriod::new(a, b),
    })
}

fn arb_text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9 <>&\"'éü\n]{0,40}".prop_map(|text| format!("Terms: {text}"))
}

/// A personal contract (a user grantee), any status.
pub fn arb_user_grant() -> impl Strategy<Value = Grant> {
    (
        "[a-z0-9]{1,12}",
        "[a-z]{1,8}",
        arb_purpose(),
        arb_classes(),
        arb_data_period(),
        arb_validity(),
        arb_mode(),
        arb_text(),
        arb_status(),
    )
        .prop_map(
            |(contract, who, purpose, classes, data_period, valid, mode, text, status)| Grant {
                contract_id: id(&format!("c-{contract}")),
                grantee: Grantee::User(user(&format!("@{who}:provider.example"))),
                purpose,
                classes,
                data_period,
                valid,
                mode,
                text,
                status,
                emergency_access_ms: None,
                break_glass: None,
                custodian: None,
            },
        )
}

/// Any contract Medrix holds: personal, standing emergency, or made by break-glass.
pub fn arb_grant() -> impl Strategy<Value = Grant> {
    let standing = (arb_user_grant(), 1..=24u64 * 3_600_000, any::<bool>()).prop_map(
        |(grant, duration, room)| Grant {
            grantee: Grantee::Server(ServerName::parse("hospital.example:8448").unwrap()),
            purpose: if room {
                Purpose::EmergencyRoomTreatment
            } else {
                Purpose::EmergencyTreatment
            },
            emergency_access_ms: Some(duration),
            ..grant
        },
    );
    let break_glass = (arb_user_grant(), "[a-zA-Z ]{1,20}").prop_map(|(grant, reason)| Grant {
        purpose: Purpose::BreakTheGlass,
        break_glass: Some(BreakGlassOrigin {
            standing_contract: id("c-standing"),
            reason: format!("Reason {reason}"),
        }),
        ..grant
    });
    prop_oneof![4 => arb_user_grant(), 1 => standing, 1 => break_glass]
}
