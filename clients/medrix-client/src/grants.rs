//! Consent contracts from the patient's side (spec/records.md §4): a grant is an
//! `org.medrix.grant` state event in the space, then invitations to the space and the granted
//! class rooms (which hand over their keys); a revocation is the same event with status
//! `revoked`, then kicks. Also who holds a contract now, and a contract as FHIR `Consent`.

use std::collections::BTreeSet;

use matrix_sdk::{Room, ruma::OwnedUserId};
use medrix_records::fhir::consent::to_consent;
use medrix_records::fhir::datetime::format_instant;
use medrix_records::{
    Action, ContractId, DataClass, DataPeriod, Decision, GRANT_EVENT_TYPE, Grant, Grantee, Mode,
    Purpose, RoomId, ServerName, Status, UserId, Validity, evaluate,
};
use rand::Rng;
use serde_json::Value;

use crate::client::MedrixClient;
use crate::error::{ClientError, Result};
use crate::key_scope::KeyScope;
use crate::keys::now_ms;
use crate::record::{Record, room_id, sdk_room_id, state_events};

/// What the patient agrees to: a contract's terms before it has an ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantTerms {
    /// Who is granted access.
    pub grantee: UserId,
    /// Why (an HL7 v3 PurposeOfUse code).
    pub purpose: Purpose,
    /// The classes of data.
    pub classes: BTreeSet<DataClass>,
    /// Which entries, by clinical time.
    pub data_period: DataPeriod,
    /// When the contract is in force, `[start, end)`.
    pub valid: Validity,
    /// Read, or read and contribute.
    pub mode: Mode,
    /// The terms as the patient reads them; written from the terms when not given.
    pub text: Option<String>,
}

/// A standing emergency contract (`spec/records.md` §8): a clinician of `server` who breaks
/// the glass is admitted by the patient's server for `window_ms` to these classes, while the
/// contract is valid. It admits nobody by itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmergencyTerms {
    /// The organisation's server whose clinicians may break the glass.
    pub server: ServerName,
    /// The classes an emergency opens.
    pub classes: BTreeSet<DataClass>,
    /// When the standing contract is in force.
    pub valid: Validity,
    /// How long one break-glass admits a clinician.
    pub window_ms: u64,
    /// The terms as the patient reads them; written from the terms when not given.
    pub text: Option<String>,
    /// The custodian (a user of the patient's server) that holds the classes' keys for
    /// break-glass, if the patient opts in.
    pub custodian: Option<UserId>,
}

/// A contract as it stands in the record, with when it was agreed (its event's
/// `origin_server_ts`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contract {
    /// The contract.
    pub grant: Grant,
    /// When its current state was set.
    pub agreed_at_ms: u64,
    /// The state event that set it.
    pub event_id: String,
}

/// Whether a contract gives access now, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// The contract.
    pub contract: Contract,
    /// What `evaluate` says about holding the contract's rooms now.
    pub decision: Decision,
    /// How long it stays in force, when it is.
    pub time_left_ms: Option<u64>,
}

/// What a grant did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    /// The contract as set.
    pub grant: Grant,
    /// The rooms the grantee was invited to.
    pub invited: Vec<RoomId>,
    /// The rooms of classes a former contract granted and this one does not, the grantee
    /// removed from.
    pub removed: Vec<RoomId>,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// The contract, now revoked.
    pub grant: Grant,
    /// The rooms the grantee was removed from.
    pub removed: Vec<RoomId>,
}

impl MedrixClient {
    /// Grants access on `terms`: a new contract (random ID, status active) in the space, then
    /// the grantee invited to the space and each granted class room; rooms of classes a
    /// former contract with them granted and this one does not are taken back.
    pub async fn grant(&self, record: &Record, terms: GrantTerms) -> Result<Granted> {
        self.require_patient(record)?;
        if terms.grantee == self.user {
            return Err(ClientError::Terms("you cannot grant access to yourself".to_owned()));
        }
        let contract_id = new_contract_id();
        let text = match &terms.text {
            Some(text) => text.clone(),
            None => terms_text(record.patient(), &terms, &contract_id),
        };
        let grant = Grant {
            contract_id,
            grantee: Grantee::User(terms.grantee.clone()),
            purpose: terms.purpose,
            classes: terms.classes.clone(),
            data_period: terms.data_period,
            valid: terms.valid,
            mode: terms.mode,
            text,
            status: Status::Active,
            emergency_access_ms: None,
            break_glass: None,
            custodian: None,
        };
        grant.check()?;
        self.put_grant(record, grant).await
    }

    /// Sets a personal contract in the space, then invites its grantee to the space and each
    /// granted class room and takes back the rooms of classes it does not grant.
    pub(crate) async fn put_grant(&self, record: &Record, grant: Grant) -> Result<Granted> {
        self.require_patient(record)?;
        let Grantee::User(user) = &grant.grantee else {
            return Err(ClientError::Terms("only a user can be granted access here".to_owned()));
        };
        if user == &self.user {
            return Err(ClientError::Terms("you cannot grant access to yourself".to_owned()));
        }
        let previous = self
            .contracts(record)
            .await?
            .into_iter()
            .map(|contract| contract.grant)
            .find(|old| old.grantee == grant.grantee);
        let state_key = grant_state_key(user);
        record.space.send_state_event_raw(GRANT_EVENT_TYPE, &state_key, grant.to_content()).await?;
        let (invited, removed) = self.admit(record, user, &grant, previous.as_ref()).await?;
        Ok(Granted { grant, invited, removed })
    }

    /// Brings `user` into the space and the class rooms `grant` covers them for, handing
    /// them the keys of the past entries it covers before each invitation, and takes back the
    /// rooms of classes it does not cover. A room they are in already, which `grant` opens
    /// wider than `previous` (their contract before), they leave and are invited to again:
    /// matrix-sdk takes a key bundle only on joining after an invitation, so that is how the
    /// newly covered keys reach a standard client. Answers the rooms invited to and removed
    /// from.
    async fn admit(
        &self,
        record: &Record,
        user: &UserId,
        grant: &Grant,
        previous: Option<&Grant>,
    ) -> Result<(Vec<RoomId>, Vec<RoomId>)> {
        let grantee = sdk_user(user)?;
        let mut invited = Vec::new();
        let mut removed = Vec::new();
        if !is_member(&record.space, &grantee).await? {
            invite(&record.space, &grantee).await?;
            invited.push(record.space_id());
        }
        let reason = format!("Contract {} does not grant this class", grant.contract_id);
        let mut to_invite = Vec::new();
        for (class, id) in record.rooms() {
            let Some(room) = self.client.get_room(&sdk_room_id(id)?) else { continue };
            let member = is_member(&room, &grantee).await?;
            if grant.classes.contains(&class) && !member {
                to_invite.push((class, room));
            } else if grant.classes.contains(&class)
                && previous.is_some_and(|old| widens(old, grant, class))
            {
                let widened = format!(
                    "Contract {} opens this class wider: invited again with the keys it now covers",
                    grant.contract_id
                );
                room.kick_user(&grantee, Some(&widened)).await?;
                to_invite.push((class, room));
            } else if !grant.classes.contains(&class) && member {
                room.kick_user(&grantee, Some(&reason)).await?;
                removed.push(id.clone());
            }
        }
        // What was recorded before the grant: the keys of the entries this contract covers
        // (its classes and data period), handed over before the invitations they go with.
        let scope_grants = [grant.clone()];
        let scope = KeyScope::new(record.patient(), &scope_grants, now_ms());
        self.hand_over_history(&to_invite, user, &scope).await?;
        for (_, room) in &to_invite {
            invite(room, &grantee).await?;
            invited.push(room_id(room.room_id()));
        }
        Ok((invited, removed))
    }

    /// Sets a standing emergency contract for `terms.server`'s clinicians (purpose ETREAT, read
    /// only, every clinical time). No clinician is invited: the patient's contract executor
    /// answers each break-glass under it. With a custodian, the custodian is brought into
    /// the space and the classes' rooms with the keys of what they hold, so it can hand them
    /// to a clinician who breaks the glass while the patient's devices are offline. Setting
    /// one again for the same server replaces it.
    pub async fn put_standing_emergency(
        &self,
        record: &Record,
        terms: EmergencyTerms,
    ) -> Result<Grant> {
        self.require_patient(record)?;
        let contract_id = new_contract_id();
        let classes: Vec<&str> = terms.classes.iter().map(|class| class.as_str()).collect();
        let text = terms.text.clone().unwrap_or_else(|| {
            let custody = match &terms.custodian {
                Some(custodian) => {
                    format!(" My server's custodian {custodian} holds their keys for this.")
                }
                None => String::new(),
            };
            format!(
                "In an emergency, a clinician of {} who breaks the glass may read my {} for {} \
                 (contract {contract_id}).{custody}",
                terms.server.as_str(),
                classes.join(", "),
                window_text(terms.window_ms)
            )
        });
        let grant = Grant {
            contract_id,
            grantee: Grantee::Server(terms.server),
            purpose: Purpose::EmergencyTreatment,
            classes: terms.classes,
            data_period: DataPeriod::new(None, None).expect("an open period is a period"),
            valid: terms.valid,
            mode: Mode::Read,
            text,
            status: Status::Active,
            emergency_access_ms: Some(terms.window_ms),
            break_glass: None,
            custodian: terms.custodian,
        };
        grant.check()?;
        if grant.custodian.as_ref() == Some(&self.user) {
            return Err(ClientError::Terms("you cannot be your own custodian".to_owned()));
        }
        let state_key = Grant::state_key_of(&grant.grantee);
        record.space.send_state_event_raw(GRANT_EVENT_TYPE, &state_key, grant.to_content()).await?;
        if let Some(custodian) = &grant.custodian {
            self.admit(record, custodian, &grant, None).await?;
        }
        Ok(grant)
    }

    /// Revokes `grantee`'s contract: status `revoked` in the space, then the grantee removed
    /// from the space and every class room (the reason names the contract). The server's
    /// contract executor removes them too; whoever comes first, the rest is a no-op. A
    /// contract no longer active is not set again, but its grantee is still removed.
    pub async fn revoke(&self, record: &Record, grantee: &UserId) -> Result<Revoked> {
        self.require_patient(record)?;
        let contract = self.contract_of(record, grantee).await?;
        let mut grant = contract.grant;
        if grant.status == Status::Active {
            grant.status = Status::Revoked;
            let state_key = grant_state_key(grantee);
            record
                .space
                .send_state_event_raw(GRANT_EVENT_TYPE, &state_key, grant.to_content())
                .await?;
        }
        let reason = format!("Contract {} revoked by the patient", grant.contract_id);
        let removed = self.remove_from_record(record, &sdk_user(grantee)?, &reason).await?;
        Ok(Revoked { grant, removed })
    }

    /// Removes `user` from every class room of the record they are in or invited to, then
    /// from the space (last: the class rooms are what holds the data), with `reason`.
    /// Answers the rooms they were removed from.
    pub(crate) async fn remove_from_record(
        &self,
        record: &Record,
        user: &OwnedUserId,
        reason: &str,
    ) -> Result<Vec<RoomId>> {
        let mut removed = Vec::new();
        for (_, id) in record.rooms() {
            let Some(room) = self.client.get_room(&sdk_room_id(id)?) else { continue };
            if is_member(&room, user).await? {
                room.kick_user(user, Some(reason)).await?;
                removed.push(id.clone());
            }
        }
        if is_member(&record.space, user).await? {
            record.space.kick_user(user, Some(reason)).await?;
            removed.push(record.space_id());
        }
        Ok(removed)
    }

    /// Every personal contract in the record (one per grantee), oldest agreed first.
    /// Contents `medrix-records` refuses are skipped: the server refuses them too.
    pub async fn contracts(&self, record: &Record) -> Result<Vec<Contract>> {
        let mut contracts = Vec::new();
        for event in state_events(&record.space, GRANT_EVENT_TYPE).await? {
            let state_key = event["state_key"].as_str().unwrap_or_default();
            match read_grant(state_key, &event["content"]) {
                Ok(grant) => contracts.push(Contract {
                    grant,
                    agreed_at_ms: event["origin_server_ts"].as_u64().unwrap_or_default(),
                    event_id: event["event_id"].as_str().unwrap_or_default().to_owned(),
                }),
                Err(err) => {
                    tracing::warn!(state_key, error = %err, "a contract the client cannot read")
                }
            }
        }
        contracts.sort_by_key(|contract| contract.agreed_at_ms);
        Ok(contracts)
    }

    /// Every contract of the record, as the grants `medrix-records` evaluates.
    pub(crate) async fn grants(&self, record: &Record) -> Result<Vec<Grant>> {
        Ok(self.contracts(record).await?.into_iter().map(|contract| contract.grant).collect())
    }

    /// The contract of one grantee.
    pub async fn contract_of(&self, record: &Record, grantee: &UserId) -> Result<Contract> {
        self.contracts(record)
            .await?
            .into_iter()
            .find(|contract| contract.grant.grantee.as_str() == grantee.as_str())
            .ok_or_else(|| ClientError::NoContract(grantee.to_string()))
    }

    /// Every contract with what `evaluate` says of it at `now_ms`: in force (and for how
    /// long) or why not.
    pub async fn access(&self, record: &Record, now_ms: u64) -> Result<Vec<Access>> {
        Ok(self.contracts(record).await?.into_iter().map(|c| access_at(c, now_ms)).collect())
    }

    pub(crate) fn require_patient(&self, record: &Record) -> Result<()> {
        if record.patient() != &self.user {
            return Err(ClientError::NotPatient(record.patient().to_string()));
        }
        Ok(())
    }
}

/// Whether a contract gives access at `now_ms`: `evaluate` on holding a room of one of its
/// classes (every check but the class is the same for all of them).
pub fn access_at(contract: Contract, now_ms: u64) -> Access {
    let class = contract.grant.classes.iter().next().copied().unwrap_or(DataClass::Notes);
    let decision = evaluate(&contract.grant, &Action::Hold { class }, now_ms);
    let time_left_ms =
        decision.is_allowed().then(|| contract.grant.valid.end().saturating_sub(now_ms));
    Access { contract, decision, time_left_ms }
}

/// A contract as FHIR R4 `Consent`.
pub fn consent(record: &Record, contract: &Contract) -> Value {
    to_consent(&contract.grant, record.patient(), contract.agreed_at_ms)
}

/// A fresh contract ID: `c-` and 20 random letters and digits (FHIR's `id` alphabet).
pub fn new_contract_id() -> ContractId {
    let random: String =
        rand::rng().sample_iter(rand::distr::Alphanumeric).take(20).map(char::from).collect();
    ContractId::parse(&format!("c-{random}")).expect("letters and digits form a contract ID")
}

/// A break-glass window in words: minutes below two hours, else hours.
fn window_text(ms: u64) -> String {
    let minutes = ms.div_ceil(60_000);
    if minutes < 120 { format!("{minutes} minutes") } else { format!("{} hours", minutes / 60) }
}

/// The terms as one paragraph the patient and the grantee read.
pub fn terms_text(patient: &UserId, terms: &GrantTerms, contract_id: &ContractId) -> String {
    let classes: Vec<&str> = terms.classes.iter().map(|class| class.as_str()).collect();
    let access = match terms.mode {
        Mode::Read => "read",
        Mode::Contribute => "read and add to",
    };
    let bound = |ms: Option<i64>| ms.and_then(format_instant);
    let data = match (bound(terms.data_period.start()), bound(terms.data_period.end())) {
        (None, None) => "whatever their date".to_owned(),
        (Some(start), None) => format!("dated from {start}"),
        (None, Some(end)) => format!("dated before {end}"),
        (Some(start), Some(end)) => format!("dated from {start} and before {end}"),
    };
    let when = |ms: u64| format_instant(ms as i64).unwrap_or_else(|| ms.to_string());
    format!(
        "{patient} allows {grantee} to {access} their {classes} records, {data}, for {purpose} \
         ({code}), from {start} until {end} (contract {contract_id}).",
        grantee = terms.grantee,
        classes = classes.join(", "),
        purpose = terms.purpose.display(),
        code = terms.purpose.code(),
        start = when(terms.valid.start()),
        end = when(terms.valid.end()),
    )
}

/// Whether `grant` lets its grantee read entries of `class` that `previous` did not: the
/// class was not granted, the old contract no longer in force, or the data period reaches
/// further. (Only what a member already holds keys for matters: a member of the room.)
fn widens(previous: &Grant, grant: &Grant, class: DataClass) -> bool {
    !previous.classes.contains(&class)
        || previous.status != Status::Active
        || !grant.data_period.within(&previous.data_period)
}

/// The state key of a personal contract: `user:@name:server` (spec/records.md §4).
pub fn grant_state_key(grantee: &UserId) -> String {
    Grant::state_key_of(&medrix_records::Grantee::User(grantee.clone()))
}

/// A contract read from its state event.
fn read_grant(state_key: &str, content: &Value) -> Result<Grant, medrix_records::Error> {
    Grant::from_event(state_key, content)
}

/// Invites `user` without matrix-sdk's history sharing, which would hand over every key of
/// the room: `hand_over_history` has handed over what the contract covers.
async fn invite(room: &Room, user: &OwnedUserId) -> Result<()> {
    invite_with_reason(room, user, None).await
}

/// [`invite`], with the reason the invitation shows.
pub(crate) async fn invite_with_reason(
    room: &Room,
    user: &OwnedUserId,
    reason: Option<&str>,
) -> Result<()> {
    use matrix_sdk::ruma::api::client::membership::invite_user::v3::{
        InvitationRecipient, InviteUserId, Request,
    };
    let mut recipient = InviteUserId::new(user.clone());
    recipient.reason = reason.map(str::to_owned);
    let recipient = InvitationRecipient::UserId(recipient);
    room.client().send(Request::new(room.room_id().to_owned(), recipient)).await?;
    // The SDK reloads the members before its next send, so the invitee gets later keys.
    room.mark_members_missing();
    Ok(())
}

/// Whether `user` is in the room or invited to it.
pub(crate) async fn is_member(room: &Room, user: &OwnedUserId) -> Result<bool> {
    use matrix_sdk::ruma::events::room::member::MembershipState;
    Ok(match room.get_member(user).await? {
        Some(member) => {
            matches!(member.membership(), MembershipState::Join | MembershipState::Invite)
        }
        None => false,
    })
}

pub(crate) fn sdk_user(user: &UserId) -> Result<OwnedUserId> {
    OwnedUserId::try_from(user.as_str()).map_err(|_| ClientError::BadUser(user.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms() -> GrantTerms {
        GrantTerms {
            grantee: UserId::parse("@dr:hospital.example").unwrap(),
            purpose: Purpose::Treatment,
            classes: [DataClass::Laboratory, DataClass::Medications].into(),
            data_period: DataPeriod::new(Some(1_704_067_200_000), None).unwrap(),
            valid: Validity::new(1_767_225_600_000, 1_769_904_000_000).unwrap(),
            mode: Mode::Read,
            text: None,
        }
    }

    fn grant(status: Status) -> Grant {
        let terms = terms();
        Grant {
            contract_id: ContractId::parse("c-1").unwrap(),
            grantee: Grantee::User(terms.grantee),
            purpose: terms.purpose,
            classes: terms.classes,
            data_period: terms.data_period,
            valid: terms.valid,
            mode: terms.mode,
            text: "terms".to_owned(),
            status,
            emergency_access_ms: None,
            break_glass: None,
            custodian: None,
        }
    }

    #[test]
    fn a_contract_is_keyed_by_the_grantee_behind_user() {
        let grantee = UserId::parse("@dr:hospital.example").unwrap();
        assert_eq!(grant_state_key(&grantee), "user:@dr:hospital.example");
        let content = grant(Status::Active).to_content();
        assert_eq!(read_grant("user:@dr:hospital.example", &content), Ok(grant(Status::Active)));
        assert!(read_grant("user:@someone:else.example", &content).is_err());
    }

    #[test]
    fn access_is_what_evaluate_says_now() {
        let contract =
            |status| Contract { grant: grant(status), agreed_at_ms: 0, event_id: "$e".into() };
        let in_force = access_at(contract(Status::Active), 1_767_225_600_000 + 1_000);
        assert!(in_force.decision.is_allowed());
        assert_eq!(in_force.time_left_ms, Some(1_769_904_000_000 - 1_767_225_601_000));
        let ended = access_at(contract(Status::Active), 1_769_904_000_000);
        assert_eq!(ended.decision, Decision::Denied(medrix_records::Denial::Expired));
        assert_eq!(ended.time_left_ms, None);
        let revoked = access_at(contract(Status::Revoked), 1_767_225_600_000);
        assert_eq!(revoked.decision, Decision::Denied(medrix_records::Denial::NotActive));
    }

    #[test]
    fn the_written_terms_say_who_what_why_and_until_when() {
        let text = terms_text(
            &UserId::parse("@pat:home.example").unwrap(),
            &terms(),
            &ContractId::parse("c-1").unwrap(),
        );
        assert_eq!(
            text,
            "@pat:home.example allows @dr:hospital.example to read their laboratory, \
             medications records, dated from 2024-01-01T00:00:00.000Z, for treatment (TREAT), \
             from 2026-01-01T00:00:00.000Z until 2026-02-01T00:00:00.000Z (contract c-1)."
        );
    }

    #[test]
    fn contract_ids_are_fresh_and_in_the_fhir_id_alphabet() {
        let (a, b) = (new_contract_id(), new_contract_id());
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 22);
        assert!(ContractId::parse(a.as_str()).is_some());
    }
}
