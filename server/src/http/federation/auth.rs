//! Parsing and authenticating inbound federation requests: an axum extractor that checks the
//! X-Matrix signature (with the origin's published keys), the destination, and the
//! federation allow-list, applies the per-origin rate limit, then hands the handler ruma's
//! typed request and the origin.

use axum::extract::{FromRequest, Request};
use http::StatusCode;
use ruma::{
    OwnedServerName,
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
            other => ApiError::new(StatusCode::BAD_GATEWAY, ErrorCode::Unknown, other.to_string()),
        }
    }
}

impl<T> FromRequest<Services> for Federated<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Services) -> Result<Self, ApiError> {
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
        let bytes = axum::body::to_bytes(body, MAX_FEDERATION_BODY).await.map_err(|_| {
            ApiError::too_large(format!(
                "federation requests are limited to {MAX_FEDERATION_BODY} bytes"
            ))
        })?;
        let keys = federation
            .remote_keys
            .keys_for(&x_matrix.origin, x_matrix.key.as_str(), crate::clock::now_ms())
            .await
            .map_err(|err| unauthorized(format!("cannot verify the origin: {err}")))?;
        let request = http::Request::from_parts(parts, bytes);
        x_matrix
            .verify_request(&request, ours, keys.as_public_key_map())
            .map_err(|err| unauthorized(format!("signature check failed: {err}")))?;
        federation.rate_limits.check(x_matrix.origin.as_str()).map_err(|retry_after_ms| {
            services.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            ApiError::limit_exceeded(retry_after_ms)
        })?;
        // It signed a request to us, so it is up: whatever waits for it goes now.
        federation.sender.peer_is_back(&x_matrix.origin);
        let (parts, bytes) = request.into_parts();
        let request = http::Request::from_parts(parts, bytes_or_empty_object::<T>(bytes));
        let body = T::try_from_http_request(request, &path_args)
            .map_err(|err| ApiError::bad_json(format!("invalid request: {err}")))?;
        Ok(Federated { body, origin: x_matrix.origin })
    }
}
