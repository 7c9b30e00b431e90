//! The contract executor: the service user `@medrix-contracts:<server>` that carries out the
//! patient's consent contracts by itself. When a contract ends it marks the contract
//! `expired` and removes the grantee from the record's rooms; when the patient revokes one it
//! removes the grantee at once; a member the patient's contracts do not cover (a join that
//! came through another server) is removed too; and it joins the record rooms the patient
//! invites it to. Everything it does is an event it signs as itself, so the DAG shows who
//! acted and why, never disguised as the patient.
//!
//! It follows a durable schedule (`schedule`) that the rooms' write path fills, and acts
//! through the rooms service like any local user; rooms never call it.

pub mod schedule;

use std::time::Duration;

use std::sync::Arc;

use medrix_records::{
    BREAK_GLASS_KEY, BreakGlassError, CHECKPOINT_EVENT_TYPE, ContractId, GRANT_EVENT_TYPE,
    RecordSpace, Status, break_glass_grant,
};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use serde_json::json;

use crate::{
    locks::LockExt,
    random,
    service::{
        access::Access,
        accounts::Accounts,
        federation::{client::FederationClient, read_logs, rooms::FederatedRooms},
        rooms::{
            RoomError, Rooms,
            record_gate::{RecordPlace, executor_of},
        },
    },
    storage::Storage,
};

/// Record rooms whose other servers' logs are watched for checkpoints; past this, rooms that
/// grow are not added until others leave the set.
const MAX_WATCHED_ROOMS: usize = 10_000;
/// Checks taken per round; the rest wait for the next round, which follows at once.
const CHECKS_PER_ROUND: usize = 1024;
/// The longest the executor sleeps: a due moment, or a revocation, is acted on at most this
/// late (plus the time the acts take), however the schedule changed meanwhile.
const MAX_SLEEP: Duration = Duration::from_millis(500);

#[derive(Clone)]
pub struct ContractExecutor {
    storage: Storage,
    rooms: Rooms,
    /// Record rooms whose other servers' read logs are anchored each checkpoint round.
    watched: Arc<std::sync::Mutex<std::collections::HashSet<OwnedRoomId>>>,
    /// For invitations of users of other servers (their server co-signs); none without
    /// federation.
    federated: Option<Arc<FederatedRooms>>,
    user: OwnedUserId,
}

impl ContractExecutor {
    pub fn new(storage: Storage, rooms: Rooms, federated: Option<Arc<FederatedRooms>>) -> Self {
        let user = executor_of(rooms.server_name());
        Self { storage, rooms, federated, user, watched: Arc::default() }
    }

    /// Creates the executor's account if missing: it has no password and no device, so
    /// nobody can log in as it.
    pub async fn ensure_account(&self, accounts: &Accounts) -> Result<(), String> {
        if accounts.exists(&self.user).map_err(|err| err.to_string())? {
            return Ok(());
        }
        match accounts.register(&self.user, None, None, None, true).await {
            Ok(_) | Err(crate::service::accounts::AccountError::UserInUse) => Ok(()),
            Err(err) => Err(err.to_string()),
        }
    }

    /// Runs the schedule until the process ends.
    pub fn start(&self) {
        let this = self.clone();
        tokio::spawn(async move { this.run().await });
    }

    /// Anchors the read logs that grew, every `every`, until the process ends: in each such
    /// record room of this server's patients, a checkpoint state event (keyed by this
    /// server's name) carrying the log's head, signed as the executor (`spec/audit.md` §5).
    /// With federation, the heads the room's other Medrix servers state for their own logs
    /// of the room are anchored beside it (keyed by their names): once anchored, they cannot
    /// rewrite those logs unseen either.
    pub fn start_checkpoints(
        &self,
        access: Arc<Access>,
        federation: Option<Arc<FederationClient>>,
        every: Duration,
    ) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                this.checkpoint(&access, federation.as_deref()).await;
            }
        });
    }

    async fn checkpoint(&self, access: &Access, federation: Option<&FederationClient>) {
        let grown = match access.grown_read_logs(&self.user) {
            Ok(grown) => grown,
            Err(err) => {
                tracing::error!(%err, "read-log checkpoints: finding the grown logs failed");
                return;
            }
        };
        let own = self.rooms.server_name().to_owned();
        for (room, head) in grown {
            self.anchor(&room, own.as_str(), head.count, head.hash.as_deref()).await;
            let mut watched = self.watched.locked();
            if watched.len() < MAX_WATCHED_ROOMS {
                watched.insert(room);
            }
        }
        let Some(client) = federation else { return };
        // The other servers' logs grow with their users' reads, which this server does not
        // see: every record room that has grown here is asked about each round while other
        // servers are in it.
        let watched: Vec<OwnedRoomId> = self.watched.locked().iter().cloned().collect();
        for room in watched {
            let others = match access.servers_in_room(&room, &own) {
                Ok(others) => others,
                Err(err) => {
                    tracing::warn!(%room, %err, "read-log checkpoints: the room's servers");
                    continue;
                }
            };
            if others.is_empty() {
                self.watched.locked().remove(&room);
                continue;
            }
            for server in others {
                // A server that keeps no log (not Medrix) or does not answer: nothing to anchor.
                let page = match read_logs::fetch(client, &server, room.clone(), 0, 1).await {
                    Ok(page) => page,
                    Err(err) => {
                        tracing::info!(%room, %server, %err, "no read log from this server");
                        continue;
                    }
                };
                let count = page["head"]["count"].as_u64().unwrap_or_default();
                if count > 0 && self.anchored_count(&room, server.as_str()) != Some(count) {
                    self.anchor(&room, server.as_str(), count, page["head"]["hash"].as_str()).await;
                }
            }
        }
    }

    /// The count the room's current checkpoint for `server` anchors, if any.
    fn anchored_count(&self, room: &RoomId, server: &str) -> Option<u64> {
        let kind = ruma::events::StateEventType::from(CHECKPOINT_EVENT_TYPE);
        let id = self.rooms.state_event(room, &kind, server).ok()??;
        self.rooms.event_content(&id).ok()??.get("count")?.as_u64()
    }

    async fn anchor(&self, room: &RoomId, server: &str, count: u64, hash: Option<&str>) {
        // Before the executor has accepted the patient's invitation it cannot send; the log
        // grows again, and is anchored then.
        if !self.rooms.is_joined(room, &self.user).unwrap_or(false) {
            return;
        }
        let content = json!({ "count": count, "hash": hash });
        if let Err(err) = self
            .rooms
            .append(room, &self.user, CHECKPOINT_EVENT_TYPE, Some(server), content, None)
            .await
        {
            tracing::warn!(%room, server, %err, "a read-log checkpoint could not be sent");
        }
    }

    async fn run(&self) {
        loop {
            let now = crate::clock::now_ms();
            let (checks, next) = match schedule::due(&self.storage, now, CHECKS_PER_ROUND) {
                Ok(due) => due,
                Err(err) => {
                    tracing::error!(%err, "contract executor: reading the schedule failed");
                    tokio::time::sleep(MAX_SLEEP).await;
                    continue;
                }
            };
            let full_round = checks.len() == CHECKS_PER_ROUND;
            self.act_on(checks, now).await;
            if full_round {
                continue;
            }
            let until_next = next.map_or(MAX_SLEEP, |next| {
                Duration::from_millis(next.saturating_sub(crate::clock::now_ms()))
            });
            // A revocation's check is due at once but written by another task: looking every
            // `MAX_SLEEP` acts on it within half a second. (Waking on every stream position
            // instead cost a schedule scan per message under load.)
            tokio::time::sleep(until_next.min(MAX_SLEEP)).await;
        }
    }

    /// Acts on a round's checks at once, one task per user and room (two checks of the same
    /// place in one round act once): the rooms' group commit then makes many removals
    /// durable together instead of one fsync each. Then clears the round's rows in one write,
    /// scheduling again those that failed.
    async fn act_on(&self, checks: Vec<schedule::DueCheck>, now_ms: u64) {
        if checks.is_empty() {
            return;
        }
        let mut places: Vec<(OwnedRoomId, OwnedUserId)> =
            checks.iter().map(|check| (check.room.clone(), check.user.clone())).collect();
        places.sort();
        places.dedup();
        let mut acting = tokio::task::JoinSet::new();
        for (room, user) in places {
            let this = self.clone();
            acting.spawn(async move {
                match this.act(&room, &user, now_ms).await {
                    Ok(()) => None,
                    Err(err) => {
                        tracing::info!(%room, %err, "contract executor: a check failed; tried again later");
                        Some((room, user))
                    }
                }
            });
        }
        let mut failed_places = Vec::new();
        while let Some(outcome) = acting.join_next().await {
            failed_places.extend(outcome.ok().flatten());
        }
        let failed: Vec<&schedule::DueCheck> = checks
            .iter()
            .filter(|check| {
                failed_places.iter().any(|(room, user)| *room == check.room && *user == check.user)
            })
            .collect();
        if let Err(err) = schedule::done(&self.storage, &checks, &failed, now_ms).await {
            tracing::error!(%err, "contract executor: clearing checks failed");
        }
    }

    /// Acts on one user's place in one room at `now_ms`.
    async fn act(&self, room: &RoomId, user: &UserId, now_ms: u64) -> Result<(), RoomError> {
        let Some(place) = self.rooms.record_place_of(room).await? else { return Ok(()) };
        let patient_is_ours = UserId::parse(place.patient())
            .is_ok_and(|patient| patient.server_name() == self.rooms.server_name());
        if !patient_is_ours {
            return Ok(());
        }
        if user == self.user || user.as_str() == place.patient() {
            return self.accept_invite(room).await;
        }
        if let RecordPlace::Space(space) = &place
            && let Some(reason) = self.break_glass_asked(room, user)?
        {
            return self.break_glass(room, space, user, &reason, now_ms).await;
        }
        // Whatever room the check is about, the contract is the space's: end it if due,
        // then look at the user's place in every room of the record.
        let (space_id, space) = match place {
            RecordPlace::Space(space) => (room.to_owned(), space),
            RecordPlace::ClassRoom(class_room) => {
                let space_id = RoomId::parse(class_room.space.as_str())
                    .map_err(|err| RoomError::Invalid(err.to_string()))?;
                let Some(RecordPlace::Space(space)) = self.rooms.record_place_of(&space_id).await?
                else {
                    let reason = "no active contract covers this room";
                    return self.remove_if_uncovered(room, user, now_ms, reason).await;
                };
                (space_id, space)
            }
        };
        let reason = self.end_contract_if_due(&space_id, user, now_ms).await?;
        let class_rooms = space.classes.values().flatten();
        let mut rooms: Vec<OwnedRoomId> =
            class_rooms.filter_map(|id| RoomId::parse(id.as_str()).ok()).collect();
        rooms.extend([room.to_owned(), space_id]);
        rooms.dedup();
        for record_room in rooms {
            self.remove_if_uncovered(&record_room, user, now_ms, &reason).await?;
        }
        Ok(())
    }

    /// The reason of a pending knock of `user` on the space that invokes break-glass.
    fn break_glass_asked(
        &self,
        space: &RoomId,
        user: &UserId,
    ) -> Result<Option<String>, RoomError> {
        if self.rooms.membership(space, user)?.as_deref() != Some("knock") {
            return Ok(None);
        }
        let kind = ruma::events::StateEventType::RoomMember;
        let Some(event_id) = self.rooms.state_event(space, &kind, user.as_str())? else {
            return Ok(None);
        };
        let Some(content) = self.rooms.event_content(&event_id)? else { return Ok(None) };
        let asked = &content[BREAK_GLASS_KEY];
        Ok(asked.is_object().then(|| asked["reason"].as_str().unwrap_or_default().to_owned()))
    }

    /// Answers a clinician's break-glass knock: under the standing emergency contract of
    /// their server, a personal contract (purpose `BTG`) for a short window, a notice to the
    /// patient in the space, and invitations to the space and the emergency classes' rooms
    /// (those the contract's custodian holds are left to the custodian, which invites with
    /// the keys); the window's end is then an ordinary contract end. A knock no standing contract
    /// admits is turned away with the reason.
    async fn break_glass(
        &self,
        space_id: &RoomId,
        space: &RecordSpace,
        clinician: &UserId,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), RoomError> {
        let standing =
            self.rooms.standing_contract_of(space_id.as_str(), clinician.server_name())?;
        let contract_id = ContractId::parse(&format!("btg-{}", random::string(random::HEX, 16)))
            .ok_or_else(|| RoomError::Invalid("a break-glass contract ID".to_owned()))?;
        let Some(user) = medrix_records::UserId::parse(clinician.as_str()) else { return Ok(()) };
        let granted = match &standing {
            Some(standing) => break_glass_grant(standing, &user, now_ms, contract_id, reason)
                .map_err(|err| match err {
                    BreakGlassError::Denied(why) => why.as_str().to_owned(),
                    BreakGlassError::Invalid(err) => err.to_string(),
                }),
            None => Err("no standing emergency contract for this server".to_owned()),
        };
        let grant = match granted {
            Ok(grant) => grant,
            Err(why) => {
                let content = json!({ "membership": "leave", "reason": format!("break-glass refused: {why}") });
                self.rooms
                    .append(
                        space_id,
                        &self.user,
                        "m.room.member",
                        Some(clinician.as_str()),
                        content,
                        None,
                    )
                    .await?;
                return Ok(());
            }
        };
        let (content, state_key) = (grant.to_content(), grant.state_key());
        self.rooms
            .append(space_id, &self.user, GRANT_EVENT_TYPE, Some(&state_key), content, None)
            .await?;
        let classes: Vec<&str> = grant.classes.iter().map(|class| class.as_str()).collect();
        let notice = json!({
            "msgtype": "m.notice",
            "body": format!(
                "Break-glass: {clinician} opened {} until {} under emergency contract {}. Reason: {reason}",
                classes.join(", "),
                grant.valid.end(),
                grant.break_glass.as_ref().map_or("", |origin| origin.standing_contract.as_str()),
            ),
            "org.medrix.break_glass_notice": {
                "contract_id": grant.contract_id, "clinician": clinician,
                "classes": classes, "until": grant.valid.end(), "reason": reason,
            },
        });
        self.rooms.append(space_id, &self.user, "m.room.message", None, notice, None).await?;
        // Collected before the first await: the iterator's closures would make the task's
        // future not `Send`.
        let mut rooms: Vec<OwnedRoomId> = vec![space_id.to_owned()];
        for class in &grant.classes {
            for id in space.classes.get(class).into_iter().flatten() {
                rooms.extend(RoomId::parse(id.as_str()).ok());
            }
        }
        let custodian = standing
            .and_then(|standing| standing.custodian)
            .and_then(|custodian| UserId::parse(custodian.as_str()).ok());
        for room in rooms {
            // A class room the custodian holds (or is invited to with its keys, and will
            // join) is the custodian's to open: its invitation carries the keys (MSC4268
            // accepts a key bundle only from the inviter).
            if let Some(custodian) = &custodian
                && room != space_id
                && matches!(
                    self.rooms.membership(&room, custodian)?.as_deref(),
                    Some("join" | "invite")
                )
            {
                continue;
            }
            self.invite(&room, clinician).await?;
        }
        Ok(())
    }

    async fn invite(&self, room: &RoomId, user: &UserId) -> Result<(), RoomError> {
        let content = json!({ "membership": "invite", "reason": "break-glass" });
        let cosign = match &self.federated {
            Some(federated) => federated.cosigner_for(room, &self.user, user)?,
            None => None,
        };
        self.rooms
            .append_cosigned(
                room,
                &self.user,
                "m.room.member",
                Some(user.as_str()),
                content,
                None,
                cosign,
            )
            .await
            .map(drop)
    }

    async fn accept_invite(&self, room: &RoomId) -> Result<(), RoomError> {
        if self.rooms.membership(room, &self.user)?.as_deref() == Some("invite") {
            let content = json!({ "membership": "join" });
            self.rooms
                .append(room, &self.user, "m.room.member", Some(self.user.as_str()), content, None)
                .await?;
        }
        Ok(())
    }

    /// Marks the user's contract `expired` when its end has passed; answers the reason to
    /// give for a removal, naming the contract.
    async fn end_contract_if_due(
        &self,
        space: &RoomId,
        user: &UserId,
        now_ms: u64,
    ) -> Result<String, RoomError> {
        let Some(mut grant) = self.rooms.contract_of(space.as_str(), user)? else {
            return Ok("no contract covers this room".to_owned());
        };
        if grant.status == Status::Active && now_ms >= grant.valid.end() {
            grant.status = Status::Expired;
            let (content, state_key) = (grant.to_content(), grant.state_key());
            self.rooms
                .append(space, &self.user, GRANT_EVENT_TYPE, Some(&state_key), content, None)
                .await?;
        }
        Ok(match grant.status {
            Status::Active => format!("contract {} does not cover this room", grant.contract_id),
            Status::Revoked => format!("contract {} was revoked", grant.contract_id),
            Status::Expired => format!("contract {} expired", grant.contract_id),
        })
    }

    /// Removes the user from the room if they are in it or invited and no contract covers
    /// them there now.
    async fn remove_if_uncovered(
        &self,
        room: &RoomId,
        user: &UserId,
        now_ms: u64,
        reason: &str,
    ) -> Result<(), RoomError> {
        let membership = self.rooms.membership(room, user)?;
        if !matches!(membership.as_deref(), Some("join" | "invite")) {
            return Ok(());
        }
        match self.rooms.check_received_membership(room, user, "join", now_ms).await {
            Ok(()) => Ok(()),
            Err(RoomError::Forbidden(_)) => {
                let content = json!({ "membership": "leave", "reason": reason });
                self.rooms
                    .append(room, &self.user, "m.room.member", Some(user.as_str()), content, None)
                    .await
                    .map(drop)
            }
            Err(err) => Err(err),
        }
    }
}
