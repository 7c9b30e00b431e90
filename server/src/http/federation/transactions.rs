//! `PUT /send/{txnId}`: another server's transaction of room events (PDUs, handed to the
//! federated rooms) and ephemeral messages (EDUs, applied by `edus_in`).

use axum::extract::{FromRequest, Request, State};
use http::StatusCode;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName,
    api::federation::transactions::{edu::Edu, send_transaction_message::v1 as send_transaction},
    serde::Raw,
};

use super::auth::{Authenticated, authenticate};
use crate::service::federation::edus_in::TransactionClaim;
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
    transaction: IncomingTransaction,
) -> Result<RumaResponse<send_transaction::Response>, ApiError> {
    let federation = services.federation.as_ref().ok_or(FederationError::Disabled)?;
    let IncomingTransaction { origin, txn_id, pdus, edus } = transaction;
    tracing::debug!(%origin, pdus = pdus.len(), edus = edus.len(), "transaction");
    let claimed = match federation.edus_in.claim_transaction(&origin, &txn_id) {
        TransactionClaim::New(claimed) => claimed,
        TransactionClaim::Seen(outcome) => return answer_repeat(outcome).await,
    };
    // In a task of its own: once claimed, a transaction is taken in to the end and its
    // outcome recorded, even if its sender hangs up meanwhile (it then sends it again, and
    // that copy is answered from this one's outcome).
    let (edus_in, rooms) = (federation.edus_in.clone(), federation.rooms.clone());
    let processing = tokio::spawn(async move {
        // EDUs first: a to-device message carrying the Megolm key for a room event sent in
        // the same transaction must reach the recipient no later than the event, or the
        // recipient's client may see the event before it can decrypt it (its sender's client
        // shared the key before sending, so the key was queued first).
        if let Err(err) = edus_in.receive(&origin, &edus).await {
            edus_in.finish_transaction(claimed, false);
            return Err(err);
        }
        let pdus = rooms.receive_transaction(&origin, pdus).await;
        edus_in.finish_transaction(claimed, true);
        Ok(pdus)
    });
    match processing.await {
        Ok(Ok(pdus)) => Ok(RumaResponse(send_transaction::Response::new(pdus))),
        Ok(Err(err)) => Err(err.into()),
        Err(err) => {
            tracing::error!(%err, "processing a transaction failed");
            Err(send_again())
        }
    }
}

/// A transaction seen before: answered once its first copy's processing ends, as that ended
/// (everything in it was taken in then, so this copy adds nothing).
async fn answer_repeat(
    mut outcome: tokio::sync::watch::Receiver<Option<bool>>,
) -> Result<RumaResponse<send_transaction::Response>, ApiError> {
    match outcome.wait_for(Option::is_some).await.map(|ended| *ended) {
        Ok(Some(true)) => Ok(RumaResponse(send_transaction::Response::default())),
        _ => Err(send_again()),
    }
}

fn send_again() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unknown,
        "this transaction could not be taken in; send it again",
    )
}

/// A `/send` request, authenticated, with its events taken from the one parse of the body
/// that the signature check made (a transaction is up to 50 events of up to 64 KiB each:
/// parsing it again, as ruma's typed request and then each event, would cost more than the
/// rest of taking it in save the signature arithmetic).
pub struct IncomingTransaction {
    origin: OwnedServerName,
    txn_id: String,
    /// The PDUs that are JSON objects (anything else could never be an event).
    pdus: Vec<CanonicalJsonObject>,
    edus: Vec<Raw<Edu>>,
}

impl FromRequest<Services> for IncomingTransaction {
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Services) -> Result<Self, ApiError> {
        let Authenticated { origin, content, path_args, .. } =
            authenticate(request, services).await?;
        let txn_id = path_args
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::bad_json("the transaction ID is missing from the path"))?;
        let Some(CanonicalJsonValue::Object(mut body)) = content else {
            return Err(ApiError::bad_json("a transaction is a JSON object"));
        };
        match body.get("origin") {
            Some(CanonicalJsonValue::String(claimed)) if *claimed == origin.as_str() => {}
            Some(CanonicalJsonValue::String(_)) => {
                return Err(ApiError::forbidden(
                    "the transaction's origin is not the signing server",
                ));
            }
            _ => return Err(ApiError::bad_json("`origin` must be a server name")),
        }
        if !matches!(body.get("origin_server_ts"), Some(CanonicalJsonValue::Integer(_))) {
            return Err(ApiError::bad_json("`origin_server_ts` must be an integer"));
        }
        let pdus = match body.remove("pdus") {
            Some(CanonicalJsonValue::Array(pdus)) => pdus,
            _ => return Err(ApiError::bad_json("`pdus` must be an array")),
        };
        let edus = match body.remove("edus") {
            None => Vec::new(),
            Some(CanonicalJsonValue::Array(edus)) => edus,
            Some(_) => return Err(ApiError::bad_json("`edus` must be an array")),
        };
        check_limits(pdus.len(), edus.len())?;
        let pdus = pdus
            .into_iter()
            .filter_map(|pdu| match pdu {
                CanonicalJsonValue::Object(object) => Some(object),
                _ => None,
            })
            .collect();
        let edus = edus
            .iter()
            .map(|edu| serde_json::value::to_raw_value(edu).map(Raw::from_json))
            .collect::<Result<_, _>>()
            .map_err(|err| ApiError::bad_json(format!("an EDU: {err}")))?;
        Ok(Self { origin, txn_id, pdus, edus })
    }
}

/// The spec's limits on one transaction (the body size is bounded by the extractor).
fn check_limits(pdus: usize, edus: usize) -> Result<(), ApiError> {
    if pdus > MAX_PDUS_PER_TRANSACTION || edus > MAX_EDUS_PER_TRANSACTION {
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
    use super::*;

    #[test]
    fn a_transaction_over_the_spec_limits_is_refused_with_m_too_large() {
        assert!(check_limits(50, 100).is_ok());
        for (pdus, edus) in [(51, 0), (0, 101)] {
            let err = check_limits(pdus, edus).unwrap_err();
            let response = axum::response::IntoResponse::into_response(err);
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        }
    }
}
