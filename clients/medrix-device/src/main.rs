//! `medrix-device`: the device bot on the command line (spec/devices.md).
//! - `decode CHARACTERISTIC HEX` prints one Bluetooth GATT health reading as one JSON object
//!   (the keys are spec/devices.md's), with the exact decimals the device sent; with `--fhir`,
//!   the FHIR R4 Observations it becomes instead, one per line (NDJSON).
//! - `pair CREDENTIALS` makes a profile the device account's (the credentials `medrix-cli
//!   device add` printed); `ingest [FILE]` queues readings durably (one per line: GATT
//!   payloads, or Open mHealth data points with `--format omh`); `run`
//!   sends the queue into the device's room, resuming by itself after failures; `status`
//!   says the backlog. Each prints one JSON object.
//!
//! Exit codes: 0 done; 1 the payload (decode) or a line (ingest) is malformed, or the work
//! failed (one line on stderr); 2 the arguments are wrong (one line on stderr).

mod apple_health;
mod args;
mod csv_input;
mod ingest;
mod queue;
mod uplink;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use medrix_devices::fhir::{ObservationContext, observations};
use medrix_devices::{Characteristic, decode, json_string};
use time::{OffsetDateTime, UtcOffset};

use crate::args::{parse_characteristic, parse_hex, parse_instant, parse_offset, parse_reference};
use crate::uplink::DeviceProfile;

/// The device bot: decode Bluetooth GATT health readings into exact JSON, and send them
/// into the patient's record, none lost, none twice.
#[derive(Debug, Parser)]
#[command(name = "medrix-device", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What `ingest` reads.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum InputFormat {
    Gatt,
    Omh,
    Csv,
    AppleHealth,
}

/// The device's profile directory: its session, keys and queue.
#[derive(Debug, clap::Args)]
struct ProfileArg {
    #[arg(long, env = "MEDRIX_DEVICE_PROFILE", value_name = "DIR")]
    profile: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Decode one characteristic value and print it as one JSON object.
    Decode {
        /// The characteristic's 16-bit UUID in hex: 2A37 (heart rate), 2A35 (blood
        /// pressure), 2A1C (temperature), 2A9D (weight), 2A18 (glucose), 2A5E (PLX
        /// spot-check), 2A5F (PLX continuous) or 2AA7 (CGM); a 0x prefix is allowed.
        #[arg(value_parser = parse_characteristic)]
        characteristic: Characteristic,
        /// The value in hex, as received; spaces are allowed (one argument or several).
        #[arg(required = true, num_args = 1..)]
        hex: Vec<String>,
        #[command(flatten)]
        fhir: FhirArgs,
    },
    /// Pair this profile with a device account: CREDENTIALS is the JSON file `medrix-cli
    /// device add` wrote.
    Pair {
        credentials: PathBuf,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// Queue readings, one per line: CHARACTERISTIC HEX [RECEIVED_AT] (FILE, or stdin).
    Ingest {
        file: Option<PathBuf>,
        /// The offset from UTC the device's clock keeps, e.g. +01:00.
        #[arg(long, value_parser = parse_offset, default_value = "+00:00")]
        device_clock_offset: UtcOffset,
        /// Each heart rate its own Observation, instead of one SampledData Observation per
        /// minute.
        #[arg(long)]
        single: bool,
        /// What the input is: `gatt` (lines CHARACTERISTIC HEX [RECEIVED_AT]), `omh` (Open
        /// mHealth data points, one JSON object or array per line), `csv` (a header row,
        /// then rows; --column maps them) or `apple-health` (an `export.xml`, streamed).
        #[arg(long, value_enum, default_value = "gatt")]
        format: InputFormat,
        /// For CSV: KEY=COLUMN[:UNIT], repeated; `time=COLUMN` and at least one measure
        /// (heart_rate, systolic_blood_pressure, diastolic_blood_pressure, body_weight,
        /// oxygen_saturation, body_temperature, blood_glucose, step_count) with its Open
        /// mHealth unit, e.g. heart_rate=HR:beats/min.
        #[arg(long = "column", value_name = "KEY=COLUMN[:UNIT]", value_parser = csv_input::parse_column)]
        columns: Vec<csv_input::Column>,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// Send the queued readings into the record; keeps running (new readings are sent as
    /// they are queued) unless --until-empty.
    Run {
        /// Stop once nothing is left to send.
        #[arg(long)]
        until_empty: bool,
        #[command(flatten)]
        profile: ProfileArg,
    },
    /// How many readings wait, and how many were sent.
    Status {
        #[command(flatten)]
        profile: ProfileArg,
    },
}

/// What `--fhir` needs beyond the reading.
#[derive(Debug, clap::Args)]
struct FhirArgs {
    /// Print FHIR R4 Observations (one per line) instead of the reading's JSON.
    #[arg(long, requires = "patient")]
    fhir: bool,
    /// The patient the reading is about, as a FHIR reference (e.g. Patient/p1).
    #[arg(long, value_parser = parse_reference)]
    patient: Option<String>,
    /// The device, as a FHIR reference (e.g. Device/cuff-1).
    #[arg(long, value_parser = parse_reference)]
    device: Option<String>,
    /// When the reading was received, RFC 3339 (default: now); the time of a reading
    /// without a time stamp of its own.
    #[arg(long, value_parser = parse_instant)]
    received_at: Option<OffsetDateTime>,
    /// The offset from UTC the device's clock keeps, e.g. +01:00 (default +00:00): GATT
    /// time stamps carry no zone.
    #[arg(long, value_parser = parse_offset, default_value = "+00:00")]
    device_clock_offset: UtcOffset,
    /// When the CGM sensor's session started, RFC 3339 (its Session Start Time): CGM records
    /// count minutes from it. Without it the newest record is taken as just received.
    #[arg(long, value_parser = parse_instant)]
    cgm_session_start: Option<OffsetDateTime>,
}

const EXIT_MALFORMED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return argument_error(&error),
    };
    match cli.command {
        Command::Decode { characteristic, hex, fhir } => {
            let payload = match parse_hex(&hex.concat()) {
                Ok(payload) => payload,
                Err(problem) => return usage_error(&problem),
            };
            match decode(characteristic, &payload) {
                Ok(reading) if fhir.fhir => {
                    let context = ObservationContext {
                        subject: fhir.patient.unwrap_or_default(),
                        device: fhir.device,
                        received_at: fhir.received_at.unwrap_or_else(OffsetDateTime::now_utc),
                        device_clock_offset: fhir.device_clock_offset,
                        cgm_session_start: fhir.cgm_session_start,
                    };
                    print_json(&observations(&reading, &context).join("\n"), ExitCode::SUCCESS)
                }
                Ok(reading) => print_json(&reading.to_json(), ExitCode::SUCCESS),
                Err(error) => {
                    let line = format!("{{\"error\": {}}}", json_string(&error.to_string()));
                    print_json(&line, ExitCode::from(EXIT_MALFORMED))
                }
            }
        }
        Command::Pair { credentials, profile } => {
            let profile = DeviceProfile::new(&profile.profile);
            let read = std::fs::read_to_string(&credentials)
                .map_err(|err| format!("cannot read {}: {err}", credentials.display()))
                .and_then(|text| {
                    serde_json::from_str::<medrix_client::DeviceCredentials>(&text).map_err(|err| {
                        format!("{} is not device credentials: {err}", credentials.display())
                    })
                });
            let credentials = match read {
                Ok(credentials) => credentials,
                Err(problem) => return failure(&problem),
            };
            let answer = serde_json::json!({
                "user_id": credentials.user_id, "patient": credentials.patient,
                "room": credentials.room, "kind": credentials.kind,
            });
            match block_on(uplink::pair(&profile, credentials)) {
                Ok(()) => print_json(&answer.to_string(), ExitCode::SUCCESS),
                Err(problem) => failure(&problem),
            }
        }
        Command::Ingest { file, device_clock_offset, single, format, columns, profile } => {
            let profile = DeviceProfile::new(&profile.profile);
            let input = Input { file, clock_offset: device_clock_offset, format, columns };
            ingest(&profile, input, !single)
        }
        Command::Run { until_empty, profile } => {
            let profile = DeviceProfile::new(&profile.profile);
            let mut report = |backlog: queue::Backlog| {
                eprintln!("medrix-device: sent {}, {} waiting", backlog.sent, backlog.pending);
            };
            match block_on(uplink::run(&profile, until_empty, &mut report)) {
                Ok(backlog) => print_json(&backlog_json(backlog).to_string(), ExitCode::SUCCESS),
                Err(problem) => failure(&problem),
            }
        }
        Command::Status { profile } => {
            match DeviceProfile::new(&profile.profile)
                .queue()
                .and_then(|queue| queue.backlog().map_err(|err| format!("the queue: {err}")))
            {
                Ok(backlog) => print_json(&backlog_json(backlog).to_string(), ExitCode::SUCCESS),
                Err(problem) => failure(&problem),
            }
        }
    }
}

/// What `ingest` reads, and how.
struct Input {
    file: Option<PathBuf>,
    clock_offset: UtcOffset,
    format: InputFormat,
    columns: Vec<csv_input::Column>,
}

type Observation = serde_json::Map<String, serde_json::Value>;

/// Where ingested items go: batched, then committed to the queue a thousand at a time (so a
/// large input never sits in memory), with the units that were not readings noted.
struct Sink<'a> {
    queue: queue::Queue,
    batcher: ingest::Batcher,
    readings: Vec<queue::Queued>,
    malformed: Vec<serde_json::Value>,
    units: usize,
    queued: usize,
    identity: &'a ingest::Identity,
}

impl Sink<'_> {
    /// One unit of input (a line, a row, a record), placed by `place` (`{"line": n}`, ...).
    fn take(
        &mut self,
        place: serde_json::Value,
        found: Result<Vec<Observation>, String>,
    ) -> Result<(), String> {
        self.units += 1;
        match found {
            Ok(found) => {
                for observation in found {
                    self.batcher.push(observation, &mut self.readings);
                }
            }
            Err(why) => {
                let mut noted = place;
                noted["error"] = serde_json::json!(why);
                self.malformed.push(noted);
            }
        }
        if self.readings.len() >= 1000 {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), String> {
        self.queued += self.queue.add(&self.readings).map_err(|err| format!("the queue: {err}"))?;
        self.readings.clear();
        Ok(())
    }

    fn finish(mut self) -> Result<serde_json::Value, String> {
        self.batcher.finish(&mut self.readings);
        self.commit()?;
        Ok(serde_json::json!({
            "units": self.units, "queued": self.queued, "malformed": self.malformed,
            "peak_rss_kb": peak_rss_kb(),
        }))
    }
}

fn ingest(profile: &DeviceProfile, input: Input, batching: bool) -> ExitCode {
    let pairing = match profile.pairing() {
        Ok(pairing) => pairing,
        Err(problem) => return failure(&problem),
    };
    let identity = ingest::Identity::of(&pairing.user_id, &pairing.patient, input.clock_offset);
    let (reader, size): (Box<dyn BufRead>, Option<u64>) = match &input.file {
        Some(path) => match std::fs::File::open(path) {
            Ok(file) => {
                let size = file.metadata().ok().map(|meta| meta.len());
                (Box::new(std::io::BufReader::with_capacity(1 << 16, file)), size)
            }
            Err(err) => return failure(&format!("cannot read {}: {err}", path.display())),
        },
        None => (Box::new(std::io::stdin().lock()), None),
    };
    let queue = match profile.queue() {
        Ok(queue) => queue,
        Err(problem) => return failure(&problem),
    };
    let mut sink = Sink {
        queue,
        batcher: ingest::Batcher::new(&identity.device_user, batching),
        readings: Vec::new(),
        malformed: Vec::new(),
        units: 0,
        queued: 0,
        identity: &identity,
    };
    let read = read_input(reader, size, &input, &mut sink);
    match read.and_then(|()| sink.finish()) {
        Ok(answer) => {
            let clean = answer["malformed"].as_array().is_some_and(Vec::is_empty);
            let code = if clean { ExitCode::SUCCESS } else { ExitCode::from(EXIT_MALFORMED) };
            print_json(&answer.to_string(), code)
        }
        Err(problem) => failure(&problem),
    }
}

/// Drives the sink with the input's units, by format.
fn read_input(
    reader: Box<dyn BufRead>,
    size: Option<u64>,
    input: &Input,
    sink: &mut Sink<'_>,
) -> Result<(), String> {
    let identity = sink.identity;
    let now = OffsetDateTime::now_utc();
    match input.format {
        InputFormat::Gatt | InputFormat::Omh => {
            for (index, line) in reader.lines().enumerate() {
                let line = line.map_err(|err| format!("reading the input: {err}"))?;
                let found = match input.format {
                    InputFormat::Omh => ingest::omh_observations_of_line(&line, identity),
                    _ => ingest::observations_of_line(&line, identity, now),
                };
                sink.take(serde_json::json!({"line": index + 1}), found)?;
            }
        }
        InputFormat::Csv => {
            let mut rows = csv::ReaderBuilder::new().flexible(true).from_reader(reader);
            let headers = rows.headers().map_err(|err| format!("the CSV: {err}"))?;
            let mapping = csv_input::Mapping::new(&input.columns, headers)
                .map_err(|problem| format!("the CSV: {problem}"))?;
            for (index, row) in rows.into_records().enumerate() {
                let row = row.map_err(|err| format!("reading the CSV: {err}"))?;
                let found = mapping.bodies(&row).and_then(|bodies| {
                    bodies.iter().map(|body| ingest::omh_observation(body, identity)).collect()
                });
                // The header is line 1.
                sink.take(serde_json::json!({"line": index + 2}), found)?;
            }
        }
        InputFormat::AppleHealth => {
            let mut failed = None;
            let mut each = |unit: apple_health::Unit| {
                let found = unit.bodies.and_then(|bodies| {
                    bodies.iter().map(|body| ingest::omh_observation(body, identity)).collect()
                });
                if failed.is_none()
                    && let Err(problem) = sink.take(serde_json::json!({"byte": unit.offset}), found)
                {
                    failed = Some(problem);
                }
            };
            let mut shown = Progress::new(size);
            apple_health::read(reader, &mut each, &mut |bytes| shown.at(bytes))?;
            shown.done();
            if let Some(problem) = failed {
                return Err(problem);
            }
        }
    }
    Ok(())
}

/// A progress line on stderr while a large file is read, when stderr is a terminal.
struct Progress {
    size: Option<u64>,
    shown: bool,
}

impl Progress {
    fn new(size: Option<u64>) -> Progress {
        use std::io::IsTerminal;
        Progress { size, shown: std::io::stderr().is_terminal() }
    }

    fn at(&mut self, bytes: u64) {
        if !self.shown {
            return;
        }
        let mb = bytes >> 20;
        match self.size.filter(|size| *size > 0) {
            Some(size) => {
                eprint!("\rImporting: {:3}% ({mb} of {} MB)", bytes * 100 / size, size >> 20)
            }
            None => eprint!("\rImporting: {mb} MB"),
        }
    }

    fn done(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

/// The most memory this process has held (Linux: `VmHWM`), in KiB.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn backlog_json(backlog: queue::Backlog) -> serde_json::Value {
    serde_json::json!({"pending": backlog.pending, "sent": backlog.sent})
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> T {
    // A runtime cannot fail to start here short of the machine having no threads left.
    #[allow(clippy::expect_used)]
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(work)
}

/// Work that failed: one line on stderr, exit 1.
fn failure(problem: &str) -> ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "medrix-device: {}",
        problem.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    ExitCode::from(EXIT_MALFORMED)
}

/// Prints JSON lines (none for an empty text); a stdout that cannot be written to is a failure, not a panic.
fn print_json(line: &str, code: ExitCode) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let written = if line.is_empty() { Ok(()) } else { writeln!(stdout, "{line}") };
    match written.and_then(|()| stdout.flush()) {
        Ok(()) => code,
        Err(_) => ExitCode::from(EXIT_MALFORMED),
    }
}

/// Help and version go to stdout as clap writes them; any other problem with the
/// arguments is one line on stderr.
fn argument_error(error: &clap::Error) -> ExitCode {
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(std::io::stderr(), "{}", one_line(&error.to_string()));
    ExitCode::from(EXIT_USAGE)
}

/// clap's `error:` line, with the indented lines that complete it ("the following required
/// arguments were not provided:" and the arguments) joined onto it.
fn one_line(rendered: &str) -> String {
    let mut lines = rendered.lines().skip_while(|line| !line.starts_with("error:"));
    let Some(first) = lines.next() else {
        return "error: missing arguments; usage: medrix-device decode CHARACTERISTIC HEX".into();
    };
    let mut line = first.to_owned();
    if first.ends_with(':') {
        for more in lines.take_while(|line| line.starts_with(' ')) {
            line.push(' ');
            line.push_str(more.trim());
        }
    }
    line
}

fn usage_error(problem: &str) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "error: {problem}");
    ExitCode::from(EXIT_USAGE)
}
