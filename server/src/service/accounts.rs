//! Accounts: users, passwords, devices and access tokens.
//!
//! Access tokens are random 256-bit strings handed to the client once; only their SHA-256
//! is stored, so a copy of the database logs nobody in. Passwords are argon2id hashes.

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
};
use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ruma::{OwnedDeviceId, OwnedServerName, OwnedUserId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{
    locks::LockExt,
    storage::{Batch, Storage, StorageError, catalogue as cf, compound_key, to_json_bytes},
};

/// What account operations can refuse.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("the user ID is already taken")]
    UserInUse,
    #[error("invalid username: {0}")]
    InvalidUsername(String),
    #[error("unknown device")]
    UnknownDevice,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Who a request acts as: a user on one of their devices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
}

impl Session {
    /// The session as the read log names a reader: the user and the device.
    pub fn log_reader(&self) -> medrix_records::LogReader {
        medrix_records::LogReader::User {
            user_id: self.user_id.to_string(),
            device_id: Some(self.device_id.to_string()),
        }
    }
}

/// A freshly issued access token, shown to the client once.
pub struct NewSession {
    pub session: Session,
    pub access_token: String,
}

#[derive(Serialize, Deserialize)]
struct StoredDevice {
    display_name: Option<String>,
    /// Hex SHA-256 of the device's current access token.
    token_hash: String,
    /// When the device logged in (ms since the epoch); older records lack it.
    #[serde(default)]
    created_ts: Option<u64>,
}

/// A device as its owner sees it in the devices API.
pub struct DeviceInfo {
    pub device_id: OwnedDeviceId,
    pub display_name: Option<String>,
    pub created_ts: Option<u64>,
}

/// Whether a password change logs the user's other devices out.
pub enum PasswordChange<'a> {
    KeepDevices,
    /// Every device but this one (the one changing the password).
    LogOutAllBut(&'a ruma::DeviceId),
}

/// What a stored password record holds after deactivation: no hash matches it, and the user
/// ID stays taken so nobody can register it again and inherit its rooms.
const DEACTIVATED: &[u8] = b"!deactivated";

/// The accounts service.
#[derive(Clone)]
pub struct Accounts {
    storage: Storage,
    server_name: OwnedServerName,
    /// Held from a new account's name check to its durable write: two registrations of one
    /// name cannot both pass the check.
    registering: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Accounts {
    pub fn new(storage: Storage, server_name: OwnedServerName) -> Self {
        Self { storage, server_name, registering: Default::default() }
    }

    /// The full user ID for a localpart, if the localpart is valid for a new account.
    pub fn user_id_for_new_account(&self, localpart: &str) -> Result<OwnedUserId, AccountError> {
        let allowed =
            |c: char| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+');
        if localpart.is_empty() || !localpart.chars().all(allowed) {
            return Err(AccountError::InvalidUsername(
                "use only a-z, 0-9 and . _ = - / +".to_owned(),
            ));
        }
        UserId::parse(format!("@{localpart}:{}", self.server_name))
            .map_err(|err| AccountError::InvalidUsername(err.to_string()))
    }

    /// The user ID a login names: a localpart or a full ID on this server.
    pub fn local_user_id(&self, identifier: &str) -> Option<OwnedUserId> {
        let user_id = if identifier.starts_with('@') {
            UserId::parse(identifier).ok()?
        } else {
            UserId::parse(format!("@{}:{}", identifier.to_lowercase(), self.server_name)).ok()?
        };
        (user_id.server_name() == self.server_name).then_some(user_id)
    }

    pub fn exists(&self, user_id: &UserId) -> Result<bool, AccountError> {
        Ok(self.storage.get(cf::USERID_PASSWORD, user_id.as_bytes())?.is_some())
    }

    /// Creates the account with a password hash (see [`hash_password`]) and, unless
    /// `inhibit_login`, a first device with an access token, in one atomic commit. Of
    /// concurrent registrations of one name, exactly one succeeds.
    pub async fn register(
        &self,
        user_id: &UserId,
        password_hash: Option<String>,
        device_id: Option<OwnedDeviceId>,
        device_name: Option<String>,
        inhibit_login: bool,
    ) -> Result<Option<NewSession>, AccountError> {
        // In a task of its own: a request dropped mid-write (its client hung up) keeps the
        // lock until its write is durable, so a second registration cannot slip in between.
        let (this, user_id) = (self.clone(), user_id.to_owned());
        tokio::spawn(async move {
            let _one_at_a_time = this.registering.lock().await;
            if this.exists(&user_id)? {
                return Err(AccountError::UserInUse);
            }
            let hash = password_hash.unwrap_or_default();
            let mut batch = this.storage.batch();
            batch.put(cf::USERID_PASSWORD, user_id.as_bytes(), hash.as_bytes());
            let session = if inhibit_login {
                None
            } else {
                Some(this.add_device_to(&mut batch, &user_id, device_id, device_name)?)
            };
            this.storage.commit(batch).await?;
            Ok(session)
        })
        .await
        .map_err(|_| AccountError::Storage(StorageError::WriterStopped))?
    }

    /// Checks a password; slow on purpose (argon2id), so call it through
    /// [`with_password_hashing`].
    pub fn password_matches(&self, user_id: &UserId, password: &str) -> Result<bool, AccountError> {
        let Some(stored) = self.storage.get(cf::USERID_PASSWORD, user_id.as_bytes())? else {
            return Ok(false);
        };
        let stored = String::from_utf8(stored)
            .map_err(|_| StorageError::Corrupt(format!("password hash of {user_id}")))?;
        let Ok(parsed) = PasswordHash::new(&stored) else { return Ok(false) };
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
    }

    /// Logs a user in on a device (new, or an existing one that gets a fresh token).
    pub async fn login(
        &self,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        device_name: Option<String>,
    ) -> Result<NewSession, AccountError> {
        let mut batch = self.storage.batch();
        if let Some(device_id) = &device_id
            && let Some(old) = self.device(user_id, device_id.as_str())?
        {
            batch.delete(cf::TOKENHASH_SESSION, old.token_hash.as_bytes());
        }
        let session = self.add_device_to(&mut batch, user_id, device_id, device_name)?;
        self.storage.commit(batch).await?;
        Ok(session)
    }

    /// The session an access token opens, if any.
    pub fn authenticate(&self, access_token: &str) -> Result<Option<Session>, AccountError> {
        // The lookup is by hash: timing reveals nothing about the token itself.
        let Some(bytes) =
            self.storage.get(cf::TOKENHASH_SESSION, token_hash(access_token).as_bytes())?
        else {
            return Ok(None);
        };
        let session = serde_json::from_slice(&bytes)
            .map_err(|err| StorageError::Corrupt(format!("session: {err}")))?;
        Ok(Some(session))
    }

    /// Ends one device's session: its token stops working and the device is removed.
    pub async fn logout(&self, session: &Session) -> Result<(), AccountError> {
        let mut batch = self.storage.batch();
        self.remove_device_in(&mut batch, &session.user_id, session.device_id.as_str())?;
        Ok(self.storage.commit(batch).await?)
    }

    /// Ends every session of a user; returns the devices removed.
    pub async fn logout_all(&self, user_id: &UserId) -> Result<Vec<OwnedDeviceId>, AccountError> {
        let devices: Vec<_> = self.devices(user_id)?.into_iter().map(|d| d.device_id).collect();
        self.remove_devices(user_id, &devices).await
    }

    /// All devices of a user.
    pub fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceInfo>, AccountError> {
        let prefix = compound_key(&[user_id.as_bytes(), b""]);
        let mut out = Vec::new();
        for (key, value) in self.storage.scan_prefix(cf::USERDEVICEID_DEVICE, &prefix)? {
            let device: StoredDevice = serde_json::from_slice(&value)
                .map_err(|err| StorageError::Corrupt(format!("device: {err}")))?;
            out.push(DeviceInfo {
                device_id: OwnedDeviceId::from(
                    String::from_utf8_lossy(&key[prefix.len()..]).as_ref(),
                ),
                display_name: device.display_name,
                created_ts: device.created_ts,
            });
        }
        Ok(out)
    }

    /// One device of a user.
    pub fn device_info(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<DeviceInfo>, AccountError> {
        Ok(self.device(user_id, device_id)?.map(|device| DeviceInfo {
            device_id: OwnedDeviceId::from(device_id),
            display_name: device.display_name,
            created_ts: device.created_ts,
        }))
    }

    /// Renames a device.
    pub async fn rename_device(
        &self,
        user_id: &UserId,
        device_id: &str,
        display_name: Option<String>,
    ) -> Result<(), AccountError> {
        let mut device = self.device(user_id, device_id)?.ok_or(AccountError::UnknownDevice)?;
        device.display_name = display_name;
        let mut batch = self.storage.batch();
        batch.put(
            cf::USERDEVICEID_DEVICE,
            &compound_key(&[user_id.as_bytes(), device_id.as_bytes()]),
            &to_json_bytes(&device),
        );
        Ok(self.storage.commit(batch).await?)
    }

    /// Removes devices (their tokens stop working) in one commit; unknown ones are skipped,
    /// as the spec's bulk delete asks. Returns the devices removed.
    pub async fn remove_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> Result<Vec<OwnedDeviceId>, AccountError> {
        let mut batch = self.storage.batch();
        let mut removed = Vec::new();
        for device_id in device_ids {
            match self.remove_device_in(&mut batch, user_id, device_id.as_str()) {
                Ok(()) => removed.push(device_id.clone()),
                Err(AccountError::UnknownDevice) => {}
                Err(err) => return Err(err),
            }
        }
        self.storage.commit(batch).await?;
        Ok(removed)
    }

    /// Replaces the password hash (see [`hash_password`]) in `batch`, logging the other
    /// devices out with it if `change` says so. Returns the devices logged out.
    pub fn change_password_in(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
        hash: &str,
        change: PasswordChange<'_>,
    ) -> Result<Vec<OwnedDeviceId>, AccountError> {
        batch.put(cf::USERID_PASSWORD, user_id.as_bytes(), hash.as_bytes());
        let PasswordChange::LogOutAllBut(keep) = change else { return Ok(Vec::new()) };
        let others: Vec<_> = self
            .devices(user_id)?
            .into_iter()
            .map(|device| device.device_id)
            .filter(|device| device != keep)
            .collect();
        for device_id in &others {
            self.remove_device_in(batch, user_id, device_id.as_str())?;
        }
        Ok(others)
    }

    /// Closes the account for good, in `batch`: no password works, every device is logged
    /// out, and the user ID stays reserved. Returns the devices removed.
    pub fn deactivate_in(
        &self,
        batch: &mut Batch<'_>,
        user_id: &UserId,
    ) -> Result<Vec<OwnedDeviceId>, AccountError> {
        let devices: Vec<_> = self.devices(user_id)?.into_iter().map(|d| d.device_id).collect();
        batch.put(cf::USERID_PASSWORD, user_id.as_bytes(), DEACTIVATED);
        for device_id in &devices {
            self.remove_device_in(batch, user_id, device_id.as_str())?;
        }
        Ok(devices)
    }

    fn device(
        &self,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<Option<StoredDevice>, AccountError> {
        let key = compound_key(&[user_id.as_bytes(), device_id.as_bytes()]);
        let Some(bytes) = self.storage.get(cf::USERDEVICEID_DEVICE, &key)? else { return Ok(None) };
        let device = serde_json::from_slice(&bytes)
            .map_err(|err| StorageError::Corrupt(format!("device: {err}")))?;
        Ok(Some(device))
    }

    fn remove_device_in(
        &self,
        batch: &mut crate::storage::Batch<'_>,
        user_id: &UserId,
        device_id: &str,
    ) -> Result<(), AccountError> {
        let device = self.device(user_id, device_id)?.ok_or(AccountError::UnknownDevice)?;
        batch.delete(cf::TOKENHASH_SESSION, device.token_hash.as_bytes());
        batch.delete(
            cf::USERDEVICEID_DEVICE,
            &compound_key(&[user_id.as_bytes(), device_id.as_bytes()]),
        );
        Ok(())
    }

    fn add_device_to(
        &self,
        batch: &mut crate::storage::Batch<'_>,
        user_id: &UserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
    ) -> Result<NewSession, AccountError> {
        let device_id = device_id.unwrap_or_else(|| {
            OwnedDeviceId::from(crate::random::string(crate::random::UPPERCASE, 10))
        });
        let access_token = format!("mdx_{}", URL_SAFE_NO_PAD.encode(crate::random::bytes::<32>()));
        let token_hash = token_hash(&access_token);
        let session = Session { user_id: user_id.to_owned(), device_id: device_id.clone() };
        let device = StoredDevice {
            display_name,
            token_hash: token_hash.clone(),
            created_ts: Some(crate::clock::now_ms()),
        };
        batch.put(
            cf::USERDEVICEID_DEVICE,
            &compound_key(&[user_id.as_bytes(), device_id.as_bytes()]),
            &to_json_bytes(&device),
        );
        batch.put(cf::TOKENHASH_SESSION, token_hash.as_bytes(), &to_json_bytes(&session));
        Ok(NewSession { session, access_token })
    }
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// How many argon2id computations run at once. Each takes ~19 MiB and a core for tens of
/// milliseconds; unbounded, a burst of registrations or logins starves every other request
/// of CPU.
const MAX_CONCURRENT_PASSWORD_HASHES: usize = 2;

static PASSWORD_HASHING: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_PASSWORD_HASHES);

type HashingJob = Box<dyn FnOnce() + Send>;

/// The threads that hash passwords: always the same few, so that the memory argon2 takes
/// stays in few allocator arenas, each trimmed after every hash.
fn hashing_threads() -> &'static std::sync::mpsc::SyncSender<HashingJob> {
    static QUEUE: std::sync::OnceLock<std::sync::mpsc::SyncSender<HashingJob>> =
        std::sync::OnceLock::new();
    QUEUE.get_or_init(|| {
        let (queue, jobs) =
            std::sync::mpsc::sync_channel::<HashingJob>(MAX_CONCURRENT_PASSWORD_HASHES);
        let jobs = std::sync::Arc::new(std::sync::Mutex::new(jobs));
        for index in 0..MAX_CONCURRENT_PASSWORD_HASHES {
            let jobs = jobs.clone();
            let started = std::thread::Builder::new().name(format!("medrix-argon2-{index}")).spawn(
                move || {
                    loop {
                        let job = jobs.locked().recv();
                        match job {
                            Ok(job) => {
                                job();
                                release_freed_memory();
                            }
                            Err(_) => return,
                        }
                    }
                },
            );
            // With no thread at all, the queue's receiver is gone and every hash answers
            // "password hashing stopped"; with fewer, hashes wait their turn.
            if let Err(err) = started {
                tracing::error!(%err, "a password hashing thread did not start");
            }
        }
        queue
    })
}

/// Hands memory freed by a hash back to the system. glibc keeps argon2's 19 MiB blocks in
/// its arenas after they are freed: measured, 24 sign-ups at once left the server at 354 MiB
/// where it idles at 22 MiB.
fn release_freed_memory() {
    // SAFETY: malloc_trim only returns free pages to the system; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs a password hash or check on the hashing threads, at most
/// [`MAX_CONCURRENT_PASSWORD_HASHES`] at a time.
pub async fn with_password_hashing<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StorageError> {
    let stopped = || StorageError::Corrupt("password hashing stopped".to_owned());
    // A permit per queue slot: the send below never blocks an async worker.
    let _slot = PASSWORD_HASHING.acquire().await.map_err(|_| stopped())?;
    let (answer, answered) = tokio::sync::oneshot::channel();
    hashing_threads()
        .send(Box::new(move || {
            let _ = answer.send(work());
        }))
        .map_err(|_| stopped())?;
    answered.await.map_err(|_| stopped())
}

/// Hashes a password with argon2id; slow on purpose, so call it through
/// [`with_password_hashing`].
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::encode_b64(&crate::random::bytes::<16>())
        .map_err(|err| StorageError::Corrupt(format!("salt: {err}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| StorageError::Corrupt(format!("password hashing: {err}")).into())
}
