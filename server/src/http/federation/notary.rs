//! The notary endpoints (`/_matrix/key/v2/query`): this server vouches for other servers'
//! keys by adding its own signature to the documents they published, so a server that cannot
//! reach a peer directly can still check that peer's signatures.

use axum::{Json, extract::State};
use ruma::{
    CanonicalJsonObject, ServerName,
    api::federation::discovery::{get_remote_server_keys, get_remote_server_keys_batch},
};
use serde_json::{Value, json};

use crate::{
    http::{error::ApiError, ruma_request::Ruma},
    service::{Services, federation::FederationError},
};

/// The most servers one batch query may ask about.
const MAX_SERVERS_PER_QUERY: usize = 100;

pub async fn query_batch(
    State(services): State<Services>,
    request: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<Json<Value>, ApiError> {
    if request.body.server_keys.len() > MAX_SERVERS_PER_QUERY {
        return Err(ApiError::invalid_param(format!(
            "ask about at most {MAX_SERVERS_PER_QUERY} servers at once"
        )));
    }
    let mut documents = Vec::new();
    for (server, keys) in &request.body.server_keys {
        let minimum = keys
            .values()
            .filter_map(|criteria| criteria.minimum_valid_until_ts)
            .map(|ts| u64::from(ts.get()))
            .max()
            .unwrap_or(0);
        if let Some(document) = vouched(&services, server, minimum).await? {
            documents.push(document);
        }
    }
    Ok(Json(json!({ "server_keys": documents })))
}

pub async fn query_one(
    State(services): State<Services>,
    request: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<Json<Value>, ApiError> {
    let minimum = u64::from(request.body.minimum_valid_until_ts.get());
    let documents: Vec<CanonicalJsonObject> =
        vouched(&services, &request.body.server_name, minimum).await?.into_iter().collect();
    Ok(Json(json!({ "server_keys": documents })))
}

/// `server`'s key document with this server's signature added; `None` when it cannot be had
/// (the spec answers with what is known, not an error).
async fn vouched(
    services: &Services,
    server: &ServerName,
    minimum_valid_until_ts: u64,
) -> Result<Option<CanonicalJsonObject>, ApiError> {
    if server.as_str() == services.config.server_name {
        return services
            .server_keys
            .own_document(crate::clock::now_ms())
            .map(Some)
            .map_err(ApiError::internal);
    }
    let Some(federation) = &services.federation else {
        return Err(FederationError::Disabled.into());
    };
    if federation.client.policy.check(server).is_err() {
        return Ok(None);
    }
    match federation.remote_keys.document(server, minimum_valid_until_ts).await {
        Ok(mut document) => {
            services
                .server_keys
                .signing_key
                .sign_json(&mut document)
                .map_err(ApiError::internal)?;
            Ok(Some(document))
        }
        Err(FederationError::Storage(err)) => Err(err.into()),
        Err(err) => {
            tracing::info!(%server, %err, "notary: keys unavailable");
            Ok(None)
        }
    }
}
