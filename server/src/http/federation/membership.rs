//! Membership across servers, the resident side: join and leave templates for users of
//! other servers (`make_join`, `make_leave`), their signed events (`send_join` v2 answering
//! the full room state, `send_leave` v2), and invites of this server's users (`invite` v2).

use axum::{Json, extract::State};
use http::StatusCode;
use medrix_protocol::{
    RoomVersion, Verdict,
    build::hash_and_sign,
    canonical::{MAX_PDU_BYTES, encode, parse_object},
    incoming::event_id as compute_event_id,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomId, ServerName, UserId,
    api::federation::membership::{
        create_invite, create_join_event, create_knock_event, create_leave_event,
        prepare_join_event, prepare_knock_event, prepare_leave_event,
    },
};
use serde_json::{Value, json};

use super::auth::Federated;
use crate::{
    http::error::{ApiError, ErrorCode},
    service::{FederationServices, Services, rooms::remote::StateBefore},
};

pub(super) fn federation(services: &Services) -> Result<&FederationServices, ApiError> {
    services.federation.as_ref().ok_or_else(|| ApiError::not_found("federation is off"))
}

fn room_version(services: &Services, room_id: &RoomId) -> Result<RoomVersion, ApiError> {
    services.rooms.version(room_id)?.ok_or_else(|| ApiError::not_found("unknown room"))
}

fn require_origin_user(user: &UserId, origin: &ServerName) -> Result<(), ApiError> {
    if user.server_name() == origin {
        Ok(())
    } else {
        Err(ApiError::forbidden("the user does not belong to the requesting server"))
    }
}

/// `GET /make_join/{roomId}/{userId}`: a join template the user's server signs.
pub async fn make_join(
    State(services): State<Services>,
    request: Federated<prepare_join_event::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let wanted = Wanted { room_id: &body.room_id, user: &body.user_id, versions: &body.ver };
    versioned_template(&services, &request.origin, wanted, "join").await
}

/// `GET /make_knock/{roomId}/{userId}`: a knock template (an access request, for a
/// record's space) the user's server signs.
pub async fn make_knock(
    State(services): State<Services>,
    request: Federated<prepare_knock_event::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let wanted = Wanted { room_id: &body.room_id, user: &body.user_id, versions: &body.ver };
    versioned_template(&services, &request.origin, wanted, "knock").await
}

/// What a `make_join` or `make_knock` asks for: a template for this user in this room, in
/// one of these room versions.
struct Wanted<'a> {
    room_id: &'a RoomId,
    user: &'a UserId,
    versions: &'a [ruma::RoomVersionId],
}

/// A membership template for a user of the asking server, in a room version it speaks.
async fn versioned_template(
    services: &Services,
    origin: &ServerName,
    wanted: Wanted<'_>,
    membership: &str,
) -> Result<Json<Value>, ApiError> {
    require_origin_user(wanted.user, origin)?;
    let version = room_version(services, wanted.room_id)?;
    if !wanted.versions.iter().any(|v| v.as_str() == version.as_str()) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::IncompatibleRoomVersion,
            format!("the room is version {version}, which the asking server does not support"),
        )
        .with_room_version(version.as_str()));
    }
    template(services, wanted.room_id, wanted.user, membership).await
}

/// `PUT /send_knock/{roomId}/{eventId}`: takes the knocking server's signed knock; answers
/// the room's stripped state (what the knocker is shown of it).
pub async fn send_knock(
    State(services): State<Services>,
    request: Federated<create_knock_event::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    receive_membership(
        &services,
        &request.origin,
        &body.room_id,
        &body.event_id,
        body.pdu.get(),
        "knock",
    )
    .await?;
    let shown = services.access.stripped_state(&body.room_id, &[])?;
    Ok(Json(json!({ "knock_room_state": shown })))
}

/// `GET /make_leave/{roomId}/{userId}`.
pub async fn make_leave(
    State(services): State<Services>,
    request: Federated<prepare_leave_event::v1::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    require_origin_user(&body.user_id, &request.origin)?;
    template(&services, &body.room_id, &body.user_id, "leave").await
}

async fn template(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    membership: &str,
) -> Result<Json<Value>, ApiError> {
    let (version, event) = services.rooms.membership_template(room_id, user, membership).await?;
    Ok(Json(json!({ "room_version": version.as_str(), "event": event })))
}

/// `PUT /send_join/{roomId}/{eventId}` (v2): takes the joining server's signed join and
/// answers the room's full state before it with the auth chain (`omit_members` is not
/// honoured: partial-state joins are not supported, and full state is always correct).
pub async fn send_join(
    State(services): State<Services>,
    request: Federated<create_join_event::v2::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    let (_, event_id, json) = receive_membership(
        &services,
        &request.origin,
        &body.room_id,
        &body.event_id,
        body.pdu.get(),
        "join",
    )
    .await?;
    let joined =
        services.access.join_state_for_server(&request.origin, &body.room_id, &event_id)?;
    let reader = medrix_records::LogReader::Server { server_name: request.origin.to_string() };
    let joined = services.access.log(&reader, joined).await?;
    let own = services.rooms.server_name();
    let servers: Vec<String> = services
        .access
        .servers_in_room(&body.room_id, own)?
        .iter()
        .map(|s| s.to_string())
        .chain([own.to_string()])
        .collect();
    Ok(Json(json!({
        "origin": services.config.server_name,
        "members_omitted": false,
        "state": services.access.events_json(&joined.state)?,
        "auth_chain": services.access.events_json(&joined.auth_chain)?,
        "event": json,
        "servers_in_room": servers,
    })))
}

/// `PUT /send_leave/{roomId}/{eventId}` (v2).
pub async fn send_leave(
    State(services): State<Services>,
    request: Federated<create_leave_event::v2::Request>,
) -> Result<Json<Value>, ApiError> {
    let body = &request.body;
    receive_membership(
        &services,
        &request.origin,
        &body.room_id,
        &body.event_id,
        body.pdu.get(),
        "leave",
    )
    .await?;
    Ok(Json(json!({})))
}

/// Checks and takes in a join or leave another server signed for its own user, and relays
/// it to the room's other servers.
async fn receive_membership(
    services: &Services,
    origin: &ServerName,
    room_id: &RoomId,
    claimed_id: &EventId,
    pdu: &str,
    membership: &str,
) -> Result<(RoomVersion, OwnedEventId, CanonicalJsonObject), ApiError> {
    let federation = federation(services)?;
    let version = room_version(services, room_id)?;
    let object = parse_object(pdu.as_bytes(), MAX_PDU_BYTES)
        .map_err(|err| ApiError::bad_json(err.to_string()))?;
    let event_id =
        compute_event_id(&object, version).map_err(|err| ApiError::bad_json(err.to_string()))?;
    if event_id != claimed_id {
        return Err(ApiError::bad_json("the event ID does not match the event"));
    }
    check_membership_shape(&object, room_id, membership, |user| user.server_name() == origin)?;
    if let Some(Ok(user)) = text(&object, "state_key").map(UserId::parse) {
        let now = crate::clock::now_ms();
        services.rooms.check_received_membership(room_id, &user, membership, now).await?;
    }
    let checked = federation.rooms.check_objects(version, vec![object.clone()]).await.remove(0);
    let checked = checked.map_err(|refused| ApiError::forbidden(refused.why))?;
    let mut others = services.access.servers_in_room(room_id, services.rooms.server_name())?;
    others.remove(origin);
    let verdict = services
        .rooms
        .receive(room_id, version, checked, StateBefore::FromPrevEvents, others)
        .await?;
    match verdict {
        Verdict::Accepted => Ok((version, event_id, object)),
        Verdict::Rejected(why) | Verdict::SoftFailed(why) => Err(ApiError::forbidden(why)),
    }
}

/// `PUT /invite/{roomId}/{eventId}` (v2): another server invites one of this server's users.
/// The event is checked, signed by this server too, and shown to the invitee.
pub async fn invite(
    State(services): State<Services>,
    request: Federated<create_invite::v2::Request>,
) -> Result<Json<Value>, ApiError> {
    let federation = federation(&services)?;
    let body = &request.body;
    let version = RoomVersion::parse(body.room_version.as_str()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::IncompatibleRoomVersion,
            format!("room version {} is not supported here", body.room_version),
        )
        .with_room_version(body.room_version.as_str())
    })?;
    let mut object = parse_object(body.event.get().as_bytes(), MAX_PDU_BYTES)
        .map_err(|err| ApiError::bad_json(err.to_string()))?;
    let event_id =
        compute_event_id(&object, version).map_err(|err| ApiError::bad_json(err.to_string()))?;
    if event_id != body.event_id {
        return Err(ApiError::bad_json("the event ID does not match the event"));
    }
    let own = services.rooms.server_name().to_owned();
    check_membership_shape(&object, &body.room_id, "invite", |user| user.server_name() == own)?;
    let sender_server = text(&object, "sender")
        .and_then(|s| UserId::parse(s).ok())
        .map(|u| u.server_name().to_owned());
    if sender_server.as_deref() != Some(&*request.origin) {
        return Err(ApiError::forbidden("the inviter does not belong to the requesting server"));
    }
    let checked = federation.rooms.check_objects(version, vec![object.clone()]).await.remove(0);
    checked.map_err(|refused| ApiError::forbidden(refused.why))?;
    hash_and_sign(&mut object, version, services.rooms.signing_key())
        .map_err(ApiError::internal)?;
    let invitee = text(&object, "state_key")
        .and_then(|k| UserId::parse(k).ok())
        .ok_or_else(|| ApiError::bad_json("invalid state_key"))?;
    if !services.accounts.exists(&invitee).map_err(ApiError::internal)? {
        return Err(ApiError::not_found("no such user"));
    }
    // In a room this server is in, the invite arrives through the room like any other
    // event; otherwise it is kept for the invitee with the state to show. "In" means a
    // member joined now, not a copy of the room: once its last member left, this server
    // gets none of the room's events (Synapse sends a re-invite through `/invite` alone).
    if !services.rooms.has_joined_member(&body.room_id, &own)? {
        let mut stripped: Vec<Value> = body
            .invite_room_state
            .iter()
            .filter_map(crate::service::federation::rooms::stripped_event)
            .collect();
        // The invite itself belongs to what the invitee's client shows (who invited them).
        stripped.push(json!({
            "type": "m.room.member", "state_key": invitee, "sender": text(&object, "sender"),
            "content": serde_json::to_value(object.get("content")).map_err(ApiError::internal)?,
        }));
        services
            .rooms
            .store_outside_membership(
                &body.room_id,
                &invitee,
                &event_id,
                &encode(&object),
                "invite",
                Some(&json!({ "events": stripped, "via": [request.origin.as_str()] })),
            )
            .await?;
    }
    Ok(Json(json!({ "event": object })))
}

trait WithRoomVersion {
    fn with_room_version(self, version: &str) -> Self;
}

impl WithRoomVersion for ApiError {
    /// `M_INCOMPATIBLE_ROOM_VERSION` answers carry the room's version.
    fn with_room_version(mut self, version: &str) -> Self {
        self.extra = Some(("room_version", version.to_owned()));
        self
    }
}

fn text<'o>(object: &'o CanonicalJsonObject, field: &str) -> Option<&'o str> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(value)) => Some(value.as_str()),
        _ => None,
    }
}

/// The event must be an `m.room.member` event of `room_id` with this membership, about a
/// user `user_ok` accepts; for joins and leaves also sent by that user.
fn check_membership_shape(
    object: &CanonicalJsonObject,
    room_id: &RoomId,
    membership: &str,
    user_ok: impl Fn(&UserId) -> bool,
) -> Result<(), ApiError> {
    let content_membership = match object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.as_str()),
            _ => None,
        },
        _ => None,
    };
    let target = text(object, "state_key").and_then(|k| UserId::parse(k).ok());
    let self_sent = membership == "invite" || text(object, "sender") == text(object, "state_key");
    let fits = text(object, "type") == Some("m.room.member")
        && text(object, "room_id") == Some(room_id.as_str())
        && content_membership == Some(membership)
        && target.as_deref().is_some_and(&user_ok)
        && self_sent;
    if fits {
        Ok(())
    } else {
        Err(ApiError::bad_json(format!("not a {membership} event for this room and server")))
    }
}
