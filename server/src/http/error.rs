//! The HTTP layer's one error type: a Matrix error code, an HTTP status and a message, sent as
//! `{"errcode": ..., "error": ...}`. Every lower-layer error is mapped to it once, here.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use serde_json::json;

/// The Matrix error codes Medrix sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotJson,
    BadJson,
    MissingToken,
    UnknownToken,
    Forbidden,
    Unrecognized,
    LimitExceeded,
    TooLarge,
    InvalidParam,
    UserInUse,
    InvalidUsername,
    NotFound,
    UnsupportedRoomVersion,
    IncompatibleRoomVersion,
    WrongRoomKeysVersion,
    Unauthorized,
    RoomInUse,
    BadAlias,
    Unknown,
}

impl ErrorCode {
    /// The wire name, `M_...`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotJson => "M_NOT_JSON",
            ErrorCode::BadJson => "M_BAD_JSON",
            ErrorCode::MissingToken => "M_MISSING_TOKEN",
            ErrorCode::UnknownToken => "M_UNKNOWN_TOKEN",
            ErrorCode::Forbidden => "M_FORBIDDEN",
            ErrorCode::Unrecognized => "M_UNRECOGNIZED",
            ErrorCode::LimitExceeded => "M_LIMIT_EXCEEDED",
            ErrorCode::TooLarge => "M_TOO_LARGE",
            ErrorCode::InvalidParam => "M_INVALID_PARAM",
            ErrorCode::UserInUse => "M_USER_IN_USE",
            ErrorCode::InvalidUsername => "M_INVALID_USERNAME",
            ErrorCode::NotFound => "M_NOT_FOUND",
            ErrorCode::UnsupportedRoomVersion => "M_UNSUPPORTED_ROOM_VERSION",
            ErrorCode::IncompatibleRoomVersion => "M_INCOMPATIBLE_ROOM_VERSION",
            ErrorCode::WrongRoomKeysVersion => "M_WRONG_ROOM_KEYS_VERSION",
            ErrorCode::Unauthorized => "M_UNAUTHORIZED",
            ErrorCode::RoomInUse => "M_ROOM_IN_USE",
            ErrorCode::BadAlias => "M_BAD_ALIAS",
            ErrorCode::Unknown => "M_UNKNOWN",
        }
    }
}

/// An error answer to a client request.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// For `M_LIMIT_EXCEEDED`: when the client may try again.
    pub retry_after_ms: Option<u64>,
    /// Further fields some error codes carry (`current_version` of a key backup).
    pub extra: Option<(&'static str, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_ms: None, extra: None }
    }

    pub fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadJson, message)
    }

    pub fn not_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::NotJson, message)
    }

    pub fn invalid_param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidParam, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unrecognized(status: StatusCode, message: impl Into<String>) -> Self {
        Self::new(status, ErrorCode::Unrecognized, message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge, message)
    }

    pub fn limit_exceeded(retry_after_ms: u64) -> Self {
        Self {
            retry_after_ms: Some(retry_after_ms),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::LimitExceeded,
                "too many requests",
            )
        }
    }

    /// The answer when a request body cannot be read: it was too slow to arrive (its
    /// deadline, see [`crate::connections`]), else over the size limit (`too_large`).
    pub fn unreadable_body(err: &axum::Error, too_large: impl FnOnce() -> Self) -> Self {
        if crate::connections::is_body_timeout(err) {
            Self::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::Unknown,
                "the request body did not arrive in time",
            )
        } else {
            too_large()
        }
    }

    /// A failure of the server itself. The detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(%detail, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Unknown, "internal server error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "errcode": self.code.as_str(), "error": self.message });
        if let Some(retry_after_ms) = self.retry_after_ms {
            body["retry_after_ms"] = retry_after_ms.into();
        }
        if let Some((field, value)) = self.extra {
            body[field] = value.into();
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(err: crate::storage::StorageError) -> Self {
        ApiError::internal(err)
    }
}

impl From<crate::service::access::AccessError> for ApiError {
    fn from(err: crate::service::access::AccessError) -> Self {
        use crate::service::access::AccessError;
        match err {
            AccessError::NotFound(why) => ApiError::not_found(why),
            AccessError::Forbidden(why) => ApiError::forbidden(why),
            AccessError::Room(err) => err.into(),
        }
    }
}
