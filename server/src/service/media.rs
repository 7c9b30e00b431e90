//! Media: uploaded files (for records, almost always encrypted attachments the server cannot
//! read) kept as files in the data directory, with their metadata in RocksDB. A file is
//! durable (written, fsynced, renamed, directory fsynced) before its metadata is committed,
//! so an acknowledged upload survives `kill -9` and metadata never names a missing file.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use crate::storage::{Storage, StorageError, catalogue as cf, to_json_bytes};

/// What the server knows about an uploaded file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MediaInfo {
    pub uploader: OwnedUserId,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    /// The stream position at upload: who may download is decided as of this point.
    pub position: u64,
}

#[derive(Clone)]
pub struct Media {
    storage: Storage,
    dir: PathBuf,
}

impl Media {
    /// Media files live in `dir` (created if missing).
    pub fn open(storage: Storage, dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| StorageError::Corrupt(format!("media directory: {err}")))?;
        Ok(Self { storage, dir: dir.to_owned() })
    }

    /// Stores a file durably and returns its media ID.
    pub async fn store(
        &self,
        uploader: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: axum::body::Bytes,
        position: u64,
    ) -> Result<String, StorageError> {
        let media_id = random_media_id();
        let (dir, id) = (self.dir.clone(), media_id.clone());
        let size = bytes.len() as u64;
        tokio::task::spawn_blocking(move || write_durably(&dir, &id, &bytes))
            .await
            .map_err(|err| StorageError::Corrupt(format!("media writer: {err}")))?
            .map_err(|err| StorageError::Corrupt(format!("writing media: {err}")))?;
        let info =
            MediaInfo { uploader: uploader.to_owned(), content_type, filename, size, position };
        let mut batch = self.storage.batch();
        batch.put(cf::MEDIAID_METADATA, media_id.as_bytes(), &to_json_bytes(&info));
        self.storage.commit(batch).await?;
        Ok(media_id)
    }

    /// The metadata of a local file.
    pub fn info(&self, media_id: &str) -> Result<Option<MediaInfo>, StorageError> {
        self.storage
            .get(cf::MEDIAID_METADATA, media_id.as_bytes())?
            .map(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|err| StorageError::Corrupt(format!("media info: {err}")))
            })
            .transpose()
    }

    /// The file's bytes.
    pub async fn read(&self, media_id: &str) -> Result<Vec<u8>, StorageError> {
        let path = self.dir.join(media_id);
        tokio::fs::read(&path)
            .await
            .map_err(|err| StorageError::Corrupt(format!("media file {media_id}: {err}")))
    }
}

fn write_durably(dir: &Path, media_id: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!("{media_id}.part"));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, dir.join(media_id))?;
    // The rename is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

/// Media IDs are random, so knowing one never lets anyone guess another.
fn random_media_id() -> String {
    crate::random::string(crate::random::ALPHANUMERIC, 24)
}

/// Whether a media ID has the shape this server gives out (so it is a safe file name).
pub fn is_valid_media_id(media_id: &str) -> bool {
    media_id.len() == 24 && media_id.bytes().all(|b| b.is_ascii_alphanumeric())
}
