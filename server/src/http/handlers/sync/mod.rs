//! `/sync`: long-polls until something the user may see arrives, then answers with what
//! changed since the token. Tokens are `s<stream position>` (see `SyncToken`): one global
//! order covers room events, account data, key changes, to-device messages, receipts and
//! typing. Every event passes the access service first.
//!
//! The response is assembled as JSON rather than ruma's `sync_events::v3::Response`: the
//! E2EE sections must always be present, and the JSON form is what is measured fast.

mod ephemeral;
pub(crate) mod rooms;

use std::time::Duration;

use axum::{Json, extract::State};
use ruma::{UserId, api::client::sync::sync_events};
use serde_json::{Value, json};

use super::keys;
use crate::{
    http::{error::ApiError, ruma_request::Ruma},
    service::{Services, access::PendingReads, e2ee::ToDeviceMark},
};

pub use rooms::client_event;

/// The longest a client may make the server hold a sync.
const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// Timeline events per room when the filter does not say.
const DEFAULT_TIMELINE_LIMIT: usize = 20;
/// The most timeline events per room a filter may ask for.
const MAX_TIMELINE_LIMIT: usize = 500;

/// What one sync computes: from `since` (none for an initial sync) up to `upto`.
pub(super) struct Window<'a> {
    pub services: &'a Services,
    pub user: &'a UserId,
    pub since: Option<u64>,
    pub upto: u64,
    pub timeline_limit: usize,
}

pub async fn sync(
    State(services): State<Services>,
    request: Ruma<sync_events::v3::Request>,
) -> Result<Json<Value>, ApiError> {
    let user = request.session().user_id.clone();
    let device = request.session().device_id.clone();
    let request = request.body;
    let since = request.since.as_deref().map(SyncToken::parse).transpose()?;
    let timeout = request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let timeline_limit = timeline_limit(&services, &user, request.filter.as_ref())?;

    // Answer as soon as something for this user arrives: wake on every new position and
    // re-check, until the timeout. An initial sync answers at once, and so does one whose
    // token says to-device messages were left waiting by the last page.
    let deadline = tokio::time::Instant::now() + timeout;
    let mut checked_upto = since.as_ref().map_or(0, |since| since.position);
    let mut look_now = since.as_ref().is_none_or(|since| since.to_device.is_some());
    loop {
        let upto = services.rooms.stream.visible();
        let timed_out = tokio::time::Instant::now() >= deadline;
        if look_now || upto > checked_upto || timed_out {
            let window = Window {
                services: &services,
                user: &user,
                since: since.as_ref().map(|since| since.position),
                upto,
                timeline_limit,
            };
            let (body, anything) = respond(&window, since.as_ref(), &device).await?;
            if since.is_none() || anything || timed_out {
                return Ok(Json(body));
            }
            checked_upto = upto;
            look_now = false;
        }
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        services.rooms.stream.wait_past(checked_upto, remaining).await;
    }
}

/// The whole response for a window, and whether it carries anything for the user.
async fn respond(
    window: &Window<'_>,
    since: Option<&SyncToken>,
    device: &ruma::DeviceId,
) -> Result<(Value, bool), ApiError> {
    let mut pending = PendingReads::default();
    let (mut body, rooms_changed) = rooms::room_sections(window, &mut pending)?;
    let reader = medrix_records::LogReader::User {
        user_id: window.user.to_string(),
        device_id: Some(device.to_string()),
    };
    window.services.access.log_pending(&reader, pending).await?;
    let next_batch = parse_token(body["next_batch"].as_str().unwrap_or_default())?;
    let (e2ee, e2ee_changed, to_device_left) =
        keys::sync_sections(window.services, window.user, device, since, next_batch).await?;
    let token = SyncToken { position: next_batch, to_device: to_device_left };
    body["next_batch"] = json!(token.to_string());
    if let (Some(body), Value::Object(sections)) = (body.as_object_mut(), e2ee) {
        body.extend(sections);
    }
    if window.since.is_some() {
        device_list_membership_changes(window, &mut body)?;
    }
    Ok((body, rooms_changed || e2ee_changed))
}

/// Membership changes in the timelines move users in and out of the client's device
/// tracking: someone who joined a shared room is `changed` (fetch their devices), someone
/// who left and shares no room with the user any more is `left` (stop encrypting for them).
fn device_list_membership_changes(window: &Window<'_>, body: &mut Value) -> Result<(), ApiError> {
    let (mut joined, mut departed): (Vec<Value>, Vec<String>) = (Vec::new(), Vec::new());
    let rooms = ["join", "leave"].iter().flat_map(|section| {
        body["rooms"][section].as_object().into_iter().flat_map(|r| r.values())
    });
    for room in rooms {
        for event in room["timeline"]["events"].as_array().into_iter().flatten() {
            let Some(member) = event["state_key"].as_str() else { continue };
            if event["type"] != "m.room.member" || member == window.user.as_str() {
                continue;
            }
            match event["content"]["membership"].as_str() {
                Some("join") => joined.push(json!(member)),
                Some("leave" | "ban") => departed.push(member.to_owned()),
                _ => {}
            }
        }
    }
    if !departed.is_empty() {
        let still_shared = window.services.access.users_sharing_rooms_with(window.user)?;
        departed.retain(|user| !still_shared.contains(user));
    }
    if let Some(changed) = body["device_lists"]["changed"].as_array_mut() {
        for user in joined {
            if !changed.contains(&user) {
                changed.push(user);
            }
        }
    }
    if let Some(left) = body["device_lists"]["left"].as_array_mut() {
        for user in departed {
            let user = json!(user);
            if !left.contains(&user) {
                left.push(user);
            }
        }
    }
    Ok(())
}

/// A sync token: `s<position>`, everything up to that stream position delivered, or
/// `s<position>_<request position>_<index>` when a device's to-device messages did not all
/// fit in the last response: those after that place in its queue are still to come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncToken {
    pub position: u64,
    pub to_device: Option<ToDeviceMark>,
}

impl SyncToken {
    pub fn parse(token: &str) -> Result<Self, ApiError> {
        let unknown = || ApiError::invalid_param("unknown token");
        let mut parts = token.strip_prefix('s').ok_or_else(unknown)?.split('_');
        let mut number = || parts.next().map(str::parse::<u64>);
        let position = number().ok_or_else(unknown)?.map_err(|_| unknown())?;
        let to_device = match (number(), number(), number()) {
            (None, None, None) => None,
            (Some(Ok(request)), Some(Ok(index)), None) if request <= position => {
                let index = u32::try_from(index).map_err(|_| unknown())?;
                Some(ToDeviceMark { position: request, index })
            }
            _ => return Err(unknown()),
        };
        Ok(Self { position, to_device })
    }

    /// The to-device messages this token acknowledges: all up to its position unless the
    /// last page stopped short of that.
    pub fn to_device_acknowledged(&self) -> ToDeviceMark {
        self.to_device.unwrap_or(ToDeviceMark::through_position(self.position))
    }
}

impl std::fmt::Display for SyncToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_device {
            None => write!(f, "s{}", self.position),
            Some(mark) => write!(f, "s{}_{}_{}", self.position, mark.position, mark.index),
        }
    }
}

/// The stream position of a token (sync, key changes, pagination): a sync token's
/// to-device part says nothing about rooms, so it is ignored here.
pub fn parse_token(token: &str) -> Result<u64, ApiError> {
    SyncToken::parse(token).map(|token| token.position)
}

/// The timeline limit the sync's filter asks for (inline JSON or a stored filter's ID).
fn timeline_limit(
    services: &Services,
    user: &UserId,
    filter: Option<&sync_events::v3::Filter>,
) -> Result<usize, ApiError> {
    let definition = match filter {
        None => return Ok(DEFAULT_TIMELINE_LIMIT),
        Some(sync_events::v3::Filter::FilterDefinition(definition)) => {
            serde_json::to_value(definition).map_err(ApiError::internal)?
        }
        Some(sync_events::v3::Filter::FilterId(id)) => {
            services.user_data.filter(user, id)?.unwrap_or(Value::Null)
        }
        Some(_) => Value::Null,
    };
    let limit = definition["room"]["timeline"]["limit"].as_u64();
    Ok(limit.map_or(DEFAULT_TIMELINE_LIMIT, |l| (l as usize).clamp(1, MAX_TIMELINE_LIMIT)))
}
