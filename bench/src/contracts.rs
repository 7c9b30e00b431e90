//! `loadgen contracts`: the contract executor under load. Registers patients, gives each a
//! record space, puts many active consent contracts into the spaces (100,000 by default),
//! all ending at one moment (`burst`) or spread over a window (`spread`), then waits for the
//! server's executor to mark every one `expired` and reports how late each was (the expired
//! event's `origin_server_ts` minus the contract's `valid.end`), the executor's throughput,
//! and the server's memory (VmRSS) before the contracts, with them scheduled, and after.
//!
//! The contracts name grantees who are not members (100,000 provider accounts would measure
//! registration, not the executor): each expiry is one signed state event, the executor's
//! share of every end. Removals of members come on top of it in real use.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use http::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    http::{Conn, encode_component},
    matrix::{self, Account},
    procfs,
    stats::{Summary, summarise},
};

const TIMEOUT: Duration = Duration::from_secs(120);

/// How the contracts' ends fall.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum Ends {
    /// Every contract ends at the same millisecond.
    Burst,
    /// Ends evenly spread over `--spread-secs`.
    Spread,
}

pub struct ContractsConfig {
    pub addr: SocketAddr,
    pub registration_token: Option<String>,
    pub patients: usize,
    pub per_patient: usize,
    pub ends: Ends,
    pub spread: Duration,
    /// Connections putting contracts at once.
    pub connections: usize,
    pub server_pid: Option<u32>,
}

#[derive(Serialize)]
pub struct ContractsResult {
    pub contracts: usize,
    pub patients: usize,
    pub ends: Ends,
    pub spread_secs: u64,
    /// Contracts put per second during setup (each a signed state event).
    pub put_per_second: f64,
    /// How late the executor marked each contract expired.
    pub lateness: Option<Summary>,
    /// Contracts never marked expired within the wait.
    pub missed: usize,
    /// Expired per second from the first end to the last expiry.
    pub expired_per_second: f64,
    pub rss_before_kib: Option<u64>,
    pub rss_scheduled_kib: Option<u64>,
    pub rss_after_kib: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|pid| procfs::status_kib(&pid.to_string(), "VmRSS"))
}

/// One patient: their account, user ID and record space.
struct Patient {
    account: Account,
    space: String,
}

/// Whether contract `slot` of patient `index` (see `put_contracts`) is marked expired now.
async fn contract_expired(
    conn: &mut Conn,
    patient: &Patient,
    index: usize,
    slot: usize,
) -> Result<bool, String> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/org.medrix.grant/{}",
        encode_component(&patient.space),
        encode_component(&format!("user:{}", grantee_of(index, slot))),
    );
    let answer = conn
        .request::<Value>(Method::GET, &path, Some(&patient.account.access_token), None, TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    let content: Value = answer.ok_json("contract").map_err(|e| e.to_string())?;
    Ok(content["status"] == "expired")
}

fn grantee_of(patient: usize, slot: usize) -> String {
    format!("@g{patient}-{slot}:bench.invalid")
}

pub async fn run(config: &ContractsConfig) -> Result<ContractsResult, String> {
    let err = |e: crate::http::HttpError| e.to_string();
    let patients = setup_patients(config).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before_kib = rss(config.server_pid);

    // The ends lie after the setup: estimated from a first slice of puts, with room to spare.
    let total = config.patients * config.per_patient;
    let patients = Arc::new(patients);
    let probe = put_contracts(config, &patients, 0..config.per_patient.min(2), u64::MAX).await?;
    let rate = probe.max(1.0);
    let lead_ms = ((total as f64 / rate) * 1500.0) as u64 + 10_000;
    let base = now_ms() + lead_ms;
    eprintln!("contracts: {rate:.0} puts/s; all {total} end from {} s from now", lead_ms / 1000);
    let started = Instant::now();
    let put_rate = put_contracts(config, &patients, 0..config.per_patient, base).await?;
    eprintln!("contracts: {total} put in {:.1} s", started.elapsed().as_secs_f64());
    if now_ms() >= base {
        return Err("the setup outlasted the lead time; contracts ended before all were put".into());
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_scheduled_kib = rss(config.server_pid);

    let last_end = base + config.spread.as_millis() as u64;
    let deadline = last_end + 120_000;
    let mut conn = Conn::open(config.addr).await.map_err(err)?;
    tokio::time::sleep(Duration::from_millis(last_end.saturating_sub(now_ms()) + 1_000)).await;
    // Waiting reads one contract per patient per round (the first not yet seen expired), so
    // the waiting costs the server little beside the executor it measures; the lateness
    // itself comes from the events' `origin_server_ts`, whenever they are read.
    let mut seen = vec![0usize; patients.len()];
    loop {
        for (index, patient) in patients.iter().enumerate() {
            while seen[index] < config.per_patient
                && contract_expired(&mut conn, patient, index, seen[index]).await?
            {
                seen[index] += 1;
            }
        }
        if seen.iter().all(|&count| count >= config.per_patient) || now_ms() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let mut lateness = Vec::new();
    let mut last_expired = 0u64;
    for patient in patients.iter() {
        let path = format!("/_matrix/client/v3/rooms/{}/state", encode_component(&patient.space));
        let answer = conn
            .request::<Value>(
                Method::GET,
                &path,
                Some(&patient.account.access_token),
                None,
                TIMEOUT,
            )
            .await
            .map_err(err)?;
        let state: Vec<Value> = answer.ok_json("state").map_err(err)?;
        for event in state.iter().filter(|e| e["type"] == "org.medrix.grant") {
            if event["content"]["status"] == "expired" {
                let end = event["content"]["valid"]["end"].as_u64().unwrap_or(0);
                let at = event["origin_server_ts"].as_u64().unwrap_or(0);
                last_expired = last_expired.max(at);
                lateness.push(Duration::from_millis(at.saturating_sub(end)));
            }
        }
    }
    let expired = lateness.len();
    let window_secs = (last_expired.saturating_sub(base) as f64 / 1000.0).max(0.001);
    Ok(ContractsResult {
        contracts: total,
        patients: config.patients,
        ends: config.ends,
        spread_secs: config.spread.as_secs(),
        put_per_second: put_rate,
        lateness: summarise(lateness),
        missed: total - expired,
        expired_per_second: expired as f64 / window_secs,
        rss_before_kib,
        rss_scheduled_kib,
        rss_after_kib: rss(config.server_pid),
    })
}

/// Registers the patients and creates each one's record space.
async fn setup_patients(config: &ContractsConfig) -> Result<Vec<Patient>, String> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.connections.min(config.patients).max(1) {
        let (next, addr, token, count) =
            (next.clone(), config.addr, config.registration_token.clone(), config.patients);
        workers.spawn(async move {
            let mut conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
            let mut made = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return Ok::<_, String>(made);
                }
                let name = format!("patient{n}");
                let account =
                    matrix::register(&mut conn, &name, "bench-password", token.as_deref())
                        .await
                        .map_err(|e| e.to_string())?;
                let user = matrix::user_id(&mut conn, &account).await?;
                // As a patient's client makes a record (spec/records.md §2): the executor
                // invited, with the power to act.
                let server_name = user.split_once(':').map_or("", |(_, server)| server);
                let executor = format!("@medrix-contracts:{server_name}");
                let body = json!({
                    "preset": "private_chat",
                    "power_level_content_override": {"users": {&executor: 100}},
                    "invite": [&executor],
                    "creation_content": {"type": "m.space"},
                    "initial_state": [{"type": "org.medrix.record", "state_key": "",
                        "content": {"patient": user, "classes": {}}}],
                });
                let created = conn
                    .request(
                        Method::POST,
                        "/_matrix/client/v3/createRoom",
                        Some(&account.access_token),
                        Some(&body),
                        TIMEOUT,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                let created: Value = created.ok_json("createRoom").map_err(|e| e.to_string())?;
                let space = created["room_id"].as_str().unwrap_or_default().to_owned();
                made.push(Patient { account, space });
            }
        });
    }
    let mut patients = Vec::new();
    while let Some(made) = workers.join_next().await {
        patients.extend(made.map_err(|e| e.to_string())??);
    }
    Ok(patients)
}

/// Puts contracts `slots` of every patient (contract `i` of patient `p` names grantee
/// `@g<p>-<i>:bench.invalid`); answers the puts per second. Ends are `base` plus the
/// contract's share of the spread (`u64::MAX`: a probe whose contracts never end).
async fn put_contracts(
    config: &ContractsConfig,
    patients: &Arc<Vec<Patient>>,
    slots: std::ops::Range<usize>,
    base: u64,
) -> Result<f64, String> {
    let jobs: Arc<Vec<(usize, usize)>> =
        Arc::new((0..patients.len()).flat_map(|p| slots.clone().map(move |i| (p, i))).collect());
    let total = config.patients * config.per_patient;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.connections.max(1) {
        let (jobs, next, patients, addr) =
            (jobs.clone(), next.clone(), patients.clone(), config.addr);
        let (ends, spread_ms, per_patient) =
            (config.ends, config.spread.as_millis() as u64, config.per_patient);
        workers.spawn(async move {
            let mut conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
            loop {
                let job = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(p, i)) = jobs.get(job) else { return Ok::<_, String>(()) };
                let end = match (base, ends) {
                    (u64::MAX, _) => 253_402_300_799_999,
                    (base, Ends::Burst) => base,
                    (base, Ends::Spread) => {
                        base + spread_ms * (p * per_patient + i) as u64 / total.max(1) as u64
                    }
                };
                let grantee = grantee_of(p, i);
                let content = json!({
                    "contract_id": format!("c{p}-{i}"), "grantee": grantee, "purpose": "TREAT",
                    "classes": ["laboratory"], "data_period": {"start": null, "end": null},
                    "valid": {"start": 0, "end": end}, "mode": "read",
                    "text": "benchmark contract", "status": "active",
                });
                let patient = &patients[p];
                let path = format!(
                    "/_matrix/client/v3/rooms/{}/state/org.medrix.grant/{}",
                    encode_component(&patient.space),
                    encode_component(&format!("user:{grantee}")),
                );
                let answer = conn
                    .request(
                        Method::PUT,
                        &path,
                        Some(&patient.account.access_token),
                        Some(&content),
                        TIMEOUT,
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                answer.ok_json::<Value>("put contract").map_err(|e| e.to_string())?;
            }
        });
    }
    while let Some(done) = workers.join_next().await {
        done.map_err(|e| e.to_string())??;
    }
    Ok(jobs.len() as f64 / started.elapsed().as_secs_f64().max(0.001))
}
