//! What members say about a room without adding to its DAG: read receipts, read markers and
//! typing notifications. Only joined members may send them.

use axum::{Json, extract::State};
use ruma::{
    EventId, RoomId, UserId,
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        typing::create_typing_event::{self, v3::Typing},
    },
};
use serde_json::{Value, json};

use crate::{
    http::{error::ApiError, ruma_request::Ruma},
    service::Services,
};

/// A receipt must name an event of this room the user may see.
fn require_visible_event(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &EventId,
) -> Result<(), ApiError> {
    if services.access.may_see_event(user, room_id, event_id)? {
        Ok(())
    } else {
        Err(ApiError::not_found("no such event in this room"))
    }
}

pub async fn receipt(
    State(services): State<Services>,
    request: Ruma<create_receipt::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let body = request.body;
    super::require_joined(&services, &body.room_id, &user)?;
    let thread = crate::service::receipts::thread_id(&body.thread).ok_or_else(|| {
        ApiError::invalid_param("thread_id must be \"main\" or a thread root's event ID")
    })?;
    match body.receipt_type {
        ReceiptType::FullyRead => {
            set_fully_read(&services, &body.room_id, &user, &body.event_id).await?;
        }
        ReceiptType::Read | ReceiptType::ReadPrivate => {
            require_visible_event(&services, &body.room_id, &user, &body.event_id)?;
            let kind = body.receipt_type.to_string();
            services
                .receipts
                .set(&body.room_id, &user, &kind, &body.event_id, thread.clone())
                .await?;
            if body.receipt_type == ReceiptType::Read
                && let Some(federation) = &services.federation
            {
                let thread = thread.as_deref();
                federation
                    .edus_out
                    .read_receipt(&body.room_id, &user, &body.event_id, thread)
                    .await;
            }
        }
        _ => return Err(ApiError::invalid_param("unknown receipt type")),
    }
    Ok(Json(json!({})))
}

pub async fn read_markers(
    State(services): State<Services>,
    request: Ruma<set_read_marker::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let body = request.body;
    super::require_joined(&services, &body.room_id, &user)?;
    if let Some(event_id) = &body.fully_read {
        set_fully_read(&services, &body.room_id, &user, event_id).await?;
    }
    for (kind, event_id) in
        [("m.read", &body.read_receipt), ("m.read.private", &body.private_read_receipt)]
    {
        if let Some(event_id) = event_id {
            require_visible_event(&services, &body.room_id, &user, event_id)?;
            services.receipts.set(&body.room_id, &user, kind, event_id, None).await?;
            if kind == "m.read"
                && let Some(federation) = &services.federation
            {
                federation.edus_out.read_receipt(&body.room_id, &user, event_id, None).await;
            }
        }
    }
    Ok(Json(json!({})))
}

/// The fully-read marker is per-room account data, private to the user.
async fn set_fully_read(
    services: &Services,
    room_id: &RoomId,
    user: &UserId,
    event_id: &EventId,
) -> Result<(), ApiError> {
    require_visible_event(services, room_id, user, event_id)?;
    let content = json!({ "event_id": event_id });
    services.user_data.set_account_data(user, Some(room_id), "m.fully_read", &content).await?;
    Ok(())
}

pub async fn typing(
    State(services): State<Services>,
    request: Ruma<create_typing_event::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let body = request.body;
    if body.user_id != user {
        return Err(ApiError::forbidden("you may only set your own typing state"));
    }
    super::require_joined(&services, &body.room_id, &user)?;
    let typing = match body.state {
        Typing::Yes(info) => Some(info.timeout),
        _ => None,
    };
    services.typing.set(&body.room_id, &user, typing).await?;
    if let Some(federation) = &services.federation {
        federation.edus_out.typing(&body.room_id, &user, typing.is_some()).await;
    }
    Ok(Json(json!({})))
}
