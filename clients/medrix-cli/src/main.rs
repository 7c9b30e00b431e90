//! `medrix-cli`: a patient's and a provider's command line for Medrix health records, over
//! the `medrix-client` library. Every command prints text, or JSON with `--json` (the keys
//! are spec/records.md's field names); an error is one sentence on stderr and a non-zero
//! exit.

mod commands;
mod progress;
mod render;
mod time;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use medrix_records::{DataClass, Purpose};

/// What a TIME argument is.
const TIME_HELP: &str = "TIME is an RFC 3339 date-time (2026-03-01T09:00:00Z), a FHIR date \
    (2026, 2026-03, 2026-03-01), `now`, or a duration from now (+30d, -1y, +12h). An end \
    includes all it names: --until 2026-12-31 ends when that day does.";

/// A patient's and a provider's health records on Medrix.
#[derive(Debug, Parser)]
#[command(name = "medrix-cli", version, about, long_about = None)]
#[command(after_help = TIME_HELP)]
struct Cli {
    /// The homeserver's URL (for register and login; later commands use the profile's).
    #[arg(long, global = true, env = "MEDRIX_HOMESERVER", value_name = "URL")]
    homeserver: Option<String>,
    /// The profile directory: one device's session and keys.
    #[arg(long, global = true, env = "MEDRIX_PROFILE", value_name = "DIR")]
    profile: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an account (and log this profile in as it).
    Register {
        /// The user name (localpart) to register.
        username: String,
        /// The password.
        #[arg(long, env = "MEDRIX_PASSWORD", hide_env_values = true)]
        password: String,
        /// The token the server asks for to register.
        #[arg(long, env = "MEDRIX_REGISTRATION_TOKEN", hide_env_values = true)]
        registration_token: Option<String>,
    },
    /// Log this profile in (a new device).
    Login {
        /// A user name or a full user ID (@name:server).
        user: String,
        /// The password.
        #[arg(long, env = "MEDRIX_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Log this device out and delete the profile's session and keys.
    Logout,
    /// Who this profile is logged in as.
    Whoami,
    /// A record: create it, add entries, list them, export it.
    #[command(subcommand)]
    Record(RecordCommand),
    /// Grant a user access to classes of your record (a consent contract).
    Grant(GrantArgs),
    /// Revoke a user's contract and remove them from your record.
    Revoke {
        /// The grantee (user name on your server, or @name:server).
        user: String,
    },
    /// Who holds a contract in force now, and for how long.
    Access {
        /// Also contracts not in force (revoked, expired, not yet valid).
        #[arg(long)]
        all: bool,
        /// Another patient's record shared with you (the contracts you can see in it).
        #[arg(long, value_name = "USER")]
        patient: Option<String>,
    },
    /// Who read your record, when, through what and under which contract (a grantee: your
    /// own reads of a record shared with you).
    Audit(AuditArgs),
    /// The accounting of disclosures of your record (HIPAA §164.528): who received what,
    /// when, and for what purpose.
    Disclosures {
        /// Only disclosures at or after this time.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
    },
    /// The recipients of your record's data (GDPR Art. 15): who received it, and who holds
    /// access now.
    Recipients,
    /// A contract as FHIR R4 Consent.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Your health devices: each a device account that writes readings into your record
    /// and reads nothing.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// The alerts your devices raised (a reading past a threshold), oldest first.
    Alerts,
    /// The custodian's service (run by the patients' server's operator, logged in as the
    /// custodian account patients name in their standing emergency contracts).
    #[command(subcommand)]
    Custodian(CustodianCommand),
    /// Ask a patient for access to classes of their record (a knock on their record space).
    Request(RequestArgs),
    /// The requests pending on your record.
    Requests,
    /// Approve a user's pending request as asked: a contract with exactly its terms.
    Approve {
        /// Who asked (user name on your server, or @name:server).
        user: String,
        /// The terms in your words (written from the terms if not given).
        #[arg(long)]
        text: Option<String>,
    },
    /// Decline a user's pending request (their knock is removed).
    Decline {
        /// Who asked (user name on your server, or @name:server).
        user: String,
        /// Why, for them to read.
        #[arg(long)]
        reason: Option<String>,
    },
    /// A standing emergency contract: a clinician of an organisation's server who breaks the
    /// glass is admitted to these classes for a short window, while it is valid.
    EmergencyContract(EmergencyArgs),
    /// Emergency access to a patient's record under their standing emergency contract with
    /// your organisation: the patient's server admits you at once, or refuses.
    BreakGlass {
        /// The patient (@name:server).
        patient: String,
        /// The patient's record space (its room ID).
        #[arg(long, value_name = "ROOM_ID")]
        space: String,
        /// Why, recorded in the contract and shown to the patient.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Register a device: its account and its own room in your record. Prints the
    /// credentials `medrix-device pair` takes (shown once; keep them secret).
    Add {
        /// Your name for it (e.g. cuff, watch).
        name: String,
        /// What it is: blood-pressure, heart-rate, pulse-oximeter, glucose-meter, cgm,
        /// thermometer, scale, fitness-tracker or gateway.
        #[arg(long)]
        kind: String,
        /// Write the credentials to this file (created readable by you alone) instead of
        /// printing them.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Your registered devices.
    List,
    /// Remove a device: its account is closed at once; its readings stay.
    Remove {
        /// The device's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum CustodianCommand {
    /// Hold the keys of the emergency classes patients entrust, and hand them to each
    /// clinician who breaks the glass; runs until stopped, one line per release.
    Run,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AuditArgs {
    #[command(subcommand)]
    action: Option<AuditAction>,
    /// Only reads of this class's rooms.
    #[arg(long, value_name = "CLASS", value_parser = parse_class)]
    class: Option<DataClass>,
    /// Only reads at or after this time.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only reads by this user (user name on your server, or @name:server) or server.
    #[arg(long, value_name = "WHO")]
    who: Option<String>,
    /// Another patient's record shared with you (your own reads of it).
    #[arg(long, value_name = "USER")]
    patient: Option<String>,
    /// The record whose space this is, whose audit trail its patient named you to read.
    #[arg(long, value_name = "ROOM_ID", conflicts_with = "patient")]
    space: Option<String>,
}

#[derive(Debug, Subcommand)]
enum AuditAction {
    /// Your whole record for the independent verifier: every room's events as signed, read
    /// logs and the signing servers' keys.
    Export {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Name someone to read your record's whole audit trail as you do (a carer, a privacy
    /// officer), without any access to the record itself; `--remove` ends it.
    Delegate {
        /// Who (user name on your server, or @name:server).
        user: String,
        #[arg(long)]
        remove: bool,
    },
    /// Your record's logged reads as FHIR R4 AuditEvents (IHE BALP), in a Bundle.
    Fhir {
        /// Where to write the Bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check an export (yours or anyone's) without trusting any server: signatures, hashes,
    /// the DAG, authorization, read-log chains and checkpoints, each read's contract.
    Verify {
        /// The export file.
        file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RecordCommand {
    /// Create your record: a space and an encrypted room per class.
    Create,
    /// Add the FHIR resources of a file (a resource, a Bundle or NDJSON), one entry each.
    Add {
        /// The file.
        file: PathBuf,
        /// Add to another patient's record shared with you (a contribute contract).
        #[arg(long, value_name = "USER")]
        patient: Option<String>,
    },
    /// List the entries you can read, decrypted.
    List {
        /// Only this class.
        #[arg(long, value_name = "CLASS", value_parser = parse_class)]
        class: Option<DataClass>,
        /// Another patient's record shared with you (accepts their pending invitations).
        #[arg(long, value_name = "USER")]
        patient: Option<String>,
    },
    /// Export the entries you can read as a FHIR R4 Bundle (collection).
    Export {
        /// Another patient's record shared with you (accepts their pending invitations).
        #[arg(long, value_name = "USER")]
        patient: Option<String>,
        /// Where to write the Bundle.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Correct an entry you added: the file's one resource replaces it (the original stays).
    Correct {
        /// The entry's event ID (`record list` shows it).
        event_id: String,
        /// A file with the corrected resource.
        file: PathBuf,
        /// Another patient's record shared with you.
        #[arg(long, value_name = "USER")]
        patient: Option<String>,
    },
}

#[derive(Debug, Args)]
#[command(after_help = TIME_HELP)]
struct GrantArgs {
    /// The grantee (user name on your server, or @name:server).
    user: String,
    #[command(flatten)]
    terms: TermsArgs,
    /// The terms in your words (written from the terms if not given).
    #[arg(long)]
    text: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = TIME_HELP)]
struct EmergencyArgs {
    /// The organisation's server name (e.g. er.example.org).
    server: String,
    /// The classes an emergency opens, comma-separated (allergies, medications, ...).
    #[arg(long, value_name = "C,...", value_delimiter = ',', required = true, value_parser = parse_class)]
    classes: Vec<DataClass>,
    /// When the standing contract ends (TIME).
    #[arg(long, value_name = "TIME")]
    until: String,
    /// When it starts (TIME; now if not given).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// How long one break-glass admits a clinician, in minutes (1 to 1440).
    #[arg(long, value_name = "MINUTES", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=1440))]
    window_minutes: u64,
    /// The terms in your words (written from the terms if not given).
    #[arg(long)]
    text: Option<String>,
    /// Entrust these classes' keys to your server's custodian account (@name:server), so a
    /// clinician who breaks the glass can read them while your devices are offline.
    #[arg(long, value_name = "USER")]
    custodian: Option<String>,
}

#[derive(Debug, Args)]
#[command(after_help = TIME_HELP)]
struct RequestArgs {
    /// The patient (user name on your server, or @name:server).
    patient: String,
    /// The patient's record space (its room ID, which the patient gives you).
    #[arg(long, value_name = "ROOM_ID")]
    space: String,
    #[command(flatten)]
    terms: TermsArgs,
    /// Why, for the patient to read.
    #[arg(long)]
    reason: Option<String>,
}

/// A contract's terms, as a grant sets them and a request asks for them.
#[derive(Debug, Args)]
struct TermsArgs {
    /// The classes of data, comma-separated (vital-signs, laboratory, conditions, ...).
    #[arg(long, value_name = "C,...", value_delimiter = ',', required = true, value_parser = parse_class)]
    classes: Vec<DataClass>,
    /// Why: an HL7 v3 PurposeOfUse code (TREAT, ETREAT, CAREMGT, HRESCH, PATRQT, ...).
    #[arg(long, value_name = "P", value_parser = parse_purpose)]
    purpose: Purpose,
    /// When the contract ends (TIME).
    #[arg(long, value_name = "TIME")]
    until: String,
    /// When it starts (TIME; now if not given).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// The earliest clinical time of the entries shared (TIME; open if not given).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    data_from: Option<String>,
    /// The clinical time the entries shared precede (TIME; open if not given).
    #[arg(long, value_name = "TIME", allow_hyphen_values = true)]
    data_until: Option<String>,
    /// Read only, or read and add entries.
    #[arg(long, value_enum, default_value_t = ModeArg::Read)]
    mode: ModeArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Read,
    Contribute,
}

#[derive(Debug, Subcommand)]
enum ConsentCommand {
    /// Export a grantee's contract as FHIR R4 Consent.
    Export {
        /// The grantee.
        user: String,
        /// Where to write it (stdout if not given).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

fn parse_class(text: &str) -> Result<DataClass, String> {
    DataClass::parse(text).ok_or_else(|| {
        let all: Vec<&str> = DataClass::ALL.iter().map(|class| class.as_str()).collect();
        format!("`{text}` is not a record class (one of {})", all.join(", "))
    })
}

fn parse_purpose(text: &str) -> Result<Purpose, String> {
    match Purpose::parse(text) {
        Some(Purpose::BreakTheGlass) => {
            Err("BTG is given only by break-glass, not by a grant or a request".to_owned())
        }
        Some(purpose) => Ok(purpose),
        None => Err(format!(
            "`{text}` is not an HL7 v3 PurposeOfUse code (e.g. TREAT, ETREAT, CAREMGT, \
             HRESCH, PATRQT)"
        )),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    // matrix-sdk logs through tracing; shown only when asked (MEDRIX_LOG=debug, ...).
    if let Ok(filter) = std::env::var("MEDRIX_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("medrix-cli: cannot start: {err}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(commands::run(cli)) {
        Ok(output) => {
            print(&output, json);
            ExitCode::SUCCESS
        }
        Err(commands::CliError::Finding(output)) => {
            print(&output, json);
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("medrix-cli: {}", one_line(&err.to_string()));
            ExitCode::FAILURE
        }
    }
}

/// A command's output on stdout: JSON with `--json`, else text.
pub(crate) fn print(output: &commands::Output, json: bool) {
    let printed = if json { output.json.to_string() } else { output.text.trim_end().to_owned() };
    // A reader that stopped reading (`| head`) is not an error of this command.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{printed}").and_then(|()| stdout.flush());
}

/// Help and version as clap prints them; any other parse error as one line.
fn usage_error(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = err.print();
        return ExitCode::from(
            if err.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 },
        );
    }
    // clap's message is its first paragraph (a list of missing arguments runs on indented
    // lines); usage and tips follow a blank line.
    let text = err.to_string();
    let message = text.trim_start().split("\n\n").next().unwrap_or("bad arguments");
    let message = message.strip_prefix("error: ").unwrap_or(message);
    eprintln!("medrix-cli: {} (see --help)", one_line(message));
    ExitCode::from(2)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
