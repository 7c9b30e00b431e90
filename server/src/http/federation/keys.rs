//! End-to-end encryption keys of this server's users, for other servers whose users share
//! rooms with them: device lists, device and cross-signing keys, one-time key claims.

use axum::{Json, extract::State};
use ruma::api::federation::{
    device::get_devices,
    keys::{claim_keys, get_keys},
};
use serde_json::{Value, json};

use super::auth::Federated;
use crate::{
    http::{
        error::ApiError,
        handlers::keys::{local_claim, local_device_keys},
    },
    service::Services,
};

fn require_local(services: &Services, user: &ruma::UserId) -> Result<(), ApiError> {
    if user.server_name() == services.config.server_name.as_str() {
        Ok(())
    } else {
        Err(ApiError::not_found("not a user of this server"))
    }
}

/// `GET /user/devices/{userId}`: a user's devices with their keys and display names.
pub async fn user_devices(
    State(services): State<Services>,
    request: Federated<get_devices::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = &request.body.user_id;
    require_local(&services, user)?;
    let keys = services.e2ee.device_keys(user, &[])?;
    let names: std::collections::BTreeMap<String, Option<String>> = services
        .accounts
        .devices(user)?
        .into_iter()
        .map(|device| (device.device_id.to_string(), device.display_name))
        .collect();
    let devices: Vec<Value> = keys
        .into_iter()
        .map(|(device_id, keys)| {
            let mut device = json!({ "device_id": device_id, "keys": keys });
            if let Some(Some(name)) = names.get(&device_id) {
                device["device_display_name"] = json!(name);
            }
            device
        })
        .collect();
    let mut answer = json!({
        "user_id": user,
        "stream_id": match &services.federation {
            Some(federation) => federation.edus_out.device_list_stream_id(user)?,
            None => 0,
        },
        "devices": devices,
    });
    if let Some(key) = services.e2ee.cross_signing_key(user, "master")? {
        answer["master_key"] = key;
    }
    if let Some(key) = services.e2ee.cross_signing_key(user, "self_signing")? {
        answer["self_signing_key"] = key;
    }
    Ok(Json(answer))
}

/// `POST /user/keys/query`: device and cross-signing keys (never a user-signing key).
pub async fn keys_query(
    State(services): State<Services>,
    request: Federated<get_keys::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let users: Vec<_> = request
        .body
        .device_keys
        .into_iter()
        .filter(|(user, _)| user.server_name() == services.config.server_name.as_str())
        .collect();
    let mut answer = local_device_keys(&services, &users, None)?;
    if let Some(answer) = answer.as_object_mut() {
        answer.remove("user_signing_keys");
    }
    Ok(Json(answer))
}

/// `POST /user/keys/claim`: one one-time (or fallback) key per requested device.
pub async fn keys_claim(
    State(services): State<Services>,
    request: Federated<claim_keys::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let users: Vec<_> = request
        .body
        .one_time_keys
        .into_iter()
        .filter(|(user, _)| user.server_name() == services.config.server_name.as_str())
        .collect();
    let claimed = local_claim(&services, users).await?;
    Ok(Json(json!({ "one_time_keys": claimed })))
}
