//! What a client asks first: which spec versions, which capabilities, where the server is.

use std::collections::BTreeMap;

use axum::{Json, extract::State};
use ruma::{
    RoomVersionId,
    api::client::discovery::{
        get_capabilities::{
            self,
            v3::{Capabilities, RoomVersionStability, RoomVersionsCapability},
        },
        get_supported_versions,
    },
};
use serde_json::{Value, json};

use crate::{
    http::{error::ApiError, ruma_request::Ruma, ruma_response::RumaResponse},
    service::Services,
};
use medrix_protocol::RoomVersion;

/// The spec versions Medrix answers to.
const VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
    "v1.9", "v1.10", "v1.11", "v1.12",
];

pub async fn versions(
    _: Ruma<get_supported_versions::Request>,
) -> RumaResponse<get_supported_versions::Response> {
    let mut response =
        get_supported_versions::Response::new(VERSIONS.iter().map(|v| (*v).to_owned()).collect());
    response.unstable_features = BTreeMap::new();
    RumaResponse(response)
}

pub async fn capabilities(
    _: Ruma<get_capabilities::v3::Request>,
) -> Result<RumaResponse<get_capabilities::v3::Response>, ApiError> {
    let available = RoomVersion::ALL
        .iter()
        .map(|version| (version.id(), RoomVersionStability::Stable))
        .collect();
    let mut capabilities = Capabilities::new();
    capabilities.room_versions = RoomVersionsCapability::new(RoomVersion::DEFAULT.id(), available);
    let _: RoomVersionId = RoomVersion::DEFAULT.id();
    Ok(RumaResponse(get_capabilities::v3::Response::new(capabilities)))
}

/// `/.well-known/matrix/client`: this server is its own client API base.
pub async fn well_known_client(State(services): State<Services>) -> Json<Value> {
    let base_url = format!("http://{}", services.config.listen);
    Json(json!({ "m.homeserver": { "base_url": base_url } }))
}
