//! The contents of Medrix's own state events, checked before this server signs one: a
//! contract (`org.medrix.grant`) or a record's description (`org.medrix.record`) that does
//! not parse is refused with the field at fault, so the record's contracts are always ones
//! the executor and every client can evaluate. Events other servers send are not refused for
//! their content (they are valid Matrix events); what is malformed there is simply not acted
//! on, as no contract.

use medrix_records::{Error, GRANT_EVENT_TYPE, Grant, RECORD_EVENT_TYPE, RecordRoom, RecordSpace};
use ruma::UserId;
use serde_json::Value;

use super::RoomError;

/// Refuses a local event of a Medrix state type whose content is malformed: a shape error
/// (missing field, wrong type) as `Invalid` (`M_BAD_JSON`), a value error (an end before its
/// start, an unknown class or purpose, a custodian of another server) as `InvalidValue`
/// (`M_INVALID_PARAM`).
pub(super) fn check_local(
    kind: &str,
    state_key: Option<&str>,
    content: &Value,
    sender: &UserId,
) -> Result<(), RoomError> {
    let checked = match (kind, state_key) {
        (GRANT_EVENT_TYPE, Some(grantee)) => match Grant::from_event(grantee, content) {
            Ok(grant) => return custodian_is_local(&grant, sender),
            Err(err) => Err(err),
        },
        (RECORD_EVENT_TYPE, Some(_)) if content.get("class").is_some() => {
            RecordRoom::from_content(content).map(drop)
        }
        (RECORD_EVENT_TYPE, Some(_)) => RecordSpace::from_content(content).map(drop),
        (GRANT_EVENT_TYPE | RECORD_EVENT_TYPE, None) => {
            return Err(RoomError::Invalid(format!("{kind} is a state event")));
        }
        _ => Ok(()),
    };
    checked.map_err(|err| match err {
        Error::Shape { .. } => RoomError::Invalid(err.to_string()),
        _ => RoomError::InvalidValue(err.to_string()),
    })
}

/// A custodian holds keys for the patient's server, which is the one that admits it to the
/// record's rooms: it must be a user of the server sending the contract (the patient's).
fn custodian_is_local(grant: &Grant, sender: &UserId) -> Result<(), RoomError> {
    match &grant.custodian {
        Some(custodian) if custodian.server_name().as_str() != sender.server_name().as_str() => {
            Err(RoomError::InvalidValue(
                "custodian: must be a user of the patient's own server".to_owned(),
            ))
        }
        _ => Ok(()),
    }
}
