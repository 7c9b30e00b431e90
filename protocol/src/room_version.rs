//! The room versions Medrix speaks, and the ruma rule sets behind each.

use ruma::{RoomVersionId, room_version_rules::RoomVersionRules};

use crate::ProtocolError;

/// A room version Medrix supports. Older versions are refused: they predate canonical JSON
/// (v6) or restricted joins, and ruma supports them only on a best-effort basis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RoomVersion {
    V10,
    V11,
    V12,
}

static RULES_V10: RoomVersionRules = RoomVersionRules::V10;
static RULES_V11: RoomVersionRules = RoomVersionRules::V11;
static RULES_V12: RoomVersionRules = RoomVersionRules::V12;

impl RoomVersion {
    /// The version new rooms get unless the creator asks for another (the spec's default).
    pub const DEFAULT: RoomVersion = RoomVersion::V12;

    /// Every supported version, oldest first.
    pub const ALL: [RoomVersion; 3] = [RoomVersion::V10, RoomVersion::V11, RoomVersion::V12];

    /// Parses the identifier used on the wire (`"10"`, `"11"`, `"12"`).
    pub fn parse(id: &str) -> Result<Self, ProtocolError> {
        match id {
            "10" => Ok(RoomVersion::V10),
            "11" => Ok(RoomVersion::V11),
            "12" => Ok(RoomVersion::V12),
            other => Err(ProtocolError::UnsupportedRoomVersion(other.to_owned())),
        }
    }

    /// The identifier used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomVersion::V10 => "10",
            RoomVersion::V11 => "11",
            RoomVersion::V12 => "12",
        }
    }

    /// The ruma identifier of this version.
    pub fn id(self) -> RoomVersionId {
        match self {
            RoomVersion::V10 => RoomVersionId::V10,
            RoomVersion::V11 => RoomVersionId::V11,
            RoomVersion::V12 => RoomVersionId::V12,
        }
    }

    /// The full rule set (event format, redaction, authorization, state resolution).
    pub fn rules(self) -> &'static RoomVersionRules {
        match self {
            RoomVersion::V10 => &RULES_V10,
            RoomVersion::V11 => &RULES_V11,
            RoomVersion::V12 => &RULES_V12,
        }
    }

    /// Whether the room ID is derived from the create event (v12) rather than chosen freely.
    pub fn room_id_is_create_event_hash(self) -> bool {
        self.rules().authorization.room_create_event_id_as_room_id
    }

    /// Whether `redacts` lives in `content` (v11 and later) rather than at the top level.
    pub fn redacts_in_content(self) -> bool {
        self.rules().redaction.content_field_redacts
    }
}

impl std::fmt::Display for RoomVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RoomVersion {
    type Err = ProtocolError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_supported_versions_and_nothing_else() {
        for version in RoomVersion::ALL {
            assert_eq!(RoomVersion::parse(version.as_str()), Ok(version));
        }
        for bad in ["1", "6", "9", "13", "", "12 ", "org.example.v12"] {
            assert!(matches!(
                RoomVersion::parse(bad),
                Err(ProtocolError::UnsupportedRoomVersion(_))
            ));
        }
    }

    #[test]
    fn only_v12_derives_the_room_id_from_the_create_event() {
        assert!(!RoomVersion::V10.room_id_is_create_event_hash());
        assert!(!RoomVersion::V11.room_id_is_create_event_hash());
        assert!(RoomVersion::V12.room_id_is_create_event_hash());
        assert!(!RoomVersion::V10.redacts_in_content());
        assert!(RoomVersion::V11.redacts_in_content());
    }
}
