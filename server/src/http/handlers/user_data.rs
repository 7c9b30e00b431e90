//! Profile, filters, account data and push rules.

use axum::{Json, extract::State};
use ruma::{
    UserId,
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data,
            set_room_account_data,
        },
        filter::{create_filter, get_filter},
        profile::{
            get_avatar_url, get_display_name, get_profile, set_avatar_url, set_display_name,
        },
        push::get_pushrules_all,
        tag::{create_tag, delete_tag, get_tags},
    },
    push::Ruleset,
};
use serde_json::{Value, json};

use super::MaybeSession;
use crate::{
    http::{error::ApiError, ruma_request::Ruma, ruma_response::RumaResponse},
    service::Services,
};

/// Users may change only their own data.
fn require_self(session_user: &UserId, target: &UserId) -> Result<(), ApiError> {
    if session_user == target {
        Ok(())
    } else {
        Err(ApiError::forbidden("you may only change your own data"))
    }
}

fn known_local_user(services: &Services, user_id: &UserId) -> Result<(), ApiError> {
    if services.accounts.exists(user_id)? {
        Ok(())
    } else {
        Err(ApiError::not_found("no such user"))
    }
}

pub async fn profile(
    State(services): State<Services>,
    caller: MaybeSession,
    request: Ruma<get_profile::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(Value::Object(any_profile(&services, &caller, &request.body.user_id).await?)))
}

pub async fn display_name(
    State(services): State<Services>,
    caller: MaybeSession,
    request: Ruma<get_display_name::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let profile = any_profile(&services, &caller, &request.body.user_id).await?;
    Ok(Json(json!({ "displayname": profile.get("displayname") })))
}

/// A local user's profile from storage, a remote one by asking their server (for an
/// authenticated caller only).
async fn any_profile(
    services: &Services,
    caller: &MaybeSession,
    user_id: &UserId,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    if user_id.server_name() == services.config.server_name.as_str() {
        known_local_user(services, user_id)?;
        return Ok(services.user_data.profile(user_id)?);
    }
    let requester = caller.requester()?;
    let federation = services
        .federation
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no such user (federation is off)"))?;
    let request =
        ruma::api::federation::query::get_profile_information::v1::Request::new(user_id.to_owned());
    let answer = federation.client.send(user_id.server_name(), request).await.map_err(|err| {
        tracing::info!(server = %user_id.server_name(), %requester, %err, "remote profile lookup failed");
        ApiError::not_found("no profile found for that user")
    })?;
    Ok(answer.into_iter().collect())
}

pub async fn set_display_name(
    State(services): State<Services>,
    request: Ruma<set_display_name::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let value = request.body.displayname.clone().map(Value::String);
    services.user_data.set_profile_field(&request.body.user_id, "displayname", value).await?;
    Ok(Json(json!({})))
}

pub async fn avatar_url(
    State(services): State<Services>,
    caller: MaybeSession,
    request: Ruma<get_avatar_url::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let profile = any_profile(&services, &caller, &request.body.user_id).await?;
    Ok(Json(json!({ "avatar_url": profile.get("avatar_url") })))
}

pub async fn set_avatar_url(
    State(services): State<Services>,
    request: Ruma<set_avatar_url::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let value = request.body.avatar_url.as_ref().map(|url| Value::String(url.to_string()));
    services.user_data.set_profile_field(&request.body.user_id, "avatar_url", value).await?;
    Ok(Json(json!({})))
}

pub async fn create_filter(
    State(services): State<Services>,
    request: Ruma<create_filter::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let filter = serde_json::to_value(&request.body.filter).map_err(ApiError::internal)?;
    let filter_id = services.user_data.create_filter(&request.body.user_id, &filter).await?;
    Ok(Json(json!({ "filter_id": filter_id })))
}

pub async fn get_filter(
    State(services): State<Services>,
    request: Ruma<get_filter::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let filter = services.user_data.filter(&request.body.user_id, &request.body.filter_id)?;
    filter.map(Json).ok_or_else(|| ApiError::not_found("no such filter"))
}

fn content_of<T>(raw: &ruma::serde::Raw<T>) -> Result<Value, ApiError> {
    let value = crate::http::ruma_request::raw_json(raw)?;
    if value.is_object() {
        Ok(value)
    } else {
        Err(ApiError::bad_json("account data must be a JSON object"))
    }
}

pub async fn set_global_account_data(
    State(services): State<Services>,
    request: Ruma<set_global_account_data::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let content = content_of(&request.body.data)?;
    let kind = request.body.event_type.to_string();
    services.user_data.set_account_data(&request.body.user_id, None, &kind, &content).await?;
    Ok(Json(json!({})))
}

pub async fn global_account_data(
    State(services): State<Services>,
    request: Ruma<get_global_account_data::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let kind = request.body.event_type.to_string();
    services
        .user_data
        .account_data(&request.body.user_id, None, &kind)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such account data"))
}

pub async fn set_room_account_data(
    State(services): State<Services>,
    request: Ruma<set_room_account_data::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let content = content_of(&request.body.data)?;
    let kind = request.body.event_type.to_string();
    services
        .user_data
        .set_account_data(&request.body.user_id, Some(&request.body.room_id), &kind, &content)
        .await?;
    Ok(Json(json!({})))
}

pub async fn room_account_data(
    State(services): State<Services>,
    request: Ruma<get_room_account_data::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    let kind = request.body.event_type.to_string();
    services
        .user_data
        .account_data(&request.body.user_id, Some(&request.body.room_id), &kind)?
        .map(Json)
        .ok_or_else(|| ApiError::not_found("no such account data"))
}

/// The spec's default push rules for the user (custom rules are not stored yet).
pub async fn push_rules(
    request: Ruma<get_pushrules_all::v3::Request>,
) -> RumaResponse<get_pushrules_all::v3::Response> {
    RumaResponse(get_pushrules_all::v3::Response::new(Ruleset::server_default(
        &request.session().user_id,
    )))
}

/// Room tags live in the room's `m.tag` account data, where `/sync` delivers them.
fn tags_of(services: &Services, user: &UserId, room_id: &ruma::RoomId) -> Result<Value, ApiError> {
    let content = services.user_data.account_data(user, Some(room_id), "m.tag")?;
    Ok(content.and_then(|c| c.get("tags").cloned()).unwrap_or_else(|| json!({})))
}

async fn save_tags(
    services: &Services,
    user: &UserId,
    room_id: &ruma::RoomId,
    tags: Value,
) -> Result<Json<Value>, ApiError> {
    let content = json!({ "tags": tags });
    services.user_data.set_account_data(user, Some(room_id), "m.tag", &content).await?;
    Ok(Json(json!({})))
}

pub async fn tags(
    State(services): State<Services>,
    request: Ruma<get_tags::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    require_self(&request.session().user_id, &request.body.user_id)?;
    Ok(Json(json!({ "tags": tags_of(&services, &request.body.user_id, &request.body.room_id)? })))
}

pub async fn set_tag(
    State(services): State<Services>,
    request: Ruma<create_tag::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    require_self(&request.session().user_id, &body.user_id)?;
    let mut tags = tags_of(&services, &body.user_id, &body.room_id)?;
    tags[&body.tag] = serde_json::to_value(&body.tag_info).map_err(ApiError::internal)?;
    save_tags(&services, &body.user_id, &body.room_id, tags).await
}

pub async fn delete_tag(
    State(services): State<Services>,
    request: Ruma<delete_tag::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    require_self(&request.session().user_id, &body.user_id)?;
    let mut tags = tags_of(&services, &body.user_id, &body.room_id)?;
    if let Some(tags) = tags.as_object_mut() {
        tags.remove(&body.tag);
    }
    save_tags(&services, &body.user_id, &body.room_id, tags).await
}
