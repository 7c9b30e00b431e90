//! `POST /knock/{roomIdOrAlias}`: asking to be let into a room whose join rule allows
//! knocking. In Medrix this is how a provider asks a patient for access: beside `reason`, a
//! Medrix client may send the terms it asks for (`org.medrix.request`, spec/records.md §7),
//! or invoke break-glass (`org.medrix.break_glass`, §8), which are checked here and carried
//! in the knock's content, where the patient's client and server read them. Standard clients
//! send only a reason, and knock as anywhere else.

use axum::extract::State;
use bytes::Bytes;
use medrix_records::{AccessRequest, BREAK_GLASS_KEY, Error as RecordsError, REQUEST_KEY};
use ruma::api::client::knock::knock_room;
use serde_json::{Map, Value, json};

use super::rooms::{room_and_servers, servers_to_ask, with_profile};
use crate::{
    http::{error::ApiError, ruma_request::Ruma, ruma_response::RumaResponse},
    service::{Services, federation::rooms::MembershipChange},
};

pub async fn knock(
    State(services): State<Services>,
    request: Ruma<knock_room::v3::Request>,
) -> Result<RumaResponse<knock_room::v3::Response>, ApiError> {
    let user = request.session().user_id.clone();
    let extensions = medrix_fields(&request.raw_body)?;
    let body = request.body;
    let (room_id, via) =
        room_and_servers(&services, &user, &body.room_id_or_alias, body.via).await?;

    let own = services.rooms.server_name();
    let known = services.rooms.version(&room_id)?.is_some();
    if known && services.rooms.has_joined_member(&room_id, own)? {
        let mut content = json!({ "membership": "knock" });
        if let Some(reason) = &body.reason {
            content["reason"] = json!(reason);
        }
        for (field, value) in &extensions {
            content[field] = value.clone();
        }
        let content = with_profile(&services, &user, content)?;
        services
            .rooms
            .append(&room_id, &user, "m.room.member", Some(user.as_str()), content, None)
            .await?;
    } else {
        let federation =
            services.federation.as_ref().ok_or_else(|| ApiError::not_found("unknown room"))?;
        let servers = servers_to_ask(&services, &room_id, &user, &via)?;
        let profile = services.user_data.profile(&user)?;
        let change = MembershipChange {
            user: &user,
            membership: "knock",
            reason: body.reason.as_deref(),
            profile: Some(&profile),
            extra: Some(&extensions),
        };
        federation.rooms.knock(&room_id, change, &servers).await?;
    }
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}

/// The Medrix fields of a knock's body, checked: `org.medrix.request` as a contract's terms
/// are (`M_BAD_JSON` for its shape, `M_INVALID_PARAM` for its values); `org.medrix.break_glass`
/// must give a reason.
fn medrix_fields(raw_body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    let body: Value = serde_json::from_slice(raw_body).unwrap_or(Value::Null);
    let mut fields = Map::new();
    if let Some(terms) = body.get(REQUEST_KEY) {
        match AccessRequest::from_content(terms) {
            Ok(_) => fields.insert(REQUEST_KEY.to_owned(), terms.clone()),
            Err(err @ RecordsError::Shape { .. }) => {
                return Err(ApiError::bad_json(err.to_string()));
            }
            Err(err) => return Err(ApiError::invalid_param(err.to_string())),
        };
    }
    if let Some(asked) = body.get(BREAK_GLASS_KEY) {
        let reason = asked.get("reason").and_then(Value::as_str).map(str::trim);
        match reason {
            Some(reason) if !reason.is_empty() => {
                fields.insert(BREAK_GLASS_KEY.to_owned(), json!({ "reason": reason }));
            }
            _ => {
                return Err(ApiError::bad_json(format!(
                    "`{BREAK_GLASS_KEY}.reason` must give the reason"
                )));
            }
        }
    }
    Ok(fields)
}
