//! The client-server API over HTTP: a small router from ruma's endpoint paths to handlers,
//! plus the answers for unknown paths (404) and wrong methods (405), both `M_UNRECOGNIZED`.

pub mod error;
pub mod federation;
mod handlers;
pub mod ruma_request;
pub mod ruma_response;

use std::sync::atomic::Ordering;

use axum::{
    Router,
    extract::{Request, State},
    handler::Handler,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{MethodFilter, get, on},
};
use http::StatusCode;
use ruma::api::client::{
    account, alias, authenticated_media, backup, config, context, device, discovery, filter, keys,
    knock, media, membership, message, profile, push, read_marker, receipt, redact, room, session,
    state, sync::sync_events, tag, to_device, typing,
};
use ruma::api::{Metadata, path_builder::PathBuilder};

use crate::{http::error::ApiError, service::Services};

/// Registers `handler` for every path (current and legacy `r0`) of endpoint `T`.
fn endpoint<T: Metadata, H, X>(mut router: Router<Services>, handler: H) -> Router<Services>
where
    H: Handler<X, Services>,
    X: 'static,
{
    // ruma's endpoints use the standard methods axum filters on; the router is built once at
    // startup from these fixed types.
    #[allow(clippy::expect_used)]
    let filter = MethodFilter::try_from(T::METHOD).expect("endpoint methods are standard");
    for path in T::PATH_BUILDER.all_paths() {
        router = router.route(path, on(filter, handler.clone()));
        // An empty state key is a trailing slash (or nothing): axum matches no empty segment,
        // so those forms get routes of their own (the extractor supplies the empty key).
        if let Some(without_key) = path.strip_suffix("{state_key}") {
            router = router.route(without_key, on(filter, handler.clone()));
            router = router.route(without_key.trim_end_matches('/'), on(filter, handler.clone()));
        }
    }
    router
}

/// The whole client API.
pub fn router(services: Services) -> Router {
    let mut router = Router::new();
    router = endpoint::<discovery::get_supported_versions::Request, _, _>(
        router,
        handlers::discovery::versions,
    );
    router = endpoint::<discovery::get_capabilities::v3::Request, _, _>(
        router,
        handlers::discovery::capabilities,
    );
    router = endpoint::<account::register::v3::Request, _, _>(router, handlers::account::register);
    router = endpoint::<account::get_username_availability::v3::Request, _, _>(
        router,
        handlers::account::username_available,
    );
    router = endpoint::<account::whoami::v3::Request, _, _>(router, handlers::account::whoami);
    router = endpoint::<account::change_password::v3::Request, _, _>(
        router,
        handlers::account::change_password,
    );
    router =
        endpoint::<account::deactivate::v3::Request, _, _>(router, handlers::account::deactivate);
    router = endpoint::<device::get_devices::v3::Request, _, _>(router, handlers::devices::list);
    router = endpoint::<device::get_device::v3::Request, _, _>(router, handlers::devices::get);
    router =
        endpoint::<device::update_device::v3::Request, _, _>(router, handlers::devices::rename);
    router =
        endpoint::<device::delete_device::v3::Request, _, _>(router, handlers::devices::delete_one);
    router = endpoint::<device::delete_devices::v3::Request, _, _>(
        router,
        handlers::devices::delete_many,
    );
    router = endpoint::<session::get_login_types::v3::Request, _, _>(
        router,
        handlers::session::login_types,
    );
    router = endpoint::<session::login::v3::Request, _, _>(router, handlers::session::login);
    router = endpoint::<session::logout::v3::Request, _, _>(router, handlers::session::logout);
    router =
        endpoint::<session::logout_all::v3::Request, _, _>(router, handlers::session::logout_all);
    router = endpoint::<room::create_room::v3::Request, _, _>(router, handlers::rooms::create_room);
    router = endpoint::<message::send_message_event::v3::Request, _, _>(
        router,
        handlers::rooms::send_message,
    );
    router =
        endpoint::<state::send_state_event::v3::Request, _, _>(router, handlers::rooms::send_state);
    router = endpoint::<state::get_state_events::v3::Request, _, _>(
        router,
        handlers::rooms::get_all_state,
    );
    router = endpoint::<state::get_state_event_for_key::v3::Request, _, _>(
        router,
        handlers::rooms::get_state,
    );
    router =
        endpoint::<membership::invite_user::v3::Request, _, _>(router, handlers::rooms::invite);
    router = endpoint::<membership::join_room_by_id::v3::Request, _, _>(
        router,
        handlers::rooms::join_by_id,
    );
    router = endpoint::<membership::join_room_by_id_or_alias::v3::Request, _, _>(
        router,
        handlers::rooms::join_by_id_or_alias,
    );
    router = endpoint::<knock::knock_room::v3::Request, _, _>(router, handlers::knock::knock);
    router = endpoint::<alias::create_alias::v3::Request, _, _>(router, handlers::aliases::create);
    router = endpoint::<alias::get_alias::v3::Request, _, _>(router, handlers::aliases::get);
    router = endpoint::<alias::delete_alias::v3::Request, _, _>(router, handlers::aliases::delete);
    router = endpoint::<room::aliases::v3::Request, _, _>(router, handlers::aliases::of_room);
    router = endpoint::<membership::leave_room::v3::Request, _, _>(router, handlers::rooms::leave);
    router = endpoint::<membership::kick_user::v3::Request, _, _>(router, handlers::rooms::kick);
    router = endpoint::<membership::ban_user::v3::Request, _, _>(router, handlers::rooms::ban);
    router = endpoint::<membership::unban_user::v3::Request, _, _>(router, handlers::rooms::unban);
    router = endpoint::<sync_events::v3::Request, _, _>(router, handlers::sync::sync);
    router =
        endpoint::<context::get_context::v3::Request, _, _>(router, handlers::room_reads::context);
    router = endpoint::<redact::redact_event::v3::Request, _, _>(router, handlers::rooms::redact);
    router =
        endpoint::<membership::forget_room::v3::Request, _, _>(router, handlers::rooms::forget);
    router = endpoint::<receipt::create_receipt::v3::Request, _, _>(
        router,
        handlers::room_ephemeral::receipt,
    );
    router = endpoint::<read_marker::set_read_marker::v3::Request, _, _>(
        router,
        handlers::room_ephemeral::read_markers,
    );
    router = endpoint::<typing::create_typing_event::v3::Request, _, _>(
        router,
        handlers::room_ephemeral::typing,
    );
    router = endpoint::<tag::get_tags::v3::Request, _, _>(router, handlers::user_data::tags);
    router = endpoint::<tag::create_tag::v3::Request, _, _>(router, handlers::user_data::set_tag);
    router =
        endpoint::<tag::delete_tag::v3::Request, _, _>(router, handlers::user_data::delete_tag);
    router = endpoint::<message::get_message_events::v3::Request, _, _>(
        router,
        handlers::room_reads::messages,
    );
    router =
        endpoint::<room::get_room_event::v3::Request, _, _>(router, handlers::room_reads::event);
    router = endpoint::<membership::get_member_events::v3::Request, _, _>(
        router,
        handlers::room_reads::members,
    );
    router = endpoint::<membership::joined_rooms::v3::Request, _, _>(
        router,
        handlers::room_reads::joined_rooms,
    );
    router = endpoint::<membership::joined_members::v3::Request, _, _>(
        router,
        handlers::room_reads::joined_members,
    );
    router =
        endpoint::<profile::get_profile::v3::Request, _, _>(router, handlers::user_data::profile);
    router = endpoint::<profile::get_display_name::v3::Request, _, _>(
        router,
        handlers::user_data::display_name,
    );
    router = endpoint::<profile::set_display_name::v3::Request, _, _>(
        router,
        handlers::user_data::set_display_name,
    );
    router = endpoint::<profile::get_avatar_url::v3::Request, _, _>(
        router,
        handlers::user_data::avatar_url,
    );
    router = endpoint::<profile::set_avatar_url::v3::Request, _, _>(
        router,
        handlers::user_data::set_avatar_url,
    );
    router = endpoint::<filter::create_filter::v3::Request, _, _>(
        router,
        handlers::user_data::create_filter,
    );
    router =
        endpoint::<filter::get_filter::v3::Request, _, _>(router, handlers::user_data::get_filter);
    router = endpoint::<config::set_global_account_data::v3::Request, _, _>(
        router,
        handlers::user_data::set_global_account_data,
    );
    router = endpoint::<config::get_global_account_data::v3::Request, _, _>(
        router,
        handlers::user_data::global_account_data,
    );
    router = endpoint::<config::set_room_account_data::v3::Request, _, _>(
        router,
        handlers::user_data::set_room_account_data,
    );
    router = endpoint::<config::get_room_account_data::v3::Request, _, _>(
        router,
        handlers::user_data::room_account_data,
    );
    router = endpoint::<push::get_pushrules_all::v3::Request, _, _>(
        router,
        handlers::user_data::push_rules,
    );
    router = endpoint::<backup::create_backup_version::v3::Request, _, _>(
        router,
        handlers::key_backup::create_version,
    );
    router = endpoint::<backup::get_latest_backup_info::v3::Request, _, _>(
        router,
        handlers::key_backup::latest_version,
    );
    router = endpoint::<backup::get_backup_info::v3::Request, _, _>(
        router,
        handlers::key_backup::version,
    );
    router = endpoint::<backup::update_backup_version::v3::Request, _, _>(
        router,
        handlers::key_backup::update_version,
    );
    router = endpoint::<backup::delete_backup_version::v3::Request, _, _>(
        router,
        handlers::key_backup::delete_version,
    );
    router = endpoint::<backup::add_backup_keys::v3::Request, _, _>(
        router,
        handlers::key_backup::put_keys,
    );
    router = endpoint::<backup::add_backup_keys_for_room::v3::Request, _, _>(
        router,
        handlers::key_backup::put_room_keys,
    );
    router = endpoint::<backup::add_backup_keys_for_session::v3::Request, _, _>(
        router,
        handlers::key_backup::put_session_key,
    );
    router =
        endpoint::<backup::get_backup_keys::v3::Request, _, _>(router, handlers::key_backup::keys);
    router = endpoint::<backup::get_backup_keys_for_room::v3::Request, _, _>(
        router,
        handlers::key_backup::room_keys,
    );
    router = endpoint::<backup::get_backup_keys_for_session::v3::Request, _, _>(
        router,
        handlers::key_backup::session_key,
    );
    router = endpoint::<backup::delete_backup_keys::v3::Request, _, _>(
        router,
        handlers::key_backup::delete_keys,
    );
    router = endpoint::<backup::delete_backup_keys_for_room::v3::Request, _, _>(
        router,
        handlers::key_backup::delete_room_keys,
    );
    router = endpoint::<backup::delete_backup_keys_for_session::v3::Request, _, _>(
        router,
        handlers::key_backup::delete_session_key,
    );
    router = endpoint::<keys::upload_keys::v3::Request, _, _>(router, handlers::keys::upload);
    router = endpoint::<keys::get_keys::v3::Request, _, _>(router, handlers::keys::query);
    router = endpoint::<keys::claim_keys::v3::Request, _, _>(router, handlers::keys::claim);
    router = endpoint::<keys::get_key_changes::v3::Request, _, _>(router, handlers::keys::changes);
    router = endpoint::<keys::upload_signing_keys::v3::Request, _, _>(
        router,
        handlers::keys::upload_signing_keys,
    );
    router = endpoint::<keys::upload_signatures::v3::Request, _, _>(
        router,
        handlers::keys::upload_signatures,
    );
    router = endpoint::<to_device::send_event_to_device::v3::Request, _, _>(
        router,
        handlers::keys::send_to_device,
    );
    router = endpoint::<media::create_content::v3::Request, _, _>(router, handlers::media::upload);
    router = endpoint::<authenticated_media::get_media_config::v1::Request, _, _>(
        router,
        handlers::media::config,
    );
    router = endpoint::<authenticated_media::get_content::v1::Request, _, _>(
        router,
        handlers::media::download,
    );
    router = endpoint::<authenticated_media::get_content_as_filename::v1::Request, _, _>(
        router,
        handlers::media::download_as,
    );
    router = endpoint::<authenticated_media::get_content_thumbnail::v1::Request, _, _>(
        router,
        handlers::media::thumbnail,
    );
    router =
        router.route("/.well-known/matrix/client", get(handlers::discovery::well_known_client));
    router =
        router.route("/_medrix/client/v1/rooms/{room_id}/read_log", get(handlers::audit::read_log));
    router =
        router.route("/_medrix/client/v1/rooms/{room_id}/export", get(handlers::audit::export));
    router = router.route(
        "/_medrix/client/v1/devices",
        get(handlers::device_accounts::list).post(handlers::device_accounts::add),
    );
    router = router.route(
        "/_medrix/client/v1/devices/{user_id}",
        axum::routing::delete(handlers::device_accounts::remove),
    );

    router
        .fallback(unknown_endpoint)
        .method_not_allowed_fallback(wrong_method)
        .layer(middleware::from_fn_with_state(services.clone(), count_responses))
        .with_state(services)
}

async fn unknown_endpoint() -> ApiError {
    ApiError::unrecognized(StatusCode::NOT_FOUND, "unknown endpoint")
}

async fn wrong_method() -> ApiError {
    ApiError::unrecognized(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

/// Counts answers by class; logs the route template (never the query: it may carry a token).
async fn count_responses(
    State(services): State<Services>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    let metrics = &services.metrics;
    metrics.requests.fetch_add(1, Ordering::Relaxed);
    let status = response.status();
    if status.is_client_error() {
        metrics.errors_4xx.fetch_add(1, Ordering::Relaxed);
    } else if status.is_server_error() {
        metrics.errors_5xx.fetch_add(1, Ordering::Relaxed);
    }
    tracing::debug!(%method, route, status = status.as_u16(), "request");
    response.into_response()
}

/// The metrics listener's router.
pub fn metrics_router(services: Services) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(services): State<Services>| async move { services.metrics.render() }),
        )
        .with_state(services)
}
