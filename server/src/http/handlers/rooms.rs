//! Creating rooms, sending events, reading and writing state, and membership changes.

use axum::{Json, extract::State};
use http::StatusCode;
use medrix_protocol::RoomVersion;
use ruma::{
    OwnedEventId, RoomAliasId, RoomId, UserId,
    api::client::{
        membership::{
            ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias,
            kick_user, leave_room, unban_user,
        },
        message::send_message_event,
        redact::redact_event,
        room::create_room::{self, v3::RoomPreset},
        state::{get_state_event_for_key, get_state_events, send_state_event},
    },
    events::StateEventType,
};
use serde_json::{Value, json};

use crate::{
    http::{
        error::{ApiError, ErrorCode},
        ruma_request::Ruma,
        ruma_response::RumaResponse,
    },
    service::{
        Services,
        aliases::AliasError,
        rooms::{RoomError, TxnKey},
    },
};

impl From<RoomError> for ApiError {
    fn from(err: RoomError) -> Self {
        match err {
            RoomError::UnknownRoom => ApiError::not_found("unknown room"),
            RoomError::Forbidden(why) => ApiError::forbidden(why),
            RoomError::Invalid(why) => ApiError::bad_json(why),
            RoomError::InvalidValue(why) => ApiError::invalid_param(why),
            RoomError::MissingEvents(_) => ApiError::not_found("events this needs are missing"),
            RoomError::Remote(why) => ApiError::new(
                http::StatusCode::BAD_GATEWAY,
                crate::http::error::ErrorCode::Unknown,
                why,
            ),
            RoomError::Storage(err) => err.into(),
        }
    }
}

pub async fn create_room(
    State(services): State<Services>,
    request: Ruma<create_room::v3::Request>,
) -> Result<RumaResponse<create_room::v3::Response>, ApiError> {
    let creator = request.session().user_id.clone();
    let request = request.body;
    let version = match &request.room_version {
        Some(id) => RoomVersion::parse(id.as_str()).map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::UnsupportedRoomVersion,
                err.to_string(),
            )
        })?,
        None => RoomVersion::DEFAULT,
    };
    let preset = request.preset.clone().unwrap_or(match request.visibility {
        ruma::api::client::room::Visibility::Public => RoomPreset::PublicChat,
        _ => RoomPreset::PrivateChat,
    });
    let (join_rule, invitees_are_admins) = match preset {
        RoomPreset::PublicChat => ("public", false),
        RoomPreset::TrustedPrivateChat => ("invite", true),
        _ => ("invite", false),
    };

    let mut users = serde_json::Map::new();
    if version < RoomVersion::V12 {
        users.insert(creator.to_string(), json!(100));
    }
    if invitees_are_admins {
        for invitee in &request.invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let mut power_levels = json!({
        "users": users, "users_default": 0, "events": {}, "events_default": 0, "state_default": 50,
        "ban": 50, "kick": 50, "redact": 50, "invite": 0,
    });
    if let Some(overrides) = &request.power_level_content_override {
        let overrides: Value = serde_json::from_str(overrides.json().get())
            .map_err(|err| ApiError::bad_json(format!("power_level_content_override: {err}")))?;
        if let (Some(target), Some(overrides)) =
            (power_levels.as_object_mut(), overrides.as_object())
        {
            for (key, value) in overrides {
                target.insert(key.clone(), value.clone());
            }
        }
    }

    // The alias is claimed before the room exists, and held until the room is made, so a
    // name in use refuses the creation instead of leaving a room without it.
    let alias = match &request.room_alias_name {
        Some(name) => {
            let alias = format!("#{name}:{}", services.rooms.server_name());
            let alias = RoomAliasId::parse(&alias)
                .map_err(|err| ApiError::invalid_param(format!("room_alias_name: {err}")))?;
            Some(alias)
        }
        None => None,
    };
    let alias_claim = match &alias {
        Some(alias) => Some(services.aliases.claim(alias).await.map_err(|err| match err {
            AliasError::Taken(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::RoomInUse, err.to_string())
            }
            err => err.into(),
        })?),
        None => None,
    };

    let creator_join = with_profile(&services, &creator, json!({"membership": "join"}))?;
    let mut setup: Vec<(String, Option<String>, Value)> = vec![
        ("m.room.member".into(), Some(creator.to_string()), creator_join),
        ("m.room.power_levels".into(), Some(String::new()), power_levels),
        ("m.room.join_rules".into(), Some(String::new()), json!({"join_rule": join_rule})),
        (
            "m.room.history_visibility".into(),
            Some(String::new()),
            json!({"history_visibility": "shared"}),
        ),
    ];
    if let Some(alias) = &alias {
        setup.push(("m.room.canonical_alias".into(), Some(String::new()), json!({"alias": alias})));
    }
    for event in &request.initial_state {
        let event: Value = serde_json::from_str(event.json().get())
            .map_err(|err| ApiError::bad_json(format!("initial_state: {err}")))?;
        let kind = event["type"]
            .as_str()
            .ok_or_else(|| ApiError::bad_json("initial_state event without type"))?;
        let state_key = event["state_key"].as_str().unwrap_or_default();
        setup.push((kind.to_owned(), Some(state_key.to_owned()), event["content"].clone()));
    }
    if let Some(name) = &request.name {
        setup.push(("m.room.name".into(), Some(String::new()), json!({"name": name})));
    }
    if let Some(topic) = &request.topic {
        setup.push(("m.room.topic".into(), Some(String::new()), json!({"topic": topic})));
    }
    let invite_content = || {
        let mut content = json!({"membership": "invite"});
        if request.is_direct {
            content["is_direct"] = json!(true);
        }
        content
    };
    let own_server = services.rooms.server_name().to_owned();
    let (local_invitees, remote_invitees): (Vec<_>, Vec<_>) =
        request.invite.iter().partition(|invitee| invitee.server_name() == own_server);
    for invitee in local_invitees {
        let content = with_profile(&services, invitee, invite_content())?;
        setup.push(("m.room.member".into(), Some(invitee.to_string()), content));
    }
    let creation_content = match &request.creation_content {
        Some(raw) => match serde_json::from_str::<Value>(raw.json().get()) {
            Ok(Value::Object(fields)) => fields,
            _ => return Err(ApiError::bad_json("creation_content must be an object")),
        },
        None => serde_json::Map::new(),
    };
    let room_id = services.rooms.create(&creator, version, creation_content, setup).await?;
    tracing::info!(room = %room_id, version = %version, "room created");
    if let Some(claim) = alias_claim {
        claim.bind(&room_id, &creator).await?;
    }
    // Users of other servers are invited once the room exists, through their servers. The
    // room stands either way; an invite their server refuses is logged, like Synapse does.
    for invitee in remote_invitees {
        if let Err(err) =
            invite_user(&services, &room_id, &creator, invitee, invite_content()).await
        {
            tracing::warn!(room = %room_id, %invitee, error = %err.message, "remote invite failed");
        }
    }
    Ok(RumaResponse(create_room::v3::Response::new(room_id)))
}

pub async fn send_message(
    State(services): State<Services>,
    request: Ruma<send_message_event::v3::Request>,
) -> Result<RumaResponse<send_message_event::v3::Response>, ApiError> {
    let session = request.session().clone();
    let request = request.body;
    let content: Value = serde_json::from_str(request.body.json().get())
        .map_err(|err| ApiError::bad_json(format!("content: {err}")))?;
    let kind = request.event_type.to_string();
    let txn = TxnKey { device_id: session.device_id.as_str(), txn_id: request.txn_id.as_str() };
    let event_id = services
        .rooms
        .append(&request.room_id, &session.user_id, &kind, None, content, Some(txn))
        .await?;
    Ok(RumaResponse(send_message_event::v3::Response::new(event_id)))
}

pub async fn send_state(
    State(services): State<Services>,
    request: Ruma<send_state_event::v3::Request>,
) -> Result<RumaResponse<send_state_event::v3::Response>, ApiError> {
    let sender = request.session().user_id.clone();
    let request = request.body;
    let content: Value = serde_json::from_str(request.body.json().get())
        .map_err(|err| ApiError::bad_json(format!("content: {err}")))?;
    let kind = request.event_type.to_string();
    if kind == "m.room.canonical_alias" {
        super::aliases::check_canonical_alias(&services, &request.room_id, &content, &sender)
            .await?;
    }
    let event_id = services
        .rooms
        .append(&request.room_id, &sender, &kind, Some(&request.state_key), content, None)
        .await?;
    Ok(RumaResponse(send_state_event::v3::Response::new(event_id)))
}

pub async fn get_state(
    State(services): State<Services>,
    request: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<RumaResponse<get_state_event_for_key::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    let kind = StateEventType::from(request.event_type.to_string());
    let event = services
        .access
        .current_state_event(&user, &request.room_id, &kind, &request.state_key)?
        .ok_or_else(|| ApiError::not_found("no such state event"))?;
    let content = serde_json::value::to_raw_value(&event["content"]).map_err(ApiError::internal)?;
    Ok(RumaResponse(get_state_event_for_key::v3::Response::new(content)))
}

/// `GET /rooms/{roomId}/state`: the current state events, for a member joined now.
pub async fn get_all_state(
    State(services): State<Services>,
    request: Ruma<get_state_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let room_id = &request.body.room_id;
    let state: Vec<Value> = services
        .access
        .current_state(&user, room_id)?
        .into_iter()
        .map(|(id, event)| super::sync::client_event(&id, event))
        .collect();
    Ok(Json(json!(state)))
}

async fn set_membership(
    services: &Services,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    membership: &str,
    reason: Option<String>,
) -> Result<OwnedEventId, ApiError> {
    let mut content = json!({ "membership": membership });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let content = with_profile(services, target, content)?;
    Ok(services
        .rooms
        .append(room_id, sender, "m.room.member", Some(target.as_str()), content, None)
        .await?)
}

/// A membership's content with the target's `displayname` and `avatar_url` added, as
/// Synapse adds them: to joins, invites and knocks of this server's users, where the
/// content does not name them already. Clients show members by these.
pub(super) fn with_profile(
    services: &Services,
    target: &UserId,
    mut content: Value,
) -> Result<Value, ApiError> {
    let carries_profile =
        matches!(content["membership"].as_str(), Some("join" | "invite" | "knock"));
    if !carries_profile || target.server_name() != services.rooms.server_name() {
        return Ok(content);
    }
    let profile = services.user_data.profile(target)?;
    for field in ["displayname", "avatar_url"] {
        if let Some(value) = profile.get(field).filter(|v| v.is_string())
            && content.get(field).is_none()
        {
            content[field] = value.clone();
        }
    }
    Ok(content)
}

/// Appends an invite: a user of another server's invite is first co-signed by their server
/// (`/invite` v2), which shows it to them.
async fn invite_user(
    services: &Services,
    room_id: &RoomId,
    sender: &UserId,
    target: &UserId,
    content: Value,
) -> Result<OwnedEventId, ApiError> {
    let content = with_profile(services, target, content)?;
    let cosign = match &services.federation {
        Some(federation) => federation.rooms.cosigner_for(room_id, sender, target)?,
        None => None,
    };
    Ok(services
        .rooms
        .append_cosigned(
            room_id,
            sender,
            "m.room.member",
            Some(target.as_str()),
            content,
            None,
            cosign,
        )
        .await?)
}

pub async fn invite(
    State(services): State<Services>,
    request: Ruma<invite_user::v3::Request>,
) -> Result<RumaResponse<invite_user::v3::Response>, ApiError> {
    let sender = request.session().user_id.clone();
    let request = request.body;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &request.recipient else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::Unrecognized,
            "third-party invites are not offered",
        ));
    };
    let mut content = json!({ "membership": "invite" });
    if let Some(reason) = &recipient.reason {
        content["reason"] = json!(reason);
    }
    invite_user(&services, &request.room_id, &sender, &recipient.user_id, content).await?;
    Ok(RumaResponse(invite_user::v3::Response::new()))
}

pub async fn join_by_id(
    State(services): State<Services>,
    request: Ruma<join_room_by_id::v3::Request>,
) -> Result<RumaResponse<join_room_by_id::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let room_id = request.body.room_id.clone();
    join(&services, &room_id, &user, request.body.reason.clone(), &[]).await?;
    Ok(RumaResponse(join_room_by_id::v3::Response::new(room_id)))
}

/// `/join/{roomIdOrAlias}`, what matrix-js-sdk and Element call. An alias is resolved first
/// (over federation for another server's), and the servers its answer names are tried after
/// those the client gave.
pub async fn join_by_id_or_alias(
    State(services): State<Services>,
    request: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<RumaResponse<join_room_by_id_or_alias::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let request = request.body;
    let (room_id, via) =
        room_and_servers(&services, &user, &request.room_id_or_alias, request.via).await?;
    join(&services, &room_id, &user, request.reason, &via).await?;
    Ok(RumaResponse(join_room_by_id_or_alias::v3::Response::new(room_id)))
}

/// The room a room ID or alias names, and the servers to reach it through: those the client
/// gave, then those an alias's answer names (resolved over federation for another server's).
pub(super) async fn room_and_servers(
    services: &Services,
    user: &UserId,
    room_id_or_alias: &ruma::RoomOrAliasId,
    mut via: Vec<ruma::OwnedServerName>,
) -> Result<(ruma::OwnedRoomId, Vec<ruma::OwnedServerName>), ApiError> {
    match <&RoomId>::try_from(room_id_or_alias) {
        Ok(room_id) => Ok((room_id.to_owned(), via)),
        Err(alias) => {
            let (room_id, servers) =
                super::aliases::resolve(services, alias, user.as_str()).await?;
            for server in servers {
                if !via.contains(&server) {
                    via.push(server);
                }
            }
            Ok((room_id, via))
        }
    }
}

/// Joins a room: locally when this server is in it, else through another server in it (those
/// the client names, the server that sent the user's invite, the room ID's server).
async fn join(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    reason: Option<String>,
    via: &[ruma::OwnedServerName],
) -> Result<(), ApiError> {
    let own = services.rooms.server_name();
    let known = services.rooms.version(room_id)?.is_some();
    if known && services.rooms.has_joined_member(room_id, own)? {
        set_membership(services, room_id, user, user, "join", reason).await?;
        return Ok(());
    }
    let servers = servers_to_ask(services, room_id, user, via)?;
    // A room this server knows but has no member in any more is joined through a server
    // that is in it: this server's copy stops where its last member left, and a join built
    // on it would miss everything since (the invite among it). With no such server (a
    // room of this server's alone), the local copy is the room.
    match &services.federation {
        Some(federation) if !servers.is_empty() => {
            let profile = services.user_data.profile(user)?;
            federation.rooms.join(room_id, user, reason.as_deref(), &profile, &servers).await?;
        }
        _ if known => {
            set_membership(services, room_id, user, user, "join", reason).await?;
        }
        None => return Err(ApiError::not_found("unknown room")),
        Some(_) => {
            return Err(ApiError::not_found("unknown room, and no server to join it through"));
        }
    }
    Ok(())
}

/// The servers to ask about a room this server is not in: those the client names, the one
/// that sent the user's invite, and the room ID's own server (before v12); never this one.
pub(super) fn servers_to_ask(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    via: &[ruma::OwnedServerName],
) -> Result<Vec<ruma::OwnedServerName>, ApiError> {
    let mut servers: Vec<ruma::OwnedServerName> = via.to_vec();
    if let Some(invite) = services.rooms.remote_invite_state(room_id, user)? {
        servers.extend(
            invite["via"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().and_then(|s| ruma::ServerName::parse(s).ok())),
        );
    }
    servers.extend(room_id.server_name().map(ToOwned::to_owned));
    let own = services.rooms.server_name();
    let mut seen = std::collections::HashSet::new();
    servers.retain(|server| server != own && seen.insert(server.clone()));
    Ok(servers)
}

pub async fn leave(
    State(services): State<Services>,
    request: Ruma<leave_room::v3::Request>,
) -> Result<RumaResponse<leave_room::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let room_id = &request.body.room_id;
    // Declining an invite to a room this server is not in (it may hold a copy from before
    // its last member left): only a server in the room can make the leave event, so it goes
    // through the inviting server (`make_leave`/`send_leave`).
    if let Some(federation) = &services.federation
        && services.rooms.membership(room_id, &user)?.as_deref() == Some("invite")
        && !services.rooms.has_joined_member(room_id, services.rooms.server_name())?
    {
        let servers = servers_to_ask(&services, room_id, &user, &[])?;
        let reason = request.body.reason.as_deref();
        federation.rooms.reject_invite(room_id, &user, reason, &servers).await?;
        return Ok(RumaResponse(leave_room::v3::Response::new()));
    }
    set_membership(
        &services,
        &request.body.room_id,
        &user,
        &user,
        "leave",
        request.body.reason.clone(),
    )
    .await?;
    Ok(RumaResponse(leave_room::v3::Response::new()))
}

pub async fn kick(
    State(services): State<Services>,
    request: Ruma<kick_user::v3::Request>,
) -> Result<RumaResponse<kick_user::v3::Response>, ApiError> {
    let sender = request.session().user_id.clone();
    let body = request.body;
    set_membership(&services, &body.room_id, &sender, &body.user_id, "leave", body.reason.clone())
        .await?;
    Ok(RumaResponse(kick_user::v3::Response::new()))
}

pub async fn ban(
    State(services): State<Services>,
    request: Ruma<ban_user::v3::Request>,
) -> Result<RumaResponse<ban_user::v3::Response>, ApiError> {
    let sender = request.session().user_id.clone();
    let body = request.body;
    set_membership(&services, &body.room_id, &sender, &body.user_id, "ban", body.reason.clone())
        .await?;
    Ok(RumaResponse(ban_user::v3::Response::new()))
}

pub async fn unban(
    State(services): State<Services>,
    request: Ruma<unban_user::v3::Request>,
) -> Result<RumaResponse<unban_user::v3::Response>, ApiError> {
    let sender = request.session().user_id.clone();
    let body = request.body;
    set_membership(&services, &body.room_id, &sender, &body.user_id, "leave", body.reason.clone())
        .await?;
    Ok(RumaResponse(unban_user::v3::Response::new()))
}

/// Redacts an event: the redaction joins the DAG (idempotent per transaction ID like any
/// send), and the target's content is removed if the sender may redact it.
pub async fn redact(
    State(services): State<Services>,
    request: Ruma<redact_event::v3::Request>,
) -> Result<RumaResponse<redact_event::v3::Response>, ApiError> {
    let session = request.session().clone();
    let body = request.body;
    let mut content = json!({ "redacts": body.event_id });
    if let Some(reason) = body.reason {
        content["reason"] = json!(reason);
    }
    let txn = TxnKey { device_id: session.device_id.as_str(), txn_id: body.txn_id.as_str() };
    let event_id = services
        .rooms
        .append(&body.room_id, &session.user_id, "m.room.redaction", None, content, Some(txn))
        .await?;
    Ok(RumaResponse(redact_event::v3::Response::new(event_id)))
}

pub async fn forget(
    State(services): State<Services>,
    request: Ruma<forget_room::v3::Request>,
) -> Result<RumaResponse<forget_room::v3::Response>, ApiError> {
    services.rooms.forget(&request.body.room_id, &request.session().user_id).await?;
    Ok(RumaResponse(forget_room::v3::Response::new()))
}
