//! Every RocksDB column family Medrix uses, in one place. Names read `<key>_<value>`; the key
//! layout is described beside each. Keys that combine parts separate them with 0xFF, a byte
//! that never occurs in UTF-8 text.

/// A column family: its name and what it holds.
pub struct ColumnFamily {
    pub name: &'static str,
    /// For the people reading this file: what the keys and values are.
    #[allow(dead_code)]
    pub holds: &'static str,
}

pub const USERID_PASSWORD: &str = "userid_password";
pub const USERID_PROFILE: &str = "userid_profile";
pub const USERDEVICEID_DEVICE: &str = "userdeviceid_device";
pub const TOKENHASH_SESSION: &str = "tokenhash_session";
pub const GLOBAL_COUNTER: &str = "global_counter";
pub const EVENTID_PDU: &str = "eventid_pdu";
pub const EVENTID_POSITION: &str = "eventid_position";
pub const ROOMID_HEAD: &str = "roomid_head";
pub const ROOMSTATEKEY_EVENTID: &str = "roomstatekey_eventid";
pub const POSITION_ROOMEVENT: &str = "position_roomevent";
pub const ROOMPOSITION_EVENTID: &str = "roomposition_eventid";
pub const ROOMHISTORY_EVENTID: &str = "roomhistory_eventid";
pub const USERROOMID_MEMBERSHIP: &str = "userroomid_membership";
pub const ROOMUSERPOSITION_MEMBERSHIP: &str = "roomuserposition_membership";
pub const TXNID_EVENTID: &str = "txnid_eventid";
pub const USERFILTERID_FILTER: &str = "userfilterid_filter";
pub const USERROOMTYPE_ACCOUNTDATA: &str = "userroomtype_accountdata";
pub const USERPOSITION_ACCOUNTDATAKEY: &str = "userposition_accountdatakey";
pub const USERDEVICEID_DEVICEKEYS: &str = "userdeviceid_devicekeys";
pub const USERDEVICEALGOKEY_ONETIMEKEY: &str = "userdevicealgokey_onetimekey";
pub const USERDEVICEALGO_FALLBACKKEY: &str = "userdevicealgo_fallbackkey";
pub const USERKEYTYPE_CROSSSIGNINGKEY: &str = "userkeytype_crosssigningkey";
pub const POSITION_KEYCHANGEUSER: &str = "position_keychangeuser";
pub const USERDEVICEPOSITION_TODEVICE: &str = "userdeviceposition_todevice";
pub const ROOMUSERTYPE_RECEIPT: &str = "roomusertype_receipt";
pub const POSITION_RECEIPT: &str = "position_receipt";
pub const MEDIAID_METADATA: &str = "mediaid_metadata";
pub const SERVERNAME_VERIFYKEYS: &str = "servername_verifykeys";
pub const USERVERSION_BACKUP: &str = "userversion_backup";
pub const DUEROOMUSER_CONTRACTCHECK: &str = "dueroomuser_contractcheck";
pub const USERVERSIONROOMSESSION_ROOMKEY: &str = "userversionroomsession_roomkey";
pub const EVENTID_STATEGROUP: &str = "eventid_stategroup";
pub const STATEGROUP_STATE: &str = "stategroup_state";
pub const EVENTID_REJECTION: &str = "eventid_rejection";
pub const ROOMUSER_INVITESTATE: &str = "roomuser_invitestate";
pub const DESTINATIONPOSITION_PDU: &str = "destinationposition_pdu";
pub const DESTINATIONSEQ_EDU: &str = "destinationseq_edu";
pub const USERID_DEVICELISTSTREAMID: &str = "userid_deviceliststreamid";
pub const USERDEVICE_UNANNOUNCEDKEYS: &str = "userdevice_unannouncedkeys";
pub const ALIAS_ROOMID: &str = "alias_roomid";
pub const ROOMALIAS_CREATOR: &str = "roomalias_creator";
pub const USERID_MEDIABYTES: &str = "userid_mediabytes";
pub const ROOMINDEX_READENTRY: &str = "roomindex_readentry";
pub const ROOMID_READLOGHEAD: &str = "roomid_readloghead";
pub const USERID_DEVICEACCOUNT: &str = "userid_deviceaccount";
pub const PATIENTDEVICE_REGISTERED: &str = "patientdevice_registered";

/// The catalogue, in creation order.
pub const ALL: &[ColumnFamily] = &[
    ColumnFamily {
        name: USERID_PASSWORD,
        holds: "user ID → argon2id password hash (PHC string); absent or empty = no password login",
    },
    ColumnFamily {
        name: USERID_PROFILE,
        holds: "user ID → profile JSON (displayname, avatar_url)",
    },
    ColumnFamily {
        name: USERDEVICEID_DEVICE,
        holds: "user ID 0xFF device ID → device JSON (display name, token hash)",
    },
    ColumnFamily {
        name: TOKENHASH_SESSION,
        holds: "SHA-256 of an access token → session JSON (user ID, device ID); tokens themselves are never stored",
    },
    ColumnFamily {
        name: GLOBAL_COUNTER,
        holds: "counter name → big-endian u64 (stream positions)",
    },
    ColumnFamily {
        name: EVENTID_PDU,
        holds: "event ID → the event's federation JSON (canonical), as signed",
    },
    ColumnFamily { name: EVENTID_POSITION, holds: "event ID → big-endian u64 stream position" },
    ColumnFamily {
        name: ROOMID_HEAD,
        holds: "room ID → JSON {version, extremities, depth, state_group}: the DAG's forward extremities (the next local event's prev_events) and the current state's group",
    },
    ColumnFamily {
        name: ROOMSTATEKEY_EVENTID,
        holds: "room ID 0xFF event type 0xFF state key → event ID of the current state",
    },
    ColumnFamily {
        name: POSITION_ROOMEVENT,
        holds: "big-endian u64 stream position → room ID 0xFF event ID (the global order /sync reads)",
    },
    ColumnFamily {
        name: ROOMPOSITION_EVENTID,
        holds: "room ID 0xFF big-endian u64 position → event ID (a room's timeline, for /messages)",
    },
    ColumnFamily {
        name: ROOMHISTORY_EVENTID,
        holds: "room ID 0xFF big-endian u64 history slot → event ID (a room's events from before this server joined, backfilled; slots count down from u64::MAX, oldest lowest)",
    },
    ColumnFamily {
        name: USERROOMID_MEMBERSHIP,
        holds: "user ID 0xFF room ID → current membership",
    },
    ColumnFamily {
        name: ROOMUSERPOSITION_MEMBERSHIP,
        holds: "room ID 0xFF user ID 0xFF big-endian u64 position → membership from that position on (visibility history)",
    },
    ColumnFamily {
        name: TXNID_EVENTID,
        holds: "user ID 0xFF device ID 0xFF transaction ID → event ID (idempotent sends)",
    },
    ColumnFamily {
        name: USERFILTERID_FILTER,
        holds: "user ID 0xFF filter ID → filter definition JSON",
    },
    ColumnFamily {
        name: USERROOMTYPE_ACCOUNTDATA,
        holds: "user ID 0xFF room ID (empty for global) 0xFF event type → account data content JSON",
    },
    ColumnFamily {
        name: USERPOSITION_ACCOUNTDATAKEY,
        holds: "user ID 0xFF big-endian u64 position → room ID 0xFF event type that changed then (for /sync)",
    },
    ColumnFamily {
        name: USERDEVICEID_DEVICEKEYS,
        holds: "user ID 0xFF device ID → the device's signed identity keys JSON",
    },
    ColumnFamily {
        name: USERDEVICEALGOKEY_ONETIMEKEY,
        holds: "user ID 0xFF device ID 0xFF algorithm 0xFF key ID → one-time key JSON (removed when claimed)",
    },
    ColumnFamily {
        name: USERDEVICEALGO_FALLBACKKEY,
        holds: "user ID 0xFF device ID 0xFF algorithm → JSON {key_id, key, used}",
    },
    ColumnFamily {
        name: USERKEYTYPE_CROSSSIGNINGKEY,
        holds: "user ID 0xFF master|self_signing|user_signing → cross-signing key JSON",
    },
    ColumnFamily {
        name: POSITION_KEYCHANGEUSER,
        holds: "big-endian u64 position → user ID whose devices or cross-signing keys changed then",
    },
    ColumnFamily {
        name: USERDEVICEPOSITION_TODEVICE,
        holds: "user ID 0xFF device ID 0xFF big-endian u64 position → to-device message JSON (removed once acknowledged)",
    },
    ColumnFamily {
        name: ROOMUSERTYPE_RECEIPT,
        holds: "room ID 0xFF user ID 0xFF receipt type 0xFF thread ID (empty = unthreaded) → receipt JSON with its stream position",
    },
    ColumnFamily {
        name: POSITION_RECEIPT,
        holds: "big-endian u64 stream position → the roomusertype_receipt key that changed then (for /sync)",
    },
    ColumnFamily {
        name: MEDIAID_METADATA,
        holds: "media ID → JSON {uploader, content_type, filename, size, position}; the bytes are the file media/<media ID> in the data directory",
    },
    ColumnFamily {
        name: SERVERNAME_VERIFYKEYS,
        holds: "server name → JSON {verify_keys: {key ID: base64 key}, valid_until_ts}: another server's checked signing keys",
    },
    ColumnFamily {
        name: USERVERSION_BACKUP,
        holds: "user ID 0xFF big-endian u64 backup version → JSON {algorithm, auth_data, count, etag, deleted}",
    },
    ColumnFamily {
        name: USERVERSIONROOMSESSION_ROOMKEY,
        holds: "user ID 0xFF big-endian u64 version 0xFF room ID 0xFF session ID → the client's encrypted KeyBackupData JSON",
    },
    ColumnFamily {
        name: EVENTID_STATEGROUP,
        holds: "event ID → big-endian u64 state group: the room state before the event (absent for outliers)",
    },
    ColumnFamily {
        name: STATEGROUP_STATE,
        holds: "big-endian u64 state group → JSON [[type, state_key, event_id], ...]",
    },
    ColumnFamily {
        name: EVENTID_REJECTION,
        holds: "event ID → `rejected: <reason>` or `soft_failed: <reason>` (accepted events have no row; the event stays in eventid_pdu)",
    },
    ColumnFamily {
        name: ROOMUSER_INVITESTATE,
        holds: "room ID 0xFF local user ID → JSON stripped state of a room another server invited the user to",
    },
    ColumnFamily {
        name: DESTINATIONPOSITION_PDU,
        holds: "destination server 0xFF big-endian u64 stream position → event ID queued for it (removed once the destination accepted the transaction)",
    },
    ColumnFamily {
        name: DESTINATIONSEQ_EDU,
        holds: "destination server 0xFF big-endian u64 sequence → EDU JSON queued for it (removed once sent)",
    },
    ColumnFamily {
        name: USERID_DEVICELISTSTREAMID,
        holds: "local user ID → big-endian u64 stream ID of the last device-list update sent for them",
    },
    ColumnFamily {
        name: USERDEVICE_UNANNOUNCEDKEYS,
        holds: "local user ID 0xFF device ID (empty for cross-signing keys) → nothing: a key change committed but not yet queued for other servers",
    },
    ColumnFamily {
        name: ALIAS_ROOMID,
        holds: "room alias on this server (#name:server) → the room ID it names",
    },
    ColumnFamily {
        name: ROOMALIAS_CREATOR,
        holds: "room ID 0xFF room alias → user ID who created the alias (a room's local aliases, and who may delete each)",
    },
    ColumnFamily {
        name: DUEROOMUSER_CONTRACTCHECK,
        holds: "big-endian u64 ms 0xFF room ID 0xFF user ID → empty: the contract executor re-checks that user's place in that room (a record room or space) at or after that moment; written in the same batch as the event that calls for it",
    },
    ColumnFamily {
        name: USERID_MEDIABYTES,
        holds: "user ID → big-endian u64 bytes of media the user uploaded (their quota's use)",
    },
    ColumnFamily {
        name: ROOMINDEX_READENTRY,
        holds: "room ID 0xFF big-endian u64 index → a read-log entry's canonical JSON (the room's hash chain of reads served)",
    },
    ColumnFamily {
        name: ROOMID_READLOGHEAD,
        holds: "room ID → the read log's head: big-endian u64 count, then the last entry's hash (base64)",
    },
    ColumnFamily {
        name: USERID_DEVICEACCOUNT,
        holds: "device account's user ID → JSON (patient, name, kind, added_at, removed_at): what makes a user a device bot",
    },
    ColumnFamily {
        name: PATIENTDEVICE_REGISTERED,
        holds: "patient's user ID 0xFF device account's user ID → empty: a patient's current devices",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_key_value_naming() {
        let mut names: Vec<_> = ALL.iter().map(|cf| cf.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        for name in names {
            assert!(name.contains('_') && name == name.to_lowercase(), "{name}");
        }
    }
}
