//! Media: uploaded files (for records, almost always encrypted attachments the server cannot
//! read) kept as files in the data directory, with their metadata in RocksDB. A file is
//! durable (written, fsynced, renamed, directory fsynced) before its metadata is committed,
//! so an acknowledged upload survives `kill -9` and metadata never names a missing file.
//!
//! Each user's uploads count against a quota of bytes, so no account can fill the disk.
//! The use is stored with the upload's metadata; uploads in progress are reserved in
//! memory, so concurrent ones cannot pass the quota together.

use std::{
    collections::HashMap,
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use crate::{
    locks::LockExt,
    storage::{Storage, StorageError, catalogue as cf, to_json_bytes},
};

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
    /// Bytes each user may upload in all.
    quota: u64,
    /// Bytes of uploads in progress, per user.
    reserved: Arc<Mutex<HashMap<OwnedUserId, u64>>>,
    /// Held while a user's use is read and written back, so no update is lost.
    usage_writes: Arc<tokio::sync::Mutex<()>>,
}

/// Why an upload was not stored.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("this upload would take you past your media quota of {quota} bytes")]
    OverQuota { quota: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// An upload's bytes held against its uploader's quota until it is stored or fails.
struct Reservation {
    reserved: Arc<Mutex<HashMap<OwnedUserId, u64>>>,
    user: OwnedUserId,
    size: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.reserved.locked();
        if let Some(bytes) = reserved.get_mut(&self.user) {
            *bytes -= self.size;
            if *bytes == 0 {
                reserved.remove(&self.user);
            }
        }
    }
}

impl Media {
    /// Media files live in `dir` (created if missing); each user may upload `quota` bytes.
    pub fn open(storage: Storage, dir: &Path, quota: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|err| StorageError::Corrupt(format!("media directory: {err}")))?;
        Ok(Self {
            storage,
            dir: dir.to_owned(),
            quota,
            reserved: Arc::default(),
            usage_writes: Arc::default(),
        })
    }

    /// Stores a file durably and returns its media ID.
    pub async fn store(
        &self,
        uploader: &UserId,
        content_type: Option<String>,
        filename: Option<String>,
        bytes: axum::body::Bytes,
        position: u64,
    ) -> Result<String, MediaError> {
        let size = bytes.len() as u64;
        // Released only after the use is committed: in between it counts twice, never not
        // at all.
        let _reservation = self.reserve(uploader, size)?;
        let media_id = random_media_id();
        let (dir, id) = (self.dir.clone(), media_id.clone());
        tokio::task::spawn_blocking(move || write_durably(&dir, &id, &bytes))
            .await
            .map_err(|err| StorageError::Corrupt(format!("media writer: {err}")))?
            .map_err(|err| StorageError::Corrupt(format!("writing media: {err}")))?;
        let info =
            MediaInfo { uploader: uploader.to_owned(), content_type, filename, size, position };
        let _writing = self.usage_writes.lock().await;
        let used = self.used(uploader)?;
        let mut batch = self.storage.batch();
        batch.put(cf::MEDIAID_METADATA, media_id.as_bytes(), &to_json_bytes(&info));
        batch.put(cf::USERID_MEDIABYTES, uploader.as_bytes(), &(used + size).to_be_bytes());
        self.storage.commit(batch).await?;
        Ok(media_id)
    }

    /// Bytes the user's stored uploads take.
    pub fn used(&self, user: &UserId) -> Result<u64, StorageError> {
        let stored = self.storage.get(cf::USERID_MEDIABYTES, user.as_bytes())?;
        Ok(stored.and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_be_bytes))
    }

    /// Holds `size` bytes against the user's quota, if stored and reserved uploads leave
    /// room for them.
    fn reserve(&self, user: &UserId, size: u64) -> Result<Reservation, MediaError> {
        let mut reserved = self.reserved.locked();
        let in_progress = reserved.get(user).copied().unwrap_or(0);
        if self.used(user)? + in_progress + size > self.quota {
            return Err(MediaError::OverQuota { quota: self.quota });
        }
        *reserved.entry(user.to_owned()).or_default() += size;
        Ok(Reservation { reserved: self.reserved.clone(), user: user.to_owned(), size })
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
