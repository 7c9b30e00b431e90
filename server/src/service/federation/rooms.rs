//! Rooms that span servers: receiving other servers' events (`/send`, backfill, missing
//! events), and joining, inviting and leaving across servers.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{OwnedEventId, ServerName};
use serde_json::value::RawValue;

use super::{client::FederationClient, remote_keys::RemoteKeys, sender::Sender};
use crate::service::rooms::Rooms;

pub struct FederatedRooms {
    #[allow(dead_code)]
    rooms: Rooms,
    #[allow(dead_code)]
    client: Arc<FederationClient>,
    #[allow(dead_code)]
    remote_keys: Arc<RemoteKeys>,
    #[allow(dead_code)]
    sender: Arc<Sender>,
}

impl FederatedRooms {
    pub fn new(
        rooms: Rooms,
        client: Arc<FederationClient>,
        remote_keys: Arc<RemoteKeys>,
        sender: Arc<Sender>,
    ) -> Self {
        Self { rooms, client, remote_keys, sender }
    }

    /// Takes in the PDUs of a transaction from `origin`; one result per event ID, as `/send`
    /// answers (an error string for an event that was not accepted).
    pub async fn receive_transaction(
        &self,
        _origin: &ServerName,
        _pdus: Vec<Box<RawValue>>,
    ) -> BTreeMap<OwnedEventId, Result<(), String>> {
        BTreeMap::new()
    }
}
