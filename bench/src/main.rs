//! `loadgen`: the load generator of the Medrix-vs-Synapse benchmark (driven by `bench/run`).
//!
//! - `loadgen wait-ready` polls `/_matrix/client/versions` and prints the cold start;
//! - `loadgen run` registers the users, runs the load and writes one server's result as JSON;
//! - `loadgen compare` prints the side-by-side markdown table (medians over each server's runs);
//! - `loadgen federation-certs`, `loadgen federation` and `loadgen federation-compare` do the
//!   same for federation ingest (`bench/run-federation`);
//! - `loadgen contracts` measures the contract executor (`bench/run-contracts`);
//! - `loadgen read-log` measures what the read log costs readers (`bench/run-read-log`).

mod contracts;
mod federation;
mod http;
mod load;
mod matrix;
mod procfs;
mod read_log;
mod report;
mod stats;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use clap::{Parser, Subcommand};

use crate::{http::Conn, load::LoadConfig, report::ServerResult};

#[derive(Parser)]
#[command(name = "loadgen", about = "Load generator of the Medrix vs Synapse benchmark")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Waits until the server answers /_matrix/client/versions; prints the milliseconds since
    /// --spawned-at-unix-ns (or since this command started).
    WaitReady {
        #[arg(long)]
        base_url: String,
        #[arg(long)]
        spawned_at_unix_ns: Option<u128>,
        #[arg(long, default_value_t = 300)]
        timeout_secs: u64,
    },
    /// Runs the load against one server and writes its result as JSON.
    Run(RunArgs),
    /// Prints the markdown table of Medrix's results beside Synapse's (medians over runs).
    Compare {
        /// Medrix's result files, one per run.
        #[arg(long, num_args = 1.., required = true)]
        medrix: Vec<PathBuf>,
        /// Synapse's result files, one per run.
        #[arg(long, num_args = 1.., required = true)]
        synapse: Vec<PathBuf>,
    },
    /// Writes a CA (ca.pem) and a certificate for 127.0.0.1 (server.crt, server.key) into a
    /// directory, for the servers of a federation run and loadgen's own peer.
    FederationCerts {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Plays a remote homeserver and measures one server's federation ingest; writes JSON.
    Federation(FederationArgs),
    /// Measures the contract executor: many contracts ending at once or spread; writes JSON.
    Contracts(ContractsArgs),
    /// Measures reads of a record room (logged) beside a plain room (not); writes JSON.
    ReadLog(ReadLogArgs),
    /// Prints the markdown table of the federation runs (medians over runs).
    FederationCompare {
        #[arg(long, num_args = 1.., required = true)]
        medrix: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true)]
        synapse: Vec<PathBuf>,
    },
}

#[derive(clap::Args)]
struct FederationArgs {
    /// The server's client API, e.g. http://127.0.0.1:8008 (loopback only).
    #[arg(long)]
    base_url: String,
    /// The server's federation name, `127.0.0.1:<port>` (its TLS listener).
    #[arg(long)]
    server_name: String,
    /// The name in the table, e.g. "Synapse 1.163.2".
    #[arg(long)]
    server: String,
    #[arg(long)]
    registration_token: Option<String>,
    /// The directory `loadgen federation-certs` wrote.
    #[arg(long)]
    certs: PathBuf,
    /// A version both Medrix and Synapse support (10, 11, 12).
    #[arg(long, default_value = "12")]
    room_version: String,
    #[arg(long, default_value_t = 5000)]
    pdus: usize,
    /// PDUs per `/send` transaction (the spec's most is 50).
    #[arg(long, default_value_t = 50)]
    per_transaction: usize,
    /// Transactions in flight (a homeserver sends one at a time to a destination).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
    /// Remote homeservers sending at once, each to its own room; the PDUs are shared out.
    #[arg(long, default_value_t = 1)]
    origins: usize,
    /// Stop sending new transactions after this many seconds (0: send them all).
    #[arg(long, default_value_t = 0)]
    max_secs: u64,
    #[arg(long, default_value_t = 300)]
    transaction_timeout_secs: u64,
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ContractsArgs {
    /// The server's client API, e.g. http://127.0.0.1:8008 (loopback only).
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    registration_token: Option<String>,
    #[arg(long, default_value_t = 2000)]
    patients: usize,
    #[arg(long, default_value_t = 50)]
    per_patient: usize,
    #[arg(long, value_enum, default_value = "burst")]
    ends: contracts::Ends,
    /// The window the ends are spread over (`--ends spread`).
    #[arg(long, default_value_t = 60)]
    spread_secs: u64,
    #[arg(long, default_value_t = 16)]
    connections: usize,
    #[arg(long)]
    server_pid: Option<u32>,
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct ReadLogArgs {
    /// The server's client API, e.g. http://127.0.0.1:8008 (loopback only).
    #[arg(long)]
    base_url: String,
    #[arg(long)]
    registration_token: Option<String>,
    /// Readers per room.
    #[arg(long, default_value_t = 8)]
    readers: usize,
    #[arg(long, default_value_t = 200)]
    messages: usize,
    #[arg(long, default_value_t = 10)]
    round_secs: u64,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The server, e.g. http://127.0.0.1:8008 (loopback only).
    #[arg(long)]
    base_url: String,
    /// The name in the table, e.g. "Synapse 1.163.2".
    #[arg(long)]
    server: String,
    /// For servers that gate registration with m.login.registration_token.
    #[arg(long)]
    registration_token: Option<String>,
    #[arg(long, default_value_t = 20)]
    senders: u32,
    #[arg(long, default_value_t = 50)]
    messages: u32,
    /// Requests in flight per sender, each on its own keep-alive connection.
    #[arg(long, default_value_t = 2)]
    in_flight: u32,
    #[arg(long, default_value_t = 3)]
    observers: u32,
    /// Spreads the senders over this many rooms (diagnostics; the benchmark uses one).
    #[arg(long, default_value_t = 1)]
    rooms: u32,
    /// The /sync long-poll timeout, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    sync_timeout_ms: u64,
    /// How long observers wait for missing messages after the last send was answered.
    #[arg(long, default_value_t = 30)]
    drain_secs: u64,
    #[arg(long, default_value_t = 60)]
    send_timeout_secs: u64,
    /// The server's process ID, for its CPU time and memory during the load.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Measured by the caller; carried into the result.
    #[arg(long)]
    cold_start_ms: Option<f64>,
    /// Measured by the caller; carried into the result.
    #[arg(long)]
    idle_rss_kib: Option<u64>,
    /// Where to write the result (JSON).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let result = match cli.command {
        Command::WaitReady { base_url, spawned_at_unix_ns, timeout_secs } => {
            runtime.block_on(wait_ready(&base_url, spawned_at_unix_ns, timeout_secs))
        }
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Compare { medrix, synapse } => compare(&medrix, &synapse),
        Command::FederationCerts { dir } => federation::certs::write(&dir),
        Command::Contracts(args) => runtime.block_on(run_contracts(args)),
        Command::ReadLog(args) => runtime.block_on(run_read_log(args)),
        Command::Federation(args) => runtime.block_on(run_federation(args)),
        Command::FederationCompare { medrix, synapse } => {
            read_results(&medrix).and_then(|medrix| {
                print!("{}", federation::table::compare(&medrix, &read_results(&synapse)?));
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("loadgen: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn wait_ready(
    base_url: &str,
    spawned_at_unix_ns: Option<u128>,
    timeout_secs: u64,
) -> Result<(), String> {
    let addr = http::loopback_addr(base_url).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(timeout_secs);
    loop {
        if let Ok(mut conn) = Conn::open(addr).await
            && matrix::versions_ok(&mut conn).await
        {
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("{base_url} not ready after {timeout_secs}s"));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed_ms = match spawned_at_unix_ns {
        Some(spawned) => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| e.to_string())?;
            now.as_nanos().saturating_sub(spawned) as f64 / 1e6
        }
        None => started.elapsed().as_secs_f64() * 1000.0,
    };
    println!("{elapsed_ms:.1}");
    Ok(())
}

async fn run(args: RunArgs) -> Result<(), String> {
    let config = LoadConfig {
        addr: http::loopback_addr(&args.base_url).map_err(|e| e.to_string())?,
        senders: args.senders,
        messages_per_sender: args.messages,
        in_flight: args.in_flight.max(1),
        observers: args.observers,
        rooms: args.rooms.max(1),
        registration_token: args.registration_token,
        sync_timeout: Duration::from_millis(args.sync_timeout_ms),
        drain: Duration::from_secs(args.drain_secs),
        send_timeout: Duration::from_secs(args.send_timeout_secs),
        server_pid: args.server_pid,
    };
    let load = load::run(&config).await.map_err(|e| format!("{}: {e}", args.server))?;
    eprintln!(
        "loadgen: {}: {}/{} accepted, {:.1} messages/s, delivered exactly once: {}",
        args.server,
        load.accepted,
        load.attempted,
        load.accepted_per_second,
        load.delivered_exactly_once
    );
    let result = ServerResult {
        server: args.server,
        cold_start_ms: args.cold_start_ms,
        idle_rss_kib: args.idle_rss_kib,
        load,
    };
    let json = serde_json::to_string_pretty(&result).expect("results serialize");
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))
}

async fn run_contracts(args: ContractsArgs) -> Result<(), String> {
    let ends = if args.ends == contracts::Ends::Spread { args.spread_secs } else { 0 };
    let config = contracts::ContractsConfig {
        addr: http::loopback_addr(&args.base_url).map_err(|e| e.to_string())?,
        registration_token: args.registration_token,
        patients: args.patients,
        per_patient: args.per_patient,
        ends: args.ends,
        spread: Duration::from_secs(ends),
        connections: args.connections,
        server_pid: args.server_pid,
    };
    let result = contracts::run(&config).await?;
    let json = serde_json::to_string_pretty(&result).expect("results serialize");
    eprintln!("{json}");
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))
}

async fn run_read_log(args: ReadLogArgs) -> Result<(), String> {
    let config = read_log::ReadLogConfig {
        addr: http::loopback_addr(&args.base_url).map_err(|e| e.to_string())?,
        registration_token: args.registration_token,
        readers: args.readers,
        messages: args.messages,
        round: Duration::from_secs(args.round_secs),
        rounds: args.rounds,
    };
    let result = read_log::run(&config).await?;
    let json = serde_json::to_string_pretty(&result).expect("results serialize");
    eprintln!("{json}");
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))
}

fn compare(medrix: &[PathBuf], synapse: &[PathBuf]) -> Result<(), String> {
    let (medrix, synapse): (Vec<ServerResult>, Vec<ServerResult>) =
        (read_results(medrix)?, read_results(synapse)?);
    print!("{}", report::compare(&medrix, &synapse));
    Ok(())
}

/// Reads one JSON result per file.
fn read_results<T: serde::de::DeserializeOwned>(paths: &[PathBuf]) -> Result<Vec<T>, String> {
    paths
        .iter()
        .map(|path| {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

async fn run_federation(args: FederationArgs) -> Result<(), String> {
    let config = federation::FederationConfig {
        client_addr: http::loopback_addr(&args.base_url).map_err(|e| e.to_string())?,
        server_name: args.server_name,
        registration_token: args.registration_token,
        certs: args.certs,
        room_version: args.room_version,
        pdus: args.pdus,
        per_transaction: args.per_transaction.clamp(1, 50),
        in_flight: args.in_flight.max(1),
        origins: args.origins.clamp(1, 64),
        max_duration: (args.max_secs > 0).then(|| Duration::from_secs(args.max_secs)),
        transaction_timeout: Duration::from_secs(args.transaction_timeout_secs),
        server_pid: args.server_pid,
    };
    let result = federation::run(&args.server, &config)
        .await
        .map_err(|e| format!("{}: {e}", args.server))?;
    eprintln!(
        "loadgen: {}: {}/{} PDUs accepted, {:.1} PDUs/s ({} stored per /messages){}",
        result.server,
        result.pdus_accepted,
        result.pdus_sent,
        result.accepted_per_second,
        result.stored_messages.map_or_else(|| "?".to_owned(), |n| n.to_string()),
        result.errors.first().map(|e| format!("; first failure: {e}")).unwrap_or_default()
    );
    let json = serde_json::to_string_pretty(&result).expect("results serialize");
    std::fs::write(&args.out, json).map_err(|e| format!("{}: {e}", args.out.display()))
}
