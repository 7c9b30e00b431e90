//! Registration (user-interactive, gated by a registration token), availability, whoami.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use ruma::api::client::{
    account::{
        ThirdPartyIdRemovalStatus, change_password, deactivate, get_username_availability,
        register, whoami,
    },
    uiaa::AuthData,
};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::{
    http::{
        error::{ApiError, ErrorCode},
        ruma_request::Ruma,
        ruma_response::RumaResponse,
    },
    service::{
        Services,
        account_changes::AccountChangeError,
        accounts::{AccountError, hash_password, with_password_hashing},
    },
};

const TOKEN_STAGE: &str = "m.login.registration_token";
const DUMMY_STAGE: &str = "m.login.dummy";
/// The one registration flow: the token, then the dummy stage. Synapse offers the same, and
/// clients that register with a token (matrix-nio, Element) expect the second stage.
const FLOW: [&str; 2] = [TOKEN_STAGE, DUMMY_STAGE];

impl From<AccountChangeError> for ApiError {
    fn from(err: AccountChangeError) -> Self {
        match err {
            AccountChangeError::Account(err) => err.into(),
            AccountChangeError::Room(err) => err.into(),
            AccountChangeError::Storage(err) => err.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::UserInUse => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UserInUse,
                "user ID already taken",
            ),
            AccountError::InvalidUsername(why) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidUsername, why)
            }
            AccountError::UnknownDevice => ApiError::not_found("unknown device"),
            AccountError::Storage(err) => err.into(),
        }
    }
}

/// The 401 answer of user-interactive auth: the flows, the session and what is done.
fn uia_challenge(session: &str, completed: &[String], error: Option<&str>) -> Response {
    let mut body = json!({
        "flows": [{ "stages": FLOW }],
        "params": {},
        "session": session,
        "completed": completed,
    });
    if let Some(error) = error {
        body["errcode"] = json!("M_FORBIDDEN");
        body["error"] = json!(error);
    }
    (StatusCode::UNAUTHORIZED, Json(body)).into_response()
}

pub async fn register(
    State(services): State<Services>,
    request: Ruma<register::v3::Request>,
) -> Result<Response, ApiError> {
    let request = request.body;
    if request.kind == register::RegistrationKind::Guest {
        return Err(ApiError::forbidden("guest access is not offered"));
    }
    let Some(expected_token) = services.config.registration_token.as_deref() else {
        return Err(ApiError::forbidden("registration is closed on this server"));
    };
    let user_id = match request.username.as_deref() {
        Some(localpart) => services.accounts.user_id_for_new_account(&localpart.to_lowercase())?,
        None => services.accounts.user_id_for_new_account(&format!(
            "user_{}",
            crate::random::string(crate::random::HEX, 12)
        ))?,
    };
    if services.accounts.exists(&user_id)? {
        return Err(AccountError::UserInUse.into());
    }

    // User-interactive auth: the token, then the dummy stage, in that order.
    let session = match &request.auth {
        Some(auth) => auth.session().map(ToOwned::to_owned),
        None => None,
    };
    let session = match session.filter(|id| services.uia.completed(id).is_some()) {
        Some(id) => id,
        None => services.uia.start(),
    };
    match &request.auth {
        Some(AuthData::RegistrationToken(stage)) => {
            if bool::from(stage.token.as_bytes().ct_eq(expected_token.as_bytes())) {
                services.uia.complete(&session, TOKEN_STAGE);
            } else {
                let completed = services.uia.completed(&session).unwrap_or_default();
                return Ok(uia_challenge(&session, &completed, Some("invalid registration token")));
            }
        }
        // The dummy stage counts only after the token: a dummy alone (matrix-nio's register())
        // is answered with the flow.
        Some(AuthData::Dummy(_)) => {
            let completed = services.uia.completed(&session).unwrap_or_default();
            if completed.iter().any(|stage| stage == TOKEN_STAGE) {
                services.uia.complete(&session, DUMMY_STAGE);
            }
        }
        _ => {}
    }
    let completed = services.uia.completed(&session).unwrap_or_default();
    if !FLOW.iter().all(|stage| completed.iter().any(|done| done == stage)) {
        return Ok(uia_challenge(&session, &completed, None));
    }

    let password_hash = match request.password {
        Some(password) => Some(with_password_hashing(move || hash_password(&password)).await??),
        None => None,
    };
    let new_session = services
        .accounts
        .register(
            &user_id,
            password_hash,
            request.device_id,
            request.initial_device_display_name,
            request.inhibit_login,
        )
        .await?;
    services.uia.finish(&session);
    tracing::info!(user = %user_id, "registered");

    let mut response = register::v3::Response::new(user_id);
    if let Some(new_session) = new_session {
        response.access_token = Some(new_session.access_token);
        response.device_id = Some(new_session.session.device_id);
    }
    Ok(RumaResponse(response).into_response())
}

pub async fn username_available(
    State(services): State<Services>,
    request: Ruma<get_username_availability::v3::Request>,
) -> Result<RumaResponse<get_username_availability::v3::Response>, ApiError> {
    let user_id = services.accounts.user_id_for_new_account(&request.body.username)?;
    if services.accounts.exists(&user_id)? {
        return Err(AccountError::UserInUse.into());
    }
    Ok(RumaResponse(get_username_availability::v3::Response::new(true)))
}

pub async fn whoami(request: Ruma<whoami::v3::Request>) -> RumaResponse<whoami::v3::Response> {
    let session = request.session();
    let mut response = whoami::v3::Response::new(session.user_id.clone(), false);
    response.device_id = Some(session.device_id.clone());
    RumaResponse(response)
}

/// Changes the password after proving the old one; other devices are logged out unless the
/// client asks to keep them. Without an access token the answer is 401 `M_MISSING_TOKEN`:
/// the spec lets a forgotten password be reset by e-mail there, which this server does not
/// offer, so no flow could complete.
pub async fn change_password(
    State(services): State<Services>,
    request: Ruma<change_password::v3::Request>,
) -> Result<Response, ApiError> {
    let session = request.require_session()?.clone();
    let body = request.body;
    if let Some(challenge) =
        super::password_auth::require_password(&services, &session, body.auth.as_ref()).await?
    {
        return Ok(challenge);
    }
    let password = body.new_password;
    let hash = with_password_hashing(move || hash_password(&password)).await??;
    let keep = body.logout_devices.then_some(&*session.device_id);
    services.change_password(&session.user_id, &hash, keep).await?;
    tracing::info!(user = %session.user_id, "password changed");
    Ok(RumaResponse(change_password::v3::Response::new()).into_response())
}

/// Closes the account: leaves every room, clears the profile, logs out every device and
/// drops its keys. The user ID stays reserved. Only a logged-in user may (401
/// `M_MISSING_TOKEN` otherwise, as Synapse answers).
pub async fn deactivate(
    State(services): State<Services>,
    request: Ruma<deactivate::v3::Request>,
) -> Result<Response, ApiError> {
    let session = request.require_session()?.clone();
    if let Some(challenge) =
        super::password_auth::require_password(&services, &session, request.body.auth.as_ref())
            .await?
    {
        return Ok(challenge);
    }
    let user = &session.user_id;
    services.deactivate_account(user).await?;
    tracing::info!(user = %user, "deactivated");
    Ok(RumaResponse(deactivate::v3::Response::new(ThirdPartyIdRemovalStatus::NoSupport))
        .into_response())
}
