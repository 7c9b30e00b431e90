//! Parsing at the edge: an axum extractor that turns an HTTP request into ruma's typed request
//! for the endpoint (path arguments, query and body), and authenticates it when the endpoint
//! needs an access token. Handlers receive types, never raw JSON.

use std::any::TypeId;

use axum::{
    body::Bytes,
    extract::{FromRequest, Request},
};
use http::StatusCode;
use ruma::api::{
    IncomingRequest,
    auth_scheme::{AccessToken, AccessTokenOptional},
};

use crate::{
    http::error::{ApiError, ErrorCode},
    service::{Services, accounts::Session},
};

/// A typed request, with the session that sent it when the endpoint is authenticated.
pub struct Ruma<T> {
    pub body: T,
    pub session: Option<Session>,
    /// The JSON body as received, for the few endpoints whose body Medrix extends beyond the
    /// ruma type (a knock's requested terms).
    pub raw_body: Bytes,
}

impl<T> Ruma<T>
where
    T: ruma::api::Metadata<Authentication = AccessToken>,
{
    /// The session of an endpoint whose type requires an access token. Only such endpoints
    /// have this method: one where the token is optional must handle its absence (see
    /// [`Ruma::require_session`]).
    pub fn session(&self) -> &Session {
        // The extractor refuses every request to an `AccessToken` endpoint that has no valid
        // token, so a `Ruma` of one always holds a session.
        #[allow(clippy::expect_used)]
        self.session.as_ref().expect("the extractor authenticated this endpoint")
    }
}

impl<T> Ruma<T> {
    /// The session, or the 401 `M_MISSING_TOKEN` answer when the request carried no token:
    /// for endpoints whose token ruma marks optional but that this server serves only to a
    /// logged-in user.
    pub fn require_session(&self) -> Result<&Session, ApiError> {
        self.session.as_ref().ok_or_else(missing_token)
    }
}

/// The 401 answer to a request without the access token it needs.
pub fn missing_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::MissingToken,
        "this endpoint needs an access token",
    )
}

impl<T> FromRequest<Services> for Ruma<T>
where
    T: IncomingRequest + Send + 'static,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, services: &Services) -> Result<Self, ApiError> {
        let (mut parts, body) = request.into_parts();
        let mut path_args = path_arguments(&mut parts, services).await;
        // Routes for an empty trailing state key match one argument short.
        path_args.resize(path_args.len().max(T::_path_parameters().len()), String::new());
        let limit = services.config.limits.max_json_body_bytes;
        let bytes = axum::body::to_bytes(body, limit).await.map_err(|err| {
            ApiError::unreadable_body(&err, || {
                ApiError::too_large(format!("request body is over the {limit}-byte limit"))
            })
        })?;

        let needs_token = TypeId::of::<T::Authentication>() == TypeId::of::<AccessToken>()
            || closed_to_anonymous::<T>();
        let takes_token =
            needs_token || TypeId::of::<T::Authentication>() == TypeId::of::<AccessTokenOptional>();
        let session = if takes_token { authenticate(&parts, services, needs_token)? } else { None };
        // Every write is rate limited, not only the endpoints the spec marks: a flood of
        // sends or key uploads costs fsyncs and storage. Reads (sync, history) are not.
        if T::RATE_LIMITED || T::METHOD != http::Method::GET {
            check_rate_limit(&parts, services, session.as_ref())?;
        }

        if !bytes.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_err() {
            return Err(ApiError::not_json("the request body is not valid JSON"));
        }
        // Every JSON body of the client API is an object. Checked here once, because serde
        // also reads a struct from an array of its fields (`[]` would be an empty request).
        if bytes.iter().find(|byte| !byte.is_ascii_whitespace()).is_some_and(|b| *b != b'{') {
            return Err(ApiError::bad_json("the request body must be a JSON object"));
        }
        // Only POST bodies open user-interactive flows that way; sends (PUT) and syncs (GET),
        // the hot paths, skip the check.
        let bytes = match T::METHOD {
            http::Method::POST => without_empty_auth(&bytes).unwrap_or(bytes),
            _ => bytes,
        };
        let raw_body = bytes.clone();
        let request = http::Request::from_parts(parts, bytes_or_empty_object::<T>(bytes));
        let body = T::try_from_http_request(request, &path_args)
            .map_err(|err| ApiError::bad_json(format!("invalid request: {err}")))?;
        Ok(Ruma { body, session, raw_body })
    }
}

/// Endpoints the spec leaves open to anyone that this server serves only to logged-in
/// users: profiles hold people's names, personal data in a health record system (Synapse's
/// `require_auth_for_profile_requests`).
fn closed_to_anonymous<T: 'static>() -> bool {
    use ruma::api::client::profile::{get_avatar_url, get_display_name, get_profile};
    [
        TypeId::of::<get_profile::v3::Request>(),
        TypeId::of::<get_display_name::v3::Request>(),
        TypeId::of::<get_avatar_url::v3::Request>(),
    ]
    .contains(&TypeId::of::<T>())
}

/// The session of the request's access token: `None` without a token unless `required`.
pub fn authenticate(
    parts: &http::request::Parts,
    services: &Services,
    required: bool,
) -> Result<Option<Session>, ApiError> {
    match access_token(parts) {
        Some(token) => Ok(Some(services.accounts.authenticate(token)?.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::UnknownToken, "unknown access token")
        })?)),
        None if required => Err(missing_token()),
        None => Ok(None),
    }
}

/// Applies the per-client rate limit: by user once logged in, by IP before.
pub fn check_rate_limit(
    parts: &http::request::Parts,
    services: &Services,
    session: Option<&Session>,
) -> Result<(), ApiError> {
    let client = match session {
        Some(session) => session.user_id.to_string(),
        None => parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string()),
    };
    services.rate_limits.check(&client).map_err(|retry_after_ms| {
        services.metrics.rate_limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ApiError::limit_exceeded(retry_after_ms)
    })
}

/// The body without an `auth` object that has neither `type` nor `session`, if it has one
/// (matrix-nio sends `{"initial_device_display_name": ...}` there to open a flow): such an
/// object completes no stage, and without it the endpoint answers with its flows, which is
/// what the client is asking for.
fn without_empty_auth(bytes: &Bytes) -> Option<Bytes> {
    if !bytes.windows(6).any(|window| window == b"\"auth\"") {
        return None;
    }
    let serde_json::Value::Object(mut body) = serde_json::from_slice(bytes).ok()? else {
        return None;
    };
    match body.get("auth") {
        Some(serde_json::Value::Object(auth))
            if !auth.contains_key("type") && !auth.contains_key("session") =>
        {
            body.remove("auth");
            Some(Bytes::from(serde_json::to_vec(&body).ok()?))
        }
        _ => None,
    }
}

/// The request's path arguments in route order (what ruma's request parsing takes).
pub async fn path_arguments(parts: &mut http::request::Parts, services: &Services) -> Vec<String> {
    match axum::extract::RawPathParams::from_request_parts(parts, services).await {
        Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A ruma type's JSON (event content, keys) as a value to store or forward.
pub fn raw_json<T>(raw: &ruma::serde::Raw<T>) -> Result<serde_json::Value, ApiError> {
    serde_json::from_str(raw.json().get()).map_err(|err| ApiError::bad_json(err.to_string()))
}

/// ruma expects `{}` for an empty body on endpoints that take one.
pub fn bytes_or_empty_object<T: IncomingRequest>(bytes: Bytes) -> Bytes {
    if bytes.is_empty() && T::METHOD != http::Method::GET {
        Bytes::from_static(b"{}")
    } else {
        bytes
    }
}

/// The access token from the `Authorization: Bearer` header, or the deprecated query
/// parameter some clients still send.
fn access_token(parts: &http::request::Parts) -> Option<&str> {
    if let Some(header) = parts.headers.get(http::header::AUTHORIZATION) {
        return header.to_str().ok()?.strip_prefix("Bearer ");
    }
    parts.uri.query()?.split('&').find_map(|pair| pair.strip_prefix("access_token="))
}

use axum::extract::FromRequestParts as _;
