//! The devices API: list, get, rename, and delete (one or many, behind the password).
//! Deleting a device also removes its end-to-end keys, so other users' clients stop
//! encrypting for it.

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt,
    api::client::device::{
        self, delete_device, delete_devices, get_device, get_devices, update_device,
    },
};
use serde_json::json;

use super::password_auth::require_password;
use crate::{
    http::{error::ApiError, ruma_request::Ruma, ruma_response::RumaResponse},
    service::{Services, accounts::DeviceInfo},
};

fn to_ruma(info: DeviceInfo) -> device::Device {
    let mut device = device::Device::new(info.device_id);
    device.display_name = info.display_name;
    device.last_seen_ts = info.created_ts.and_then(UInt::new).map(MilliSecondsSinceUnixEpoch);
    device
}

pub async fn list(
    State(services): State<Services>,
    request: Ruma<get_devices::v3::Request>,
) -> Result<RumaResponse<get_devices::v3::Response>, ApiError> {
    let devices = services.accounts.devices(&request.session().user_id)?;
    Ok(RumaResponse(get_devices::v3::Response::new(devices.into_iter().map(to_ruma).collect())))
}

pub async fn get(
    State(services): State<Services>,
    request: Ruma<get_device::v3::Request>,
) -> Result<RumaResponse<get_device::v3::Response>, ApiError> {
    let info = services
        .accounts
        .device_info(&request.session().user_id, request.body.device_id.as_str())?
        .ok_or_else(|| ApiError::not_found("unknown device"))?;
    Ok(RumaResponse(get_device::v3::Response::new(to_ruma(info))))
}

pub async fn rename(
    State(services): State<Services>,
    request: Ruma<update_device::v3::Request>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let user = request.session().user_id.clone();
    let body = request.body;
    services.accounts.rename_device(&user, body.device_id.as_str(), body.display_name).await?;
    Ok(Json(json!({})))
}

pub async fn delete_one(
    State(services): State<Services>,
    request: Ruma<delete_device::v3::Request>,
) -> Result<Response, ApiError> {
    let session = request.session().clone();
    let body = request.body;
    if services.accounts.device_info(&session.user_id, body.device_id.as_str())?.is_none() {
        return Err(ApiError::not_found("unknown device"));
    }
    if let Some(challenge) = require_password(&services, &session, body.auth.as_ref()).await? {
        return Ok(challenge);
    }
    remove(&services, &session.user_id, &[body.device_id]).await?;
    Ok(Json(json!({})).into_response())
}

pub async fn delete_many(
    State(services): State<Services>,
    request: Ruma<delete_devices::v3::Request>,
) -> Result<Response, ApiError> {
    let session = request.session().clone();
    let body = request.body;
    if let Some(challenge) = require_password(&services, &session, body.auth.as_ref()).await? {
        return Ok(challenge);
    }
    remove(&services, &session.user_id, &body.devices).await?;
    Ok(Json(json!({})).into_response())
}

/// Logs the devices out and drops their keys.
pub async fn remove(
    services: &Services,
    user: &ruma::UserId,
    devices: &[OwnedDeviceId],
) -> Result<(), ApiError> {
    for device in services.accounts.remove_devices(user, devices).await? {
        services.e2ee.remove_device(user, &device).await?;
    }
    Ok(())
}
