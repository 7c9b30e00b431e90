//! Changes to an account that span services and must be one write: a password change with
//! the logout of the other devices (and their keys), and closing an account (its rooms
//! left, its profile cleared, every device and key dropped). Here rather than in a handler,
//! so HTTP code reaches no storage of its own.

use ruma::{DeviceId, UserId};
use serde_json::json;

use super::{
    Services,
    accounts::{AccountError, PasswordChange},
    rooms::RoomError,
};
use crate::storage::StorageError;

/// Why an account change failed.
#[derive(Debug, thiserror::Error)]
pub enum AccountChangeError {
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Room(#[from] RoomError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl Services {
    /// Sets the password hash and, if asked, logs out every other device, in one write: a
    /// crash cannot leave the new password in place with the other devices (perhaps the
    /// reason for the change) still logged in.
    pub async fn change_password(
        &self,
        user: &UserId,
        hash: &str,
        log_out_all_but: Option<&DeviceId>,
    ) -> Result<(), AccountChangeError> {
        let change = match log_out_all_but {
            Some(device) => PasswordChange::LogOutAllBut(device),
            None => PasswordChange::KeepDevices,
        };
        let mut batch = self.storage.batch();
        let logged_out = self.accounts.change_password_in(&mut batch, user, hash, change)?;
        self.e2ee.commit_with_removed_devices(batch, user, &logged_out).await?;
        Ok(())
    }

    /// Closes the account: leaves every room (each leave its own event), then clears the
    /// profile and drops every device and key in one write, so a crash leaves the account
    /// either usable (to deactivate again) or closed whole. The user ID stays reserved.
    pub async fn deactivate_account(&self, user: &UserId) -> Result<(), AccountChangeError> {
        for (room_id, membership) in self.rooms.memberships(user)? {
            if matches!(membership.as_str(), "join" | "invite" | "knock") {
                let content = json!({ "membership": "leave" });
                self.rooms
                    .append(&room_id, user, "m.room.member", Some(user.as_str()), content, None)
                    .await?;
            }
        }
        let mut batch = self.storage.batch();
        self.user_data.clear_profile_in(&mut batch, user);
        let devices = self.accounts.deactivate_in(&mut batch, user)?;
        self.e2ee.commit_with_removed_devices(batch, user, &devices).await?;
        Ok(())
    }
}
