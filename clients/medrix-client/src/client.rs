//! `MedrixClient`: a matrix-sdk `Client` bound to a profile. Registering or logging in saves
//! the session there; every later process opens the same device from it.

use std::time::Duration;

use matrix_sdk::{
    Client,
    authentication::matrix::MatrixSession,
    config::SyncSettings,
    encryption::EncryptionSettings,
    ruma::api::client::{
        account::register,
        uiaa::{self, AuthData, AuthType, UiaaInfo},
    },
    store::RoomLoadSettings,
};
use medrix_records::UserId;

use crate::error::{ClientError, Result};
use crate::profile::{Profile, SavedSession};

/// The display name of the devices this library logs in.
const DEVICE_NAME: &str = "Medrix client";

/// A logged-in Medrix client.
#[derive(Debug, Clone)]
pub struct MedrixClient {
    pub(crate) client: Client,
    pub(crate) user: UserId,
    pub(crate) profile: Profile,
}

/// Who is logged in, on which device, and whether that device is signed by the user's
/// cross-signing identity (which history sharing on invite needs, on both sides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user.
    pub user_id: UserId,
    /// The device this profile is.
    pub device_id: String,
    /// The homeserver's URL.
    pub homeserver: String,
    /// Whether the device is signed by the user's cross-signing identity.
    pub cross_signed: bool,
}

impl MedrixClient {
    /// Registers `username` on `homeserver` through its user-interactive flow (a registration
    /// token when the server asks for one, then the dummy stage), logs in, sets up
    /// cross-signing, and saves the session in `profile`.
    pub async fn register(
        profile: Profile,
        homeserver: &str,
        username: &str,
        password: &str,
        registration_token: Option<&str>,
    ) -> Result<MedrixClient> {
        refuse_if_logged_in(&profile)?;
        let client = build_client(&profile, homeserver).await?;
        let mut request = register::v3::Request::new();
        request.username = Some(username.to_owned());
        request.password = Some(password.to_owned());
        request.initial_device_display_name = Some(DEVICE_NAME.to_owned());
        // Each round completes one stage: the server answers 401 with what remains.
        for _ in 0..8 {
            match client.matrix_auth().register(request.clone()).await {
                Ok(_) => return Self::logged_in(client, profile, homeserver, Some(password)).await,
                Err(err) => {
                    let Some(info) = err.as_uiaa_response() else { return Err(err.into()) };
                    // A stage the server did not accept (a wrong token) comes back with why.
                    if let Some(refusal) = &info.auth_error {
                        return Err(ClientError::Refused {
                            errcode: refusal.kind.errcode().to_string(),
                            message: refusal.message.trim_end_matches('.').to_owned(),
                        });
                    }
                    request.auth = Some(next_stage(info, registration_token)?);
                }
            }
        }
        Err(ClientError::Registration(
            "the server kept asking for more registration stages".to_owned(),
        ))
    }

    /// Logs in with a password (`user` is a localpart or a full user ID), sets up
    /// cross-signing if the account has none, and saves the session in `profile`.
    pub async fn login(
        profile: Profile,
        homeserver: &str,
        user: &str,
        password: &str,
    ) -> Result<MedrixClient> {
        refuse_if_logged_in(&profile)?;
        let client = build_client(&profile, homeserver).await?;
        client
            .matrix_auth()
            .login_username(user, password)
            .initial_device_display_name(DEVICE_NAME)
            .await?;
        Self::logged_in(client, profile, homeserver, Some(password)).await
    }

    /// Opens the session saved in `profile`.
    pub async fn open(profile: Profile) -> Result<MedrixClient> {
        let saved =
            profile.load()?.ok_or_else(|| ClientError::NotLoggedIn(profile.dir().into()))?;
        let client = build_client(&profile, &saved.homeserver).await?;
        let user = parse_user(saved.session.meta.user_id.as_str())?;
        client.matrix_auth().restore_session(saved.session, RoomLoadSettings::default()).await?;
        Ok(MedrixClient { client, user, profile })
    }

    /// Logs this device out and deletes the profile's session and stores (its keys too).
    pub async fn logout(self) -> Result<()> {
        match self.client.matrix_auth().logout().await {
            Ok(_) => {}
            // A token the server already forgot is logged out all the same.
            Err(err) if err.client_api_error_kind().is_some() => {}
            Err(err) => return Err(err.into()),
        }
        self.profile.clear()
    }

    /// The logged-in user.
    pub fn user_id(&self) -> &UserId {
        &self.user
    }

    /// The matrix-sdk client underneath, for what this library does not wrap.
    pub fn matrix(&self) -> &Client {
        &self.client
    }

    /// The session: user, device, homeserver, cross-signing.
    pub async fn session(&self) -> Result<Session> {
        let device_id = self.client.device_id().map(ToString::to_string).unwrap_or_default();
        let cross_signed = match self.client.encryption().get_own_device().await {
            Ok(Some(device)) => device.is_cross_signed_by_owner(),
            _ => false,
        };
        Ok(Session {
            user_id: self.user.clone(),
            device_id,
            homeserver: self.client.homeserver().to_string(),
            cross_signed,
        })
    }

    /// A sync (returning at once when nothing is new): room state, memberships, invitations,
    /// and the to-device messages that carry room keys. A homeserver hands out a page of
    /// to-device messages per sync (100, as Synapse), and a device that was away may have
    /// thousands waiting (a sensor's every reading has a key of its own): rounds go on while
    /// a full page came, so every key that waited is here before anything is decrypted.
    pub async fn sync(&self) -> Result<()> {
        const TO_DEVICE_PAGE: usize = 100;
        // Bounded: 1,000 rounds are 100,000 keys.
        for _ in 0..1000 {
            let response =
                self.client.sync_once(SyncSettings::default().timeout(Duration::ZERO)).await?;
            if response.to_device.len() < TO_DEVICE_PAGE {
                break;
            }
        }
        Ok(())
    }

    /// After a login or registration: the device's keys uploaded, cross-signing set up (the
    /// first upload needs no password; a server that asks gets it), the session saved.
    pub(crate) async fn logged_in(
        client: Client,
        profile: Profile,
        homeserver: &str,
        password: Option<&str>,
    ) -> Result<MedrixClient> {
        let session = client.matrix_auth().session().ok_or_else(|| {
            ClientError::Sdk("the server answered the login without a session".to_owned())
        })?;
        let user = parse_user(session.meta.user_id.as_str())?;
        profile
            .save(&SavedSession { homeserver: homeserver.to_owned(), session: session.clone() })?;
        let medrix = MedrixClient { client, user, profile };
        medrix.client.encryption().wait_for_e2ee_initialization_tasks().await;
        medrix.sync().await?;
        medrix.set_up_cross_signing(&session, password).await?;
        // The device's signature by the new identity comes back with the next key query.
        medrix.sync().await?;
        Ok(medrix)
    }

    /// A server that asks for a password before the first upload gets it when there is one;
    /// a device account has none (and this server asks none for the first upload).
    async fn set_up_cross_signing(
        &self,
        session: &MatrixSession,
        password: Option<&str>,
    ) -> Result<()> {
        let encryption = self.client.encryption();
        match encryption.bootstrap_cross_signing_if_needed(None).await {
            Ok(()) => Ok(()),
            Err(err) => {
                let Some(info) = err.as_uiaa_response() else { return Err(err.into()) };
                let Some(password) = password else { return Err(err.into()) };
                let identifier = uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(
                    session.meta.user_id.to_string(),
                ));
                let mut auth = uiaa::Password::new(identifier, password.to_owned());
                auth.session = info.session.clone();
                encryption.bootstrap_cross_signing(Some(AuthData::Password(auth))).await?;
                Ok(())
            }
        }
    }
}

/// The auth for the next stage of the first flow this client can complete.
fn next_stage(info: &UiaaInfo, token: Option<&str>) -> Result<AuthData> {
    let doable = |stage: &AuthType| match stage {
        AuthType::RegistrationToken => token.is_some(),
        AuthType::Dummy => true,
        _ => false,
    };
    let flow = info.flows.iter().find(|flow| flow.stages.iter().all(doable));
    let Some(flow) = flow else {
        let wants_token =
            info.flows.iter().any(|flow| flow.stages.contains(&AuthType::RegistrationToken));
        return Err(ClientError::Registration(if wants_token && token.is_none() {
            "this server needs a registration token to register (--registration-token)".to_owned()
        } else {
            let stages: Vec<String> = info
                .flows
                .iter()
                .flat_map(|flow| flow.stages.iter().map(|stage| stage.as_str().to_owned()))
                .collect();
            format!("this server asks for {}, which this client cannot complete", stages.join(", "))
        }));
    };
    let next = flow.stages.iter().find(|stage| !info.completed.contains(stage));
    let session = info.session.clone();
    Ok(match (next, token) {
        (Some(AuthType::RegistrationToken), Some(token)) => {
            let mut auth = uiaa::RegistrationToken::new(token.to_owned());
            auth.session = session;
            AuthData::RegistrationToken(auth)
        }
        _ => {
            let mut auth = uiaa::Dummy::new();
            auth.session = session;
            AuthData::Dummy(auth)
        }
    })
}

pub(crate) fn refuse_if_logged_in(profile: &Profile) -> Result<()> {
    if let Some(saved) = profile.load()? {
        return Err(ClientError::AlreadyLoggedIn(saved.session.meta.user_id.to_string()));
    }
    // A store without a session is what an interrupted login left: its keys belong to a
    // device nobody can log in as again.
    profile.clear()
}

pub(crate) async fn build_client(profile: &Profile, homeserver: &str) -> Result<Client> {
    let url = matrix_sdk::reqwest::Url::parse(homeserver)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .ok_or_else(|| ClientError::BadHomeserver(homeserver.to_owned()))?;
    profile.ensure_dir()?;
    let settings = EncryptionSettings {
        // Set up by hand after login, so a server that asks for the password gets it.
        auto_enable_cross_signing: false,
        ..Default::default()
    };
    Ok(Client::builder()
        .homeserver_url(url)
        .sqlite_store(profile.store_dir(), None)
        .with_encryption_settings(settings)
        // MSC4268: inviting a grantee hands over the room's keys; accepting imports them.
        .with_enable_share_history_on_invite(true)
        .build()
        .await?)
}

pub(crate) fn parse_user(text: &str) -> Result<UserId> {
    UserId::parse(text).ok_or_else(|| ClientError::BadUser(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::api::client::uiaa::AuthFlow;

    use super::*;

    fn info(flows: Vec<Vec<AuthType>>, completed: Vec<AuthType>) -> UiaaInfo {
        let mut info = UiaaInfo::new(flows.into_iter().map(AuthFlow::new).collect());
        info.completed = completed;
        info.session = Some("s".to_owned());
        info
    }

    #[test]
    fn registration_walks_the_token_then_the_dummy_stage() {
        let flows = vec![vec![AuthType::RegistrationToken, AuthType::Dummy]];
        let first = next_stage(&info(flows.clone(), vec![]), Some("t")).unwrap();
        assert!(matches!(first, AuthData::RegistrationToken(ref t) if t.token == "t"));
        let second =
            next_stage(&info(flows, vec![AuthType::RegistrationToken]), Some("t")).unwrap();
        assert!(matches!(second, AuthData::Dummy(ref d) if d.session.as_deref() == Some("s")));
    }

    #[test]
    fn registration_says_what_it_cannot_do() {
        let flows = vec![vec![AuthType::RegistrationToken, AuthType::Dummy]];
        let err = next_stage(&info(flows, vec![]), None).unwrap_err().to_string();
        assert!(err.contains("--registration-token"), "{err}");
        let email = vec![vec![AuthType::EmailIdentity]];
        let err = next_stage(&info(email, vec![]), Some("t")).unwrap_err().to_string();
        assert!(err.contains("m.login.email.identity"), "{err}");
        // A flow without the token is taken when no token was given.
        let open = vec![vec![AuthType::RegistrationToken], vec![AuthType::Dummy]];
        assert!(matches!(next_stage(&info(open, vec![]), None), Ok(AuthData::Dummy(_))));
    }
}
