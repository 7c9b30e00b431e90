//! The server-server API, served on its own TLS listener: key publication and version now;
//! every endpoint that acts for another server authenticates it with X-Matrix.

mod audit;
mod auth;
mod events;
mod keys;
mod media;
mod membership;
mod notary;
mod query;
mod transactions;

use axum::{
    Json, Router,
    extract::State,
    response::IntoResponse,
    routing::{get, post, put},
};
use http::StatusCode;
use ruma::api::federation::{
    authenticated_media::{get_content, get_content_thumbnail},
    authorization::get_event_authorization,
    backfill::get_backfill,
    device::get_devices,
    discovery::{get_remote_server_keys, get_remote_server_keys_batch},
    event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    keys::{claim_keys, get_keys},
    membership::{
        create_invite, create_join_event, create_knock_event, create_leave_event,
        prepare_join_event, prepare_knock_event, prepare_leave_event,
    },
    query::{get_profile_information, get_room_information},
    transactions::send_transaction_message,
};
use serde_json::{Value, json};

use crate::{http::error::ApiError, service::Services};

/// The federation API.
pub fn router(services: Services) -> Router {
    Router::new()
        .route("/_matrix/key/v2/server", get(own_keys))
        .route("/_matrix/key/v2/server/{key_id}", get(own_keys))
        .route("/_matrix/federation/v1/version", get(version))
        .route("/_medrix/federation/v1/rooms/{room_id}/read_log", get(audit::read_log))
        .route(path::<get_remote_server_keys_batch::v2::Request>(), post(notary::query_batch))
        .route(path::<get_remote_server_keys::v2::Request>(), get(notary::query_one))
        .route(path::<get_profile_information::v1::Request>(), get(query::profile))
        .route(path::<get_room_information::v1::Request>(), get(query::directory))
        .route(path::<get_devices::v1::Request>(), get(keys::user_devices))
        .route(path::<get_keys::v1::Request>(), post(keys::keys_query))
        .route(path::<claim_keys::v1::Request>(), post(keys::keys_claim))
        .route(path::<prepare_join_event::v1::Request>(), get(membership::make_join))
        .route(path::<create_join_event::v2::Request>(), put(membership::send_join))
        .route(path::<prepare_leave_event::v1::Request>(), get(membership::make_leave))
        .route(path::<create_leave_event::v2::Request>(), put(membership::send_leave))
        .route(path::<prepare_knock_event::v1::Request>(), get(membership::make_knock))
        .route(path::<create_knock_event::v1::Request>(), put(membership::send_knock))
        .route(path::<create_invite::v2::Request>(), put(membership::invite))
        .route(path::<get_event::v1::Request>(), get(events::event))
        .route(path::<get_room_state_ids::v1::Request>(), get(events::state_ids))
        .route(path::<get_room_state::v1::Request>(), get(events::state))
        .route(path::<get_event_authorization::v1::Request>(), get(events::event_auth))
        .route(path::<get_backfill::v1::Request>(), get(events::backfill))
        .route(path::<get_missing_events::v1::Request>(), post(events::missing_events))
        .route(path::<send_transaction_message::v1::Request>(), put(transactions::send))
        .route(path::<get_content::v1::Request>(), get(media::download))
        .route(path::<get_content_thumbnail::v1::Request>(), get(media::thumbnail))
        .fallback(|| async {
            ApiError::unrecognized(StatusCode::NOT_FOUND, "unknown federation endpoint")
        })
        .with_state(services)
}

/// The one path of a federation endpoint (they have no legacy variants).
fn path<T: ruma::api::Metadata>() -> &'static str {
    use ruma::api::path_builder::PathBuilder as _;
    // ruma's endpoint definitions each declare at least one path; the router is built once
    // at startup from these fixed types.
    #[allow(clippy::expect_used)]
    T::PATH_BUILDER.all_paths().last().expect("every endpoint has a path")
}

async fn own_keys(State(services): State<Services>) -> Result<impl IntoResponse, ApiError> {
    let document =
        services.server_keys.own_document(crate::clock::now_ms()).map_err(ApiError::internal)?;
    Ok(Json(document))
}

async fn version() -> Json<Value> {
    Json(json!({ "server": { "name": "Medrix", "version": env!("CARGO_PKG_VERSION") } }))
}
