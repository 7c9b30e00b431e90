//! Files for other servers (`/_matrix/federation/v1/media/download|thumbnail`): a server gets
//! a file of this server's media repository when one of its users could download it here
//! (`Access::server_may_download`), as one `multipart/mixed` answer. Files in record rooms are
//! end-to-end encrypted, so what travels is ciphertext; the rule still keeps a server with
//! nobody in the uploader's rooms from having even that.

use axum::extract::State;
use ruma::api::federation::authenticated_media::{
    Content, ContentMetadata, FileOrLocation, get_content, get_content_thumbnail,
};
use ruma::http_headers::{ContentDisposition, ContentDispositionType};

use super::auth::Federated;
use crate::{
    http::{error::ApiError, ruma_response::RumaResponse},
    service::{Services, media::is_valid_media_id},
};

pub async fn download(
    State(services): State<Services>,
    request: Federated<get_content::v1::Request>,
) -> Result<RumaResponse<get_content::v1::Response>, ApiError> {
    let content = file_for(&services, &request.origin, &request.body.media_id).await?;
    Ok(RumaResponse(get_content::v1::Response::new(ContentMetadata::new(), content)))
}

/// Thumbnails: the original, as for clients (the server does not scale what it cannot read).
pub async fn thumbnail(
    State(services): State<Services>,
    request: Federated<get_content_thumbnail::v1::Request>,
) -> Result<RumaResponse<get_content_thumbnail::v1::Response>, ApiError> {
    let content = file_for(&services, &request.origin, &request.body.media_id).await?;
    Ok(RumaResponse(get_content_thumbnail::v1::Response::new(ContentMetadata::new(), content)))
}

async fn file_for(
    services: &Services,
    origin: &ruma::ServerName,
    media_id: &str,
) -> Result<FileOrLocation, ApiError> {
    // Not found rather than forbidden, for a file refused as for one that is not there.
    let not_found = || ApiError::not_found("no such media");
    if !is_valid_media_id(media_id) {
        return Err(not_found());
    }
    let info = services.media.info(media_id)?.ok_or_else(not_found)?;
    let mxc = format!("mxc://{}/{media_id}", services.config.server_name);
    let allowed =
        services.access.server_may_download(origin, &info.uploader, info.position, &mxc)?;
    let reader = medrix_records::LogReader::Server { server_name: origin.to_string() };
    if !services.access.log(&reader, allowed).await? {
        tracing::info!(%origin, "a file refused to another server");
        return Err(not_found());
    }
    let bytes = services.media.read(media_id).await?;
    let content_type =
        info.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned());
    let disposition = ContentDisposition::new(ContentDispositionType::Attachment)
        .with_filename(info.filename.clone());
    Ok(FileOrLocation::File(Content::new(bytes, content_type, disposition)))
}
