//! Health devices in the record (spec/devices.md, "Device accounts"). The patient registers a
//! device: the server makes a bot account (`/_medrix/client/v1/devices`), and the patient's
//! client gives it a room of its own in the record (a class room whose `org.medrix.record`
//! names it, listed in the space) where only it sends, so no reader's room keys ever reach
//! it. The device's side pairs with the credentials, joins, and sends each reading as an
//! encrypted entry whose keys go only to the members its patient's contracts cover.

use matrix_sdk::{
    Room, SessionMeta, SessionTokens,
    authentication::matrix::MatrixSession,
    deserialized_responses::TimelineEventKind,
    ruma::{OwnedDeviceId, OwnedUserId, api::client::room::create_room::v3::Request as CreateRoom},
};
use medrix_records::{
    Action, DataClass, ENTRY_EVENT_TYPE, Entry, Grantee, RECORD_EVENT_TYPE, RECORD_STATE_KEY,
    RecordRoom, RoomId, Source, SourceKind, Status, UserId, evaluate,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::client::{MedrixClient, build_client};
use crate::error::{ClientError, Result};
use crate::grants::{invite_with_reason, is_member, sdk_user};
use crate::key_scope::KeyScope;
use crate::keys::{OutgoingEntry, now_ms};
use crate::profile::Profile;
use crate::record::{Record, encryption_state, executor_of, raw, room_id, sdk_room_id};

/// The content key of a device's alert notice (`spec/devices.md`, "Alerts").
pub const ALERT_KEY: &str = "org.medrix.alert";

/// What a device needs to pair: shown to the patient once, as JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredentials {
    pub homeserver: String,
    pub user_id: String,
    pub device_id: String,
    pub access_token: String,
    pub patient: String,
    pub space: String,
    pub room: String,
    pub name: String,
    pub kind: String,
}

/// One of the patient's devices as the server lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredDevice {
    pub user_id: String,
    pub name: String,
    pub kind: String,
    pub added_at: u64,
}

/// One reading (or an alert it raised) on its way: a stable ID (the same reading always has
/// the same one, so a retry is the same request) and what is sent.
#[derive(Debug, Clone)]
pub struct Reading {
    pub id: String,
    pub body: ReadingBody,
    /// The reading's clinical time, which decides who may have the key.
    pub clinical_time_ms: Option<i64>,
}

/// What a reading sends.
#[derive(Debug, Clone)]
pub enum ReadingBody {
    /// The FHIR Observation, as an `org.medrix.entry`.
    Observation(serde_json::Map<String, Value>),
    /// An alert: an `m.room.message` (an `m.notice` every client shows), this content.
    Notice(serde_json::Map<String, Value>),
}

/// The class a device's readings belong to: glucose is laboratory data, the rest vital signs
/// (as their Observations' categories say, spec/devices.md).
pub fn class_of_kind(kind: &str) -> DataClass {
    match kind {
        "glucose-meter" | "cgm" => DataClass::Laboratory,
        _ => DataClass::VitalSigns,
    }
}

impl MedrixClient {
    /// Registers a device for the caller's record: its account, then its own room (encrypted,
    /// where it alone may send entries), listed in the space, the device invited to the space
    /// and the room, and the room opened to the grantees whose contract covers its class.
    pub async fn add_device(
        &self,
        record: &Record,
        name: &str,
        kind: &str,
    ) -> Result<DeviceCredentials> {
        self.require_patient(record)?;
        let answer = self
            .medrix_call(
                reqwest_method::POST,
                "/_medrix/client/v1/devices",
                Some(json!({"name": name, "kind": kind})),
            )
            .await?;
        let text = |key: &str| answer[key].as_str().unwrap_or_default().to_owned();
        let device = crate::client::parse_user(&text("user_id"))?;
        let class = class_of_kind(kind);
        let room = self.create_device_room(record, class, &device, name).await?;
        let room_id = room_id(room.room_id());
        let mut state = record.state.clone();
        state.classes.entry(class).or_default().push(room_id.clone());
        let via = json!({"via": [self.user.server_name()]});
        record.space.send_state_event_raw("m.space.child", room_id.as_str(), via).await?;
        record
            .space
            .send_state_event_raw(RECORD_EVENT_TYPE, RECORD_STATE_KEY, state.to_content())
            .await?;
        let bot = sdk_user(&device)?;
        let reason = format!("your device account for {name}");
        invite_with_reason(&record.space, &bot, Some(&reason)).await?;
        invite_with_reason(&room, &bot, Some(&reason)).await?;
        // Grantees of the class read the device's readings as they read the class.
        let now = now_ms();
        for grant in self.grants(record).await? {
            let Grantee::User(grantee) = &grant.grantee else { continue };
            let covered = grant.status == Status::Active
                && evaluate(&grant, &Action::Hold { class }, now).is_allowed();
            let grantee = sdk_user(grantee)?;
            if covered && !is_member(&room, &grantee).await? {
                invite_with_reason(&room, &grantee, None).await?;
            }
        }
        Ok(DeviceCredentials {
            homeserver: self.client.homeserver().to_string(),
            user_id: device.to_string(),
            device_id: text("device_id"),
            access_token: text("access_token"),
            patient: self.user.to_string(),
            space: record.space_id().to_string(),
            room: room_id.to_string(),
            name: name.to_owned(),
            kind: kind.to_owned(),
        })
    }

    /// The caller's registered devices.
    pub async fn devices(&self) -> Result<Vec<RegisteredDevice>> {
        let answer =
            self.medrix_call(reqwest_method::GET, "/_medrix/client/v1/devices", None).await?;
        Ok(answer["devices"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|device| RegisteredDevice {
                user_id: device["user_id"].as_str().unwrap_or_default().to_owned(),
                name: device["name"].as_str().unwrap_or_default().to_owned(),
                kind: device["kind"].as_str().unwrap_or_default().to_owned(),
                added_at: device["added_at"].as_u64().unwrap_or_default(),
            })
            .collect())
    }

    /// Removes a device by its name: the server closes its account at once (its token stops
    /// working), then it is removed from its room and the space. Its readings stay.
    pub async fn remove_device(&self, record: &Record, name: &str) -> Result<RegisteredDevice> {
        self.require_patient(record)?;
        let device = self
            .devices()
            .await?
            .into_iter()
            .find(|device| device.name == name)
            .ok_or_else(|| ClientError::Terms(format!("you have no device named `{name}`")))?;
        let path = format!("/_medrix/client/v1/devices/{}", urlencode(&device.user_id));
        self.medrix_call(reqwest_method::DELETE, &path, None).await?;
        let bot = OwnedUserId::try_from(device.user_id.as_str())
            .map_err(|_| ClientError::BadUser(device.user_id.clone()))?;
        let reason = format!("device {name} removed by the patient");
        self.remove_from_record(record, &bot, &reason).await?;
        Ok(device)
    }

    async fn create_device_room(
        &self,
        record: &Record,
        class: DataClass,
        device: &UserId,
        name: &str,
    ) -> Result<Room> {
        let state = RecordRoom {
            patient: self.user.clone(),
            class,
            space: record.space_id(),
            device: Some(device.clone()),
        };
        let mut request: CreateRoom = self.record_room_request()?;
        request.name = Some(format!("{} ({name})", class.display()));
        // Only the device sends entries (encrypted events) here; the executor keeps its power
        // to invite and remove.
        let executor = executor_of(&self.user);
        request.power_level_content_override = Some(raw(json!({
            "users": {&executor: 100, device.as_str(): 10},
            "events": {"m.room.encrypted": 10},
            "events_default": 50,
        })));
        request.initial_state = vec![
            raw(encryption_state()),
            raw(json!({"type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "shared"}})),
            raw(json!({"type": RECORD_EVENT_TYPE, "state_key": RECORD_STATE_KEY,
                "content": state.to_content()})),
            raw(json!({"type": "m.space.parent", "state_key": record.space_id().as_str(),
                "content": {"via": [self.user.server_name()]}})),
        ];
        Ok(self.client.create_room(request).await?)
    }

    /// A device's first run: the session its credentials give, saved in `profile`, its
    /// encryption keys uploaded and its cross-signing identity set up, then the patient's
    /// invitations accepted (the space and its own room).
    pub async fn pair(profile: Profile, credentials: &DeviceCredentials) -> Result<MedrixClient> {
        crate::client::refuse_if_logged_in(&profile)?;
        let client = build_client(&profile, &credentials.homeserver).await?;
        let user_id = OwnedUserId::try_from(credentials.user_id.as_str())
            .map_err(|_| ClientError::BadUser(credentials.user_id.clone()))?;
        let session = MatrixSession {
            meta: SessionMeta {
                user_id,
                device_id: OwnedDeviceId::from(credentials.device_id.as_str()),
            },
            tokens: SessionTokens {
                access_token: credentials.access_token.clone(),
                refresh_token: None,
            },
        };
        client.matrix_auth().restore_session(session, Default::default()).await?;
        let medrix =
            MedrixClient::logged_in(client, profile, &credentials.homeserver, None).await?;
        let patient = crate::client::parse_user(&credentials.patient)?;
        medrix.accept_invitations_from(&patient).await?;
        Ok(medrix)
    }

    /// The device's record (its patient's) and its own room in it.
    pub async fn device_room(&self, credentials: &DeviceCredentials) -> Result<(Record, Room)> {
        let patient = crate::client::parse_user(&credentials.patient)?;
        self.sync().await?;
        self.accept_invitations_from(&patient).await?;
        let record = self
            .find_record(&patient)
            .await?
            .ok_or_else(|| ClientError::NotShared(patient.to_string()))?;
        let room_id = RoomId::parse(&credentials.room).ok_or_else(|| {
            ClientError::Terms(format!("`{}` is not a room ID", credentials.room))
        })?;
        let room = self
            .client
            .get_room(&sdk_room_id(&room_id)?)
            .ok_or_else(|| ClientError::NotShared(patient.to_string()))?;
        Ok((record, room))
    }

    /// Sends readings into the device's room, each as one encrypted entry whose transaction
    /// ID is the reading's ID: a reading sent again (after a cut, a timeout, a restart) is
    /// the same request, which the server answers with the event it already stored. Each
    /// entry's keys go to the patient and to the members whose contract covers it. Answers
    /// the event ID of each reading, in order.
    pub async fn send_readings(
        &self,
        record: &Record,
        room: &Room,
        class: DataClass,
        readings: &[Reading],
    ) -> Result<Vec<String>> {
        let grants = self.grants(record).await?;
        let scope = KeyScope::new(record.patient(), &grants, now_ms());
        let recipients = self.room_recipients(room, record.patient()).await?;
        let mut sent = Vec::with_capacity(readings.len());
        for reading in readings {
            let (event_type, content) = match &reading.body {
                ReadingBody::Observation(resource) => {
                    let entry = Entry {
                        class,
                        resource: resource.clone(),
                        source: Source { kind: SourceKind::Device, id: self.user.clone() },
                        replaces: None,
                    };
                    (ENTRY_EVENT_TYPE, entry.to_content())
                }
                ReadingBody::Notice(content) => ("m.room.message", Value::Object(content.clone())),
            };
            let outgoing = OutgoingEntry {
                event_type,
                class,
                clinical_time_ms: reading.clinical_time_ms,
                content,
                txn: reading.id.as_str().into(),
            };
            sent.push(self.send_entry(room, &recipients, &scope, outgoing).await?.to_string());
        }
        Ok(sent)
    }

    /// The alerts the record's devices raised (the `m.notice`s with `org.medrix.alert` in
    /// their rooms) that the caller can decrypt, oldest first: each the alert's fields, with
    /// `device`, `event_id`, `sent_at` and `body` beside them.
    pub async fn alerts(&self, record: &Record) -> Result<Vec<Value>> {
        let mut alerts = Vec::new();
        for (_, id) in record.rooms() {
            let Some(room) = self.client.get_room(&sdk_room_id(id)?) else { continue };
            let device_room =
                crate::record::record_room_state(&room).await.and_then(|state| state.device);
            let Some(device) = device_room else { continue };
            for event in crate::entries::room_history(&room).await? {
                let TimelineEventKind::Decrypted(decrypted) = &event.kind else { continue };
                let Ok(json) = serde_json::from_str::<Value>(decrypted.event.json().get()) else {
                    continue;
                };
                // Only what the room's device sent counts as its alert.
                let from_device = json["sender"].as_str() == Some(device.as_str());
                let alert = &json["content"][ALERT_KEY];
                if json["type"] != "m.room.message" || !from_device || !alert.is_object() {
                    continue;
                }
                let mut listed = alert.clone();
                listed["device"] = json!(device);
                listed["event_id"] = json["event_id"].clone();
                listed["sent_at"] = json["origin_server_ts"].clone();
                listed["body"] = json["content"]["body"].clone();
                alerts.push(listed);
            }
        }
        alerts.sort_by_key(|alert| alert["sent_at"].as_u64().unwrap_or_default());
        Ok(alerts)
    }

    /// A Medrix endpoint (`/_medrix/...`), with the session's token: its JSON answer, or the
    /// server's Matrix error.
    async fn medrix_call(
        &self,
        method: reqwest_method::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let token = self
            .client
            .access_token()
            .ok_or_else(|| ClientError::NotLoggedIn(self.profile.dir().to_path_buf()))?;
        let url = self
            .client
            .homeserver()
            .join(path)
            .map_err(|err| ClientError::Sdk(format!("{path}: {err}")))?;
        let mut request = self.client.http_client().request(method, url).bearer_auth(token);
        if let Some(body) = body {
            request = request
                .header(matrix_sdk::reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let unreachable =
            |err: matrix_sdk::reqwest::Error| ClientError::Unreachable(err.to_string());
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(ClientError::Refused {
                errcode: answer["errcode"].as_str().unwrap_or("M_UNKNOWN").to_owned(),
                message: answer["error"].as_str().unwrap_or("no message").to_owned(),
            });
        }
        Ok(answer)
    }
}

/// reqwest's methods, through matrix-sdk's re-export.
mod reqwest_method {
    pub use matrix_sdk::reqwest::Method;
    pub const GET: Method = Method::GET;
    pub const POST: Method = Method::POST;
    pub const DELETE: Method = Method::DELETE;
}

/// A user ID as a path segment.
fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}
