//! Room aliases: the client directory endpoints, and resolving any alias (this server's from
//! storage, another's by asking it over federation) for joins and `m.room.canonical_alias`.

use axum::extract::State;
use http::StatusCode;
use ruma::{
    OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, UserId,
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        room::aliases,
    },
    events::StateEventType,
};
use serde_json::Value;

use super::MaybeSession;
use crate::{
    http::{
        error::{ApiError, ErrorCode},
        ruma_request::Ruma,
        ruma_response::RumaResponse,
    },
    service::{Services, aliases::AliasError},
};

impl From<AliasError> for ApiError {
    fn from(err: AliasError) -> Self {
        let message = err.to_string();
        match err {
            AliasError::NotLocal(_) => ApiError::invalid_param(message),
            AliasError::Taken(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::Unknown, message)
            }
            AliasError::Unknown(_) => ApiError::not_found(message),
            AliasError::Forbidden(_) => ApiError::forbidden(message),
            AliasError::Room(err) => err.into(),
        }
    }
}

pub async fn create(
    State(services): State<Services>,
    request: Ruma<create_alias::v3::Request>,
) -> Result<RumaResponse<create_alias::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    services.aliases.create(&request.room_alias, &request.room_id, &user).await?;
    tracing::info!(room = %request.room_id, "room alias created");
    Ok(RumaResponse(create_alias::v3::Response::new()))
}

pub async fn get(
    State(services): State<Services>,
    caller: MaybeSession,
    request: Ruma<get_alias::v3::Request>,
) -> Result<RumaResponse<get_alias::v3::Response>, ApiError> {
    let alias = &request.body.room_alias;
    let (room_id, servers) = match alias.server_name() == services.rooms.server_name() {
        true => local_entry(&services, alias)?,
        false => resolve(&services, alias, &caller.directory_requester(&services)?).await?,
    };
    Ok(RumaResponse(get_alias::v3::Response::new(room_id, servers)))
}

pub async fn delete(
    State(services): State<Services>,
    request: Ruma<delete_alias::v3::Request>,
) -> Result<RumaResponse<delete_alias::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let alias = &request.body.room_alias;
    let room = services.aliases.delete(alias, &user).await?;
    stop_advertising(&services, &room, &user, alias).await;
    Ok(RumaResponse(delete_alias::v3::Response::new()))
}

/// Takes a deleted alias out of the room's `m.room.canonical_alias`, as the user who deleted
/// it, so clients are not pointed at a name that no longer resolves. A user without the
/// power to change that event (an alias's creator may lack it) leaves it as it is.
async fn stop_advertising(services: &Services, room: &RoomId, user: &UserId, alias: &RoomAliasId) {
    let kind = StateEventType::RoomCanonicalAlias;
    let Ok(Some(event_id)) = services.rooms.state_event(room, &kind, "") else { return };
    let Ok(Some(mut event)) = services.rooms.event_json(&event_id) else { return };
    let Some(Value::Object(mut content)) = event.remove("content") else { return };
    let named = |value: &Value| value.as_str() == Some(alias.as_str());
    let mut changed = content.get("alias").is_some_and(named);
    if changed {
        content.remove("alias");
    }
    if let Some(Value::Array(alternatives)) = content.get_mut("alt_aliases") {
        let before = alternatives.len();
        alternatives.retain(|value| !named(value));
        changed |= alternatives.len() != before;
    }
    if !changed {
        return;
    }
    let kind = kind.to_string();
    let update = services.rooms.append(room, user, &kind, Some(""), Value::Object(content), None);
    if let Err(err) = update.await {
        tracing::info!(%room, %err, "a deleted alias stays in m.room.canonical_alias");
    }
}

/// `GET /rooms/{roomId}/aliases`: the room's aliases on this server, for its joined members.
pub async fn of_room(
    State(services): State<Services>,
    request: Ruma<aliases::v3::Request>,
) -> Result<RumaResponse<aliases::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let room = &request.body.room_id;
    super::require_joined(&services, room, &user)?;
    Ok(RumaResponse(aliases::v3::Response::new(services.aliases.of_room(room)?)))
}

/// The room one of this server's aliases names, and servers to join it through.
fn local_entry(
    services: &Services,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>), ApiError> {
    let entry = services.aliases.directory_entry(alias)?;
    Ok(entry.ok_or_else(|| AliasError::Unknown(alias.to_owned()))?)
}

/// The room an alias names and servers to join it through: this server's aliases from
/// storage, another server's by its answer to `/query/directory`, asked on behalf of
/// `requester` (see [`MaybeSession::directory_requester`]).
pub async fn resolve(
    services: &Services,
    alias: &RoomAliasId,
    requester: &str,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>), ApiError> {
    if alias.server_name() == services.rooms.server_name() {
        return local_entry(services, alias);
    }
    let federation = services
        .federation
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no such alias (federation is off)"))?;
    let request =
        ruma::api::federation::query::get_room_information::v1::Request::new(alias.to_owned());
    let answer = federation.client.send(alias.server_name(), request).await.map_err(|err| {
        tracing::info!(server = %alias.server_name(), %requester, %err, "remote alias lookup failed");
        ApiError::not_found(format!("{alias} could not be resolved"))
    })?;
    Ok((answer.room_id, answer.servers))
}

/// Checks the content of an `m.room.canonical_alias` a local user sends: every alias it
/// advertises must be well formed and name this room (the spec's `M_BAD_ALIAS`), so a room
/// cannot point clients at another room.
pub async fn check_canonical_alias(
    services: &Services,
    room: &RoomId,
    content: &Value,
    sender: &UserId,
) -> Result<(), ApiError> {
    let main = content.get("alias").filter(|alias| !alias.is_null());
    let alternatives = match content.get("alt_aliases") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(list)) => list.as_slice(),
        Some(_) => return Err(ApiError::bad_json("alt_aliases must be a list")),
    };
    for alias in main.into_iter().chain(alternatives) {
        let alias = alias
            .as_str()
            .and_then(|alias| RoomAliasId::parse(alias).ok())
            .ok_or_else(|| ApiError::invalid_param(format!("{alias} is not a room alias")))?;
        let names_this_room = match resolve(services, &alias, sender.as_str()).await {
            Ok((named, _)) => named == room,
            Err(err) if err.code == ErrorCode::NotFound => false,
            Err(err) => return Err(err),
        };
        if !names_this_room {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadAlias,
                format!("{alias} does not name this room"),
            ));
        }
    }
    Ok(())
}
