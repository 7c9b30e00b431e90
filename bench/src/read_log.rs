//! `loadgen read-log`: what the read log costs readers (issue 16's benchmark). Two rooms that
//! differ only in being part of a patient's record: a record class room, whose every read is
//! logged (an entry made durable before the answer), and a plain room of the same members and
//! messages, whose reads are not. The same number of readers reads each as fast as it can,
//! in alternating rounds so drift in the machine falls on both alike: `/messages` pages and
//! initial `/sync`s (each reader is in one of the rooms only, so a sync reads that room).
//!
//! The readers of the record room hold contracts for its class, as providers would.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http::Method;
use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    http::{Conn, encode_component},
    matrix::{self, Account},
};

const TIMEOUT: Duration = Duration::from_secs(60);

pub struct ReadLogConfig {
    pub addr: SocketAddr,
    pub registration_token: Option<String>,
    /// Readers per room.
    pub readers: usize,
    /// Messages in each room.
    pub messages: usize,
    /// Length of one measuring round.
    pub round: Duration,
    /// Rounds per room and kind of read.
    pub rounds: usize,
}

#[derive(Serialize, Default)]
pub struct ReadLogResult {
    pub readers: usize,
    pub messages: usize,
    /// Reads per second, record room (logged) and plain room (not), median over rounds.
    pub messages_logged_per_s: f64,
    pub messages_unlogged_per_s: f64,
    pub sync_logged_per_s: f64,
    pub sync_unlogged_per_s: f64,
    /// Logged over unlogged: 1.0 is free; the goal is at least 0.9.
    pub messages_ratio: f64,
    pub sync_ratio: f64,
}

/// The kinds of read measured.
#[derive(Clone, Copy)]
enum Read {
    Messages,
    Sync,
}

struct Room {
    id: String,
    readers: Vec<Account>,
}

pub async fn run(config: &ReadLogConfig) -> Result<ReadLogResult, String> {
    let err = |e: crate::http::HttpError| e.to_string();
    let mut conn = Conn::open(config.addr).await.map_err(err)?;
    let token = config.registration_token.as_deref();
    let patient =
        matrix::register(&mut conn, "patient", "bench-password", token).await.map_err(err)?;
    let patient_id = matrix::user_id(&mut conn, &patient).await?;
    let server = patient_id.split_once(':').map_or("", |(_, s)| s).to_owned();
    let executor = format!("@medrix-contracts:{server}");

    // The record: its space, then the class room naming it.
    let space = create_room(
        &mut conn,
        &patient,
        json!({
            "preset": "private_chat",
            "power_level_content_override": {"users": {&executor: 100}},
            "creation_content": {"type": "m.space"},
            "initial_state": [{"type": "org.medrix.record", "state_key": "",
                "content": {"patient": patient_id, "classes": {}}}],
        }),
    )
    .await?;
    let record_room = create_room(
        &mut conn,
        &patient,
        json!({
            "preset": "private_chat",
            "initial_state": [{"type": "org.medrix.record", "state_key": "",
                "content": {"patient": patient_id, "class": "laboratory", "space": space}}],
        }),
    )
    .await?;
    let plain_room = create_room(&mut conn, &patient, json!({"preset": "private_chat"})).await?;

    let mut logged = Room { id: record_room, readers: Vec::new() };
    let mut unlogged = Room { id: plain_room, readers: Vec::new() };
    for n in 0..config.readers * 2 {
        let reader = matrix::register(&mut conn, &format!("reader{n}"), "bench-password", token)
            .await
            .map_err(err)?;
        let reader_id = matrix::user_id(&mut conn, &reader).await?;
        let is_record = n % 2 == 0;
        if is_record {
            let contract = json!({
                "contract_id": format!("c{n}"), "grantee": reader_id, "purpose": "TREAT",
                "classes": ["laboratory"], "data_period": {"start": null, "end": null},
                "valid": {"start": 0, "end": 253_402_300_799_999u64}, "mode": "read",
                "text": "benchmark reader", "status": "active",
            });
            let path = format!(
                "/_matrix/client/v3/rooms/{}/state/org.medrix.grant/{}",
                encode_component(&space),
                encode_component(&format!("user:{reader_id}")),
            );
            call(&mut conn, Method::PUT, &path, &patient, Some(contract)).await?;
        }
        let room = if is_record { &mut logged } else { &mut unlogged };
        let invite = format!("/_matrix/client/v3/rooms/{}/invite", encode_component(&room.id));
        call(&mut conn, Method::POST, &invite, &patient, Some(json!({"user_id": reader_id})))
            .await?;
        matrix::join(&mut conn, &reader, &room.id).await.map_err(err)?;
        room.readers.push(reader);
    }
    for n in 0..config.messages {
        for room in [&logged.id, &unlogged.id] {
            let path = format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/fill-{n}",
                encode_component(room)
            );
            let body = json!({"msgtype": "m.text", "body": format!("reading {n}")});
            call(&mut conn, Method::PUT, &path, &patient, Some(body)).await?;
        }
    }

    let mut result =
        ReadLogResult { readers: config.readers, messages: config.messages, ..Default::default() };
    for read in [Read::Messages, Read::Sync] {
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for _ in 0..config.rounds {
            on.push(measure(config, &logged, read).await?);
            off.push(measure(config, &unlogged, read).await?);
        }
        let (on, off) = (median(on), median(off));
        match read {
            Read::Messages => {
                (result.messages_logged_per_s, result.messages_unlogged_per_s) = (on, off);
                result.messages_ratio = on / off.max(f64::MIN_POSITIVE);
            }
            Read::Sync => {
                (result.sync_logged_per_s, result.sync_unlogged_per_s) = (on, off);
                result.sync_ratio = on / off.max(f64::MIN_POSITIVE);
            }
        }
    }
    Ok(result)
}

/// Reads per second: every reader of `room` reading as fast as it can for one round.
async fn measure(config: &ReadLogConfig, room: &Room, read: Read) -> Result<f64, String> {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    let messages_path =
        format!("/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20", encode_component(&room.id));
    for reader in &room.readers {
        let (stop, done, addr) = (stop.clone(), done.clone(), config.addr);
        let token = reader.access_token.clone();
        let path = match read {
            Read::Messages => messages_path.clone(),
            Read::Sync => "/_matrix/client/v3/sync".to_owned(),
        };
        workers.spawn(async move {
            let mut conn = Conn::open(addr).await.map_err(|e| e.to_string())?;
            while !stop.load(Ordering::Relaxed) {
                let answer = conn
                    .request::<Value>(Method::GET, &path, Some(&token), None, TIMEOUT)
                    .await
                    .map_err(|e| e.to_string())?;
                answer.ok_json::<Value>("read").map_err(|e| e.to_string())?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, String>(())
        });
    }
    let started = Instant::now();
    tokio::time::sleep(config.round).await;
    stop.store(true, Ordering::Relaxed);
    let count = done.load(Ordering::Relaxed);
    let elapsed = started.elapsed();
    while let Some(worker) = workers.join_next().await {
        worker.map_err(|e| e.to_string())??;
    }
    Ok(count as f64 / elapsed.as_secs_f64())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

async fn call(
    conn: &mut Conn,
    method: Method,
    path: &str,
    account: &Account,
    body: Option<Value>,
) -> Result<Value, String> {
    let answer = conn
        .request(method, path, Some(&account.access_token), body.as_ref(), TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    answer.ok_json::<Value>(path_label(path)).map_err(|e| e.to_string())
}

/// A static label for errors (the request's kind, not its IDs).
fn path_label(path: &str) -> &'static str {
    if path.contains("/invite") {
        "invite"
    } else if path.contains("/send/") {
        "send"
    } else {
        "put state"
    }
}

async fn create_room(conn: &mut Conn, account: &Account, body: Value) -> Result<String, String> {
    let created =
        call(conn, Method::POST, "/_matrix/client/v3/createRoom", account, Some(body)).await?;
    created["room_id"]
        .as_str()
        .map(ToOwned::to_owned)
        .ok_or_else(|| "createRoom: no room_id".into())
}
