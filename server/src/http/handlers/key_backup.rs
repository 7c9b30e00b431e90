//! Server-side key backup, `/room_keys/...`: versions and the encrypted session keys in them.

use axum::{Json, extract::State};
use http::StatusCode;
use ruma::api::client::backup::{
    add_backup_keys, add_backup_keys_for_room, add_backup_keys_for_session, create_backup_version,
    delete_backup_keys, delete_backup_keys_for_room, delete_backup_keys_for_session,
    delete_backup_version, get_backup_info, get_backup_keys, get_backup_keys_for_room,
    get_backup_keys_for_session, get_latest_backup_info, update_backup_version,
};
use serde_json::{Map, Value, json};

use crate::{
    http::{
        error::{ApiError, ErrorCode},
        ruma_request::{Ruma, raw_json},
    },
    service::{
        Services,
        key_backup::{BackedUpKey, BackupError, BackupVersion},
    },
};

impl From<BackupError> for ApiError {
    fn from(err: BackupError) -> Self {
        match err {
            BackupError::UnknownVersion => ApiError::not_found("no such backup version"),
            BackupError::UnknownKey => ApiError::not_found("no such key in the backup"),
            BackupError::AlgorithmMismatch => {
                ApiError::invalid_param("a backup version's algorithm cannot change")
            }
            BackupError::WrongVersion { current } => ApiError {
                extra: Some(("current_version", current)),
                ..ApiError::new(
                    StatusCode::FORBIDDEN,
                    ErrorCode::WrongRoomKeysVersion,
                    "keys go to the current backup version",
                )
            },
            BackupError::Invalid(why) => ApiError::bad_json(why),
            BackupError::Storage(err) => err.into(),
        }
    }
}

fn info_json((version, record): (String, BackupVersion)) -> Json<Value> {
    Json(json!({
        "algorithm": record.algorithm, "auth_data": record.auth_data,
        "count": record.count, "etag": record.etag.to_string(), "version": version,
    }))
}

fn counts((count, etag): (u64, u64)) -> Json<Value> {
    Json(json!({ "count": count, "etag": etag.to_string() }))
}

/// `{rooms: {room: {sessions: {id: data}}}}` from a flat list.
fn rooms_json(keys: Vec<BackedUpKey>) -> Value {
    let mut rooms = Map::new();
    for (room, session, data) in keys {
        let entry = rooms.entry(room).or_insert_with(|| json!({ "sessions": {} }));
        entry["sessions"][session] = data;
    }
    json!({ "rooms": rooms })
}

pub async fn create_version(
    State(services): State<Services>,
    request: Ruma<create_backup_version::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = raw_json(&request.body.algorithm)?;
    let version = services.key_backup.create_version(&request.session().user_id, &body).await?;
    Ok(Json(json!({ "version": version })))
}

pub async fn latest_version(
    State(services): State<Services>,
    request: Ruma<get_latest_backup_info::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    Ok(info_json(services.key_backup.info(&request.session().user_id, None)?))
}

pub async fn version(
    State(services): State<Services>,
    request: Ruma<get_backup_info::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = &request.session().user_id;
    Ok(info_json(services.key_backup.info(user, Some(&request.body.version))?))
}

pub async fn update_version(
    State(services): State<Services>,
    request: Ruma<update_backup_version::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = raw_json(&request.body.algorithm)?;
    let user = &request.session().user_id;
    services.key_backup.update_version(user, &request.body.version, &body).await?;
    Ok(Json(json!({})))
}

pub async fn delete_version(
    State(services): State<Services>,
    request: Ruma<delete_backup_version::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = &request.session().user_id;
    services.key_backup.delete_version(user, &request.body.version).await?;
    Ok(Json(json!({})))
}

pub async fn put_keys(
    State(services): State<Services>,
    request: Ruma<add_backup_keys::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let mut keys = Vec::new();
    for (room, backup) in &request.body.rooms {
        for (session, data) in &backup.sessions {
            keys.push((room.to_string(), session.clone(), raw_json(data)?));
        }
    }
    let user = &request.session().user_id;
    Ok(counts(services.key_backup.put_keys(user, &request.body.version, keys).await?))
}

pub async fn put_room_keys(
    State(services): State<Services>,
    request: Ruma<add_backup_keys_for_room::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let keys = body
        .sessions
        .iter()
        .map(|(session, data)| Ok((body.room_id.to_string(), session.clone(), raw_json(data)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let user = &request.session().user_id;
    Ok(counts(services.key_backup.put_keys(user, &body.version, keys).await?))
}

pub async fn put_session_key(
    State(services): State<Services>,
    request: Ruma<add_backup_keys_for_session::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let key = (body.room_id.to_string(), body.session_id.clone(), raw_json(&body.session_data)?);
    let user = &request.session().user_id;
    Ok(counts(services.key_backup.put_keys(user, &body.version, vec![key]).await?))
}

pub async fn keys(
    State(services): State<Services>,
    request: Ruma<get_backup_keys::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = &request.session().user_id;
    Ok(Json(rooms_json(services.key_backup.keys(user, &request.body.version, None, None)?)))
}

pub async fn room_keys(
    State(services): State<Services>,
    request: Ruma<get_backup_keys_for_room::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let user = &request.session().user_id;
    let keys = services.key_backup.keys(user, &body.version, Some(&body.room_id), None)?;
    let sessions: Map<String, Value> =
        keys.into_iter().map(|(_, session, data)| (session, data)).collect();
    Ok(Json(json!({ "sessions": sessions })))
}

pub async fn session_key(
    State(services): State<Services>,
    request: Ruma<get_backup_keys_for_session::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let user = &request.session().user_id;
    let mut keys = services.key_backup.keys(
        user,
        &body.version,
        Some(&body.room_id),
        Some(&body.session_id),
    )?;
    let (_, _, data) = keys.pop().ok_or(BackupError::UnknownKey)?;
    Ok(Json(data))
}

pub async fn delete_keys(
    State(services): State<Services>,
    request: Ruma<delete_backup_keys::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = &request.session().user_id;
    Ok(counts(services.key_backup.delete_keys(user, &request.body.version, None, None).await?))
}

pub async fn delete_room_keys(
    State(services): State<Services>,
    request: Ruma<delete_backup_keys_for_room::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let user = &request.session().user_id;
    let deleted =
        services.key_backup.delete_keys(user, &body.version, Some(&body.room_id), None).await?;
    Ok(counts(deleted))
}

pub async fn delete_session_key(
    State(services): State<Services>,
    request: Ruma<delete_backup_keys_for_session::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let user = &request.session().user_id;
    let deleted = services
        .key_backup
        .delete_keys(user, &body.version, Some(&body.room_id), Some(&body.session_id))
        .await?;
    Ok(counts(deleted))
}
