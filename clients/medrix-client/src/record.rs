//! The record as Matrix rooms (spec/records.md §2, "Creating a record"): a space and one
//! encrypted room per class, created with standard calls; finding the caller's record, or a
//! record another patient shared; accepting a patient's invitations.

use std::collections::BTreeMap;
use std::time::Duration;

use matrix_sdk::{
    Room, RoomState,
    deserialized_responses::RawAnySyncOrStrippedState,
    ruma::{
        OwnedUserId, RoomId as SdkRoomId,
        api::client::room::{Visibility, create_room::v3::Request as CreateRoom},
        events::StateEventType,
        serde::Raw,
    },
};
use medrix_records::{DataClass, RECORD_EVENT_TYPE, RECORD_STATE_KEY, RecordRoom, RecordSpace};
use medrix_records::{RoomId, UserId};
use serde_json::{Value, json};

use crate::client::MedrixClient;
use crate::error::{ClientError, Result};

/// The contract executor of a server: its service user, which the server makes a member of
/// every record room with the power to invite, kick and set state.
pub fn executor_of(patient: &UserId) -> String {
    format!("@medrix-contracts:{}", patient.server_name())
}

/// How often megolm sessions rotate in a class room (the SDK's defaults, written out so the
/// record says them): a week or 100 entries.
const ROTATION_PERIOD_MS: u64 = 7 * 24 * 60 * 60 * 1000;
const ROTATION_PERIOD_MSGS: u64 = 100;

/// A record: its space (with the `org.medrix.record` state read from it) as one of its
/// members sees it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The space.
    pub space: Room,
    /// The space's record state: the patient and the class rooms.
    pub state: RecordSpace,
}

impl Record {
    /// The patient whose record this is.
    pub fn patient(&self) -> &UserId {
        &self.state.patient
    }

    /// The space's room ID.
    pub fn space_id(&self) -> RoomId {
        room_id(self.space.room_id())
    }

    /// The class rooms of `class` the caller has joined, in the order the record lists them.
    pub(crate) fn joined_rooms(&self, medrix: &MedrixClient, class: DataClass) -> Vec<Room> {
        self.state
            .classes
            .get(&class)
            .into_iter()
            .flatten()
            .filter_map(|id| medrix.client.get_room(&sdk_room_id(id).ok()?))
            .filter(|room| room.state() == RoomState::Joined)
            .collect()
    }

    /// Every class room of the record, with its class.
    pub(crate) fn rooms(&self) -> impl Iterator<Item = (DataClass, &RoomId)> {
        self.state.classes.iter().flat_map(|(class, ids)| ids.iter().map(|id| (*class, id)))
    }
}

impl MedrixClient {
    /// The caller's own record, after a sync.
    pub async fn own_record(&self) -> Result<Record> {
        self.sync().await?;
        self.find_record(&self.user.clone()).await?.ok_or(ClientError::NoRecord)
    }

    /// The caller's record, created if there is none, completed if a creation was cut short:
    /// the space, then a room per class without one, then the space's state listing them.
    /// Also says whether anything was created.
    pub async fn create_record(&self) -> Result<(Record, bool)> {
        self.sync().await?;
        let patient = self.user.clone();
        let (space, mut classes, existed) = match self.find_record(&patient).await? {
            Some(record) => (record.space, record.state.classes, true),
            // The space carries its record state from its first event (no classes yet), so a
            // creation cut short is found above and completed.
            None => (self.create_space().await?, BTreeMap::new(), false),
        };
        let listed_before = classes.clone();
        let space_id = room_id(space.room_id());
        // Class rooms a cut-short creation made but did not list yet.
        for room in self.client.joined_rooms() {
            if let Some(state) = record_room_state(&room).await
                && state.space == space_id
                && state.patient == patient
            {
                let listed = classes.entry(state.class).or_insert_with(Vec::new);
                let id = room_id(room.room_id());
                if !listed.contains(&id) {
                    listed.push(id);
                }
            }
        }
        let missing: Vec<DataClass> =
            DataClass::ALL.into_iter().filter(|class| !classes.contains_key(class)).collect();
        for class in missing {
            let room = self.create_class_room(class, &space_id).await?;
            classes.insert(class, vec![room_id(room.room_id())]);
        }
        let changed = !existed || classes != listed_before;
        let state = RecordSpace { patient, classes };
        if changed {
            for id in state.classes.values().flatten() {
                let via = json!({"via": [self.user.server_name()]});
                space.send_state_event_raw("m.space.child", id.as_str(), via).await?;
            }
            space
                .send_state_event_raw(RECORD_EVENT_TYPE, RECORD_STATE_KEY, state.to_content())
                .await?;
        }
        Ok((Record { space, state }, changed))
    }

    /// The record of `patient` as the caller sees it: their own, or one shared with them.
    /// Shared: pending invitations from the patient are accepted first (the grant's rooms),
    /// and the room keys the patient handed over with them imported.
    pub async fn record_of(&self, patient: &UserId) -> Result<Record> {
        if patient == &self.user {
            return self.own_record().await;
        }
        self.sync().await?;
        let mut joined = self.accept_invitations_from(patient).await?;
        if let Some(record) = self.find_record(patient).await? {
            // The space was joined before: its class rooms may have come since.
            joined.extend(self.accept_invitations_from(patient).await?);
            self.await_key_bundles(&joined).await?;
            return Ok(record);
        }
        if self.was_removed_from_record_of(patient).await {
            return Err(ClientError::AccessEnded(patient.to_string()));
        }
        Err(ClientError::NotShared(patient.to_string()))
    }

    /// Joins every room `patient` invited the caller to (a grant's space and class rooms);
    /// returns them. The rooms' record state is only readable once joined, so a grantee
    /// accepts a patient's invitations, not a kind of room.
    pub async fn accept_invitations_from(&self, patient: &UserId) -> Result<Vec<RoomId>> {
        let mut joined = Vec::new();
        for room in self.client.invited_rooms() {
            let Ok(invite) = room.invite_details().await else { continue };
            if invite.inviter_id.as_str() != patient.as_str() {
                continue;
            }
            // Joining after the invitation imports the key bundle the patient sent with it
            // (MSC4268), when it has arrived.
            self.client.join_room_by_id(room.room_id()).await?;
            joined.push(room_id(room.room_id()));
        }
        if !joined.is_empty() {
            self.sync().await?;
        }
        Ok(joined)
    }

    /// Waits a little (syncing) for the key bundles of rooms just joined: they travel as
    /// to-device messages the patient sent before inviting, so they are usually here. A room
    /// with nothing recorded yet gets no bundle, so the wait is short.
    pub(crate) async fn await_key_bundles(&self, joined: &[RoomId]) -> Result<()> {
        for _ in 0..10 {
            let mut pending = false;
            for id in joined {
                let id = sdk_room_id(id)?;
                pending |=
                    self.client.get_pending_key_bundle_details_for_room(&id).await?.is_some();
            }
            if !pending {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            self.sync().await?;
        }
        Ok(())
    }

    /// Whether the caller left (or was removed from) a record space of `patient`.
    async fn was_removed_from_record_of(&self, patient: &UserId) -> bool {
        for space in self.client.left_rooms() {
            if let Some(content) = state_content(&space, RECORD_EVENT_TYPE, RECORD_STATE_KEY).await
                && content.get("classes").is_some()
                && content["patient"].as_str() == Some(patient.as_str())
            {
                return true;
            }
        }
        false
    }

    /// The record space of `patient` among the joined rooms.
    pub(crate) async fn find_record(&self, patient: &UserId) -> Result<Option<Record>> {
        Ok(self.joined_records().await.into_iter().find(|record| record.patient() == patient))
    }

    /// Every record space the caller has joined: a space whose record state names its
    /// creator as the patient.
    pub(crate) async fn joined_records(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for space in self.client.joined_rooms() {
            let Some(content) = state_content(&space, RECORD_EVENT_TYPE, RECORD_STATE_KEY).await
            else {
                continue;
            };
            if content.get("classes").is_none() {
                continue;
            }
            let Ok(state) = RecordSpace::from_content(&content) else { continue };
            if space_creator_is(&space, &state.patient).await {
                records.push(Record { space, state });
            }
        }
        records
    }

    async fn create_space(&self) -> Result<Room> {
        let mut request = self.record_room_request()?;
        request.name = Some("Health record".to_owned());
        request.creation_content = Some(raw(json!({"type": "m.space"})));
        request.initial_state = vec![
            raw(json!({
                "type": RECORD_EVENT_TYPE, "state_key": RECORD_STATE_KEY,
                "content": RecordSpace { patient: self.user.clone(), classes: BTreeMap::new() }
                    .to_content(),
            })),
            // Providers ask for access by knocking on the space (spec/records.md §7).
            raw(
                json!({"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}),
            ),
        ];
        Ok(self.client.create_room(request).await?)
    }

    async fn create_class_room(&self, class: DataClass, space: &RoomId) -> Result<Room> {
        let record =
            RecordRoom { patient: self.user.clone(), class, space: space.clone(), device: None };
        let mut request = self.record_room_request()?;
        request.name = Some(class.display().to_owned());
        request.initial_state = vec![
            raw(encryption_state()),
            // MSC4268 shares only keys made while history is `shared`.
            raw(json!({"type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "shared"}})),
            raw(json!({"type": RECORD_EVENT_TYPE, "state_key": RECORD_STATE_KEY,
                "content": record.to_content()})),
            raw(json!({"type": "m.space.parent", "state_key": space.as_str(),
                "content": {"via": [self.user.server_name()]}})),
        ];
        Ok(self.client.create_room(request).await?)
    }

    /// What the space and every class room share: private, the executor invited with power
    /// 100 (room version 12: the creator, the patient, has unlimited power and is not listed).
    pub(crate) fn record_room_request(&self) -> Result<CreateRoom> {
        let executor = executor_of(&self.user);
        let mut request = CreateRoom::new();
        request.visibility = Visibility::Private;
        request.preset =
            Some(matrix_sdk::ruma::api::client::room::create_room::v3::RoomPreset::PrivateChat);
        request.power_level_content_override = Some(raw(json!({"users": {&executor: 100}})));
        request.invite = vec![
            OwnedUserId::try_from(executor.as_str())
                .map_err(|_| ClientError::BadUser(executor.clone()))?,
        ];
        Ok(request)
    }
}

/// The `m.room.encryption` state every class room starts with.
pub(crate) fn encryption_state() -> Value {
    json!({"type": "m.room.encryption", "state_key": "", "content": {
        "algorithm": "m.megolm.v1.aes-sha2",
        "rotation_period_ms": ROTATION_PERIOD_MS,
        "rotation_period_msgs": ROTATION_PERIOD_MSGS,
    }})
}

/// The content of a room's current state event, if the caller has it.
pub(crate) async fn state_content(room: &Room, kind: &str, state_key: &str) -> Option<Value> {
    state_event(room, kind, state_key).await.and_then(|event| event.get("content").cloned())
}

/// A room's current state event as JSON, if the caller has it (joined or left rooms only:
/// an invitation's stripped state is not the room's).
pub(crate) async fn state_event(room: &Room, kind: &str, state_key: &str) -> Option<Value> {
    match room.get_state_event(StateEventType::from(kind), state_key).await.ok()?? {
        RawAnySyncOrStrippedState::Sync(raw) => serde_json::from_str(raw.json().get()).ok(),
        RawAnySyncOrStrippedState::Stripped(_) => None,
    }
}

/// Every current state event of a kind in a room, as JSON.
pub(crate) async fn state_events(room: &Room, kind: &str) -> Result<Vec<Value>> {
    let events = room.get_state_events(StateEventType::from(kind)).await?;
    Ok(events
        .into_iter()
        .filter_map(|event| match event {
            RawAnySyncOrStrippedState::Sync(raw) => serde_json::from_str(raw.json().get()).ok(),
            RawAnySyncOrStrippedState::Stripped(_) => None,
        })
        .collect())
}

/// The record state of a class room, if it is one.
pub(crate) async fn record_room_state(room: &Room) -> Option<RecordRoom> {
    let content = state_content(room, RECORD_EVENT_TYPE, RECORD_STATE_KEY).await?;
    content.get("class")?;
    RecordRoom::from_content(&content).ok()
}

/// Whether `patient` created the room: a record's state is believed only in a room its
/// patient created, so nobody can present a space of their own as someone's record.
async fn space_creator_is(room: &Room, patient: &UserId) -> bool {
    match state_event(room, "m.room.create", "").await {
        Some(create) => create["sender"].as_str() == Some(patient.as_str()),
        None => false,
    }
}

pub(crate) fn room_id(id: &SdkRoomId) -> RoomId {
    RoomId::parse(id.as_str()).expect("matrix-sdk's room IDs are room IDs")
}

pub(crate) fn sdk_room_id(id: &RoomId) -> Result<matrix_sdk::ruma::OwnedRoomId> {
    matrix_sdk::ruma::OwnedRoomId::try_from(id.as_str())
        .map_err(|_| ClientError::Sdk(format!("`{id}` is not a room ID")))
}

pub(crate) fn raw<T>(value: Value) -> Raw<T> {
    Raw::new(&value).expect("a JSON value serializes").cast_unchecked()
}
