//! `PUT /send/{txnId}`: another server's transaction of room events (PDUs, handed to the
//! federated rooms) and ephemeral messages (EDUs, applied by `edus_in`).

use axum::extract::State;
use http::StatusCode;
use ruma::api::federation::transactions::send_transaction_message::v1 as send_transaction;

use super::auth::Federated;
use crate::{
    http::{
        error::{ApiError, ErrorCode},
        ruma_response::RumaResponse,
    },
    service::{
        Services,
        federation::{
            FederationError,
            sender::{MAX_EDUS_PER_TRANSACTION, MAX_PDUS_PER_TRANSACTION},
        },
    },
};

pub async fn send(
    State(services): State<Services>,
    request: Federated<send_transaction::Request>,
) -> Result<RumaResponse<send_transaction::Response>, ApiError> {
    let federation = services.federation.as_ref().ok_or(FederationError::Disabled)?;
    let (origin, body) = (request.origin, request.body);
    check_limits(&body)?;
    if body.origin != origin {
        return Err(ApiError::forbidden("the transaction's origin is not the signing server"));
    }
    let txn_id = body.transaction_id.as_str();
    tracing::debug!(%origin, pdus = body.pdus.len(), edus = body.edus.len(), "transaction");
    if !federation.edus_in.begin_transaction(&origin, txn_id) {
        // A repeat: the sender missed our answer. Everything in it was taken in already.
        return Ok(RumaResponse(send_transaction::Response::default()));
    }
    // EDUs first: a to-device message carrying the Megolm key for a room event sent in the
    // same transaction must reach the recipient no later than the event, or the recipient's
    // client may see the event before it can decrypt it (its sender's client shared the key
    // before sending, so the key was queued first).
    if let Err(err) = federation.edus_in.receive(&origin, &body.edus).await {
        federation.edus_in.abandon_transaction(&origin, txn_id);
        return Err(err.into());
    }
    let pdus = federation.rooms.receive_transaction(&origin, body.pdus).await;
    Ok(RumaResponse(send_transaction::Response::new(pdus)))
}

/// The spec's limits on one transaction (the body size is bounded by the extractor).
fn check_limits(body: &send_transaction::Request) -> Result<(), ApiError> {
    if body.pdus.len() > MAX_PDUS_PER_TRANSACTION || body.edus.len() > MAX_EDUS_PER_TRANSACTION {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::TooLarge,
            format!(
                "a transaction holds at most {MAX_PDUS_PER_TRANSACTION} PDUs and \
                 {MAX_EDUS_PER_TRANSACTION} EDUs"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId};
    use serde_json::value::RawValue;

    use super::*;

    fn transaction(pdus: usize, edus: usize) -> send_transaction::Request {
        let origin: OwnedServerName = "peer.test".try_into().unwrap();
        let mut request = send_transaction::Request::new(
            OwnedTransactionId::from("t1"),
            origin,
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = (0..pdus).map(|_| RawValue::from_string("{}".into()).unwrap()).collect();
        let edu = RawValue::from_string(r#"{"edu_type":"m.typing","content":{}}"#.into()).unwrap();
        request.edus = (0..edus).map(|_| ruma::serde::Raw::from_json(edu.clone())).collect();
        request
    }

    #[test]
    fn a_transaction_over_the_spec_limits_is_refused_with_m_too_large() {
        assert!(check_limits(&transaction(50, 100)).is_ok());
        for (pdus, edus) in [(51, 0), (0, 101)] {
            let err = check_limits(&transaction(pdus, edus)).unwrap_err();
            let response = axum::response::IntoResponse::into_response(err);
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
    }
}
