//! A profile: one directory per device, holding the session (homeserver, user, device, access
//! token) and matrix-sdk's SQLite stores (room state, the sync token, the E2EE keys). Each
//! process that opens the profile restores the same device, so one login serves every later
//! command. The directory is private to its owner: the access token and the keys are in it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use matrix_sdk::authentication::matrix::MatrixSession;
use serde::{Deserialize, Serialize};

use crate::error::{ClientError, Result};

const SESSION_FILE: &str = "session.json";
const STORE_DIR: &str = "store";

/// A profile directory.
#[derive(Debug, Clone)]
pub struct Profile {
    dir: PathBuf,
}

/// What `session.json` holds.
#[derive(Serialize, Deserialize)]
pub(crate) struct SavedSession {
    pub homeserver: String,
    #[serde(flatten)]
    pub session: MatrixSession,
}

impl Profile {
    /// The profile in `dir` (created when a session is first saved).
    pub fn new(dir: impl Into<PathBuf>) -> Profile {
        Profile { dir: dir.into() }
    }

    /// The profile's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn store_dir(&self) -> PathBuf {
        self.dir.join(STORE_DIR)
    }

    fn session_path(&self) -> PathBuf {
        self.dir.join(SESSION_FILE)
    }

    /// Creates the directory (owner-only) if it is not there.
    pub(crate) fn ensure_dir(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).map_err(|err| ClientError::file(&self.dir, err))?;
        restrict(&self.dir, 0o700)
    }

    /// The saved session, if any.
    pub(crate) fn load(&self) -> Result<Option<SavedSession>> {
        let path = self.session_path();
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(ClientError::file(path, err)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|err| ClientError::BadSession(path, err.to_string()))
    }

    /// Writes the session, readable by the owner only, replacing the file atomically.
    pub(crate) fn save(&self, saved: &SavedSession) -> Result<()> {
        self.ensure_dir()?;
        let path = self.session_path();
        let partial = self.dir.join(format!("{SESSION_FILE}.partial"));
        let json = serde_json::to_vec_pretty(saved)
            .map_err(|err| ClientError::Sdk(format!("cannot encode the session: {err}")))?;
        let mut file =
            fs::File::create(&partial).map_err(|err| ClientError::file(&partial, err))?;
        restrict(&partial, 0o600)?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(|err| ClientError::file(&partial, err))?;
        fs::rename(&partial, &path).map_err(|err| ClientError::file(&path, err))
    }

    /// Removes the session and the stores: the device's keys are gone with them.
    pub(crate) fn clear(&self) -> Result<()> {
        for path in [self.session_path(), self.store_dir()] {
            let removed =
                if path.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
            match removed {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(ClientError::file(path, err)),
            }
        }
        Ok(())
    }
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|err| ClientError::file(path, err))
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) -> Result<()> {
    Ok(())
}
