//! Device accounts (spec/devices.md, "Device accounts"): a bot account a patient registers for
//! a health device or the gateway phone it talks to. It has no password (nobody logs in as
//! it) and one device whose access token is handed to the patient once, to pair the device.
//! What makes it a device account is its row here, not its name: the access service shows it
//! no one else's events, and a patient's record admits it only to the space and its own
//! device room. Removing it closes the account at once (every token stops working).

use std::sync::Arc;

use ruma::{OwnedUserId, UserId};
use serde::{Deserialize, Serialize};

use super::accounts::{AccountError, Accounts, NewSession};
use crate::random;
use crate::storage::{Storage, StorageError, catalogue as cf, compound_key};

/// The kinds of device a patient may register: what the device room's readings are.
pub const KINDS: &[&str] = &[
    "blood-pressure",
    "heart-rate",
    "pulse-oximeter",
    "glucose-meter",
    "cgm",
    "thermometer",
    "scale",
    "fitness-tracker",
    "gateway",
];

/// The most devices one patient may have registered at a time.
pub const MAX_DEVICES_PER_PATIENT: usize = 100;

/// The localpart prefix of device accounts (followed by 16 random hex digits).
const LOCALPART_PREFIX: &str = "device-";

/// One device account, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceAccount {
    /// The patient who registered it (and alone may remove it).
    pub patient: OwnedUserId,
    /// The patient's name for it, unique among their devices.
    pub name: String,
    /// One of [`KINDS`].
    pub kind: String,
    /// When it was registered, ms since the epoch.
    pub added_at: u64,
    /// When it was removed; a removed account stays a device account (closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_at: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// A bad name or kind.
    #[error("{0}")]
    Invalid(String),
    /// Not the patient's to do.
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such device of yours")]
    NotFound,
    #[error("a device of yours is already named `{0}`")]
    NameInUse(String),
    #[error("you have {MAX_DEVICES_PER_PATIENT} devices already: remove one first")]
    TooMany,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A device account just made: its user ID and its one session (the token is shown once).
pub struct NewDevice {
    pub user_id: OwnedUserId,
    pub session: NewSession,
    pub account: DeviceAccount,
}

#[derive(Clone)]
pub struct DeviceAccounts {
    storage: Storage,
    accounts: Accounts,
    /// One registration at a time: a patient's name check and the write go together.
    adding: Arc<tokio::sync::Mutex<()>>,
}

impl DeviceAccounts {
    pub fn new(storage: Storage, accounts: Accounts) -> Self {
        Self { storage, accounts, adding: Arc::default() }
    }

    /// Registers a device account for `patient`: a new bot user with one device and token.
    /// A device account cannot register another.
    pub async fn add(
        &self,
        patient: &UserId,
        name: &str,
        kind: &str,
        now_ms: u64,
    ) -> Result<NewDevice, DeviceError> {
        check_name(name)?;
        if !KINDS.contains(&kind) {
            return Err(DeviceError::Invalid(format!(
                "`{kind}` is not a device kind (one of {})",
                KINDS.join(", ")
            )));
        }
        let _one_at_a_time = self.adding.lock().await;
        if is_device_account(&self.storage, patient)? {
            return Err(DeviceError::Forbidden("a device account cannot register devices"));
        }
        let devices = self.list(patient)?;
        if devices.iter().any(|(_, device)| device.name == name) {
            return Err(DeviceError::NameInUse(name.to_owned()));
        }
        if devices.len() >= MAX_DEVICES_PER_PATIENT {
            return Err(DeviceError::TooMany);
        }
        let localpart = format!("{LOCALPART_PREFIX}{}", random::string(random::HEX, 16));
        let user_id = self.accounts.user_id_for_new_account(&localpart)?;
        // The account first: should the process stop between the two writes, what is left is
        // an account without a password whose token nobody was ever shown.
        let session = self
            .accounts
            .register(&user_id, None, None, Some(format!("{kind}: {name}")), false)
            .await?
            .ok_or(DeviceError::Forbidden("the device account got no session"))?;
        let account = DeviceAccount {
            patient: patient.to_owned(),
            name: name.to_owned(),
            kind: kind.to_owned(),
            added_at: now_ms,
            removed_at: None,
        };
        let mut batch = self.storage.batch();
        batch.put(cf::USERID_DEVICEACCOUNT, user_id.as_bytes(), &to_json(&account));
        batch.put(cf::PATIENTDEVICE_REGISTERED, &owner_key(patient, &user_id), b"");
        self.storage.commit(batch).await?;
        Ok(NewDevice { user_id, session, account })
    }

    /// The patient's current devices, by user ID.
    pub fn list(&self, patient: &UserId) -> Result<Vec<(OwnedUserId, DeviceAccount)>, DeviceError> {
        let prefix = compound_key(&[patient.as_bytes(), b""]);
        let end = [prefix.as_slice(), &[0xFF]].concat();
        let rows = self.storage.scan_range(
            cf::PATIENTDEVICE_REGISTERED,
            &prefix,
            &end,
            MAX_DEVICES_PER_PATIENT + 1,
        )?;
        let mut devices = Vec::new();
        for (key, _) in rows {
            let Ok(user_id) = UserId::parse(String::from_utf8_lossy(&key[prefix.len()..]).as_ref())
            else {
                continue;
            };
            if let Some(account) = device_account(&self.storage, &user_id)? {
                devices.push((user_id, account));
            }
        }
        Ok(devices)
    }

    /// Closes `device`, one of `patient`'s: every token stops working now, no password ever
    /// worked, and the account stays marked as a device (it never reads as anything else).
    pub async fn remove(
        &self,
        patient: &UserId,
        device: &UserId,
        now_ms: u64,
    ) -> Result<DeviceAccount, DeviceError> {
        let Some(mut account) = device_account(&self.storage, device)? else {
            return Err(DeviceError::NotFound);
        };
        if account.patient != patient || account.removed_at.is_some() {
            return Err(DeviceError::NotFound);
        }
        account.removed_at = Some(now_ms);
        let mut batch = self.storage.batch();
        self.accounts.deactivate_in(&mut batch, device)?;
        batch.put(cf::USERID_DEVICEACCOUNT, device.as_bytes(), &to_json(&account));
        batch.delete(cf::PATIENTDEVICE_REGISTERED, &owner_key(patient, device));
        self.storage.commit(batch).await?;
        Ok(account)
    }
}

/// The device account `user` is, if it is one (removed ones included).
pub fn device_account(
    storage: &Storage,
    user: &UserId,
) -> Result<Option<DeviceAccount>, StorageError> {
    let Some(bytes) = storage.get(cf::USERID_DEVICEACCOUNT, user.as_bytes())? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|err| StorageError::Corrupt(format!("device account: {err}")))
}

/// Whether `user` is a device account: one lookup, which the access service makes once per
/// view (a point read that a bloom filter answers for everyone else).
pub fn is_device_account(storage: &Storage, user: &UserId) -> Result<bool, StorageError> {
    Ok(storage.get(cf::USERID_DEVICEACCOUNT, user.as_bytes())?.is_some())
}

fn check_name(name: &str) -> Result<(), DeviceError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' ');
    if name.trim().is_empty() || name.len() > 64 || !name.chars().all(allowed) {
        return Err(DeviceError::Invalid(
            "a device name is 1 to 64 letters, digits, spaces, - _ or .".to_owned(),
        ));
    }
    Ok(())
}

fn owner_key(patient: &UserId, device: &UserId) -> Vec<u8> {
    compound_key(&[patient.as_bytes(), device.as_bytes()])
}

fn to_json(account: &DeviceAccount) -> Vec<u8> {
    // Strings and integers only: serializing cannot fail, and an empty value would read back
    // as a damaged row rather than panic.
    serde_json::to_vec(account).unwrap_or_default()
}
