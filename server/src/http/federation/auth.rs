//! Parsing and authenticating inbound federation requests: an axum extractor that checks the
//! X-Matrix signature (with the origin's published keys), the destination, and the
//! federation allow-list, applies the per-origin rate limit, then hands the handler ruma's
//! typed request and the origin.

use std::sync::atomic::Ordering;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
};
use http::StatusCode;
use medrix_protocol::{canonical::parse_value, request_signature::RequestLine};
use ruma::{
    CanonicalJsonValue, OwnedServerName,
    api::{IncomingRequest, federation::authentication::XMatrix},
};

use crate::{
    http::{
        error::{ApiError, ErrorCode},
        ruma_request::{bytes_or_empty_object, path_arguments},
    },
    service::{Services, federation::FederationError},
};

/// The largest federation request body: a transaction of 50 PDUs and 100 EDUs fits.
const MAX_FEDERATION_BODY: usize = 8 << 20;

/// A typed federation request from an authenticated origin server.
pub struct Federated<T> {
    pub body: T,
    pub origin: OwnedServerName,
}

fn unauthorized(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, message)
}

impl From<FederationError> for ApiError {
    fn from(err: FederationError) -> Self {
        match err {
            FederationError::NotAllowed(server) => {
                ApiError::forbidden(format!("{server} is not a server this one federates with"))
            }
            FederationError::Disabled => ApiError::not_found("federation is off on this server"),
            FederationError::Storage(err) => err.into(),
            other => {
                tracing::info!(err = %other, "a request to another server failed");
                ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown, other.summary())
            }
        }
    }
}

impl<T> FromRequest<Services> for Federated<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Services) -> Result<Self, ApiError> {
        let Authenticated { origin, parts, bytes, path_args, .. } =
            authenticate(request, services).await?;
        let request = http::Request::from_parts(parts, bytes_or_empty_object::<T>(bytes));
        let body = T::try_from_http_request(request, &path_args)
            .map_err(|err| ApiError::bad_json(format!("invalid request: {err}")))?;
        Ok(Federated { body, origin })
    }
}

/// A federation request whose origin, destination and X-Matrix signature were checked (and
/// that passed the allow-list and the origin's rate limit), before its body is typed.
pub struct Authenticated {
    pub origin: OwnedServerName,
    pub parts: http::request::Parts,
    pub bytes: Bytes,
    /// The body parsed as canonical JSON, as the signature covers it (`None` if empty): a
    /// handler may take it as it is instead of parsing the bytes again.
    pub content: Option<CanonicalJsonValue>,
    /// The request path's parameters, in order.
    pub path_args: Vec<String>,
}

/// The answer when the origin's keys cannot be had. Anyone can name any origin here, signed
/// or not, so the reason (which may name addresses and ports inside our network, or echo
/// what the named host answered) goes to the log only.
fn origin_unverifiable(origin: &ruma::ServerName, err: FederationError) -> ApiError {
    if let FederationError::Storage(err) = err {
        return err.into();
    }
    tracing::info!(%origin, %err, "cannot fetch a requesting server's keys");
    unauthorized(ORIGIN_UNVERIFIABLE)
}

/// What a caller is told when the origin's keys cannot be had.
pub const ORIGIN_UNVERIFIABLE: &str = "cannot verify the origin server's signing keys";

/// Bodies from this size up have their signature checked as sent on another thread while
/// they are parsed; below it the thread handoff costs more than the overlap saves.
const CHECK_BESIDE_PARSE_BYTES: usize = 8 * 1024;

/// Authenticates an inbound federation request.
pub async fn authenticate(
    request: Request,
    services: &Services,
) -> Result<Authenticated, ApiError> {
    let federation = services.federation.as_ref().ok_or(FederationError::Disabled)?;
    let (mut parts, body) = request.into_parts();
    let path_args = path_arguments(&mut parts, services).await;
    let header = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("an X-Matrix signature is required"))?;
    let x_matrix = XMatrix::try_from(header)
        .map_err(|err| unauthorized(format!("unreadable X-Matrix header: {err}")))?;
    federation.client.policy.check(&x_matrix.origin)?;
    let ours = federation.client.origin();
    if x_matrix.destination.as_deref().is_some_and(|destination| destination != ours) {
        return Err(unauthorized("the request is addressed to another server"));
    }
    let bytes = axum::body::to_bytes(body, MAX_FEDERATION_BODY).await.map_err(|err| {
        ApiError::unreadable_body(&err, || {
            ApiError::too_large(format!(
                "federation requests are limited to {MAX_FEDERATION_BODY} bytes"
            ))
        })
    })?;
    let keys = federation
        .remote_keys
        .keys_for(&x_matrix.origin, x_matrix.key.as_str(), crate::clock::now_ms())
        .await
        .map_err(|err| origin_unverifiable(&x_matrix.origin, err))?;
    let uri = parts.uri.path_and_query().map_or(parts.uri.path(), |path| path.as_str());
    let line = RequestLine {
        destination: ours.to_string(),
        method: parts.method.to_string(),
        origin: x_matrix.origin.to_string(),
        uri: uri.to_owned(),
    };
    // A large body sent in canonical form (as Synapse sends) verifies as sent, checked on
    // another thread while this one parses it. A small one is checked after the parse, on
    // its canonical encoding, as any body not sent canonically (Medrix's own, for now) is:
    // trying it as sent first would cost a second verification for nothing.
    let raw_check = match bytes.len() {
        len if len < CHECK_BESIDE_PARSE_BYTES => None,
        _ => {
            let (bytes, line, keys) = (bytes.clone(), line.clone(), keys.clone());
            let (key_id, signature) = (x_matrix.key.to_string(), x_matrix.sig.clone());
            Some(tokio::task::spawn_blocking(move || {
                line.verify_with_raw_body(&bytes, &key_id, signature.as_bytes(), &keys).is_ok()
            }))
        }
    };
    let content = match bytes.is_empty() {
        true => None,
        false => Some(
            parse_value(&bytes, MAX_FEDERATION_BODY)
                .map_err(|err| ApiError::bad_json(format!("the request body: {err}")))?,
        ),
    };
    let verified_as_sent = match raw_check {
        Some(check) => check.await.unwrap_or(false),
        None => false,
    };
    if !verified_as_sent {
        line.verify(content.as_ref(), x_matrix.key.as_str(), x_matrix.sig.as_bytes(), &keys)
            .map_err(|err| {
                services.metrics.bad_federation_signatures.fetch_add(1, Ordering::Relaxed);
                unauthorized(format!("signature check failed: {err}"))
            })?;
    }
    federation.rate_limits.check(x_matrix.origin.as_str()).map_err(|retry_after_ms| {
        services.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
        ApiError::limit_exceeded(retry_after_ms)
    })?;
    // It signed a request to us, so it is up: whatever waits for it goes now.
    federation.sender.peer_is_back(&x_matrix.origin);
    Ok(Authenticated { origin: x_matrix.origin, parts, bytes, content, path_args })
}

#[cfg(test)]
mod tests {
    use ruma::ServerName;

    use super::*;

    fn server() -> OwnedServerName {
        ServerName::parse("clinic.example").unwrap()
    }

    #[test]
    fn outbound_failures_reach_callers_without_their_detail() {
        let failures = [
            FederationError::Unresolvable { server: server(), why: "10.1.2.3 internal".into() },
            FederationError::Unreachable { server: server(), why: "10.1.2.3:6379 refused".into() },
            FederationError::Refused { server: server(), status: 500, body: "10.1.2.3".into() },
            FederationError::BadResponse { server: server(), why: "10.1.2.3 garbage".into() },
            FederationError::BadKeys { server: server(), why: "10.1.2.3 bad key".into() },
        ];
        for failure in failures {
            let shown = format!("{failure}");
            let answered = ApiError::from(failure);
            assert!(!answered.message.contains("10.1.2.3"), "{shown} → {}", answered.message);
            assert_eq!(answered.status, StatusCode::BAD_GATEWAY);
        }
        let keys = FederationError::Unreachable { server: server(), why: "10.1.2.3".into() };
        let answered = origin_unverifiable(&server(), keys);
        assert_eq!(
            (answered.code, answered.message.as_str()),
            (ErrorCode::Unauthorized, ORIGIN_UNVERIFIABLE)
        );
    }
}
