//! Sending ruma's typed responses through axum.

use axum::response::{IntoResponse, Response};
use ruma::api::OutgoingResponse;

use crate::http::error::ApiError;

/// A typed response for the endpoint, serialized by ruma.
pub struct RumaResponse<T>(pub T);

impl<T: OutgoingResponse> IntoResponse for RumaResponse<T> {
    fn into_response(self) -> Response {
        match self.0.try_into_http_response::<Vec<u8>>() {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                // JSON unless ruma chose otherwise (federated media answers `multipart/mixed`).
                parts
                    .headers
                    .entry(http::header::CONTENT_TYPE)
                    .or_insert(http::HeaderValue::from_static("application/json"));
                Response::from_parts(parts, axum::body::Body::from(body))
            }
            Err(err) => {
                ApiError::internal(format!("serializing a response: {err}")).into_response()
            }
        }
    }
}
