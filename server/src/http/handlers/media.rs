//! Authenticated media: upload (`/_matrix/media/v3/upload`), the upload limit, and download
//! (`/_matrix/client/v1/media/download|thumbnail`). Files are opaque bytes; every download
//! passes the access service (`Access::may_download`).

use std::collections::HashMap;

use axum::{
    Json,
    body::Body,
    extract::{Query, Request, State},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, StatusCode, header};
use ruma::api::client::authenticated_media::{
    get_content, get_content_as_filename, get_content_thumbnail, get_media_config,
};
use serde_json::{Value, json};

use crate::{
    http::{
        error::ApiError,
        ruma_request::{Ruma, authenticate, check_rate_limit, missing_token},
    },
    service::{
        Services,
        media::{MediaError, is_valid_media_id},
    },
};

/// `POST /_matrix/media/v3/upload`: the body is the file itself, not JSON, so this handler
/// reads the request directly instead of through ruma's typed extractor.
pub async fn upload(
    State(services): State<Services>,
    request: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, body) = request.into_parts();
    let session = authenticate(&parts, &services, true)?.ok_or_else(missing_token)?;
    check_rate_limit(&parts, &services, Some(&session))?;
    let limit = services.config.limits.max_upload_bytes;
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|err| {
        ApiError::unreadable_body(&err, || {
            ApiError::too_large(format!("uploads are limited to {limit} bytes"))
        })
    })?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(ToOwned::to_owned);
    let query: Query<HashMap<String, String>> = Query::try_from_uri(&parts.uri)
        .map_err(|_| ApiError::invalid_param("unreadable query string"))?;
    let filename = query.get("filename").cloned();
    let position = services.rooms.stream.visible();
    let media_id = services
        .media
        .store(&session.user_id, content_type, filename, bytes, position)
        .await
        .map_err(|err| match err {
            MediaError::OverQuota { .. } => ApiError::too_large(err.to_string()),
            MediaError::Storage(err) => err.into(),
        })?;
    let server_name = &services.config.server_name;
    Ok(Json(json!({ "content_uri": format!("mxc://{server_name}/{media_id}") })))
}

pub async fn config(
    State(services): State<Services>,
    _: Ruma<get_media_config::v1::Request>,
) -> Json<Value> {
    Json(json!({ "m.upload.size": services.config.limits.max_upload_bytes }))
}

pub async fn download(
    State(services): State<Services>,
    request: Ruma<get_content::v1::Request>,
) -> Result<Response, ApiError> {
    let session = request.session();
    serve(&services, session, request.body.server_name.as_str(), &request.body.media_id, None).await
}

pub async fn download_as(
    State(services): State<Services>,
    request: Ruma<get_content_as_filename::v1::Request>,
) -> Result<Response, ApiError> {
    let session = request.session();
    let body = &request.body;
    serve(&services, session, body.server_name.as_str(), &body.media_id, Some(&body.filename)).await
}

/// Thumbnails: the server does not scale images (most files here are encrypted and cannot
/// be), so it answers with the original, which clients accept.
pub async fn thumbnail(
    State(services): State<Services>,
    request: Ruma<get_content_thumbnail::v1::Request>,
) -> Result<Response, ApiError> {
    let session = request.session();
    serve(&services, session, request.body.server_name.as_str(), &request.body.media_id, None).await
}

async fn serve(
    services: &Services,
    session: &crate::service::accounts::Session,
    server_name: &str,
    media_id: &str,
    filename: Option<&str>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("no such media");
    let (user, reader) = (&session.user_id, &session.log_reader());
    if !is_valid_media_id(media_id) {
        return Err(not_found());
    }
    if server_name != services.config.server_name {
        return remote_file(services, server_name, media_id, filename).await;
    }
    let info = services.media.info(media_id)?.ok_or_else(not_found)?;
    let mxc = format!("mxc://{server_name}/{media_id}");
    let allowed = services.access.may_download(user, &info.uploader, info.position, &mxc)?;
    if !services.access.log(reader, allowed).await? {
        // Not found rather than forbidden: a stranger learns nothing about the file.
        return Err(not_found());
    }
    let bytes = services.media.read(media_id).await?;
    let name = filename.or(info.filename.as_deref());
    Ok(file_response(info.content_type.as_deref(), name, bytes))
}

/// A file of another server's media repository, fetched over federation for a local user
/// (the other server decides whether this server may have it). Not kept: each download asks
/// again, so nothing here grows with what users fetch.
async fn remote_file(
    services: &Services,
    server_name: &str,
    media_id: &str,
    filename: Option<&str>,
) -> Result<Response, ApiError> {
    use ruma::api::federation::authenticated_media::{FileOrLocation, get_content};
    let not_found = || ApiError::not_found("no such media");
    let (Some(federation), Ok(server)) =
        (&services.federation, ruma::ServerName::parse(server_name))
    else {
        return Err(not_found());
    };
    let request = get_content::v1::Request::new(media_id.to_owned());
    let response = federation.client.send(&server, request).await.map_err(|err| {
        tracing::info!(%server, %err, "a remote file could not be fetched");
        not_found()
    })?;
    // A redirect elsewhere is not followed: this server would be fetching from whatever
    // address another server names.
    let FileOrLocation::File(content) = response.content else { return Err(not_found()) };
    let name = filename
        .map(ToOwned::to_owned)
        .or_else(|| content.content_disposition.as_ref().and_then(|d| d.filename.clone()));
    Ok(file_response(content.content_type.as_deref(), name.as_deref(), content.file))
}

/// The file with headers that keep a browser from running it as part of any page.
fn file_response(content_type: Option<&str>, filename: Option<&str>, bytes: Vec<u8>) -> Response {
    let content_type = content_type.unwrap_or("application/octet-stream");
    let mut response = (StatusCode::OK, Body::from(bytes)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type)
            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
    );
    let name = filename.unwrap_or("file");
    let safe_name: String =
        name.chars().filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\').collect();
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{safe_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "sandbox; default-src 'none'; script-src 'none'; object-src 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    response
}
