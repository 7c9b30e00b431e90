//! How the pure rules reach stored events: the caller lends a lookup, this crate never loads.

use std::{
    collections::{BTreeMap, HashMap},
    hash::BuildHasher,
};

use ruma::{EventId, OwnedEventId};

use crate::Pdu;

/// Read access to the events the rules may need (auth events, state events, the DAG).
pub trait EventLookup {
    /// The event with this ID, if the caller has it.
    fn get_pdu(&self, id: &EventId) -> Option<&Pdu>;
}

impl<S: BuildHasher> EventLookup for HashMap<OwnedEventId, Pdu, S> {
    fn get_pdu(&self, id: &EventId) -> Option<&Pdu> {
        self.get(id)
    }
}

impl EventLookup for BTreeMap<OwnedEventId, Pdu> {
    fn get_pdu(&self, id: &EventId) -> Option<&Pdu> {
        self.get(id)
    }
}

impl<L: EventLookup + ?Sized> EventLookup for &L {
    fn get_pdu(&self, id: &EventId) -> Option<&Pdu> {
        (**self).get_pdu(id)
    }
}
