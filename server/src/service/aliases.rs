//! Room aliases on this server (`#name:server` → room ID): who may create and delete them,
//! and which rooms they name. An alias is a pointer kept outside the room DAG, so it is
//! stored here, not as an event; the room's `m.room.canonical_alias` state only advertises
//! aliases, and is checked against this table when a local user sends it.

use ruma::{
    OwnedRoomAliasId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, UserId,
    events::{
        StateEventType,
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent},
    },
};
use serde_json::Value;
use tokio::sync::{Mutex, MutexGuard};

use crate::{
    service::rooms::{RoomError, Rooms},
    storage::{Storage, StorageError, catalogue as cf, compound_key},
};

#[derive(Debug, thiserror::Error)]
pub enum AliasError {
    #[error("the alias {0} belongs to another server")]
    NotLocal(OwnedRoomAliasId),
    #[error("the alias {0} is already in use")]
    Taken(OwnedRoomAliasId),
    #[error("there is no alias {0} here")]
    Unknown(OwnedRoomAliasId),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Room(#[from] RoomError),
}

impl From<StorageError> for AliasError {
    fn from(err: StorageError) -> Self {
        AliasError::Room(err.into())
    }
}

#[derive(Clone)]
pub struct Aliases {
    storage: Storage,
    rooms: Rooms,
    /// Alias writes are check-then-set: one at a time, so two claims of one name cannot
    /// both succeed. Alias writes are rare; one lock for all is enough.
    writes: std::sync::Arc<Mutex<()>>,
}

/// An alias checked free and held so until it is bound to a room (or dropped, which frees
/// it again): room creation claims the alias before the room exists.
pub struct AliasClaim<'a> {
    aliases: &'a Aliases,
    alias: OwnedRoomAliasId,
    _held: MutexGuard<'a, ()>,
}

impl Aliases {
    pub fn new(storage: Storage, rooms: Rooms) -> Self {
        Self { storage, rooms, writes: Default::default() }
    }

    fn require_local(&self, alias: &RoomAliasId) -> Result<(), AliasError> {
        if alias.server_name() == self.rooms.server_name() {
            Ok(())
        } else {
            Err(AliasError::NotLocal(alias.to_owned()))
        }
    }

    /// The room a local alias names, if it exists.
    fn room_of(&self, alias: &RoomAliasId) -> Result<Option<OwnedRoomId>, AliasError> {
        self.require_local(alias)?;
        let Some(room) = self.storage.get(cf::ALIAS_ROOMID, alias.as_bytes())? else {
            return Ok(None);
        };
        let room = String::from_utf8(room)
            .ok()
            .and_then(|room| RoomId::parse(room).ok())
            .ok_or_else(|| StorageError::Corrupt(format!("room ID of alias {alias}")))?;
        Ok(Some(room))
    }

    /// A local alias's directory entry: the room it names and the servers to join it
    /// through, this one first (it holds the alias), then every other server with a member
    /// joined. `None` if the alias names nothing.
    pub fn directory_entry(
        &self,
        alias: &RoomAliasId,
    ) -> Result<Option<(OwnedRoomId, Vec<OwnedServerName>)>, AliasError> {
        let Some(room) = self.room_of(alias)? else { return Ok(None) };
        let own = self.rooms.server_name();
        let others =
            crate::service::federation::destinations::servers_in_room(&self.storage, &room, own)?;
        Ok(Some((room, std::iter::once(own.to_owned()).chain(others).collect())))
    }

    /// A room's aliases on this server, in name order.
    pub fn of_room(&self, room: &RoomId) -> Result<Vec<OwnedRoomAliasId>, AliasError> {
        let prefix = compound_key(&[room.as_bytes(), b""]);
        let mut aliases = Vec::new();
        for (key, _) in self.storage.scan_prefix(cf::ROOMALIAS_CREATOR, &prefix)? {
            let alias = std::str::from_utf8(&key[prefix.len()..])
                .ok()
                .and_then(|alias| RoomAliasId::parse(alias).ok())
                .ok_or_else(|| StorageError::Corrupt(format!("an alias of {room}")))?;
            aliases.push(alias);
        }
        Ok(aliases)
    }

    /// Claims a free local alias; `Taken` if it names a room already.
    pub async fn claim(&self, alias: &RoomAliasId) -> Result<AliasClaim<'_>, AliasError> {
        self.require_local(alias)?;
        let held = self.writes.lock().await;
        if self.storage.get(cf::ALIAS_ROOMID, alias.as_bytes())?.is_some() {
            return Err(AliasError::Taken(alias.to_owned()));
        }
        Ok(AliasClaim { aliases: self, alias: alias.to_owned(), _held: held })
    }

    /// `PUT /directory/room/{alias}`: a member joined to the room names it.
    pub async fn create(
        &self,
        alias: &RoomAliasId,
        room: &RoomId,
        creator: &UserId,
    ) -> Result<(), AliasError> {
        if self.rooms.version(room)?.is_none() {
            return Err(RoomError::UnknownRoom.into());
        }
        if !self.rooms.is_joined(room, creator)? {
            return Err(AliasError::Forbidden("you must be joined to a room to name it"));
        }
        self.claim(alias).await?.bind(room, creator).await
    }

    /// `DELETE /directory/room/{alias}`: by the alias's creator, or by a member joined to its
    /// room with the power to change the room's advertised aliases. Answers the room it named.
    pub async fn delete(
        &self,
        alias: &RoomAliasId,
        user: &UserId,
    ) -> Result<OwnedRoomId, AliasError> {
        self.require_local(alias)?;
        let _held = self.writes.lock().await;
        let room = self.room_of(alias)?.ok_or_else(|| AliasError::Unknown(alias.to_owned()))?;
        let index_key = compound_key(&[room.as_bytes(), alias.as_bytes()]);
        let creator = self.storage.get(cf::ROOMALIAS_CREATOR, &index_key)?;
        let is_creator = creator.as_deref() == Some(user.as_bytes());
        if !is_creator && !self.may_edit_aliases(&room, user)? {
            return Err(AliasError::Forbidden(
                "only the alias's creator or a room moderator may delete it",
            ));
        }
        let mut batch = self.storage.batch();
        batch.delete(cf::ALIAS_ROOMID, alias.as_bytes());
        batch.delete(cf::ROOMALIAS_CREATOR, &index_key);
        self.storage.commit(batch).await?;
        Ok(room)
    }

    /// Whether `user` is joined to `room` with the power to send `m.room.canonical_alias`.
    fn may_edit_aliases(&self, room: &RoomId, user: &UserId) -> Result<bool, AliasError> {
        if !self.rooms.is_joined(room, user)? {
            return Ok(false);
        }
        let Some(version) = self.rooms.version(room)? else { return Ok(false) };
        let content = |kind: StateEventType| -> Result<Option<Value>, AliasError> {
            let Some(id) = self.rooms.state_event(room, &kind, "")? else { return Ok(None) };
            Ok(self.rooms.event_content(&id)?)
        };
        let rules = &version.rules().authorization;
        let mut creators = Vec::new();
        if let Some(id) = self.rooms.state_event(room, &StateEventType::RoomCreate, "")?
            && let Some(create) = self.rooms.event_json(&id)?
        {
            let users = std::iter::once(&create["sender"])
                .chain(create["content"]["additional_creators"].as_array().into_iter().flatten());
            creators
                .extend(users.filter_map(|user| user.as_str().and_then(|u| UserId::parse(u).ok())));
        }
        let power_levels = match content(StateEventType::RoomPowerLevels)? {
            Some(content) => match serde_json::from_value::<RoomPowerLevelsEventContent>(content) {
                Ok(content) => Some(content),
                // Stored events passed the auth rules, which parse power levels; a failure
                // here grants nothing rather than defaulting.
                Err(_) => return Ok(false),
            },
            None => None,
        };
        let levels = RoomPowerLevels::new(power_levels.into(), rules, creators);
        Ok(levels.user_can_send_state(user, StateEventType::RoomCanonicalAlias))
    }
}

impl AliasClaim<'_> {
    /// Points the claimed alias at `room`, durably, recording who made it.
    pub async fn bind(self, room: &RoomId, creator: &UserId) -> Result<(), AliasError> {
        let storage = &self.aliases.storage;
        let mut batch = storage.batch();
        batch.put(cf::ALIAS_ROOMID, self.alias.as_bytes(), room.as_bytes());
        batch.put(
            cf::ROOMALIAS_CREATOR,
            &compound_key(&[room.as_bytes(), self.alias.as_bytes()]),
            creator.as_bytes(),
        );
        storage.commit(batch).await?;
        Ok(())
    }
}
