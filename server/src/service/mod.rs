//! Services own the decisions; HTTP handlers only translate. The graph is acyclic: services
//! depend on storage and on the protocol crate, never on each other in a cycle.

pub mod access;
pub mod account_changes;
pub mod accounts;
pub mod aliases;
pub mod contracts;
pub mod device_accounts;
pub mod e2ee;
pub mod federation;
pub mod key_backup;
pub mod key_signatures;
pub mod media;
pub mod rate_limit;
pub mod receipts;
pub mod rooms;
pub mod server_keys;
pub mod typing;
pub mod uia;
pub mod user_data;

use std::sync::Arc;

use crate::{config::Config, metrics::Metrics, storage::Storage};

/// Everything a request handler may use, cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub config: Arc<Config>,
    pub storage: Storage,
    pub accounts: accounts::Accounts,
    pub uia: Arc<uia::UiaSessions>,
    pub rate_limits: Arc<rate_limit::RateLimiter>,
    pub metrics: Arc<Metrics>,
    pub rooms: rooms::Rooms,
    /// The one way to read room data, for local users and other servers.
    /// Shared, so the federation sender can hold it weakly (it logs pushes through it) without
    /// a reference cycle through `Rooms`, which holds the sender.
    pub access: Arc<access::Access>,
    pub aliases: aliases::Aliases,
    pub user_data: user_data::UserData,
    pub e2ee: e2ee::E2ee,
    pub server_keys: server_keys::ServerKeys,
    /// Present when federation is on.
    pub federation: Option<FederationServices>,
    pub key_backup: key_backup::KeyBackup,
    pub media: media::Media,
    pub receipts: receipts::Receipts,
    pub typing: typing::Typing,
    /// Carries out the patient's consent contracts (expiry, revocation, uncovered members).
    pub contracts: contracts::ContractExecutor,
    /// The bot accounts patients register for their health devices.
    pub device_accounts: device_accounts::DeviceAccounts,
}

/// The federation side: the outbound client, the remote key cache, the outbound queues and
/// rooms spanning servers.
#[derive(Clone)]
pub struct FederationServices {
    pub client: Arc<federation::client::FederationClient>,
    pub remote_keys: Arc<federation::remote_keys::RemoteKeys>,
    pub sender: Arc<federation::sender::Sender>,
    pub rooms: Arc<federation::rooms::FederatedRooms>,
    pub edus_in: Arc<federation::edus_in::InboundEdus>,
    pub edus_out: Arc<federation::edus_out::OutboundEdus>,
    /// Per-origin-server limits, separate from (and far above) the clients' own.
    pub rate_limits: Arc<rate_limit::RateLimiter>,
}

impl Services {
    /// Builds the services over an opened database, signing with `key`.
    pub fn new(
        config: Config,
        storage: Storage,
        key: medrix_protocol::keys::ServerSigningKey,
        old_keys: Vec<medrix_protocol::server_keys::OldVerifyKey>,
    ) -> Result<Self, crate::storage::StorageError> {
        // `Config::validate` refused an invalid name before `medrix serve` got here.
        #[allow(clippy::expect_used)]
        let server_name =
            ruma::ServerName::parse(&config.server_name).expect("validated server name");
        let key = Arc::new(key);
        let federation = match config.federation.listen {
            Some(_) => {
                let key_pair = key.to_ruma_key_pair().map_err(|err| {
                    crate::storage::StorageError::Corrupt(format!("signing key: {err}"))
                })?;
                let client = federation::client::FederationClient::new(
                    &config.federation,
                    server_name.clone(),
                    key_pair,
                )
                .map_err(crate::storage::StorageError::Corrupt)?;
                let client = Arc::new(client);
                let key_fetches = rate_limit::RateLimiter::per_interval(
                    config.federation.key_fetch_burst,
                    std::time::Duration::from_secs(config.federation.key_fetch_every_secs),
                );
                let remote_keys = Arc::new(federation::remote_keys::RemoteKeys::new(
                    storage.clone(),
                    client.clone(),
                    key_fetches,
                ));
                Some((client, remote_keys))
            }
            None => None,
        };
        let sender = match &federation {
            Some((client, _)) => {
                Some(federation::sender::Sender::new(storage.clone(), client.clone())?)
            }
            None => None,
        };
        let rooms =
            rooms::Rooms::new(storage.clone(), key.clone(), server_name.clone(), sender.clone())?;
        let mut e2ee = e2ee::E2ee::new(storage.clone(), rooms.stream.clone())
            .with_to_device_limits(e2ee::ToDeviceLimits::from(&config.limits));
        let typing = typing::Typing::new(rooms.stream.clone());
        let receipts = receipts::Receipts::new(storage.clone(), rooms.stream.clone());
        let federation = match federation.zip(sender) {
            Some(((client, remote_keys), sender)) => {
                let federated_rooms = Arc::new(federation::rooms::FederatedRooms::new(
                    rooms.clone(),
                    client.clone(),
                    remote_keys.clone(),
                ));
                let edus_out = federation::edus_out::OutboundEdus::new(
                    storage.clone(),
                    sender.clone(),
                    server_name.clone(),
                );
                e2ee = e2ee.with_listener(edus_out.clone());
                let edus_in = Arc::new(federation::edus_in::InboundEdus::new(
                    server_name.clone(),
                    storage.clone(),
                    rooms.clone(),
                    e2ee.clone(),
                    typing.clone(),
                    receipts.clone(),
                ));
                Some(FederationServices {
                    client,
                    remote_keys,
                    sender,
                    rooms: federated_rooms,
                    edus_in,
                    edus_out,
                    rate_limits: Arc::new(rate_limit::RateLimiter::federation(&config.rate_limits)),
                })
            }
            None => None,
        };
        let federated_rooms = federation.as_ref().map(|federation| federation.rooms.clone());
        let access = Arc::new(access::Access::new(rooms.clone(), storage.clone()));
        let accounts = accounts::Accounts::new(storage.clone(), server_name.clone());
        if let Some(federation) = &federation {
            federation.sender.log_pushes_with(Arc::downgrade(&access));
        }
        Ok(Self {
            user_data: user_data::UserData::new(storage.clone(), rooms.stream.clone()),
            e2ee,
            key_backup: key_backup::KeyBackup::new(storage.clone()),
            media: media::Media::open(
                storage.clone(),
                &config.data_dir.join("media"),
                config.limits.max_media_bytes_per_user,
            )?,
            receipts,
            typing,
            server_keys: server_keys::ServerKeys::new(key, old_keys),
            federation,
            aliases: aliases::Aliases::new(storage.clone(), rooms.clone()),
            access,
            contracts: contracts::ContractExecutor::new(
                storage.clone(),
                rooms.clone(),
                federated_rooms,
            ),
            rooms,
            device_accounts: device_accounts::DeviceAccounts::new(
                storage.clone(),
                accounts.clone(),
            ),
            accounts,
            uia: Arc::new(uia::UiaSessions::default()),
            rate_limits: Arc::new(rate_limit::RateLimiter::new(&config.rate_limits)),
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
            storage,
        })
    }
}
