//! Password login (localpart or full user ID) and logout.

use axum::extract::State;
use ruma::api::client::session::{
    get_login_types::{self, v3::LoginType},
    login::{self, v3::LoginInfo},
    logout, logout_all,
};
use ruma::api::client::uiaa::UserIdentifier;

use crate::{
    http::{error::ApiError, ruma_request::Ruma, ruma_response::RumaResponse},
    service::{Services, accounts::with_password_hashing},
};

pub async fn login_types(
    _: Ruma<get_login_types::v3::Request>,
) -> RumaResponse<get_login_types::v3::Response> {
    RumaResponse(get_login_types::v3::Response::new(vec![LoginType::Password(Default::default())]))
}

pub async fn login(
    State(services): State<Services>,
    request: Ruma<login::v3::Request>,
) -> Result<RumaResponse<login::v3::Response>, ApiError> {
    let request = request.body;
    let LoginInfo::Password(password_login) = request.login_info else {
        return Err(ApiError::new(
            http::StatusCode::BAD_REQUEST,
            crate::http::error::ErrorCode::Unknown,
            "only m.login.password is offered",
        ));
    };
    // The `identifier` form, or the deprecated top-level `user` some clients still send.
    #[allow(deprecated)]
    let identifier = match (&password_login.identifier, &password_login.user) {
        (Some(UserIdentifier::Matrix(matrix)), _) => matrix.user.clone(),
        (None, Some(user)) => user.clone(),
        _ => return Err(ApiError::forbidden("log in with a user ID or localpart")),
    };
    let wrong = || ApiError::forbidden("invalid username or password");
    let user_id = services.accounts.local_user_id(&identifier).ok_or_else(wrong)?;
    let accounts = services.accounts.clone();
    let (checked_user, password) = (user_id.clone(), password_login.password.clone());
    let matches =
        with_password_hashing(move || accounts.password_matches(&checked_user, &password))
            .await??;
    if !matches {
        return Err(wrong());
    }
    let new_session = services
        .accounts
        .login(&user_id, request.device_id, request.initial_device_display_name)
        .await?;
    Ok(RumaResponse(login::v3::Response::new(
        user_id,
        new_session.access_token,
        new_session.session.device_id,
    )))
}

pub async fn logout(
    State(services): State<Services>,
    request: Ruma<logout::v3::Request>,
) -> Result<RumaResponse<logout::v3::Response>, ApiError> {
    let session = request.session();
    services.accounts.logout(session).await?;
    services.e2ee.remove_device(&session.user_id, &session.device_id).await?;
    Ok(RumaResponse(logout::v3::Response::new()))
}

pub async fn logout_all(
    State(services): State<Services>,
    request: Ruma<logout_all::v3::Request>,
) -> Result<RumaResponse<logout_all::v3::Response>, ApiError> {
    let user = &request.session().user_id;
    for device in services.accounts.logout_all(user).await? {
        services.e2ee.remove_device(user, &device).await?;
    }
    Ok(RumaResponse(logout_all::v3::Response::new()))
}
