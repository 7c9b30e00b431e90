//! Fixed cast and keys shared by the protocol's integration tests, vectors and benchmarks.
#![allow(dead_code)]

pub mod arbitrary;

use medrix_protocol::keys::ServerSigningKey;
use ruma::{OwnedUserId, UserId};

/// The people and servers of the test scenarios: a patient's server, a clinic's server and a
/// server nobody invited.
pub struct Cast {
    pub patient_server: ServerSigningKey,
    pub clinic_server: ServerSigningKey,
    pub outsider_server: ServerSigningKey,
    pub patient: OwnedUserId,
    pub doctor: OwnedUserId,
    pub outsider: OwnedUserId,
}

pub fn cast() -> Cast {
    Cast {
        patient_server: ServerSigningKey::from_seed("patient.example", "1", &[1; 32]).unwrap(),
        clinic_server: ServerSigningKey::from_seed("clinic.example", "1", &[2; 32]).unwrap(),
        outsider_server: ServerSigningKey::from_seed("elsewhere.example", "1", &[3; 32]).unwrap(),
        patient: UserId::parse("@patient:patient.example").unwrap(),
        doctor: UserId::parse("@dr.lee:clinic.example").unwrap(),
        outsider: UserId::parse("@eve:elsewhere.example").unwrap(),
    }
}

impl Cast {
    /// The key of the server `user` lives on.
    pub fn key_of(&self, user: &UserId) -> &ServerSigningKey {
        [&self.patient_server, &self.clinic_server, &self.outsider_server]
            .into_iter()
            .find(|key| key.server_name() == user.server_name())
            .expect("user of a known server")
    }

    /// Verify keys of all three servers.
    pub fn verify_keys(&self) -> medrix_protocol::keys::VerifyKeys {
        let mut keys = self.patient_server.verify_keys();
        keys.extend(self.clinic_server.verify_keys());
        keys.extend(self.outsider_server.verify_keys());
        keys
    }
}
