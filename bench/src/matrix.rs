//! The few client-server API calls the benchmark makes, with typed request and response
//! bodies. Only what the load needs: register, create and join a room, send, sync.

use std::{collections::HashMap, time::Duration};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::http::{Conn, HttpError, encode_component};

/// How long setup calls (register, create, join, initial sync) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
const STAGE_DUMMY: &str = "m.login.dummy";
const STAGE_TOKEN: &str = "m.login.registration_token";

/// A logged-in user.
pub struct Account {
    pub access_token: String,
}

#[derive(Serialize)]
struct RegisterRequest<'a> {
    username: &'a str,
    password: &'a str,
    initial_device_display_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<AuthStage<'a>>,
}

#[derive(Serialize)]
struct AuthStage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
}

#[derive(Deserialize)]
struct UiaChallenge {
    session: Option<String>,
    #[serde(default)]
    flows: Vec<UiaFlow>,
    #[serde(default)]
    completed: Vec<String>,
}

#[derive(Deserialize)]
struct UiaFlow {
    stages: Vec<String>,
}

#[derive(Deserialize)]
struct Registered {
    access_token: String,
}

/// The first offered flow whose every stage this tool can complete: the dummy stage, and the
/// registration-token stage when it was given a token.
fn pick_flow(flows: &[UiaFlow], have_token: bool) -> Option<&[String]> {
    flows
        .iter()
        .find(|flow| {
            flow.stages
                .iter()
                .all(|stage| stage == STAGE_DUMMY || (have_token && stage == STAGE_TOKEN))
        })
        .map(|flow| flow.stages.as_slice())
}

/// Registers `username`, following the user-interactive auth flow the server offers.
pub async fn register(
    conn: &mut Conn,
    username: &str,
    password: &str,
    registration_token: Option<&str>,
) -> Result<Account, HttpError> {
    const WHAT: &str = "register";
    const PATH: &str = "/_matrix/client/v3/register";
    let mut request =
        RegisterRequest { username, password, initial_device_display_name: "loadgen", auth: None };
    let first = conn.request(Method::POST, PATH, None, Some(&request), SETUP_TIMEOUT).await?;
    if first.status == StatusCode::OK {
        return into_account(first.json(WHAT)?);
    }
    if first.status != StatusCode::UNAUTHORIZED {
        return Err(first.status_error(WHAT));
    }
    let challenge: UiaChallenge = first.json(WHAT)?;
    let stages = pick_flow(&challenge.flows, registration_token.is_some())
        .ok_or_else(|| HttpError::Status {
            what: "register: no flow with only m.login.dummy / m.login.registration_token",
            status: first.status,
            errcode: "M_FORBIDDEN".to_owned(),
        })?
        .to_vec();
    let session = challenge.session;
    let mut completed = challenge.completed;
    for stage in &stages {
        if completed.contains(stage) {
            continue;
        }
        request.auth = Some(AuthStage {
            kind: stage,
            session: session.as_deref(),
            token: if stage == STAGE_TOKEN { registration_token } else { None },
        });
        let answer = conn.request(Method::POST, PATH, None, Some(&request), SETUP_TIMEOUT).await?;
        match answer.status {
            StatusCode::OK => return into_account(answer.json(WHAT)?),
            StatusCode::UNAUTHORIZED => {
                let next: UiaChallenge = answer.json(WHAT)?;
                if !next.completed.contains(stage) {
                    return Err(answer.status_error("register: stage not accepted"));
                }
                completed = next.completed;
            }
            _ => return Err(answer.status_error(WHAT)),
        }
    }
    Err(HttpError::Status {
        what: "register: flow completed without an account",
        status: StatusCode::UNAUTHORIZED,
        errcode: "M_FORBIDDEN".to_owned(),
    })
}

fn into_account(registered: Registered) -> Result<Account, HttpError> {
    Ok(Account { access_token: registered.access_token })
}

#[derive(Serialize)]
struct CreateRoomRequest<'a> {
    preset: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room_version: Option<&'a str>,
}

#[derive(Deserialize)]
struct RoomIdResponse {
    room_id: String,
}

/// Creates a public room (anyone may join), in `room_version` or the server's default, and
/// returns its ID.
pub async fn create_public_room(
    conn: &mut Conn,
    account: &Account,
    room_version: Option<&str>,
) -> Result<String, HttpError> {
    let request = CreateRoomRequest { preset: "public_chat", name: "medrix-bench", room_version };
    let response = conn
        .request(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(&account.access_token),
            Some(&request),
            SETUP_TIMEOUT,
        )
        .await?;
    Ok(response.ok_json::<RoomIdResponse>("createRoom")?.room_id)
}

#[derive(Serialize)]
struct Empty {}

/// Joins a room by ID.
pub async fn join(conn: &mut Conn, account: &Account, room_id: &str) -> Result<(), HttpError> {
    let path = format!("/_matrix/client/v3/rooms/{}/join", encode_component(room_id));
    let response = conn
        .request(Method::POST, &path, Some(&account.access_token), Some(&Empty {}), SETUP_TIMEOUT)
        .await?;
    response.ok_json::<RoomIdResponse>("join").map(|_| ())
}

#[derive(Serialize)]
struct TextMessage<'a> {
    msgtype: &'a str,
    body: &'a str,
}

#[derive(Deserialize)]
struct EventIdResponse {
    event_id: String,
}

/// What the server answered to one send.
pub enum SendOutcome {
    /// 200 with an event ID.
    Accepted,
    /// Anything else, as a short label ("HTTP 500 M_UNKNOWN", "timeout").
    Failed(String),
}

/// Sends one `m.room.message` text event.
pub async fn send_text(
    conn: &mut Conn,
    account: &Account,
    room_id: &str,
    txn_id: &str,
    body: &str,
    timeout: Duration,
) -> SendOutcome {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        encode_component(room_id),
        encode_component(txn_id)
    );
    let message = TextMessage { msgtype: "m.text", body };
    match conn
        .request(Method::PUT, &path, Some(&account.access_token), Some(&message), timeout)
        .await
    {
        Ok(response) => match response.ok_json::<EventIdResponse>("send") {
            Ok(sent) if !sent.event_id.is_empty() => SendOutcome::Accepted,
            Ok(_) => SendOutcome::Failed("200 without event_id".to_owned()),
            Err(HttpError::Status { status, errcode, .. }) => {
                SendOutcome::Failed(format!("HTTP {} {errcode}", status.as_u16()))
            }
            Err(_) => SendOutcome::Failed("200 with unexpected JSON".to_owned()),
        },
        Err(HttpError::Timeout(_)) => SendOutcome::Failed("timeout".to_owned()),
        Err(HttpError::Connect { .. } | HttpError::Http(_)) => {
            SendOutcome::Failed("connection error".to_owned())
        }
        Err(other) => SendOutcome::Failed(other.to_string()),
    }
}

/// The parts of a `/sync` answer the observers read.
#[derive(Deserialize)]
pub struct SyncResponse {
    pub next_batch: String,
    #[serde(default)]
    pub rooms: SyncRooms,
}

#[derive(Deserialize, Default)]
pub struct SyncRooms {
    #[serde(default)]
    pub join: HashMap<String, JoinedRoom>,
}

#[derive(Deserialize)]
pub struct JoinedRoom {
    #[serde(default)]
    pub timeline: Timeline,
}

#[derive(Deserialize, Default)]
pub struct Timeline {
    #[serde(default)]
    pub events: Vec<TimelineEvent>,
    /// Set when the server left events out; the observer counts those syncs.
    #[serde(default)]
    pub limited: bool,
}

#[derive(Deserialize)]
pub struct TimelineEvent {
    #[serde(rename = "type")]
    pub kind: String,
    /// Parsed only for `m.room.message` events.
    pub content: Box<RawValue>,
}

#[derive(Deserialize)]
pub struct MessageContent {
    pub body: Option<String>,
}

impl TimelineEvent {
    /// The `body` of an `m.room.message`.
    pub fn message_body(&self) -> Option<String> {
        if self.kind != "m.room.message" {
            return None;
        }
        serde_json::from_str::<MessageContent>(self.content.get()).ok()?.body
    }
}

/// The sync filter both servers get: a timeline limit above any one batch of the load, so
/// that no sync has to leave messages out. (Medrix pages its own way and ignores it.)
const SYNC_FILTER: &str = r#"{"room":{"timeline":{"limit":1000}}}"#;

/// One `/sync`: initial when `since` is `None`, long-polling for `timeout` otherwise.
pub async fn sync(
    conn: &mut Conn,
    account: &Account,
    since: Option<&str>,
    timeout: Duration,
) -> Result<SyncResponse, HttpError> {
    let mut path = format!(
        "/_matrix/client/v3/sync?timeout={}&filter={}",
        timeout.as_millis(),
        encode_component(SYNC_FILTER)
    );
    if let Some(since) = since {
        path.push_str("&since=");
        path.push_str(&encode_component(since));
    }
    // The server holds the request up to `timeout`; allow it time to answer after that.
    let limit = timeout + SETUP_TIMEOUT;
    let response =
        conn.request::<Empty>(Method::GET, &path, Some(&account.access_token), None, limit).await?;
    response.ok_json("sync")
}

#[derive(Deserialize)]
struct MessagesPage {
    chunk: Vec<PageEvent>,
    end: Option<String>,
}

#[derive(Deserialize)]
struct PageEvent {
    #[serde(rename = "type")]
    kind: String,
    sender: String,
}

/// Counts the room's `m.room.message` events from `sender`, paging `/messages` backwards
/// from the newest.
pub async fn count_messages_from(
    conn: &mut Conn,
    account: &Account,
    room_id: &str,
    sender: &str,
) -> Result<usize, HttpError> {
    let base =
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=500", encode_component(room_id));
    let (mut count, mut from) = (0, None::<String>);
    loop {
        let path = match &from {
            Some(token) => format!("{base}&from={}", encode_component(token)),
            None => base.clone(),
        };
        let response = conn
            .request::<Empty>(Method::GET, &path, Some(&account.access_token), None, SETUP_TIMEOUT)
            .await?;
        let page: MessagesPage = response.ok_json("messages")?;
        count +=
            page.chunk.iter().filter(|e| e.kind == "m.room.message" && e.sender == sender).count();
        match page.end {
            Some(end) if !page.chunk.is_empty() && from.as_ref() != Some(&end) => from = Some(end),
            _ => return Ok(count),
        }
    }
}

/// Whether the user can read the event through `/rooms/{roomId}/event/{eventId}`.
pub async fn event_readable(
    conn: &mut Conn,
    account: &Account,
    room_id: &str,
    event_id: &str,
) -> Result<bool, HttpError> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/event/{}",
        encode_component(room_id),
        encode_component(event_id)
    );
    let response = conn
        .request::<Empty>(Method::GET, &path, Some(&account.access_token), None, SETUP_TIMEOUT)
        .await?;
    Ok(response.status == StatusCode::OK)
}

/// `true` once `/_matrix/client/versions` answers 200.
pub async fn versions_ok(conn: &mut Conn) -> bool {
    conn.request::<Empty>(
        Method::GET,
        "/_matrix/client/versions",
        None,
        None,
        Duration::from_secs(5),
    )
    .await
    .is_ok_and(|response| response.status == StatusCode::OK)
}

/// The account's user ID (`/account/whoami`).
pub async fn user_id(conn: &mut Conn, account: &Account) -> Result<String, String> {
    let me = conn
        .request::<serde_json::Value>(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            Some(&account.access_token),
            None,
            SETUP_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?;
    let me: serde_json::Value = me.ok_json("whoami").map_err(|e| e.to_string())?;
    me["user_id"].as_str().map(ToOwned::to_owned).ok_or_else(|| "whoami: no user_id".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flows(list: &[&[&str]]) -> Vec<UiaFlow> {
        list.iter()
            .map(|stages| UiaFlow { stages: stages.iter().map(|s| (*s).to_owned()).collect() })
            .collect()
    }

    #[test]
    fn registration_follows_a_flow_the_tool_can_complete() {
        let offered = flows(&[&["m.login.recaptcha"], &[STAGE_TOKEN], &[STAGE_DUMMY]]);
        assert_eq!(pick_flow(&offered, true).unwrap(), [STAGE_TOKEN]);
        assert_eq!(pick_flow(&offered, false).unwrap(), [STAGE_DUMMY]);
        assert!(pick_flow(&flows(&[&["m.login.email.identity"]]), true).is_none());
    }

    #[test]
    fn only_message_events_have_a_body_read() {
        let event: TimelineEvent = serde_json::from_str(
            r#"{"type":"m.room.message","content":{"body":"x","msgtype":"m.text"}}"#,
        )
        .unwrap();
        assert_eq!(event.message_body().as_deref(), Some("x"));
        let member: TimelineEvent =
            serde_json::from_str(r#"{"type":"m.room.member","content":{"membership":"join"}}"#)
                .unwrap();
        assert_eq!(member.message_body(), None);
    }
}
