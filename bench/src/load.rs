//! The load: senders putting text messages into one room while observers long-poll `/sync`
//! and note when each message first reaches them.
//!
//! Every message body carries its sender, sequence number and send time (microseconds since
//! this run's epoch, one `Instant` shared by senders and observers), so an observer computes
//! the send-to-sync latency from the body alone.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use tokio::{sync::watch, task::JoinSet};

use crate::{
    http::{Conn, HttpError},
    matrix::{self, Account, SendOutcome},
    procfs,
    stats::{self, Summary},
};

/// The shape of the load and how long to wait for it.
pub struct LoadConfig {
    pub addr: SocketAddr,
    pub senders: u32,
    pub messages_per_sender: u32,
    pub in_flight: u32,
    pub observers: u32,
    /// Senders are spread over this many rooms (sender i writes to room i mod rooms); the
    /// observers are in all of them. One room is the benchmark; more show per-room limits.
    pub rooms: u32,
    pub registration_token: Option<String>,
    /// How long `/sync` long-polls are held (`timeout=`).
    pub sync_timeout: Duration,
    /// How long observers wait for missing messages once every send has been answered.
    pub drain: Duration,
    pub send_timeout: Duration,
    /// The server's process, for its CPU time and memory.
    pub server_pid: Option<u32>,
}

/// What one observer saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ObserverReport {
    /// Accepted messages seen exactly once.
    pub seen_once: u64,
    /// Accepted messages never seen.
    pub missing: u64,
    /// Messages seen more than once (counted once per message).
    pub duplicated: u64,
    /// Messages seen that were never acknowledged to their sender (timed-out sends).
    pub unacknowledged_seen: u64,
    pub syncs: u64,
    pub limited_syncs: u64,
    pub sync_errors: u64,
}

/// Everything the load measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadMeasurements {
    pub senders: u32,
    pub messages_per_sender: u32,
    pub in_flight: u32,
    pub observers: u32,
    #[serde(default = "one")]
    pub rooms: u32,
    pub attempted: u64,
    /// 200 answers carrying an event ID.
    pub accepted: u64,
    /// Everything else, by kind ("HTTP 500 M_UNKNOWN", "timeout").
    pub failures: BTreeMap<String, u64>,
    /// From the first send to the last answer.
    pub send_seconds: f64,
    pub accepted_per_second: f64,
    pub send_round_trip: Option<Summary>,
    /// Send to first sight in each observer's `/sync` (one sample per observer and message).
    pub send_to_sync: Option<Summary>,
    pub observer_reports: Vec<ObserverReport>,
    /// Every observer saw every accepted message exactly once.
    pub delivered_exactly_once: bool,
    /// From the first send until the observers are done.
    pub load_seconds: f64,
    pub server_cpu_seconds: Option<f64>,
    pub loadgen_cpu_seconds: Option<f64>,
    /// VmRSS once every user is registered and joined, just before the first send.
    #[serde(default)]
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_peak_rss_kib: Option<u64>,
}

fn one() -> u32 {
    1
}

/// A message's identity within a run: (sender, sequence number).
type MessageKey = (u32, u32);

/// The body of a benchmark message.
fn marker(run_id: &str, key: MessageKey, sent_us: u128) -> String {
    format!("medrix-bench {run_id} s{} n{} t{sent_us}", key.0, key.1)
}

/// The sender, sequence number and send time of a body written by `marker` in this run.
fn parse_marker(body: &str, run_id: &str) -> Option<(MessageKey, Duration)> {
    let mut words = body.strip_prefix("medrix-bench ")?.split(' ');
    if words.next()? != run_id {
        return None;
    }
    let sender = words.next()?.strip_prefix('s')?.parse().ok()?;
    let seq = words.next()?.strip_prefix('n')?.parse().ok()?;
    let sent_us = words.next()?.strip_prefix('t')?.parse().ok()?;
    if words.next().is_some() {
        return None;
    }
    Some(((sender, seq), Duration::from_micros(sent_us)))
}

struct SendRecord {
    key: MessageKey,
    round_trip: Duration,
    /// When the answer came, since the epoch.
    answered_at: Duration,
    outcome: SendOutcome,
}

#[derive(Default)]
struct ObserverLog {
    sightings: HashMap<MessageKey, u32>,
    latencies: Vec<Duration>,
    syncs: u64,
    limited_syncs: u64,
    sync_errors: u64,
}

/// Registers everyone, builds the room, runs the load and measures it.
pub async fn run(config: &LoadConfig) -> Result<LoadMeasurements, HttpError> {
    let run_id = run_id();
    let (room_ids, senders, mut observers) = set_up(config, &run_id).await?;
    eprintln!(
        "loadgen: {} senders and {} observers joined the room",
        senders.len(),
        observers.len()
    );

    // Each observer's position, from an initial sync after every join.
    let mut since = Vec::new();
    for (account, conn) in &mut observers {
        since.push(matrix::sync(conn, account, None, Duration::ZERO).await?.next_batch);
    }
    // Each sender's extra connections, opened before the clock starts.
    let mut sender_slots = Vec::new();
    for (index, (account, conn)) in senders.into_iter().enumerate() {
        let account = Arc::new(account);
        let mut conns = vec![conn];
        for _ in 1..config.in_flight {
            conns.push(Conn::open(config.addr).await?);
        }
        sender_slots.push((index as u32, account, conns));
    }

    let server_pid = config.server_pid.map(|pid| pid.to_string());
    let server_rss_before_kib = server_pid.as_deref().and_then(|p| procfs::status_kib(p, "VmRSS"));
    let server_cpu_before = server_pid.as_deref().and_then(procfs::cpu_time);
    let loadgen_cpu_before = procfs::cpu_time("self");
    let epoch = Instant::now();
    let expected = u64::from(config.senders) * u64::from(config.messages_per_sender);
    let (drain_deadline, deadline_seen) = watch::channel(None::<tokio::time::Instant>);

    let room_ids: Vec<Arc<str>> = room_ids.into_iter().map(Arc::from).collect();
    let run_id = Arc::<str>::from(run_id);
    let mut observing = JoinSet::new();
    for ((account, conn), since) in observers.into_iter().zip(since) {
        observing.spawn(observe(
            account,
            conn,
            since,
            room_ids.clone(),
            Arc::clone(&run_id),
            epoch,
            expected,
            config.sync_timeout,
            deadline_seen.clone(),
        ));
    }
    let mut sending = JoinSet::new();
    for (index, account, conns) in sender_slots {
        let next_seq = Arc::new(AtomicU32::new(0));
        for conn in conns {
            sending.spawn(send_loop(
                index,
                Arc::clone(&account),
                conn,
                Arc::clone(&next_seq),
                config.messages_per_sender,
                Arc::clone(&room_ids[index as usize % room_ids.len()]),
                Arc::clone(&run_id),
                epoch,
                config.send_timeout,
            ));
        }
    }

    let mut sends = Vec::new();
    while let Some(records) = sending.join_next().await {
        sends.extend(records.expect("a sender task panicked"));
    }
    let _ = drain_deadline.send(Some(tokio::time::Instant::now() + config.drain));
    let mut logs = Vec::new();
    while let Some(log) = observing.join_next().await {
        logs.push(log.expect("an observer task panicked"));
    }
    let load_seconds = epoch.elapsed().as_secs_f64();
    let server_cpu_after = server_pid.as_deref().and_then(procfs::cpu_time);
    let loadgen_cpu_after = procfs::cpu_time("self");
    let cpu_used = |before: Option<Duration>, after: Option<Duration>| {
        Some(after?.saturating_sub(before?).as_secs_f64())
    };

    let mut failures = BTreeMap::new();
    let mut accepted = HashSet::new();
    let mut round_trips = Vec::new();
    let mut last_answer = Duration::ZERO;
    for record in &sends {
        last_answer = last_answer.max(record.answered_at);
        match &record.outcome {
            SendOutcome::Accepted => {
                accepted.insert(record.key);
                round_trips.push(record.round_trip);
            }
            SendOutcome::Failed(kind) => *failures.entry(kind.clone()).or_insert(0) += 1,
        }
    }
    let send_seconds = last_answer.as_secs_f64();
    let mut latencies = Vec::new();
    let mut observer_reports = Vec::new();
    for log in logs {
        observer_reports.push(judge(&log, &accepted));
        latencies.extend(log.latencies);
    }
    let delivered_exactly_once =
        observer_reports.iter().all(|report| report.missing == 0 && report.duplicated == 0);
    Ok(LoadMeasurements {
        senders: config.senders,
        messages_per_sender: config.messages_per_sender,
        in_flight: config.in_flight,
        observers: config.observers,
        rooms: config.rooms,
        attempted: sends.len() as u64,
        accepted: accepted.len() as u64,
        failures,
        send_seconds,
        accepted_per_second: if send_seconds > 0.0 {
            accepted.len() as f64 / send_seconds
        } else {
            0.0
        },
        send_round_trip: stats::summarise(round_trips),
        send_to_sync: stats::summarise(latencies),
        observer_reports,
        delivered_exactly_once,
        load_seconds,
        server_cpu_seconds: cpu_used(server_cpu_before, server_cpu_after),
        loadgen_cpu_seconds: cpu_used(loadgen_cpu_before, loadgen_cpu_after),
        server_rss_before_kib,
        server_rss_after_kib: server_pid.as_deref().and_then(|p| procfs::status_kib(p, "VmRSS")),
        server_peak_rss_kib: server_pid.as_deref().and_then(|p| procfs::status_kib(p, "VmHWM")),
    })
}

/// Compares what an observer saw with what the senders were told was accepted.
fn judge(log: &ObserverLog, accepted: &HashSet<MessageKey>) -> ObserverReport {
    let mut report = ObserverReport {
        seen_once: 0,
        missing: 0,
        duplicated: 0,
        unacknowledged_seen: 0,
        syncs: log.syncs,
        limited_syncs: log.limited_syncs,
        sync_errors: log.sync_errors,
    };
    for key in accepted {
        match log.sightings.get(key).copied().unwrap_or(0) {
            0 => report.missing += 1,
            1 => report.seen_once += 1,
            _ => {}
        }
    }
    for (key, count) in &log.sightings {
        if *count > 1 {
            report.duplicated += 1;
        }
        if !accepted.contains(key) {
            report.unacknowledged_seen += 1;
        }
    }
    report
}

/// Registers the rooms' creator, the senders and the observers; each sender joins its room,
/// each observer every room.
async fn set_up(
    config: &LoadConfig,
    run_id: &str,
) -> Result<(Vec<String>, Vec<(Account, Conn)>, Vec<(Account, Conn)>), HttpError> {
    let token = config.registration_token.as_deref();
    let password = format!("bench-password-{run_id}");
    let mut conn = Conn::open(config.addr).await?;
    let owner = matrix::register(&mut conn, &format!("b{run_id}owner"), &password, token).await?;
    let mut room_ids = Vec::new();
    for _ in 0..config.rooms.max(1) {
        room_ids.push(matrix::create_public_room(&mut conn, &owner, None).await?);
    }

    let mut joining = JoinSet::new();
    let roles =
        (0..config.senders).map(|i| (true, i)).chain((0..config.observers).map(|i| (false, i)));
    for (is_sender, index) in roles {
        let username = format!("b{run_id}{}{index}", if is_sender { 's' } else { 'o' });
        let rooms = if is_sender {
            vec![room_ids[index as usize % room_ids.len()].clone()]
        } else {
            room_ids.clone()
        };
        let (addr, password, token) =
            (config.addr, password.clone(), config.registration_token.clone());
        joining.spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let account =
                matrix::register(&mut conn, &username, &password, token.as_deref()).await?;
            for room_id in &rooms {
                matrix::join(&mut conn, &account, room_id).await?;
            }
            Ok::<_, HttpError>((is_sender, index, account, conn))
        });
    }
    let (mut senders, mut observers) = (Vec::new(), Vec::new());
    while let Some(joined) = joining.join_next().await {
        let (is_sender, index, account, conn) = joined.expect("a setup task panicked")?;
        let list = if is_sender { &mut senders } else { &mut observers };
        list.push((index, account, conn));
    }
    senders.sort_by_key(|(index, ..)| *index);
    observers.sort_by_key(|(index, ..)| *index);
    let strip =
        |list: Vec<(u32, Account, Conn)>| list.into_iter().map(|(_, a, c)| (a, c)).collect();
    Ok((room_ids, strip(senders), strip(observers)))
}

/// One in-flight slot of a sender: sends the sender's next message until there is none.
#[allow(clippy::too_many_arguments)]
async fn send_loop(
    sender: u32,
    account: Arc<Account>,
    mut conn: Conn,
    next_seq: Arc<AtomicU32>,
    messages: u32,
    room_id: Arc<str>,
    run_id: Arc<str>,
    epoch: Instant,
    timeout: Duration,
) -> Vec<SendRecord> {
    let mut records = Vec::new();
    loop {
        let seq = next_seq.fetch_add(1, Ordering::Relaxed);
        if seq >= messages {
            return records;
        }
        let key = (sender, seq);
        let started = Instant::now();
        let body = marker(&run_id, key, started.duration_since(epoch).as_micros());
        let txn_id = format!("{run_id}.{seq}");
        let outcome =
            matrix::send_text(&mut conn, &account, &room_id, &txn_id, &body, timeout).await;
        let answered = Instant::now();
        records.push(SendRecord {
            key,
            round_trip: answered - started,
            answered_at: answered - epoch,
            outcome,
        });
    }
}

/// One observer: long-polls `/sync` until it has seen `expected` messages, or the drain
/// deadline passes.
#[allow(clippy::too_many_arguments)]
async fn observe(
    account: Account,
    mut conn: Conn,
    mut since: String,
    room_ids: Vec<Arc<str>>,
    run_id: Arc<str>,
    epoch: Instant,
    expected: u64,
    sync_timeout: Duration,
    mut deadline: watch::Receiver<Option<tokio::time::Instant>>,
) -> ObserverLog {
    let mut log = ObserverLog::default();
    let stop = async move {
        loop {
            let set = *deadline.borrow_and_update();
            if let Some(at) = set {
                tokio::time::sleep_until(at).await;
                return;
            }
            if deadline.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::pin!(stop);
    while (log.sightings.len() as u64) < expected {
        let answer = tokio::select! {
            () = &mut stop => break,
            answer = matrix::sync(&mut conn, &account, Some(&since), sync_timeout) => answer,
        };
        let seen_at = epoch.elapsed();
        let response = match answer {
            Ok(response) => response,
            Err(err) => {
                log.sync_errors += 1;
                if log.sync_errors == 1 {
                    eprintln!("loadgen: observer sync failed: {err}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        log.syncs += 1;
        since = response.next_batch;
        for room_id in &room_ids {
            let Some(room) = response.rooms.join.get(&**room_id) else { continue };
            if room.timeline.limited {
                log.limited_syncs += 1;
            }
            for event in &room.timeline.events {
                let Some(body) = event.message_body() else { continue };
                let Some((key, sent_at)) = parse_marker(&body, &run_id) else { continue };
                let count = log.sightings.entry(key).or_insert(0);
                *count += 1;
                if *count == 1 {
                    log.latencies.push(seen_at.saturating_sub(sent_at));
                }
            }
        }
    }
    log
}

/// A short lowercase ID that keeps this run's user names and transaction IDs apart from any
/// earlier run against the same server.
fn run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut n = millis % 36u128.pow(6);
    let mut id = String::new();
    for _ in 0..6 {
        id.push(char::from_digit((n % 36) as u32, 36).expect("digit below 36"));
        n /= 36;
    }
    id
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_reads_back_as_written_and_only_in_its_own_run() {
        let body = marker("abc123", (7, 42), 1_234_567);
        assert_eq!(
            parse_marker(&body, "abc123"),
            Some(((7, 42), Duration::from_micros(1_234_567)))
        );
        assert_eq!(parse_marker(&body, "zzz999"), None);
        assert_eq!(parse_marker("hello", "abc123"), None);
        assert_eq!(parse_marker(&format!("{body} extra"), "abc123"), None);
    }

    #[test]
    fn judging_counts_missing_duplicated_and_unacknowledged_messages() {
        let accepted: HashSet<MessageKey> = [(0, 0), (0, 1), (1, 0)].into_iter().collect();
        let log = ObserverLog {
            sightings: [((0, 0), 1), ((0, 1), 2), ((9, 9), 1)].into_iter().collect(),
            ..ObserverLog::default()
        };
        let report = judge(&log, &accepted);
        assert_eq!(report.seen_once, 1);
        assert_eq!(report.missing, 1);
        assert_eq!(report.duplicated, 1);
        assert_eq!(report.unacknowledged_seen, 1);
    }

    #[test]
    fn run_ids_are_short_lowercase_and_alphanumeric() {
        let id = run_id();
        assert_eq!(id.len(), 6);
        assert!(id.chars().all(|c| c.is_ascii_digit() || c.is_ascii_lowercase()));
    }
}
