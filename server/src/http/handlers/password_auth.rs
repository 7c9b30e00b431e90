//! User-interactive auth with the account password, which the spec asks for before sensitive
//! changes: replacing cross-signing keys, deleting devices, changing the password, and
//! deactivating the account. One flow with one stage, `m.login.password`.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use ruma::api::client::uiaa::{AuthData, UserIdentifier};
use serde_json::json;

use crate::{
    http::error::ApiError,
    service::{
        Services,
        accounts::{Session, with_password_hashing},
    },
};

/// Checks that `auth` proves the session's user knows their password. `Ok(None)` means proven;
/// `Ok(Some(challenge))` is the 401 to answer with (with `M_FORBIDDEN` when a wrong password
/// was given), so the client can ask its user and retry.
pub async fn require_password(
    services: &Services,
    session: &Session,
    auth: Option<&AuthData>,
) -> Result<Option<Response>, ApiError> {
    if let Some(AuthData::Password(password)) = auth {
        let names_self = match &password.identifier {
            UserIdentifier::Matrix(id) => {
                services.accounts.local_user_id(&id.user).as_ref() == Some(&session.user_id)
            }
            _ => false,
        };
        let accounts = services.accounts.clone();
        let (user, secret) = (session.user_id.clone(), password.password.clone());
        // argon2 is slow on purpose: off the async workers.
        let matches = names_self
            && with_password_hashing(move || accounts.password_matches(&user, &secret)).await??;
        if matches {
            if let Some(id) = auth.and_then(AuthData::session) {
                services.uia.finish(id);
            }
            return Ok(None);
        }
    }
    let uia_session = auth
        .and_then(AuthData::session)
        .filter(|id| services.uia.completed(id).is_some())
        .map_or_else(|| services.uia.start(), ToOwned::to_owned);
    let mut challenge = json!({
        "flows": [{ "stages": ["m.login.password"] }],
        "params": {},
        "session": uia_session,
        "completed": [],
    });
    if matches!(auth, Some(AuthData::Password(_))) {
        challenge["errcode"] = json!("M_FORBIDDEN");
        challenge["error"] = json!("invalid password");
    }
    Ok(Some((StatusCode::UNAUTHORIZED, Json(challenge)).into_response()))
}
