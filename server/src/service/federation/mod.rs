//! Talking to other servers: who they are (`resolve`: server name → address, as the spec
//! orders discovery), what they signed with (`remote_keys`), how requests go out signed
//! (`client`), and which servers this one talks to at all (the allow-list). `sender` queues
//! and delivers transactions; `edus_out` and `edus_in` are the EDUs sent and received;
//! `destinations` says which servers a room's traffic goes to; `rooms` joins rooms across
//! servers; `checking` verifies received events on every core.

pub mod checking;
pub mod client;
pub mod destinations;
pub mod edus_in;
pub mod edus_out;
pub mod public_address;
pub mod read_logs;
pub mod remote_keys;
pub mod resolve;
pub mod rooms;
pub mod sender;
#[cfg(test)]
mod test_http;

use std::collections::BTreeSet;

use ruma::{OwnedServerName, ServerName};

/// What can go wrong talking to another server.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("{0} is not a server this one federates with")]
    NotAllowed(OwnedServerName),
    #[error("federation is off on this server")]
    Disabled,
    #[error("cannot find {server}: {why}")]
    Unresolvable { server: OwnedServerName, why: String },
    #[error("{server} did not answer: {why}")]
    Unreachable { server: OwnedServerName, why: String },
    #[error("{server} answered {status}: {body}")]
    Refused { server: OwnedServerName, status: u16, body: String },
    #[error("{server} sent an unusable answer: {why}")]
    BadResponse { server: OwnedServerName, why: String },
    #[error("cannot verify {server}: {why}")]
    BadKeys { server: OwnedServerName, why: String },
    #[error("{0}'s keys were fetched too often lately")]
    KeysFetchedTooOften(OwnedServerName),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

impl FederationError {
    /// What may be told to whoever caused the request: the kind of failure, never its
    /// detail (addresses, ports, TLS errors, the peer's answer), which belongs in the log; a
    /// caller who picked the server name would otherwise probe the network through us.
    pub fn summary(&self) -> &'static str {
        match self {
            FederationError::NotAllowed(_) => "not a server this one federates with",
            FederationError::Disabled => "federation is off on this server",
            FederationError::Unresolvable { .. } => "the server could not be found",
            FederationError::Unreachable { .. } => "the server could not be reached",
            FederationError::Refused { .. } => "the server refused the request",
            FederationError::BadResponse { .. } => "the server sent an unusable answer",
            FederationError::BadKeys { .. } | FederationError::KeysFetchedTooOften(_) => {
                "the server's signing keys could not be verified"
            }
            FederationError::Storage(_) => "internal server error",
        }
    }
}

/// Which servers this one federates with: any, or only those listed.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    allowed: Option<BTreeSet<OwnedServerName>>,
}

impl Policy {
    /// `allow` empty means open federation.
    pub fn new(allow: &[String]) -> Self {
        let allowed: BTreeSet<OwnedServerName> =
            allow.iter().filter_map(|name| ServerName::parse(name).ok()).collect();
        Self { allowed: (!allowed.is_empty()).then_some(allowed) }
    }

    pub fn check(&self, server: &ServerName) -> Result<(), FederationError> {
        match &self.allowed {
            Some(allowed) if !allowed.contains(server) => {
                Err(FederationError::NotAllowed(server.to_owned()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_allow_list_is_open_and_a_list_is_closed() {
        let open = Policy::new(&[]);
        assert!(open.check(ServerName::parse("any.example").unwrap().as_ref()).is_ok());
        let closed = Policy::new(&["clinic.example:8448".to_owned()]);
        assert!(closed.check(ServerName::parse("clinic.example:8448").unwrap().as_ref()).is_ok());
        assert!(closed.check(ServerName::parse("clinic.example").unwrap().as_ref()).is_err());
    }
}
