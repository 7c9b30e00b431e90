//! `loadgen federation`: federation ingest. loadgen plays a remote homeserver (`peer`), joins
//! its user to a public room on the server under test, and sends that server a line of
//! signed `m.room.message` PDUs (`chain`) in `/send` transactions, one transaction in flight
//! as a Matrix server sends to one destination; it counts the PDUs the server accepts per
//! second, checks they were stored, and times raw ed25519 verification of the same events on
//! one core of the same machine, in the same process, as the yardstick.

pub mod certs;
mod chain;
mod peer;
pub mod table;

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http::{Method, StatusCode};
use serde::{Deserialize, Serialize};

pub use self::chain::VerifyRates;
use self::{
    chain::Transaction,
    peer::{Joined, Peer},
};
use crate::{
    http::Conn,
    matrix, procfs,
    stats::{Summary, summarise},
};

/// What one run is asked to do.
pub struct FederationConfig {
    /// The server under test: its client API (plain HTTP) and its federation server name,
    /// `127.0.0.1:<port>` (its TLS listener).
    pub client_addr: SocketAddr,
    pub server_name: String,
    pub registration_token: Option<String>,
    /// Where `loadgen federation-certs` wrote the CA and the certificate.
    pub certs: PathBuf,
    pub room_version: String,
    pub pdus: usize,
    pub per_transaction: usize,
    /// Transactions in flight per origin; a server sends one at a time per destination (1).
    pub in_flight: usize,
    /// Remote homeservers sending at once, each to a room of its own; the PDUs are shared
    /// out among them.
    pub origins: usize,
    /// Stop sending new transactions after this long (rates stay comparable).
    pub max_duration: Option<Duration>,
    pub transaction_timeout: Duration,
    pub server_pid: Option<u32>,
}

/// One server's federation ingest in one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FederationResult {
    pub server: String,
    pub room_version: String,
    pub pdus_per_transaction: usize,
    pub in_flight: usize,
    /// Remote homeservers sending at once (1 in results written before there was a choice).
    #[serde(default = "one")]
    pub origins: usize,
    /// Built and signed before the clock; sent: those in transactions sent before the time box.
    pub pdus_built: usize,
    pub pdus_sent: usize,
    /// No `error` in the answer's `pdus` map for them.
    pub pdus_accepted: usize,
    /// An `error`, missing from the answer, or in a transaction that failed.
    pub pdus_not_accepted: usize,
    /// The first few reasons given for PDUs not accepted.
    pub errors: Vec<String>,
    pub transactions_sent: usize,
    /// From the first send to the last accepted PDU readable by the local user.
    pub load_seconds: f64,
    pub accepted_per_second: f64,
    pub transaction_round_trip: Option<Summary>,
    /// From sending a transaction to its last PDU readable through the client API.
    pub transaction_to_stored: Option<Summary>,
    /// The server's CPU time during the load, in seconds (user + system).
    pub server_cpu_seconds: Option<f64>,
    pub loadgen_cpu_seconds: Option<f64>,
    /// The local user's `/messages` count of the peer's messages after the load.
    pub stored_messages: Option<usize>,
    /// Whether the local user can read the last accepted PDU through `/event`.
    pub last_event_readable: bool,
    /// Single-core yardsticks measured in this process before the load.
    pub rates: VerifyRates,
}

fn one() -> usize {
    1
}

impl FederationResult {
    /// Accepted PDUs per second of the server's CPU time.
    pub fn accepted_per_server_cpu_second(&self) -> Option<f64> {
        self.server_cpu_seconds.filter(|s| *s > 0.0).map(|s| self.pdus_accepted as f64 / s)
    }
}

/// One remote homeserver's part of the load: its room, its user's join and its transactions.
struct Origin {
    peer: Arc<Peer>,
    room_id: String,
    joined: Arc<Joined>,
    events: Arc<Vec<medrix_protocol::build::SignedEvent>>,
    transactions: Arc<Vec<Transaction>>,
}

/// Starts a peer, has the local user create a room for it and the peer's user join it, and
/// builds and signs its share of the PDUs.
async fn set_up_origin(
    server: &str,
    config: &FederationConfig,
    tls: &tokio_rustls::TlsConnector,
    client: &mut Conn,
    account: &matrix::Account,
    pdus: usize,
) -> Result<Origin, String> {
    let peer = Arc::new(Peer::start(certs::acceptor(&config.certs)?, &config.server_name).await?);
    let federation_addr = peer::loopback_server_addr(&config.server_name)?;
    let room_id = matrix::create_public_room(client, account, Some(&config.room_version))
        .await
        .map_err(|e| format!("createRoom: {e}"))?;
    let mut setup =
        Conn::open_tls(federation_addr, tls.clone()).await.map_err(|e| e.to_string())?;
    let joined = Arc::new(peer.join(&mut setup, &room_id).await.map_err(|e| format!("join: {e}"))?);
    eprintln!(
        "loadgen: {server}: {} joined {room_id} (version {}); building {pdus} PDUs",
        peer.user_id(),
        joined.version,
    );
    let events = Arc::new(chain::build_events(&peer, &joined, pdus)?);
    let transactions = Arc::new(chain::transactions(&peer, &events, config.per_transaction)?);
    Ok(Origin { peer, room_id, joined, events, transactions })
}

fn now_nanos() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.subsec_nanos())
}

/// Sets up the rooms, builds the load, measures the yardsticks, then runs the load.
pub async fn run(server: &str, config: &FederationConfig) -> Result<FederationResult, String> {
    let tls = certs::connector(&config.certs)?;
    let federation_addr = peer::loopback_server_addr(&config.server_name)?;

    // A local user makes one room per origin; each origin's user joins its room over federation.
    let mut client = Conn::open(config.client_addr).await.map_err(|e| e.to_string())?;
    // Unique enough for a user name on a server started fresh for the run.
    let run_id = format!("{:x}{:x}", std::process::id(), now_nanos());
    let account = matrix::register(
        &mut client,
        &format!("fed{run_id}"),
        &format!("bench-password-{run_id}"),
        config.registration_token.as_deref(),
    )
    .await
    .map_err(|e| format!("register: {e}"))?;
    let origin_count = config.origins.max(1);
    let mut origins = Vec::with_capacity(origin_count);
    for i in 0..origin_count {
        // The PDUs are shared out, so every run ingests the same total.
        let share = config.pdus / origin_count + usize::from(i < config.pdus % origin_count);
        origins.push(set_up_origin(server, config, &tls, &mut client, &account, share).await?);
    }

    // On one core, with nothing else of this process running meanwhile.
    let first = &origins[0];
    let (p, j, e) = (first.peer.clone(), first.joined.clone(), first.events.clone());
    let rates = tokio::task::spawn_blocking(move || chain::measure_rates(&p, &j, &e))
        .await
        .map_err(|e| e.to_string())??;
    eprintln!(
        "loadgen: one core: raw ed25519 verify {:.0}/s (verify_strict {:.0}/s), \
         Medrix's whole PDU check {:.0}/s",
        rates.verify_per_second, rates.verify_strict_per_second, rates.protocol_check_per_second
    );

    // Every origin sends its own transactions in order, `in_flight` at a time.
    let mut senders = Vec::new();
    for (index, origin) in origins.iter().enumerate() {
        let next = Arc::new(AtomicUsize::new(0));
        for _ in 0..config.in_flight.max(1) {
            let federation =
                Conn::open_tls(federation_addr, tls.clone()).await.map_err(|e| e.to_string())?;
            let probe = StoredProbe {
                conn: Conn::open(config.client_addr).await.map_err(|e| e.to_string())?,
                access_token: account.access_token.clone(),
                room_id: origin.room_id.clone(),
            };
            senders.push((index, federation, probe, origin.transactions.clone(), next.clone()));
        }
    }
    let server_pid = config.server_pid.map(|pid| pid.to_string());
    let cpu = |pid: Option<&str>| pid.and_then(procfs::cpu_time);
    let (server_cpu_before, own_cpu_before) = (cpu(server_pid.as_deref()), cpu(Some("self")));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for (index, federation, probe, transactions, next) in senders {
        let (deadline, timeout) =
            (config.max_duration.map(|d| started + d), config.transaction_timeout);
        workers.spawn(async move {
            (index, send_worker(federation, probe, transactions, next, deadline, timeout).await)
        });
    }
    // Per origin: the last accepted PDU is a room's own.
    let mut per_origin: Vec<Outcome> = origins.iter().map(|_| Outcome::default()).collect();
    while let Some(done) = workers.join_next().await {
        let (index, worker) = done.map_err(|e| e.to_string())?;
        per_origin[index].merge(worker);
    }
    let load_seconds = per_origin
        .iter()
        .filter_map(|o| o.last_answer)
        .max()
        .map_or(0.0, |t| (t - started).as_secs_f64());
    let elapsed_cpu =
        |before: Option<Duration>, pid: Option<&str>| Some((cpu(pid)? - before?).as_secs_f64());
    let server_cpu_seconds = elapsed_cpu(server_cpu_before, server_pid.as_deref());
    let loadgen_cpu_seconds = elapsed_cpu(own_cpu_before, Some("self"));

    // Stored and readable: the counts the local user sees, and each room's last accepted event.
    let mut stored_messages = Some(0);
    let mut last_event_readable = true;
    for (origin, sent) in origins.iter().zip(&per_origin) {
        let stored = matrix::count_messages_from(
            &mut client,
            &account,
            &origin.room_id,
            &origin.peer.user_id(),
        )
        .await;
        match stored {
            Ok(n) => stored_messages = stored_messages.map(|total| total + n),
            Err(err) => {
                eprintln!("loadgen: {server}: counting the stored messages: {err}");
                stored_messages = None;
            }
        }
        last_event_readable &= match &sent.last_accepted {
            Some(id) => matrix::event_readable(&mut client, &account, &origin.room_id, id)
                .await
                .unwrap_or(false),
            None => false,
        };
    }
    let mut outcome = Outcome::default();
    for sent in per_origin {
        outcome.merge(sent);
    }
    let pdus_sent = outcome.sent;
    Ok(FederationResult {
        server: server.to_owned(),
        room_version: first.joined.version.as_str().to_owned(),
        pdus_per_transaction: config.per_transaction,
        in_flight: config.in_flight.max(1),
        origins: origin_count,
        pdus_built: config.pdus,
        pdus_sent,
        pdus_accepted: outcome.accepted,
        pdus_not_accepted: pdus_sent - outcome.accepted,
        errors: outcome.errors,
        transactions_sent: outcome.transactions,
        load_seconds,
        accepted_per_second: if load_seconds > 0.0 {
            outcome.accepted as f64 / load_seconds
        } else {
            0.0
        },
        transaction_round_trip: summarise(outcome.round_trips),
        transaction_to_stored: summarise(outcome.to_stored),
        server_cpu_seconds,
        loadgen_cpu_seconds,
        stored_messages,
        last_event_readable,
        rates,
    })
}

/// What the senders saw.
#[derive(Default)]
struct Outcome {
    transactions: usize,
    sent: usize,
    accepted: usize,
    errors: Vec<String>,
    round_trips: Vec<Duration>,
    to_stored: Vec<Duration>,
    /// When the last transaction's last accepted PDU was first seen stored.
    last_answer: Option<Instant>,
    /// The accepted PDU of the highest transaction index.
    last_accepted: Option<String>,
    last_accepted_index: Option<usize>,
}

/// How many reasons for PDUs not accepted are kept.
const ERRORS_KEPT: usize = 5;

impl Outcome {
    fn error(&mut self, why: String) {
        if self.errors.len() < ERRORS_KEPT {
            self.errors.push(why);
        }
    }

    fn merge(&mut self, other: Outcome) {
        self.transactions += other.transactions;
        self.sent += other.sent;
        self.accepted += other.accepted;
        for why in other.errors {
            self.error(why);
        }
        self.round_trips.extend(other.round_trips);
        self.to_stored.extend(other.to_stored);
        self.last_answer = self.last_answer.max(other.last_answer);
        if other.last_accepted_index > self.last_accepted_index {
            self.last_accepted_index = other.last_accepted_index;
            self.last_accepted = other.last_accepted;
        }
    }
}

/// The `/send` answer: one entry per PDU, `{}` or `{"error": ...}`.
#[derive(Deserialize)]
struct SendAnswer {
    #[serde(default)]
    pdus: std::collections::HashMap<String, PduResult>,
}

#[derive(Deserialize)]
struct PduResult {
    error: Option<String>,
}

/// The local user's view of the room, to see when a PDU is stored.
struct StoredProbe {
    conn: Conn,
    access_token: String,
    room_id: String,
}

/// The longest pause between two looks for a stored PDU.
const PROBE_BACKOFF_MAX: Duration = Duration::from_millis(25);

impl StoredProbe {
    /// Waits until the local user can read `event_id` (`GET /rooms/{roomId}/event/{eventId}`
    /// answers 200), looking again after 1 ms, 2 ms, ... up to every 25 ms; gives up after
    /// `timeout`.
    async fn wait_stored(&mut self, event_id: &str, timeout: Duration) -> Result<(), String> {
        let account = matrix::Account { access_token: self.access_token.clone() };
        let give_up = Instant::now() + timeout;
        let mut pause = Duration::from_millis(1);
        loop {
            if matrix::event_readable(&mut self.conn, &account, &self.room_id, event_id)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(());
            }
            if Instant::now() >= give_up {
                return Err(format!("{event_id} accepted but not readable after {timeout:?}"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(PROBE_BACKOFF_MAX);
        }
    }
}

/// Sends transactions in index order, taking the next unsent one each time, until none is
/// left or the deadline has passed. A transaction is done when its last accepted PDU is
/// readable by the local user: Synapse answers `/send` once the PDUs are staged, before it
/// has checked and stored them, and prunes a room's staging queue past 100 events, so the
/// answer alone is not the ingest (Medrix answers after storing, so its first look succeeds).
async fn send_worker(
    mut conn: Conn,
    mut probe: StoredProbe,
    transactions: Arc<Vec<Transaction>>,
    next: Arc<AtomicUsize>,
    deadline: Option<Instant>,
    timeout: Duration,
) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return outcome;
        }
        let index = next.fetch_add(1, Ordering::Relaxed);
        let Some(transaction) = transactions.get(index) else { return outcome };
        let sent_at = Instant::now();
        let answer = conn
            .request_bytes(
                Method::PUT,
                &transaction.path,
                Some(&transaction.authorization),
                Some(transaction.body.clone()),
                timeout,
            )
            .await;
        let answered_at = Instant::now();
        outcome.transactions += 1;
        outcome.sent += transaction.event_ids.len();
        let answer = match answer {
            Ok(response) if response.status == StatusCode::OK => {
                response.json::<SendAnswer>("send").map_err(|e| e.to_string())
            }
            Ok(response) => Err(format!(
                "transaction {index}: HTTP {}: {}",
                response.status.as_u16(),
                String::from_utf8_lossy(&response.body).chars().take(200).collect::<String>()
            )),
            Err(err) => Err(format!("transaction {index}: {err}")),
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(why) => {
                outcome.error(why);
                continue;
            }
        };
        outcome.round_trips.push(answered_at - sent_at);
        let mut last_accepted = None;
        for id in &transaction.event_ids {
            match answer.pdus.get(id) {
                Some(PduResult { error: None }) => {
                    outcome.accepted += 1;
                    last_accepted = Some(id);
                }
                Some(PduResult { error: Some(why) }) => outcome.error(format!("{id}: {why}")),
                None => outcome.error(format!("{id}: not in the answer")),
            }
        }
        let Some(last_accepted) = last_accepted else { continue };
        if let Err(why) = probe.wait_stored(last_accepted, timeout).await {
            outcome.error(why);
            continue;
        }
        let stored_at = Instant::now();
        outcome.to_stored.push(stored_at - sent_at);
        outcome.last_answer = Some(stored_at);
        if outcome.last_accepted_index <= Some(index) {
            outcome.last_accepted_index = Some(index);
            outcome.last_accepted = Some(last_accepted.clone());
        }
    }
}
