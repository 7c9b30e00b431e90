//! The audit trail as a patient or a grantee reads it (spec/audit.md): the read logs of a
//! record's rooms, fetched page by page from the caller's server. The patient's copy is
//! checked as it arrives: every room's chain must hold and end at the head the server
//! states, or the listing stops with the room and the entry at fault.

use medrix_records::{DataClass, ReadEntry, RoomId, verify_chain};
use serde_json::{Map, Value, json};

use crate::client::MedrixClient;
use crate::error::{ClientError, Result};
use crate::record::{Record, sdk_room_id};

/// Entries asked for per page (the server's most).
const PAGE: u64 = 1000;

/// One logged read, with the class of the room it was in (`None`: the record's space).
pub use medrix_records::audit_reports::ClassedRead as LoggedRead;

/// One change to the record: an event of its DAG, with who made it and when.
#[derive(Debug, Clone)]
pub struct Change {
    /// The class of the room (`None`: the record's space).
    pub class: Option<DataClass>,
    pub room_id: String,
    /// `origin_server_ts`.
    pub ts: u64,
    pub sender: String,
    /// The event type, and its state key for a state event.
    pub kind: String,
    pub state_key: Option<String>,
    /// What changed, in a few words (never the content of an entry, which is encrypted).
    pub summary: String,
}

impl MedrixClient {
    /// The logged reads of every room of the record the caller may see the log of, oldest
    /// first: all of them for the patient (each room's chain verified), the caller's own for
    /// anyone else.
    pub async fn read_log(&self, record: &Record) -> Result<Vec<LoggedRead>> {
        let is_patient = record.patient() == &self.user;
        let space = record.space_id();
        let rooms: Vec<(Option<DataClass>, RoomId)> = std::iter::once((None, space))
            .chain(record.rooms().map(|(class, room)| (Some(class), room.clone())))
            .collect();
        self.read_logs_of(&rooms, is_patient).await
    }

    /// The whole audit trail of the record whose space is `space`, for someone the patient
    /// named to read it (`org.medrix.audit.delegate`), who need not be in any of its rooms:
    /// the space's log names the record's rooms. Every chain is verified.
    pub async fn delegated_read_log(&self, space: &RoomId) -> Result<Vec<LoggedRead>> {
        let request =
            read_log::Request { room_id: sdk_room_id(space)?, from: 0, limit: 1, server: None };
        let first = self.client.send(request).await.map_err(ClientError::from)?.body;
        if first.get("head").is_none() {
            return Err(ClientError::NotPatient(format!("the patient of {space}")));
        }
        let mut rooms = vec![(None, space.clone())];
        for (class, ids) in first["rooms"].as_object().into_iter().flatten() {
            let Some(class) = DataClass::parse(class) else { continue };
            for id in ids.as_array().into_iter().flatten().filter_map(Value::as_str) {
                if let Some(room) = RoomId::parse(id) {
                    rooms.push((Some(class), room));
                }
            }
        }
        self.read_logs_of(&rooms, true).await
    }

    /// The logs of these rooms (the caller's server's, and for a full view the other servers'
    /// too), oldest first; `full`: the caller sees whole logs, whose chains are verified.
    async fn read_logs_of(
        &self,
        rooms: &[(Option<DataClass>, RoomId)],
        full: bool,
    ) -> Result<Vec<LoggedRead>> {
        let own_server = self.user.server_name().to_string();
        let mut reads = Vec::new();
        for (class, room) in rooms {
            let class = *class;
            let Some((entries, servers)) = self.room_read_log(room, None, full).await? else {
                continue;
            };
            let tagged = |server: &str, entries: Vec<ReadEntry>| -> Vec<LoggedRead> {
                let server = server.to_owned();
                entries
                    .into_iter()
                    .map(|entry| LoggedRead { class, server: server.clone(), entry })
                    .collect()
            };
            reads.extend(tagged(&own_server, entries));
            // The other servers of the room log their own users' reads there.
            for server in servers {
                if let Some((entries, _)) = self.room_read_log(room, Some(&server), true).await? {
                    reads.extend(tagged(&server, entries));
                }
            }
        }
        reads.sort_by(|a, b| {
            (a.entry.ts, &a.server, &a.entry.room_id, a.entry.index).cmp(&(
                b.entry.ts,
                &b.server,
                &b.entry.room_id,
                b.entry.index,
            ))
        });
        Ok(reads)
    }

    /// Every change to the caller's record, oldest first: the events of its rooms' DAGs as
    /// the patient's server holds them (the export's events).
    pub async fn changes(&self, record: &Record) -> Result<Vec<Change>> {
        self.require_patient(record)?;
        let space = record.space_id();
        let rooms = std::iter::once((None, &space))
            .chain(record.rooms().map(|(class, room)| (Some(class), room)));
        let mut changes = Vec::new();
        for (class, room) in rooms {
            let request = room_export::Request { room_id: sdk_room_id(room)? };
            let body = self.client.send(request).await.map_err(ClientError::from)?.body;
            for event in body["events"].as_array().into_iter().flatten() {
                changes.push(change_of(class, room.as_str(), event));
            }
        }
        changes.sort_by(|a, b| (a.ts, &a.room_id).cmp(&(b.ts, &b.room_id)));
        Ok(changes)
    }

    /// Names `delegate` to read the caller's record's whole audit trail, or (`on` false)
    /// ends that (`spec/audit.md` §4).
    pub async fn name_audit_delegate(
        &self,
        record: &Record,
        delegate: &medrix_records::UserId,
        on: bool,
    ) -> Result<()> {
        self.require_patient(record)?;
        record
            .space
            .send_state_event_raw(
                medrix_records::DELEGATE_EVENT_TYPE,
                &format!("{}{delegate}", medrix_records::USER_STATE_KEY_PREFIX),
                json!({ "delegate": on }),
            )
            .await?;
        Ok(())
    }

    /// The caller's record exported for the independent verifier (`spec/audit.md` §6):
    /// every room's events as signed and its read log, and the key documents of the servers
    /// that signed. Only the patient's server holds all of it, for the patient alone.
    pub async fn export_for_audit(&self, record: &Record) -> Result<Value> {
        self.require_patient(record)?;
        let space = record.space_id();
        let rooms = std::iter::once(&space).chain(record.rooms().map(|(_, room)| room));
        let mut exported = Vec::new();
        let mut server_keys = Map::new();
        for room in rooms {
            let request = room_export::Request { room_id: sdk_room_id(room)? };
            let mut body = self.client.send(request).await.map_err(ClientError::from)?.body;
            if let Some(Value::Object(keys)) = body.get_mut("server_keys").map(Value::take) {
                server_keys.extend(keys);
            }
            // The other Medrix servers' logs of their users' reads in the room, verified as
            // they arrive; the verifier holds them to the checkpoints anchored for them.
            let servers: Vec<String> = body["servers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(ToOwned::to_owned))
                .collect();
            let mut remote_logs = Map::new();
            for server in servers {
                if let Some((entries, _)) = self.room_read_log(room, Some(&server), true).await? {
                    let entries: Vec<Value> = entries.iter().map(ReadEntry::to_json).collect();
                    remote_logs.insert(server, Value::from(entries));
                }
            }
            if let Some(object) = body.as_object_mut() {
                object.remove("server_keys");
                object.remove("servers");
                object.insert("remote_logs".to_owned(), Value::Object(remote_logs));
            }
            exported.push(body);
        }
        Ok(json!({
            "format": "medrix-audit-export/1",
            "patient": record.patient().as_str(),
            "space": space.as_str(),
            "rooms": exported,
            "server_keys": server_keys,
        }))
    }

    /// One room's log, every page, as the caller's server keeps it (or, for the patient, as
    /// `server` does), with the other servers of the room the caller's server names (for the
    /// patient). `None` where there is no log for the caller (a room they were never in, or a
    /// server that does not answer for it). `verify`: check the chain and the stated head.
    async fn room_read_log(
        &self,
        room: &RoomId,
        server: Option<&str>,
        verify: bool,
    ) -> Result<Option<(Vec<ReadEntry>, Vec<String>)>> {
        let room_id = sdk_room_id(room)?;
        let place = server.map_or_else(|| room.to_string(), |s| format!("{room} on {s}"));
        let broken = |what: String| ClientError::BrokenReadLog { room: place.clone(), what };
        let mut entries = Vec::new();
        let mut servers = Vec::new();
        let mut from = 0;
        let mut head = None;
        loop {
            let request = read_log::Request {
                room_id: room_id.clone(),
                from,
                limit: PAGE,
                server: server.map(ToOwned::to_owned),
            };
            let page = match self.client.send(request).await {
                Ok(page) => page,
                Err(err) => {
                    let err = ClientError::from(err);
                    // A server that keeps no log (not Medrix) or is unreachable: nothing from it.
                    if err.errcode() == Some("M_NOT_FOUND")
                        || (server.is_some() && err.errcode() != Some("M_FORBIDDEN"))
                    {
                        return Ok(None);
                    }
                    return Err(err);
                }
            };
            let body = page.body;
            for entry in body["entries"].as_array().into_iter().flatten() {
                entries.push(ReadEntry::from_json(entry).map_err(|err| broken(err.to_string()))?);
            }
            if head.is_none() {
                head = body.get("head").cloned();
                servers = body["servers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(ToOwned::to_owned))
                    .collect();
            }
            match body["next"].as_u64() {
                Some(next) if next > from => from = next,
                _ => break,
            }
        }
        if verify {
            let chain =
                verify_chain(room.as_str(), &entries).map_err(|err| broken(err.to_string()))?;
            let stated = head.unwrap_or_default();
            // Entries may have been added between the first page and the last: the head the
            // server stated first must lie on the chain read.
            let count = stated["count"].as_u64().unwrap_or_default();
            let agrees = match count {
                0 => true,
                n => entries
                    .get((n - 1) as usize)
                    .is_some_and(|entry| Some(entry.hash().as_str()) == stated["hash"].as_str()),
            };
            if !agrees || chain.count < count {
                return Err(broken(format!(
                    "the server stated a head of {count} entries the entries it sent do not reach"
                )));
            }
        }
        Ok(Some((entries, servers)))
    }
}

/// A DAG event as a change.
fn change_of(class: Option<DataClass>, room_id: &str, event: &Value) -> Change {
    let text = |key: &str| event[key].as_str().unwrap_or_default().to_owned();
    let content = &event["content"];
    let state_key = event["state_key"].as_str().map(ToOwned::to_owned);
    let kind = text("type");
    let summary = match kind.as_str() {
        "m.room.member" => {
            let mut summary = format!(
                "{} {}",
                content["membership"].as_str().unwrap_or("?"),
                state_key.as_deref().unwrap_or_default()
            );
            if let Some(reason) = content["reason"].as_str() {
                summary.push_str(&format!(" ({reason})"));
            }
            summary
        }
        medrix_records::GRANT_EVENT_TYPE => format!(
            "contract {} {} for {} ({})",
            content["contract_id"].as_str().unwrap_or("?"),
            content["status"].as_str().unwrap_or("?"),
            content["grantee"].as_str().unwrap_or("?"),
            content["purpose"].as_str().unwrap_or("?"),
        ),
        medrix_records::CHECKPOINT_EVENT_TYPE => format!(
            "read log anchored at {} entries",
            content["count"].as_u64().unwrap_or_default()
        ),
        "m.room.encrypted" => "an encrypted entry or message".to_owned(),
        other => match &state_key {
            Some(key) if !key.is_empty() => format!("{other} {key}"),
            _ => other.to_owned(),
        },
    };
    Change {
        class,
        room_id: room_id.to_owned(),
        ts: event["origin_server_ts"].as_u64().unwrap_or_default(),
        sender: text("sender"),
        kind,
        state_key,
        summary,
    }
}

/// `GET /_medrix/client/v1/rooms/{roomId}/export` (spec/audit.md §6): a JSON answer taken
/// whole.
mod room_export {
    use matrix_sdk::ruma::{
        OwnedRoomId,
        api::{
            Metadata, OutgoingRequest,
            auth_scheme::{AccessToken, SendAccessToken},
            error::{Error, IntoHttpError},
            metadata,
        },
        exports::{bytes::BufMut, http},
    };

    pub use super::read_log::Response;

    metadata! {
        method: GET,
        rate_limited: true,
        authentication: AccessToken,
        path: "/_medrix/client/v1/rooms/{room_id}/export",
    }

    #[derive(Clone, Debug)]
    pub struct Request {
        pub room_id: OwnedRoomId,
    }

    impl OutgoingRequest for Request {
        type EndpointError = Error;
        type IncomingResponse = Response;

        fn try_into_http_request<T: Default + BufMut + AsRef<[u8]>>(
            self,
            base_url: &str,
            access_token: SendAccessToken<'_>,
            path_builder_input: (),
        ) -> Result<http::Request<T>, IntoHttpError> {
            let url = Self::make_endpoint_url(path_builder_input, base_url, &[&self.room_id], "")?;
            crate::requests::authorized(Self::METHOD, url, T::default(), access_token)
        }
    }
}

/// `GET /_medrix/client/v1/rooms/{roomId}/read_log` (spec/audit.md §4).
mod read_log {
    use matrix_sdk::ruma::{
        OwnedRoomId,
        api::{
            EndpointError, IncomingResponse, Metadata, OutgoingRequest,
            auth_scheme::{AccessToken, SendAccessToken},
            error::{Error, FromHttpResponseError, IntoHttpError},
            metadata,
        },
        exports::{bytes::BufMut, http, serde_html_form, serde_json},
    };
    use serde_json::Value;

    metadata! {
        method: GET,
        rate_limited: true,
        authentication: AccessToken,
        path: "/_medrix/client/v1/rooms/{room_id}/read_log",
    }

    #[derive(Clone, Debug)]
    pub struct Request {
        pub room_id: OwnedRoomId,
        pub from: u64,
        pub limit: u64,
        /// Another server whose log of the room to fetch (the patient only).
        pub server: Option<String>,
    }

    /// A JSON answer as the server wrote it (a page: `entries`, `next`, `head`).
    pub struct Response {
        pub body: Value,
    }

    impl OutgoingRequest for Request {
        type EndpointError = Error;
        type IncomingResponse = Response;

        fn try_into_http_request<T: Default + BufMut + AsRef<[u8]>>(
            self,
            base_url: &str,
            access_token: SendAccessToken<'_>,
            path_builder_input: (),
        ) -> Result<http::Request<T>, IntoHttpError> {
            let mut query = format!("from={}&limit={}", self.from, self.limit);
            if let Some(server) = &self.server {
                query.push('&');
                query.push_str(&serde_html_form::to_string([("server", server)])?);
            }
            let url =
                Self::make_endpoint_url(path_builder_input, base_url, &[&self.room_id], &query)?;
            crate::requests::authorized(Self::METHOD, url, T::default(), access_token)
        }
    }

    impl IncomingResponse for Response {
        type EndpointError = Error;

        fn try_from_http_response<T: AsRef<[u8]>>(
            response: http::Response<T>,
        ) -> Result<Self, FromHttpResponseError<Error>> {
            if !response.status().is_success() {
                return Err(FromHttpResponseError::Server(Error::from_http_response(response)));
            }
            let body = serde_json::from_slice(response.body().as_ref())?;
            Ok(Self { body })
        }
    }
}
