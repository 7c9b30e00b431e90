//! End-to-end encryption endpoints: key upload, query, claim and changes; cross-signing keys
//! and signatures; to-device messages.

use std::collections::BTreeMap;

use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};
use http::StatusCode;
use ruma::{
    DeviceId, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId,
    api::client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        to_device::send_event_to_device,
    },
    to_device::DeviceIdOrAllDevices,
};
use serde_json::{Map, Value, json};

use crate::{
    http::{
        error::ApiError,
        handlers::sync::SyncToken,
        ruma_request::{Ruma, raw_json},
    },
    service::{
        Services,
        e2ee::{SignatureOutcome, ToDeviceMark},
        federation::{FederationError, sender::QueueError},
        key_signatures::Refusal,
    },
    storage::compound_key,
};

pub async fn upload(
    State(services): State<Services>,
    request: Ruma<upload_keys::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let session = request.session().clone();
    let body = request.body;
    let device_keys = match &body.device_keys {
        Some(raw) => {
            let keys = raw_json(raw)?;
            if keys["user_id"] != json!(session.user_id)
                || keys["device_id"] != json!(session.device_id)
            {
                return Err(ApiError::bad_json("device_keys must be for the uploading device"));
            }
            Some(keys)
        }
        None => None,
    };
    let one_time: Vec<(String, Value)> = body
        .one_time_keys
        .iter()
        .map(|(id, raw)| Ok((id.to_string(), raw_json(raw)?)))
        .collect::<Result<_, ApiError>>()?;
    let fallback: Vec<(String, Value)> = body
        .fallback_keys
        .iter()
        .map(|(id, raw)| Ok((id.to_string(), raw_json(raw)?)))
        .collect::<Result<_, ApiError>>()?;
    let counts = services
        .e2ee
        .upload(&session.user_id, &session.device_id, device_keys, one_time, fallback)
        .await?;
    Ok(Json(json!({ "one_time_key_counts": counts })))
}

pub async fn query(
    State(services): State<Services>,
    request: Ruma<get_keys::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let requester = request.session().user_id.clone();
    let (local, remote) = split_by_server(&services, request.body.device_keys);
    let mut answer = local_device_keys(&services, &local, Some(&requester))?;
    answer["failures"] = json!({});
    for (server, users) in remote {
        match remote_device_keys(&services, &server, users).await {
            Ok(found) => {
                for section in ["device_keys", "master_keys", "self_signing_keys"] {
                    if let (Some(into), Some(from)) =
                        (answer[section].as_object_mut(), found[section].as_object())
                    {
                        into.extend(from.clone());
                    }
                }
            }
            Err(err) => answer["failures"][server.as_str()] = failure(&server, &err),
        }
    }
    Ok(Json(answer))
}

/// A server's entry in `failures`: what kind of failure, the detail only in the log.
fn failure(server: &ServerName, err: &FederationError) -> Value {
    tracing::info!(%server, %err, "remote key request failed");
    json!({ "error": err.summary() })
}

/// Other servers' users of a per-user request, by server.
type PerServer<V> = BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, V>>;

/// Splits a per-user request into this server's users and other servers' users.
fn split_by_server<V>(
    services: &Services,
    per_user: BTreeMap<OwnedUserId, V>,
) -> (Vec<(OwnedUserId, V)>, PerServer<V>) {
    let mut local = Vec::new();
    let mut remote: PerServer<V> = BTreeMap::new();
    for (user, value) in per_user {
        if user.server_name() == services.config.server_name.as_str() {
            local.push((user, value));
        } else {
            remote.entry(user.server_name().to_owned()).or_default().insert(user, value);
        }
    }
    (local, remote)
}

/// Device and cross-signing keys of local users. The user-signing key is shown only to its
/// owner (`requester`; none for another server).
pub fn local_device_keys(
    services: &Services,
    users: &[(OwnedUserId, Vec<OwnedDeviceId>)],
    requester: Option<&UserId>,
) -> Result<Value, ApiError> {
    let mut device_keys = Map::new();
    let (mut master, mut self_signing, mut user_signing) = (Map::new(), Map::new(), Map::new());
    for (user, devices) in users {
        let devices: Vec<String> = devices.iter().map(ToString::to_string).collect();
        device_keys
            .insert(user.to_string(), Value::Object(services.e2ee.device_keys(user, &devices)?));
        if let Some(key) = services.e2ee.cross_signing_key(user, "master")? {
            master.insert(user.to_string(), key);
        }
        if let Some(key) = services.e2ee.cross_signing_key(user, "self_signing")? {
            self_signing.insert(user.to_string(), key);
        }
        if requester == Some(user.as_ref())
            && let Some(key) = services.e2ee.cross_signing_key(user, "user_signing")?
        {
            user_signing.insert(user.to_string(), key);
        }
    }
    Ok(json!({
        "device_keys": device_keys, "master_keys": master, "self_signing_keys": self_signing,
        "user_signing_keys": user_signing,
    }))
}

async fn remote_device_keys(
    services: &Services,
    server: &ServerName,
    users: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<Value, FederationError> {
    let federation = services.federation.as_ref().ok_or(FederationError::Disabled)?;
    let request = ruma::api::federation::keys::get_keys::v1::Request::new(users);
    let response = federation.client.send(server, request).await?;
    // Keys stay as the other server sent them: clients check their signatures themselves.
    serde_json::to_value(json!({
        "device_keys": response.device_keys,
        "master_keys": response.master_keys,
        "self_signing_keys": response.self_signing_keys,
    }))
    .map_err(|err| FederationError::BadResponse { server: server.to_owned(), why: err.to_string() })
}

pub async fn claim(
    State(services): State<Services>,
    request: Ruma<claim_keys::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let (local, remote) = split_by_server(&services, request.body.one_time_keys);
    let mut claimed = local_claim(&services, local).await?;
    let mut failures = Map::new();
    for (server, users) in remote {
        let answer = async {
            let federation = services.federation.as_ref().ok_or(FederationError::Disabled)?;
            let request = ruma::api::federation::keys::claim_keys::v1::Request::new(users);
            let response = federation.client.send(&server, request).await?;
            serde_json::to_value(response.one_time_keys).map_err(|err| {
                FederationError::BadResponse { server: server.clone(), why: err.to_string() }
            })
        }
        .await;
        match answer {
            Ok(Value::Object(found)) => claimed.extend(found),
            Ok(_) => {}
            Err(err) => {
                failures.insert(server.to_string(), failure(&server, &err));
            }
        }
    }
    Ok(Json(json!({ "one_time_keys": claimed, "failures": failures })))
}

/// Claims one key per requested device of local users.
pub async fn local_claim(
    services: &Services,
    users: Vec<(OwnedUserId, BTreeMap<OwnedDeviceId, ruma::OneTimeKeyAlgorithm>)>,
) -> Result<Map<String, Value>, ApiError> {
    let mut claimed = Map::new();
    for (user, devices) in users {
        let mut per_device = Map::new();
        for (device, algorithm) in devices {
            if let Some((key_id, key)) =
                services.e2ee.claim(&user, &device, algorithm.as_str()).await?
            {
                per_device.insert(device.to_string(), json!({ key_id: key }));
            }
        }
        claimed.insert(user.to_string(), Value::Object(per_device));
    }
    Ok(claimed)
}

pub async fn changes(
    State(services): State<Services>,
    request: Ruma<get_key_changes::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let parse = super::sync::parse_token;
    let (from, to) = (parse(&request.body.from)?, parse(&request.body.to)?);
    let user = request.session().user_id.clone();
    let changed = visible_key_changes(&services, &user, from, to)?;
    Ok(Json(json!({ "changed": changed, "left": [] })))
}

/// Users whose keys changed in `(from, to]` and who share a room with `user` (or are `user`).
/// Who shares a room is worked out only when some key changed: it reads every joined room's
/// members, and most syncs (a message arriving) carry no key change at all.
fn visible_key_changes(
    services: &Services,
    user: &UserId,
    from: u64,
    to: u64,
) -> Result<Vec<String>, ApiError> {
    let changed = services.e2ee.key_changes(from, to)?;
    if changed.is_empty() {
        return Ok(changed);
    }
    let contacts = services.access.users_sharing_rooms_with(user)?;
    Ok(changed.into_iter().filter(|u| contacts.contains(u) || *u == user.as_str()).collect())
}

/// Cross-signing keys. The first upload needs no further auth; replacing an existing master
/// key needs the account password (user-interactive auth), as the spec requires.
pub async fn upload_signing_keys(
    State(services): State<Services>,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> Result<Response, ApiError> {
    let session = request.session().clone();
    let body = request.body;
    let has_master = services.e2ee.cross_signing_key(&session.user_id, "master")?.is_some();
    if has_master
        && let Some(challenge) =
            super::password_auth::require_password(&services, &session, body.auth.as_ref()).await?
    {
        return Ok(challenge);
    }
    let mut keys = Vec::new();
    for (kind, raw) in [
        ("master", &body.master_key),
        ("self_signing", &body.self_signing_key),
        ("user_signing", &body.user_signing_key),
    ] {
        if let Some(raw) = raw {
            let key = raw_json(raw)?;
            if key["user_id"] != json!(session.user_id) {
                return Err(ApiError::bad_json(format!("{kind} key is for another user")));
            }
            keys.push((kind, key));
        }
    }
    services.e2ee.set_cross_signing_keys(&session.user_id, keys).await?;
    Ok(Json(json!({})).into_response())
}

/// Signatures by the uploader on keys (their own, or another user's master key); each key
/// refused is listed in `failures` with why, as Synapse answers.
pub async fn upload_signatures(
    State(services): State<Services>,
    request: Ruma<upload_signatures::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let signer = request.session().user_id.clone();
    let mut failures = Map::new();
    for (user, signed_keys) in &request.body.signed_keys {
        for (key_id, raw) in signed_keys.iter() {
            let signed: Value = serde_json::from_str(raw.get())
                .map_err(|err| ApiError::bad_json(err.to_string()))?;
            let failure = match services.e2ee.add_signatures(&signer, user, key_id, &signed).await?
            {
                SignatureOutcome::Added => continue,
                SignatureOutcome::UnknownKey => {
                    json!({"errcode": "M_NOT_FOUND", "error": "no such key"})
                }
                SignatureOutcome::Refused(Refusal::Invalid(why)) => {
                    json!({"errcode": "M_INVALID_SIGNATURE", "error": why})
                }
                SignatureOutcome::Refused(Refusal::NotAllowed(why)) => {
                    json!({"errcode": "M_FORBIDDEN", "error": why})
                }
            };
            failures.entry(user.to_string()).or_insert_with(|| json!({}))[key_id] = failure;
        }
    }
    Ok(Json(json!({ "failures": failures })))
}

pub async fn send_to_device(
    State(services): State<Services>,
    request: Ruma<send_event_to_device::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let session = request.session().clone();
    let body = request.body;
    // Idempotent per device and transaction ID, like room sends.
    let txn_key = compound_key(&[
        session.user_id.as_bytes(),
        session.device_id.as_bytes(),
        b"to-device",
        body.txn_id.as_bytes(),
    ]);
    if services.e2ee.to_device_txn_seen(&txn_key)? {
        return Ok(Json(json!({})));
    }
    let kind = body.event_type.to_string();
    let mut queued = Vec::new();
    let (local, remote) = split_by_server(&services, body.messages);
    // Queued (durably) before the local messages and the transaction record: a retry after
    // a crash between them resends with the same message ID, which peers drop. Without
    // federation, messages for other servers' users have nowhere to go.
    if let Some(federation) = services.federation.as_ref().filter(|_| !remote.is_empty()) {
        federation
            .edus_out
            .to_device(
                &session.user_id,
                session.device_id.as_str(),
                body.txn_id.as_str(),
                &body.event_type,
                remote,
            )
            .await
            .map_err(|err| match err {
                QueueError::Full(_) => ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    crate::http::error::ErrorCode::LimitExceeded,
                    "the recipient's server has too many undelivered messages",
                ),
                QueueError::Storage(err) => err.into(),
            })?;
    }
    for (user, devices) in &local {
        for (target, content) in devices {
            let content = raw_json(content)?;
            let message = json!({ "sender": session.user_id, "type": kind, "content": content });
            let size = message.to_string().len();
            let device_ids: Vec<String> = match target {
                DeviceIdOrAllDevices::DeviceId(device) => vec![device.to_string()],
                DeviceIdOrAllDevices::AllDevices => {
                    services.e2ee.device_keys(user, &[])?.keys().cloned().collect()
                }
            };
            for device in device_ids {
                if !services.e2ee.to_device_fits(user.as_str(), &device, size)? {
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        crate::http::error::ErrorCode::LimitExceeded,
                        "the recipient's device has too many undelivered messages",
                    ));
                }
                queued.push((user.to_string(), device, message.clone()));
            }
        }
    }
    services.e2ee.queue_to_device(queued, Some(&txn_key)).await?;
    Ok(Json(json!({})))
}

/// The E2EE sections of a sync response for one device, whether they carry anything, and
/// where the device's to-device page ended when more messages wait (the next sync token
/// must say so: those messages are not acknowledged yet).
pub async fn sync_sections(
    services: &Services,
    user: &UserId,
    device: &DeviceId,
    since: Option<&SyncToken>,
    upto: u64,
) -> Result<(Value, bool, Option<ToDeviceMark>), ApiError> {
    let acknowledged = since.map(SyncToken::to_device_acknowledged);
    let to_device = services.e2ee.take_to_device(user, device, acknowledged, upto).await?;
    let counts: BTreeMap<String, u64> = services.e2ee.one_time_key_counts(user, device)?;
    let fallback = services.e2ee.unused_fallback_key_types(user, device)?;
    let changed: Vec<String> = match since {
        Some(since) => visible_key_changes(services, user, since.position, upto)?,
        None => vec![],
    };
    let anything = !to_device.messages.is_empty() || !changed.is_empty();
    Ok((
        json!({
            "to_device": { "events": to_device.messages },
            "device_one_time_keys_count": counts,
            "device_unused_fallback_key_types": fallback,
            "device_lists": { "changed": changed, "left": [] },
        }),
        anything,
        to_device.more_after,
    ))
}
