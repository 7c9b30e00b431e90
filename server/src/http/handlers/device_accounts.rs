//! Medrix's client endpoints for device accounts (`spec/devices.md`, "Device accounts"):
//! `POST /_medrix/client/v1/devices` `{"name", "kind"}` registers a bot account for one of the
//! caller's health devices and answers its credentials (shown once);
//! `GET /_medrix/client/v1/devices` lists the caller's devices;
//! `DELETE /_medrix/client/v1/devices/{userId}` closes one at once. The service decides;
//! this only translates.

use axum::{
    Json,
    extract::{Path, Request, State},
};
use ruma::UserId;
use serde_json::{Value, json};

use crate::{
    http::{
        error::ApiError,
        ruma_request::{authenticate, check_rate_limit, missing_token},
    },
    service::{
        Services,
        accounts::Session,
        device_accounts::{DeviceAccount, DeviceError},
    },
};

/// The largest body `POST /devices` reads: a name and a kind.
const MAX_BODY_BYTES: usize = 4096;

fn session(parts: &http::request::Parts, services: &Services) -> Result<Session, ApiError> {
    let session = authenticate(parts, services, true)?.ok_or_else(missing_token)?;
    check_rate_limit(parts, services, Some(&session))?;
    Ok(session)
}

pub async fn add(
    State(services): State<Services>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let session = session(&parts, &services)?;
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|err| ApiError::unreadable_body(&err, || ApiError::too_large("body too large")))?;
    let body: Value =
        serde_json::from_slice(&bytes).map_err(|_| ApiError::not_json("the body is not JSON"))?;
    let field = |key: &str| {
        body.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_json(format!("`{key}` must be a string")))
    };
    let (name, kind) = (field("name")?, field("kind")?);
    let added = services
        .device_accounts
        .add(&session.user_id, name, kind, crate::clock::now_ms())
        .await
        .map_err(api_error)?;
    Ok(Json(json!({
        "user_id": added.user_id,
        "device_id": added.session.session.device_id,
        "access_token": added.session.access_token,
        "name": added.account.name,
        "kind": added.account.kind,
        "added_at": added.account.added_at,
    })))
}

pub async fn list(
    State(services): State<Services>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, _) = request.into_parts();
    let session = session(&parts, &services)?;
    let devices = services.device_accounts.list(&session.user_id).map_err(api_error)?;
    let devices: Vec<Value> =
        devices.iter().map(|(user_id, account)| device_json(user_id, account)).collect();
    Ok(Json(json!({ "devices": devices })))
}

pub async fn remove(
    State(services): State<Services>,
    Path(user_id): Path<String>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, _) = request.into_parts();
    let session = session(&parts, &services)?;
    let device = UserId::parse(&user_id).map_err(|_| ApiError::invalid_param("not a user ID"))?;
    let removed = services
        .device_accounts
        .remove(&session.user_id, &device, crate::clock::now_ms())
        .await
        .map_err(api_error)?;
    Ok(Json(device_json(&device, &removed)))
}

fn device_json(user_id: &UserId, account: &DeviceAccount) -> Value {
    let mut device = json!({
        "user_id": user_id,
        "name": account.name,
        "kind": account.kind,
        "added_at": account.added_at,
    });
    if let Some(removed_at) = account.removed_at {
        device["removed_at"] = json!(removed_at);
    }
    device
}

fn api_error(err: DeviceError) -> ApiError {
    match err {
        DeviceError::Invalid(message) => ApiError::invalid_param(message),
        DeviceError::Forbidden(message) => ApiError::forbidden(message),
        DeviceError::NotFound => ApiError::not_found(err.to_string()),
        DeviceError::NameInUse(_) | DeviceError::TooMany => ApiError::forbidden(err.to_string()),
        DeviceError::Account(err) => ApiError::internal(err),
        DeviceError::Storage(err) => err.into(),
    }
}
