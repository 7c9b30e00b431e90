//! Access requests and break-glass (spec/records.md §7, §8): both are knocks on the record
//! space whose `/knock` body carries Medrix terms beside the reason. The provider knocks with
//! `org.medrix.request`; the patient lists the pending knocks, approves one (a contract with
//! exactly the terms asked for, then the grant's invitations) or declines it (a kick). A
//! clinician knocks with `org.medrix.break_glass`; the patient's server answers by itself.

use std::time::{Duration, Instant};

use matrix_sdk::{
    RoomState,
    ruma::{OwnedRoomId, OwnedServerName},
};
use medrix_records::{AccessRequest, GRANT_EVENT_TYPE, Grant, RoomId, UserId};

use crate::client::{MedrixClient, parse_user};
use crate::error::{ClientError, Result};
use crate::grants::{GrantTerms, Granted, grant_state_key, new_contract_id, sdk_user, terms_text};
use crate::record::{Record, executor_of, sdk_room_id, state_content, state_events};

/// How long a break-glass waits for the patient's server to answer.
const BREAK_GLASS_WAIT: Duration = Duration::from_secs(10);

/// A knock pending on the caller's record space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRequest {
    /// Who knocked.
    pub user: UserId,
    /// The reason they gave, if any.
    pub reason: Option<String>,
    /// The terms they asked for: `None` for a plain knock (a standard client's), an error
    /// for terms `medrix-records` refuses.
    pub request: Option<std::result::Result<AccessRequest, medrix_records::Error>>,
    /// When they knocked (the knock's `origin_server_ts`).
    pub knocked_at_ms: u64,
}

/// A break-glass the patient's server allowed: the clinician joined, with the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenGlass {
    /// The personal contract the server put (purpose `BTG`).
    pub grant: Grant,
    /// The rooms joined: the space and the emergency classes' rooms.
    pub joined: Vec<RoomId>,
}

impl MedrixClient {
    /// Asks `patient` for access on `request`'s terms: a knock on their record space
    /// `space` (through the patient's server), with `reason`.
    pub async fn request_access(
        &self,
        patient: &UserId,
        space: &RoomId,
        request: &AccessRequest,
        reason: Option<String>,
    ) -> Result<()> {
        let body = knock::Body { reason, request: Some(request.to_content()), break_glass: None };
        self.knock_with(patient, space, body).await
    }

    /// The knocks pending on the caller's record space, oldest first.
    pub async fn pending_requests(&self, record: &Record) -> Result<Vec<PendingRequest>> {
        self.require_patient(record)?;
        let mut pending = Vec::new();
        for event in state_events(&record.space, "m.room.member").await? {
            let content = &event["content"];
            if content["membership"] != "knock" {
                continue;
            }
            let Ok(user) = parse_user(event["state_key"].as_str().unwrap_or_default()) else {
                continue;
            };
            pending.push(PendingRequest {
                user,
                reason: content["reason"].as_str().map(str::to_owned),
                request: AccessRequest::from_knock(content),
                knocked_at_ms: event["origin_server_ts"].as_u64().unwrap_or_default(),
            });
        }
        pending.sort_by_key(|request| request.knocked_at_ms);
        Ok(pending)
    }

    /// Approves `user`'s pending request as asked: a contract with exactly its terms (a
    /// fresh contract ID; `text`, or the terms written out), granted as any contract is.
    pub async fn approve(
        &self,
        record: &Record,
        user: &UserId,
        text: Option<String>,
    ) -> Result<Granted> {
        let pending = self.pending_request_of(record, user).await?;
        let request = match pending.request {
            Some(request) => request?,
            None => return Err(ClientError::PlainKnock(user.to_string())),
        };
        let contract_id = new_contract_id();
        let text = text.unwrap_or_else(|| {
            let terms = GrantTerms {
                grantee: user.clone(),
                purpose: request.purpose,
                classes: request.classes.clone(),
                data_period: request.data_period,
                valid: request.valid,
                mode: request.mode,
                text: None,
            };
            terms_text(record.patient(), &terms, &contract_id)
        });
        let grant = request.approve(user, contract_id, &text)?;
        self.put_grant(record, grant).await
    }

    /// Declines `user`'s pending request: the knock is removed (a kick) with `reason`.
    pub async fn decline(
        &self,
        record: &Record,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        self.pending_request_of(record, user).await?;
        record.space.kick_user(&sdk_user(user)?, reason).await?;
        Ok(())
    }

    /// Breaks the glass on `patient`'s record space `space`: a knock with the clinician's
    /// `reason`, then a bounded wait (syncing) for the patient's server: invited → the
    /// invitations accepted and the contract read; removed → its reason as the error.
    pub async fn break_glass(
        &self,
        patient: &UserId,
        space: &RoomId,
        reason: &str,
    ) -> Result<BrokenGlass> {
        let body = knock::Body {
            reason: Some(reason.to_owned()),
            request: None,
            break_glass: Some(knock::BreakGlass { reason: reason.to_owned() }),
        };
        self.knock_with(patient, space, body).await?;
        let space_id = sdk_room_id(space)?;
        let executor = parse_user(&executor_of(patient))?;
        let deadline = Instant::now() + BREAK_GLASS_WAIT;
        loop {
            self.sync().await?;
            match self.client.get_room(&space_id).map(|room| room.state()) {
                Some(RoomState::Invited) => break,
                Some(RoomState::Left | RoomState::Banned) => {
                    // The room turns `Left` with the sync that removes the knock; the store
                    // may still hold the knock itself, whose reason is the clinician's.
                    if let Some(why) = self.refusal(&space_id).await {
                        return Err(ClientError::BreakGlassRefused(why));
                    }
                }
                _ => {}
            }
            if Instant::now() >= deadline {
                return Err(ClientError::BreakGlassTimeout(patient.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The executor invites to the space first, then the emergency classes' rooms, which
        // the record state and the contract in the space name once it is joined.
        let mut joined = self.accept_invitations_from(&executor).await?;
        let record = self
            .find_record(patient)
            .await?
            .ok_or_else(|| ClientError::NotShared(patient.to_string()))?;
        let state_key = grant_state_key(&self.user);
        let content = state_content(&record.space, GRANT_EVENT_TYPE, &state_key)
            .await
            .ok_or_else(|| ClientError::NoContract(self.user.to_string()))?;
        let grant = Grant::from_event(&state_key, &content)?;
        let granted_rooms: Vec<RoomId> = record
            .rooms()
            .filter(|(class, _)| grant.classes.contains(class))
            .map(|(_, id)| id.clone())
            .collect();
        // Rooms the patient's custodian holds are opened by the custodian, whose invitation
        // follows the keys it hands over.
        let custodian = self.custodian_of(&record).await;
        while !self.joined_all(&granted_rooms)? && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            self.sync().await?;
            joined.extend(self.accept_invitations_from(&executor).await?);
            if let Some(custodian) = &custodian {
                let opened = self.accept_invitations_from(custodian).await?;
                self.await_key_bundles(&opened).await?;
                joined.extend(opened);
            }
        }
        Ok(BrokenGlass { grant, joined })
    }

    /// The custodian named by the standing emergency contract for the caller's server.
    async fn custodian_of(&self, record: &Record) -> Option<UserId> {
        let server = self.user.server_name();
        let content = state_content(&record.space, GRANT_EVENT_TYPE, server.as_str()).await?;
        Grant::from_event(server.as_str(), &content).ok()?.custodian
    }

    /// Whether the caller has joined every one of `rooms`.
    fn joined_all(&self, rooms: &[RoomId]) -> Result<bool> {
        for id in rooms {
            let joined = self.client.get_room(&sdk_room_id(id)?).map(|room| room.state());
            if joined != Some(RoomState::Joined) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The reason the caller's knock on `space` was removed, once the store holds the removal.
    async fn refusal(&self, space: &OwnedRoomId) -> Option<String> {
        let room = self.client.get_room(space)?;
        let member = state_content(&room, "m.room.member", self.user.as_str()).await?;
        if !matches!(member["membership"].as_str(), Some("leave" | "ban")) {
            return None;
        }
        Some(member["reason"].as_str().unwrap_or("break-glass refused").to_owned())
    }

    async fn knock_with(&self, patient: &UserId, space: &RoomId, body: knock::Body) -> Result<()> {
        let via = OwnedServerName::try_from(patient.server_name().to_string())
            .map_err(|_| ClientError::BadUser(patient.to_string()))?;
        let request = knock::Request { room_id: sdk_room_id(space)?, via: vec![via], body };
        self.client.send(request).await?;
        Ok(())
    }

    async fn pending_request_of(&self, record: &Record, user: &UserId) -> Result<PendingRequest> {
        self.pending_requests(record)
            .await?
            .into_iter()
            .find(|pending| &pending.user == user)
            .ok_or_else(|| ClientError::NoRequest(user.to_string()))
    }
}

/// An HTTP request of Medrix's own endpoint types (ruma's request trait, written by hand where
/// ruma has no type): `method` to `url` with `body`, carrying the access token.
pub(crate) fn authorized<T: AsRef<[u8]>>(
    method: matrix_sdk::ruma::exports::http::Method,
    url: String,
    body: T,
    access_token: matrix_sdk::ruma::api::auth_scheme::SendAccessToken<'_>,
) -> Result<matrix_sdk::ruma::exports::http::Request<T>, matrix_sdk::ruma::api::error::IntoHttpError>
{
    use matrix_sdk::ruma::api::{
        auth_scheme::{AccessToken, AuthScheme},
        error::IntoHttpError,
    };
    let mut request =
        matrix_sdk::ruma::exports::http::Request::builder().method(method).uri(url).body(body)?;
    AccessToken::add_authentication(&mut request, access_token)
        .map_err(|error| IntoHttpError::Authentication(error.into()))?;
    Ok(request)
}

/// `POST /_matrix/client/v3/knock/{roomId}` with Medrix's body fields: ruma's `knock_room`
/// sends only `reason`.
mod knock {
    use matrix_sdk::ruma::{
        OwnedRoomId, OwnedServerName,
        api::{
            Metadata, OutgoingRequest,
            auth_scheme::{AccessToken, SendAccessToken},
            client::knock::knock_room::v3::Response,
            error::{Error, IntoHttpError},
            metadata,
        },
        exports::{bytes::BufMut, http, serde_html_form, serde_json},
    };
    use serde::Serialize;
    use serde_json::Value;

    metadata! {
        method: POST,
        rate_limited: true,
        authentication: AccessToken,
        path: "/_matrix/client/v3/knock/{room_id}",
    }

    /// A knock on a room, through `via`, with `body`.
    #[derive(Clone, Debug)]
    pub struct Request {
        pub room_id: OwnedRoomId,
        pub via: Vec<OwnedServerName>,
        pub body: Body,
    }

    /// The `/knock` body: the spec's `reason`, and Medrix's terms or break-glass.
    #[derive(Clone, Debug, Serialize)]
    pub struct Body {
        #[serde(skip_serializing_if = "Option::is_none")]
        pub reason: Option<String>,
        #[serde(rename = "org.medrix.request", skip_serializing_if = "Option::is_none")]
        pub request: Option<Value>,
        #[serde(rename = "org.medrix.break_glass", skip_serializing_if = "Option::is_none")]
        pub break_glass: Option<BreakGlass>,
    }

    /// `org.medrix.break_glass`: the clinician's reason.
    #[derive(Clone, Debug, Serialize)]
    pub struct BreakGlass {
        pub reason: String,
    }

    #[derive(Serialize)]
    struct Query<'a> {
        via: &'a [OwnedServerName],
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
            let query = serde_html_form::to_string(Query { via: &self.via })?;
            let url =
                Self::make_endpoint_url(path_builder_input, base_url, &[&self.room_id], &query)?;
            let mut body = T::default();
            body.put_slice(&serde_json::to_vec(&self.body)?);
            let mut request = super::authorized(Self::METHOD, url, body, access_token)?;
            request.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            Ok(request)
        }
    }
}

#[cfg(test)]
mod tests {
    use matrix_sdk::ruma::api::{OutgoingRequest, auth_scheme::SendAccessToken};
    use medrix_records::{BREAK_GLASS_KEY, REQUEST_KEY};
    use serde_json::Value;

    use super::*;

    fn http_body(body: knock::Body) -> (String, Value) {
        let request = knock::Request {
            room_id: OwnedRoomId::try_from("!space:home.example").unwrap(),
            via: vec![OwnedServerName::try_from("home.example").unwrap()],
            body,
        };
        let http: matrix_sdk::ruma::exports::http::Request<Vec<u8>> = request
            .try_into_http_request("https://hospital.example", SendAccessToken::IfRequired("t"), ())
            .unwrap();
        (http.uri().to_string(), serde_json::from_slice(http.body()).unwrap())
    }

    #[test]
    fn a_request_is_a_knock_with_the_terms_beside_the_reason() {
        let asked = serde_json::json!({"purpose": "TREAT", "classes": ["laboratory"],
            "data_period": {"start": null, "end": null},
            "valid": {"start": 1, "end": 2}, "mode": "read"});
        let (uri, body) = http_body(knock::Body {
            reason: Some("follow-up".to_owned()),
            request: Some(asked.clone()),
            break_glass: None,
        });
        assert_eq!(
            uri,
            "https://hospital.example/_matrix/client/v3/knock/!space:home.example?via=home.example"
        );
        assert_eq!(body, serde_json::json!({"reason": "follow-up", REQUEST_KEY: asked}));
        let (_, body) = http_body(knock::Body {
            reason: Some("unconscious".to_owned()),
            request: None,
            break_glass: Some(knock::BreakGlass { reason: "unconscious".to_owned() }),
        });
        assert_eq!(
            body,
            serde_json::json!({"reason": "unconscious", BREAK_GLASS_KEY: {"reason": "unconscious"}})
        );
    }
}
