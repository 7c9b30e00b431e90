//! `POST /knock/{roomIdOrAlias}`: asking to be let into a room whose join rule allows
//! knocking. In Medrix this is how a provider asks a patient for access: beside `reason`, a
//! Medrix client may send the terms it asks for (`org.medrix.request`, spec/records.md §7),
//! which are checked here and carried in the knock's content, where the patient's client
//! reads them. Standard clients send only a reason, and knock as anywhere else.

use axum::extract::State;
use bytes::Bytes;
use medrix_records::{AccessRequest, Error as RecordsError, REQUEST_KEY};
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
    let terms = requested_terms(&request.raw_body)?;
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
        if let Some(terms) = terms {
            content[REQUEST_KEY] = terms;
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
        let extra: Option<Map<String, Value>> =
            terms.map(|terms| [(REQUEST_KEY.to_owned(), terms)].into_iter().collect());
        let change = MembershipChange {
            user: &user,
            membership: "knock",
            reason: body.reason.as_deref(),
            profile: Some(&profile),
            extra: extra.as_ref(),
        };
        federation.rooms.knock(&room_id, change, &servers).await?;
    }
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}

/// The `org.medrix.request` of a knock's body, checked: `M_BAD_JSON` for its shape,
/// `M_INVALID_PARAM` for its values, as for a contract.
fn requested_terms(raw_body: &Bytes) -> Result<Option<Value>, ApiError> {
    let body: Value = serde_json::from_slice(raw_body).unwrap_or(Value::Null);
    let Some(terms) = body.get(REQUEST_KEY) else { return Ok(None) };
    match AccessRequest::from_content(terms) {
        Ok(_) => Ok(Some(terms.clone())),
        Err(err @ RecordsError::Shape { .. }) => Err(ApiError::bad_json(err.to_string())),
        Err(err) => Err(ApiError::invalid_param(err.to_string())),
    }
}
