//! Which servers a room's traffic goes to: those with a joined member, this one excepted.
//! Read from the membership column families, so it answers for any room this server knows,
//! without loading its state events.

use std::collections::BTreeSet;

use ruma::{OwnedServerName, OwnedUserId, RoomId, ServerName, UserId};

use crate::storage::{Storage, StorageError, catalogue as cf, compound_key};

/// Servers with at least one member currently joined to `room`, other than `own`.
pub fn servers_in_room(
    storage: &Storage,
    room: &RoomId,
    own: &ServerName,
) -> Result<BTreeSet<OwnedServerName>, StorageError> {
    let mut servers = joined_servers(storage, room)?;
    servers.remove(own);
    Ok(servers)
}

/// Whether `user` is joined to a room where one of `own`'s users is joined too: only then
/// is news of their devices or keys anything this server's users need.
pub fn shares_a_room_with(
    storage: &Storage,
    user: &UserId,
    own: &ServerName,
) -> Result<bool, StorageError> {
    for room in joined_rooms(storage, user)? {
        if joined_servers(storage, &room)?.contains(own) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Servers with at least one member currently joined to `room`.
fn joined_servers(
    storage: &Storage,
    room: &RoomId,
) -> Result<BTreeSet<OwnedServerName>, StorageError> {
    Ok(current_memberships(storage, room)?
        .into_iter()
        .filter(|(_, membership)| membership == "join")
        .map(|(user, _)| user.server_name().to_owned())
        .collect())
}

/// Every user with a membership in `room` now, with it (`join`, `leave`, ...).
pub fn current_memberships(
    storage: &Storage,
    room: &RoomId,
) -> Result<Vec<(OwnedUserId, String)>, StorageError> {
    let prefix = compound_key(&[room.as_bytes(), b""]);
    let mut members = Vec::new();
    // Rows are `room 0xFF user 0xFF position`, so each user's rows are adjacent and the
    // last of them is the current membership.
    let rows = storage.scan_prefix(cf::ROOMUSERPOSITION_MEMBERSHIP, &prefix)?;
    let mut rows = rows.iter().peekable();
    while let Some((key, membership)) = rows.next() {
        let user = user_of(&key[prefix.len()..]);
        if rows.peek().is_some_and(|(next, _)| user_of(&next[prefix.len()..]) == user) {
            continue;
        }
        if let Some(user) = std::str::from_utf8(user).ok().and_then(|u| UserId::parse(u).ok()) {
            members.push((user, String::from_utf8_lossy(membership).into_owned()));
        }
    }
    Ok(members)
}

/// Servers sharing at least one joined room with `user`, other than `own`: where news of
/// the user's devices and keys must go.
pub fn servers_sharing_rooms_with(
    storage: &Storage,
    user: &UserId,
    own: &ServerName,
) -> Result<BTreeSet<OwnedServerName>, StorageError> {
    let mut servers = BTreeSet::new();
    for room in joined_rooms(storage, user)? {
        servers.extend(servers_in_room(storage, &room, own)?);
    }
    Ok(servers)
}

/// The rooms `user` is joined to now.
fn joined_rooms(storage: &Storage, user: &UserId) -> Result<Vec<ruma::OwnedRoomId>, StorageError> {
    let prefix = compound_key(&[user.as_bytes(), b""]);
    let mut rooms = Vec::new();
    for (key, membership) in storage.scan_prefix(cf::USERROOMID_MEMBERSHIP, &prefix)? {
        if &*membership != b"join" {
            continue;
        }
        if let Ok(room) = RoomId::parse(String::from_utf8_lossy(&key[prefix.len()..]).as_ref()) {
            rooms.push(room);
        }
    }
    Ok(rooms)
}

/// The user ID part of `user 0xFF position`.
fn user_of(rest: &[u8]) -> &[u8] {
    rest.split(|b| *b == 0xFF).next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_room_goes_to_the_servers_of_its_joined_members_but_ours() {
        let dir = std::env::temp_dir().join(format!("medrix-dest-{}", std::process::id()));
        let storage = Storage::open(&dir).unwrap();
        let room = RoomId::parse("!room:here.test").unwrap();
        let mut batch = storage.batch();
        let mut member = |user: &str, position: u64, membership: &str| {
            batch.put(
                cf::ROOMUSERPOSITION_MEMBERSHIP,
                &compound_key(&[room.as_bytes(), user.as_bytes(), &position.to_be_bytes()]),
                membership.as_bytes(),
            );
            batch.put(
                cf::USERROOMID_MEMBERSHIP,
                &compound_key(&[user.as_bytes(), room.as_bytes()]),
                membership.as_bytes(),
            );
        };
        member("@alice:here.test", 1, "join");
        member("@bob:there.test", 2, "join");
        member("@carol:gone.test", 3, "join");
        member("@carol:gone.test", 7, "leave");
        member("@dan:invited.test", 4, "invite");
        member("@erin:back.test", 5, "leave");
        member("@erin:back.test", 6, "join");
        storage.commit(batch).await.unwrap();

        let here = ServerName::parse("here.test").unwrap();
        let names = |set: BTreeSet<OwnedServerName>| -> Vec<String> {
            set.iter().map(ToString::to_string).collect()
        };
        assert_eq!(
            names(servers_in_room(&storage, &room, &here).unwrap()),
            ["back.test", "there.test"]
        );
        let alice = UserId::parse("@alice:here.test").unwrap();
        assert_eq!(
            names(servers_sharing_rooms_with(&storage, &alice, &here).unwrap()),
            ["back.test", "there.test"]
        );
        let carol = UserId::parse("@carol:gone.test").unwrap();
        assert!(servers_sharing_rooms_with(&storage, &carol, &here).unwrap().is_empty());

        // Who shares a room with this server's users: joined members of a room one of ours
        // is joined to, not those who left or were only invited, nor strangers.
        let shares =
            |user: &str| shares_a_room_with(&storage, &UserId::parse(user).unwrap(), &here);
        assert!(shares("@bob:there.test").unwrap());
        assert!(shares("@erin:back.test").unwrap());
        for outsider in ["@carol:gone.test", "@dan:invited.test", "@zed:stranger.test"] {
            assert!(!shares(outsider).unwrap(), "{outsider}");
        }
        storage.close_for_test((), &dir);
    }
}
