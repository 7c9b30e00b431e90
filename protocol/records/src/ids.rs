//! Identifiers as validated strings: Matrix IDs by ruma's own grammar, and contract IDs.
//! Built only through `parse`, so holding one means it is well formed.

use std::fmt;

use ruma_identifiers_validation as ruma_ids;
use serde::{Serialize, Serializer};

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The identifier as written on the wire.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

string_id!(
    /// A Matrix user ID (`@alice:example.org`), historical localparts (printable ASCII)
    /// included, never an empty one.
    UserId
);
string_id!(
    /// A Matrix server name (`example.org`, `example.org:8448`, `[::1]`).
    ServerName
);
string_id!(
    /// A Matrix room ID (`!…`, with or without a server part as room versions differ).
    RoomId
);
string_id!(
    /// A Matrix event ID (`$…`).
    EventId
);
string_id!(
    /// A contract's identifier: 1 to 64 of `A-Z a-z 0-9 - .`, the alphabet of a FHIR `id`,
    /// so it is also the exported Consent's `id` and safe in a kick reason or a URL.
    ContractId
);

impl UserId {
    /// The user ID, if `text` is one.
    pub fn parse(text: &str) -> Option<UserId> {
        ruma_ids::user_id::validate(text).ok()?;
        let colon = text.find(':')?;
        // ruma's `validate` accepts any localpart without `:` or NUL; the specification's
        // historical grammar (printable ASCII) is what other servers hold us to.
        ruma_ids::user_id::localpart_is_fully_conforming(&text[1..colon]).ok()?;
        Some(UserId(text.to_owned()))
    }

    /// The server this user belongs to.
    pub fn server_name(&self) -> ServerName {
        // Validated on parse: the first colon separates the localpart from a valid server name.
        let colon = self.0.find(':').unwrap_or(0);
        ServerName(self.0[colon + 1..].to_owned())
    }
}

impl ServerName {
    /// The server name, if `text` is one.
    pub fn parse(text: &str) -> Option<ServerName> {
        ruma_ids::server_name::validate(text).ok()?;
        Some(ServerName(text.to_owned()))
    }
}

impl RoomId {
    /// The room ID, if `text` is one.
    pub fn parse(text: &str) -> Option<RoomId> {
        ruma_ids::room_id::validate(text).ok()?;
        (text.len() > 1).then(|| RoomId(text.to_owned()))
    }
}

impl EventId {
    /// The event ID, if `text` is one.
    pub fn parse(text: &str) -> Option<EventId> {
        ruma_ids::event_id::validate(text).ok()?;
        (text.len() > 1).then(|| EventId(text.to_owned()))
    }
}

impl ContractId {
    /// The contract ID, if `text` is one.
    pub fn parse(text: &str) -> Option<ContractId> {
        let fits = (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        fits.then(|| ContractId(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_matrix_grammar() {
        let alice = UserId::parse("@alice:example.org").unwrap();
        assert_eq!(alice.server_name().as_str(), "example.org");
        assert_eq!(
            UserId::parse("@dr.who:hospital.example:8448").unwrap().server_name().as_str(),
            "hospital.example:8448"
        );
        for bad in ["alice:example.org", "@alice", "@:example.org", "@alice:", "@al ice:x.org", ""]
        {
            assert!(UserId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn contract_ids_use_the_fhir_id_alphabet() {
        assert!(ContractId::parse("c-2024.01").is_some());
        assert!(ContractId::parse(&"a".repeat(64)).is_some());
        for bad in ["", "a b", "a/b", "a_b", &"a".repeat(65)] {
            assert!(ContractId::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn room_and_event_ids_need_their_sigil() {
        assert!(RoomId::parse("!abc:example.org").is_some());
        assert!(RoomId::parse("!hashAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").is_some());
        assert!(RoomId::parse("#alias:example.org").is_none());
        assert!(EventId::parse("$abc").is_some());
        assert!(EventId::parse("abc").is_none());
        assert!(ServerName::parse("example.org:8448").is_some());
        assert!(ServerName::parse("exa mple.org").is_none());
    }
}
