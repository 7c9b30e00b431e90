//! Each command: its input checked first (files read and routed, times and terms parsed)
//! so a mistake costs no network round, then the library call, then what to print.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use medrix_client::{
    ClientError, EmergencyTerms, GrantTerms, Granted, KeyRelease, MedrixClient, NewEntry, Profile,
    Record, consent, read_resources,
};
use medrix_records::{
    AccessRequest, DataClass, DataPeriod, EventId, Mode, Purpose, RoomId, ServerName, UserId,
    Validity, audit_reports,
};
use serde_json::{Map, Value, json};

use crate::progress::Progress;
use crate::render;
use crate::time::{Bound, parse_time};
use crate::{
    AuditAction, AuditArgs, Cli, Command, ConsentCommand, CustodianCommand, DeviceCommand,
    EmergencyArgs, GrantArgs, ModeArg, RecordCommand, RequestArgs, TermsArgs,
};

/// What a command prints: JSON with `--json`, else text.
#[derive(Debug)]
pub struct Output {
    pub json: Value,
    pub text: String,
}

/// What can go wrong in a command, beyond the library's errors.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Input(String),
    #[error("cannot read {}: {error}", path.display())]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {}: {error}", path.display())]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{} is not FHIR R4 Medrix can file: {error}", path.display())]
    Fhir { path: PathBuf, error: ClientError },
    #[error("{} is not FHIR R4 Medrix can file: it is not UTF-8 text", .0.display())]
    NotText(PathBuf),
    /// What a command found, printed like any output, that must also fail the exit status
    /// (an export that does not verify).
    #[error("{}", .0.text)]
    Finding(Output),
    #[error("no homeserver: give --homeserver URL or set MEDRIX_HOMESERVER")]
    NoHomeserver,
    #[error("no profile directory: give --profile DIR or set MEDRIX_PROFILE")]
    NoProfile,
}

type Result<T> = std::result::Result<T, CliError>;

pub async fn run(cli: Cli) -> Result<Output> {
    let profile = Profile::new(profile_dir(cli.profile)?);
    let homeserver = cli.homeserver;
    let json = cli.json;
    match cli.command {
        Command::Custodian(CustodianCommand::Run) => custodian(profile, json).await,
        Command::Device(command) => device(profile, command).await,
        Command::Alerts => {
            let client = MedrixClient::open(profile).await?;
            let record = client.own_record().await?;
            let alerts = client.alerts(&record).await?;
            let mut text = format!("{} alert(s)", alerts.len());
            for alert in &alerts {
                text.push_str(&format!(
                    "\n{}  {}",
                    render::moment(alert["sent_at"].as_i64().unwrap_or_default()),
                    alert["body"].as_str().unwrap_or_default()
                ));
            }
            Ok(Output { json: json!({"alerts": alerts}), text })
        }
        Command::Register { username, password, registration_token } => {
            let homeserver = homeserver.ok_or(CliError::NoHomeserver)?;
            let client = MedrixClient::register(
                profile,
                &homeserver,
                &username,
                &password,
                registration_token.as_deref(),
            )
            .await?;
            session_output(&client, "Registered").await
        }
        Command::Login { user, password } => {
            let homeserver = homeserver.ok_or(CliError::NoHomeserver)?;
            let client = MedrixClient::login(profile, &homeserver, &user, &password).await?;
            session_output(&client, "Logged in as").await
        }
        Command::Logout => {
            let client = MedrixClient::open(profile).await?;
            let user = client.user_id().clone();
            client.logout().await?;
            Ok(Output {
                json: json!({"user_id": user, "logged_out": true}),
                text: format!("Logged out {user}; this profile's session and keys are deleted."),
            })
        }
        Command::Whoami => {
            let client = MedrixClient::open(profile).await?;
            session_output(&client, "Logged in as").await
        }
        Command::Record(command) => record(profile, command).await,
        Command::Grant(args) => grant(profile, args).await,
        Command::Revoke { user } => {
            let client = MedrixClient::open(profile).await?;
            let grantee = resolve_user(&user, client.user_id())?;
            let record = client.own_record().await?;
            let revoked = client.revoke(&record, &grantee).await?;
            let mut extra = Map::new();
            extra.insert("removed_from".to_owned(), json!(revoked.removed));
            Ok(Output {
                text: format!(
                    "Revoked contract {} of {grantee}; removed from {} room(s).",
                    revoked.grant.contract_id,
                    revoked.removed.len()
                ),
                json: render::grant_json(&revoked.grant, extra),
            })
        }
        Command::Access { all, patient } => {
            let client = MedrixClient::open(profile).await?;
            let record = record_for(&client, patient.as_deref()).await?;
            let now = now_ms();
            let mut access = client.access(&record, now).await?;
            if !all {
                access.retain(|access| access.decision.is_allowed());
            }
            let mut text = format!(
                "{} contract(s){} in the record of {}",
                access.len(),
                if all { "" } else { " in force" },
                record.patient()
            );
            for line in &access {
                text.push('\n');
                text.push_str(&render::access_line(line));
            }
            Ok(Output {
                json: json!({
                    "patient": record.patient(),
                    "contracts": access.iter().map(render::access_json).collect::<Vec<_>>(),
                }),
                text,
            })
        }
        Command::Audit(args) => audit(profile, args).await,
        Command::Disclosures { since } => disclosures(profile, since.as_deref()).await,
        Command::Recipients => recipients(profile).await,
        Command::Request(args) => request(profile, args).await,
        Command::Requests => requests(profile).await,
        Command::Approve { user, text } => {
            let client = MedrixClient::open(profile).await?;
            let requester = resolve_user(&user, client.user_id())?;
            let record = client.own_record().await?;
            let granted = client.approve(&record, &requester, text).await?;
            Ok(granted_output(&granted))
        }
        Command::Decline { user, reason } => {
            let client = MedrixClient::open(profile).await?;
            let requester = resolve_user(&user, client.user_id())?;
            let record = client.own_record().await?;
            client.decline(&record, &requester, reason.as_deref()).await?;
            Ok(Output {
                json: json!({"user": requester, "declined": true, "reason": reason}),
                text: format!("Declined the request of {requester}."),
            })
        }
        Command::EmergencyContract(args) => emergency_contract(profile, args).await,
        Command::BreakGlass { patient, space, reason } => {
            break_glass(profile, &patient, &space, &reason).await
        }
        Command::Consent(ConsentCommand::Export { user, out }) => {
            let client = MedrixClient::open(profile).await?;
            let grantee = resolve_user(&user, client.user_id())?;
            let record = client.own_record().await?;
            let contract = client.contract_of(&record, &grantee).await?;
            let consent = consent(&record, &contract);
            match out {
                None => Ok(Output { text: pretty(&consent), json: consent }),
                Some(path) => {
                    write(&path, &consent)?;
                    Ok(Output {
                        json: json!({"out": path, "contract_id": contract.grant.contract_id}),
                        text: format!(
                            "Wrote contract {} of {grantee} as FHIR R4 Consent to {}.",
                            contract.grant.contract_id,
                            path.display()
                        ),
                    })
                }
            }
        }
    }
}

async fn record(profile: Profile, command: RecordCommand) -> Result<Output> {
    match command {
        RecordCommand::Create => {
            let client = MedrixClient::open(profile).await?;
            let (record, created) = client.create_record().await?;
            let mut json = record.state.to_content();
            json["space"] = json!(record.space_id());
            let text = if created {
                format!(
                    "Created the record of {}: space {} with {} class rooms.",
                    record.patient(),
                    record.space_id(),
                    record.state.classes.len()
                )
            } else {
                format!("Your record already exists: space {}.", record.space_id())
            };
            json["created"] = json!(created);
            Ok(Output { json, text })
        }
        RecordCommand::Add { file, patient } => {
            let entries = read_fhir(&file)?;
            let client = MedrixClient::open(profile).await?;
            let record = record_for(&client, patient.as_deref()).await?;
            let mut progress = Progress::new("Adding entries");
            let added = client
                .add_entries(&record, &entries, &mut |done, total| progress.update(done, total))
                .await?;
            drop(progress);
            let mut by_class: std::collections::BTreeMap<&str, usize> = Default::default();
            for entry in &added {
                *by_class.entry(entry.entry.class.as_str()).or_default() += 1;
            }
            let summary: Vec<String> =
                by_class.iter().map(|(class, count)| format!("{count} {class}")).collect();
            Ok(Output {
                json: json!({
                    "patient": record.patient(),
                    "added": added.iter().map(render::added_json).collect::<Vec<_>>(),
                }),
                text: format!(
                    "Added {} entries to the record of {} ({}).",
                    added.len(),
                    record.patient(),
                    summary.join(", ")
                ),
            })
        }
        RecordCommand::List { class, patient } => {
            let client = MedrixClient::open(profile).await?;
            let record = record_for(&client, patient.as_deref()).await?;
            let mut progress = Progress::new("Reading class rooms");
            let list = client
                .entries(&record, class, &mut |done, total| progress.update(done, total))
                .await?;
            drop(progress);
            let mut text =
                format!("{} entries in the record of {}", list.entries.len(), record.patient());
            for entry in &list.entries {
                text.push('\n');
                text.push_str(&render::entry_line(entry));
            }
            if !list.unreadable.is_empty() {
                text.push_str(&format!(
                    "\n{} more event(s) you cannot read (e.g. {}: {})",
                    list.unreadable.len(),
                    list.unreadable[0].event_id,
                    list.unreadable[0].reason
                ));
            }
            Ok(Output {
                json: json!({
                    "patient": list.patient,
                    "entries": list.entries.iter().map(render::entry_json).collect::<Vec<_>>(),
                    "unreadable":
                        list.unreadable.iter().map(render::unreadable_json).collect::<Vec<_>>(),
                }),
                text,
            })
        }
        RecordCommand::Export { patient, out } => {
            let client = MedrixClient::open(profile).await?;
            let record = record_for(&client, patient.as_deref()).await?;
            let mut progress = Progress::new("Reading class rooms");
            let (bundle, list) = client
                .export_bundle(&record, now_ms(), &mut |done, total| progress.update(done, total))
                .await?;
            drop(progress);
            write(&out, &bundle)?;
            Ok(Output {
                json: json!({
                    "patient": record.patient(),
                    "out": out,
                    "entries": list.entries.len(),
                    "unreadable": list.unreadable.len(),
                }),
                text: format!(
                    "Exported {} entries of the record of {} to {} (FHIR R4 Bundle, collection).",
                    list.entries.len(),
                    record.patient(),
                    out.display()
                ),
            })
        }
        RecordCommand::Correct { event_id, file, patient } => {
            let original = EventId::parse(&event_id)
                .ok_or_else(|| CliError::Input(format!("`{event_id}` is not an event ID")))?;
            let mut entries = read_fhir(&file)?;
            if entries.len() != 1 {
                return Err(CliError::Input(format!(
                    "{} holds {} resources; a correction is one resource",
                    file.display(),
                    entries.len()
                )));
            }
            let replacement = entries.remove(0);
            let client = MedrixClient::open(profile).await?;
            let record = record_for(&client, patient.as_deref()).await?;
            let added = client.correct_entry(&record, &original, &replacement).await?;
            Ok(Output {
                json: json!({"replaces": event_id, "event_id": added.event_id}),
                text: format!("Corrected {event_id} with {}.", added.event_id),
            })
        }
    }
}

/// The terms of a grant or a request, checked.
struct Terms {
    purpose: Purpose,
    classes: BTreeSet<DataClass>,
    data_period: DataPeriod,
    valid: Validity,
    mode: Mode,
}

/// `--from` (now if not given) and `--until` as a contract's validity.
fn validity(from: Option<&str>, until: &str, now: u64) -> Result<Validity> {
    let time = |text: &str, bound, flag: &str| {
        parse_time(text, bound, now).map_err(|err| CliError::Input(format!("--{flag}: {err}")))
    };
    let start = match from {
        Some(from) => time(from, Bound::Start, "from")?,
        None => now as i64,
    };
    let end = time(until, Bound::End, "until")?;
    let start = u64::try_from(start)
        .map_err(|_| CliError::Input("--from cannot be before 1970".to_owned()))?;
    u64::try_from(end).ok().and_then(|end| Validity::new(start, end)).ok_or_else(|| {
        CliError::Input("--until must be later than --from (or now), before the year 10000".into())
    })
}

async fn emergency_contract(profile: Profile, args: EmergencyArgs) -> Result<Output> {
    let server = ServerName::parse(&args.server).ok_or_else(|| {
        CliError::Input(format!("not a server name such as er.example.org: `{}`", args.server))
    })?;
    let valid = validity(args.from.as_deref(), &args.until, now_ms())?;
    let terms = EmergencyTerms {
        server,
        classes: args.classes.iter().copied().collect(),
        valid,
        window_ms: args.window_minutes * 60_000,
        text: args.text.clone(),
        custodian: None,
    };
    let client = MedrixClient::open(profile).await?;
    let custodian = match &args.custodian {
        Some(user) => Some(resolve_user(user, client.user_id())?),
        None => None,
    };
    let terms = EmergencyTerms { custodian, ..terms };
    let record = client.own_record().await?;
    let grant = client.put_standing_emergency(&record, terms).await?;
    Ok(Output {
        text: format!(
            "Standing emergency contract {} for {}: {} until {}.\n{}",
            grant.contract_id,
            grant.grantee.as_str(),
            render::classes(&grant),
            render::moment(grant.valid.end() as i64),
            grant.text
        ),
        json: render::grant_json(&grant, Map::new()),
    })
}

async fn device(profile: Profile, command: DeviceCommand) -> Result<Output> {
    let client = MedrixClient::open(profile).await?;
    match command {
        DeviceCommand::Add { name, kind, out } => {
            let record = client.own_record().await?;
            let credentials = client.add_device(&record, &name, &kind).await?;
            let credentials_json = serde_json::to_value(&credentials)
                .map_err(|err| CliError::Input(format!("the credentials: {err}")))?;
            match out {
                Some(path) => {
                    write_secret(&path, &credentials_json)?;
                    Ok(Output {
                        json: json!({"user_id": credentials.user_id, "room": credentials.room,
                            "name": name, "kind": kind, "out": path}),
                        text: format!(
                            "Device {name} ({kind}) is {}, with its own room {}. Its credentials \
                             are in {}: `medrix-device pair {}` on the device.",
                            credentials.user_id,
                            credentials.room,
                            path.display(),
                            path.display()
                        ),
                    })
                }
                None => Ok(Output { text: pretty(&credentials_json), json: credentials_json }),
            }
        }
        DeviceCommand::List => {
            let devices = client.devices().await?;
            let mut text = format!("{} device(s)", devices.len());
            for device in &devices {
                text.push_str(&format!(
                    "\n{}  {} ({}) since {}",
                    device.name,
                    device.user_id,
                    device.kind,
                    render::moment(device.added_at as i64)
                ));
            }
            let listed: Vec<Value> = devices
                .iter()
                .map(|d| json!({"name": d.name, "user_id": d.user_id, "kind": d.kind, "added_at": d.added_at}))
                .collect();
            Ok(Output { json: json!({"devices": listed}), text })
        }
        DeviceCommand::Remove { name } => {
            let record = client.own_record().await?;
            let removed = client.remove_device(&record, &name).await?;
            Ok(Output {
                json: json!({"name": removed.name, "user_id": removed.user_id, "removed": true}),
                text: format!(
                    "Removed device {} ({}): its account is closed; its readings stay.",
                    removed.name, removed.user_id
                ),
            })
        }
    }
}

/// Writes credentials where only the caller can read them.
fn write_secret(path: &Path, value: &Value) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|error| CliError::Write { path: path.to_owned(), error })
}

/// The custodian's service: rounds of `custodian_round` until the process is stopped, each
/// release printed as it happens. A failed round (the server restarting, the network) is
/// said on stderr and tried again after a pause: the service outlives them.
async fn custodian(profile: Profile, json: bool) -> Result<Output> {
    const ROUND_WAIT: Duration = Duration::from_secs(30);
    const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);
    let client = MedrixClient::open(profile).await?;
    eprintln!("medrix-cli: custodian {} running", client.user_id());
    loop {
        match client.custodian_round(ROUND_WAIT).await {
            Ok(releases) => {
                for release in releases {
                    crate::print(&release_output(&release), json);
                }
            }
            Err(err) => {
                let why = crate::one_line(&err.to_string());
                eprintln!("medrix-cli: custodian round failed: {why}");
                tokio::time::sleep(PAUSE_AFTER_FAILURE).await;
            }
        }
    }
}

fn release_output(release: &KeyRelease) -> Output {
    Output {
        text: format!(
            "Released the keys of {} room(s) of {}'s record to {} (contract {}).",
            release.rooms.len(),
            release.patient,
            release.clinician,
            release.contract_id
        ),
        json: json!({
            "patient": release.patient,
            "clinician": release.clinician,
            "contract_id": release.contract_id,
            "rooms": release.rooms,
            "rooms_with_keys": release.rooms_with_keys,
        }),
    }
}

fn terms(args: &TermsArgs) -> Result<Terms> {
    let now = now_ms();
    let time = |text: &str, bound, flag: &str| {
        parse_time(text, bound, now).map_err(|err| CliError::Input(format!("--{flag}: {err}")))
    };
    let valid = validity(args.from.as_deref(), &args.until, now)?;
    let data_start = args.data_from.as_deref().map(|t| time(t, Bound::Start, "data-from"));
    let data_end = args.data_until.as_deref().map(|t| time(t, Bound::End, "data-until"));
    let data_period = DataPeriod::new(data_start.transpose()?, data_end.transpose()?)
        .ok_or_else(|| CliError::Input("--data-until must be later than --data-from".to_owned()))?;
    let mode = match args.mode {
        ModeArg::Read => Mode::Read,
        ModeArg::Contribute => Mode::Contribute,
    };
    Ok(Terms {
        purpose: args.purpose,
        classes: args.classes.iter().copied().collect(),
        data_period,
        valid,
        mode,
    })
}

async fn grant(profile: Profile, args: GrantArgs) -> Result<Output> {
    let Terms { purpose, classes, data_period, valid, mode } = terms(&args.terms)?;
    let client = MedrixClient::open(profile).await?;
    let grantee = resolve_user(&args.user, client.user_id())?;
    let record = client.own_record().await?;
    let terms = GrantTerms { grantee, purpose, classes, data_period, valid, mode, text: args.text };
    let granted = client.grant(&record, terms).await?;
    Ok(granted_output(&granted))
}

/// What a grant or an approval prints.
fn granted_output(granted: &Granted) -> Output {
    let mut extra = Map::new();
    extra.insert("invited_to".to_owned(), json!(granted.invited));
    extra.insert("removed_from".to_owned(), json!(granted.removed));
    Output {
        text: format!(
            "Granted {} {} access to {} until {} (contract {}).\n{}",
            granted.grant.grantee.as_str(),
            granted.grant.mode.as_str(),
            render::classes(&granted.grant),
            render::moment(granted.grant.valid.end() as i64),
            granted.grant.contract_id,
            granted.grant.text
        ),
        json: render::grant_json(&granted.grant, extra),
    }
}

async fn request(profile: Profile, args: RequestArgs) -> Result<Output> {
    let Terms { purpose, classes, data_period, valid, mode } = terms(&args.terms)?;
    let space = parse_room(&args.space, "--space")?;
    let request = AccessRequest { purpose, classes, data_period, valid, mode };
    let client = MedrixClient::open(profile).await?;
    let patient = resolve_user(&args.patient, client.user_id())?;
    client.request_access(&patient, &space, &request, args.reason).await?;
    Ok(Output {
        json: json!({"patient": patient, "space": space, "request": request.to_content()}),
        text: format!(
            "Asked {patient} for {} access to {} until {}; `record list --patient {patient}` \
             once they approve.",
            request.mode.as_str(),
            request.classes.iter().map(|class| class.as_str()).collect::<Vec<_>>().join(","),
            render::moment(request.valid.end() as i64),
        ),
    })
}

async fn requests(profile: Profile) -> Result<Output> {
    let client = MedrixClient::open(profile).await?;
    let record = client.own_record().await?;
    let pending = client.pending_requests(&record).await?;
    let mut text = format!("{} pending request(s) on your record", pending.len());
    for request in &pending {
        text.push('\n');
        text.push_str(&render::request_line(request));
    }
    Ok(Output {
        json: json!({"requests": pending.iter().map(render::request_json).collect::<Vec<_>>()}),
        text,
    })
}

async fn break_glass(profile: Profile, patient: &str, space: &str, reason: &str) -> Result<Output> {
    let space = parse_room(space, "--space")?;
    if reason.trim().is_empty() {
        return Err(CliError::Input("--reason must say why (it cannot be blank)".to_owned()));
    }
    let client = MedrixClient::open(profile).await?;
    let patient = resolve_user(patient, client.user_id())?;
    let broken = client.break_glass(&patient, &space, reason).await?;
    let mut extra = Map::new();
    extra.insert("joined".to_owned(), json!(broken.joined));
    Ok(Output {
        text: format!(
            "Break-glass: {} access to {}'s {} until {} (contract {}); {patient} is told.\n\
             `record list --patient {patient}` reads it.",
            broken.grant.mode.as_str(),
            patient,
            render::classes(&broken.grant),
            render::moment(broken.grant.valid.end() as i64),
            broken.grant.contract_id,
        ),
        json: render::grant_json(&broken.grant, extra),
    })
}

fn parse_room(text: &str, flag: &str) -> Result<RoomId> {
    RoomId::parse(text)
        .ok_or_else(|| CliError::Input(format!("{flag}: `{text}` is not a room ID (!id:server)")))
}

/// The caller's record, or a patient's shared with them.
/// The logged reads of the caller's record (or their own reads of one shared with them),
/// filtered as asked.
async fn audit(profile: Profile, args: AuditArgs) -> Result<Output> {
    match args.action {
        Some(AuditAction::Export { out }) => return audit_export(profile, &out).await,
        Some(AuditAction::Verify { file }) => return audit_verify(&file),
        Some(AuditAction::Fhir { out }) => return audit_fhir(profile, &out).await,
        Some(AuditAction::Delegate { user, remove }) => {
            return audit_delegate(profile, &user, !remove).await;
        }
        None => {}
    }
    let now = now_ms();
    let since = args
        .since
        .as_deref()
        .map(|text| parse_time(text, Bound::Start, now).map_err(CliError::Input))
        .transpose()?;
    let client = MedrixClient::open(profile).await?;
    // A user name or ID; a server name stands for all reads by that server.
    let who = match args.who.as_deref() {
        None => None,
        Some(text) if text.starts_with('@') || !text.contains(['.', ':']) => {
            Some(resolve_user(text, client.user_id())?.to_string())
        }
        Some(server) => Some(server.to_owned()),
    };
    if let Some(space) = args.space.as_deref() {
        let space = RoomId::parse(space)
            .ok_or_else(|| CliError::Input(format!("`{space}` is not a room ID")))?;
        let mut reads = client.delegated_read_log(&space).await?;
        reads.retain(|read| {
            args.class.is_none_or(|class| read.class == Some(class))
                && since.is_none_or(|since| read.entry.ts as i64 >= since)
                && who.as_deref().is_none_or(|who| render::reader_is(&read.entry.reader, who))
        });
        let mut text = format!("{} read(s) of the record whose space is {space}", reads.len());
        for read in &reads {
            text.push('\n');
            text.push_str(&render::read_line(read));
        }
        return Ok(Output {
            json: json!({
                "space": space.as_str(),
                "reads": reads.iter().map(render::read_json).collect::<Vec<_>>(),
            }),
            text,
        });
    }
    let record = record_for(&client, args.patient.as_deref()).await?;
    let mut reads = client.read_log(&record).await?;
    reads.retain(|read| {
        args.class.is_none_or(|class| read.class == Some(class))
            && since.is_none_or(|since| read.entry.ts as i64 >= since)
            && who.as_deref().is_none_or(|who| render::reader_is(&read.entry.reader, who))
    });
    // The changes (the rooms' DAGs) are the patient's to list; a grantee sees their reads.
    let mut changes = if record.patient() == client.user_id() {
        client.changes(&record).await?
    } else {
        Vec::new()
    };
    changes.retain(|change| {
        args.class.is_none_or(|class| change.class == Some(class))
            && since.is_none_or(|since| change.ts as i64 >= since)
            && who.as_deref().is_none_or(|who| render::sender_is(&change.sender, who))
    });
    let mut text = format!(
        "{} read(s) and {} change(s) of the record of {}",
        reads.len(),
        changes.len(),
        record.patient()
    );
    // One timeline, oldest first: reads and changes by their moment.
    let mut lines: Vec<(u64, String)> = reads
        .iter()
        .map(|read| (read.entry.ts, render::read_line(read)))
        .chain(changes.iter().map(|change| (change.ts, render::change_line(change))))
        .collect();
    lines.sort_by_key(|(ts, _)| *ts);
    for (_, line) in lines {
        text.push('\n');
        text.push_str(&line);
    }
    Ok(Output {
        json: json!({
            "patient": record.patient(),
            "reads": reads.iter().map(render::read_json).collect::<Vec<_>>(),
            "changes": changes.iter().map(render::change_json).collect::<Vec<_>>(),
        }),
        text,
    })
}

/// Names (or stops naming) a delegate who reads the caller's whole audit trail.
async fn audit_delegate(profile: Profile, user: &str, on: bool) -> Result<Output> {
    let client = MedrixClient::open(profile).await?;
    let delegate = resolve_user(user, client.user_id())?;
    let record = client.own_record().await?;
    client.name_audit_delegate(&record, &delegate, on).await?;
    let text = if on {
        format!(
            "{delegate} now reads your record's audit trail (audit --space {}).",
            record.space_id()
        )
    } else {
        format!("{delegate} no longer reads your record's audit trail.")
    };
    Ok(Output {
        json: json!({"delegate": delegate.as_str(), "active": on, "space": record.space_id().as_str()}),
        text,
    })
}

/// The record's reads as FHIR R4 AuditEvents, in a `collection` Bundle.
async fn audit_fhir(profile: Profile, out: &Path) -> Result<Output> {
    let client = MedrixClient::open(profile).await?;
    let record = client.own_record().await?;
    let reads = client.read_log(&record).await?;
    let patient = record.patient().as_str();
    let entries: Vec<Value> = reads
        .iter()
        .map(|read| {
            let event = audit_reports::audit_event(read, patient);
            json!({"fullUrl": format!("urn:uuid:{}", uuid_like(&event["id"])), "resource": event})
        })
        .collect();
    let count = entries.len();
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    std::fs::write(out, bundle.to_string())
        .map_err(|error| CliError::Write { path: out.to_owned(), error })?;
    Ok(Output {
        json: json!({"out": out, "audit_events": count}),
        text: format!("Wrote {} ({count} AuditEvent(s)).", out.display()),
    })
}

/// A `urn:uuid` form of an AuditEvent id (`read-` + 32 hex digits) for its Bundle entry.
fn uuid_like(id: &Value) -> String {
    let hex = id.as_str().unwrap_or_default().trim_start_matches("read-");
    if hex.len() != 32 {
        return "00000000-0000-0000-0000-000000000000".to_owned();
    }
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The HIPAA accounting of disclosures of the caller's record.
async fn disclosures(profile: Profile, since: Option<&str>) -> Result<Output> {
    let since = since
        .map(|text| parse_time(text, Bound::Start, now_ms()).map_err(CliError::Input))
        .transpose()?
        .unwrap_or(0);
    let client = MedrixClient::open(profile).await?;
    let record = client.own_record().await?;
    let reads = client.read_log(&record).await?;
    let listed = audit_reports::disclosures(&reads, since.max(0) as u64);
    let mut text = format!("{} disclosure(s) of the record of {}", listed.len(), record.patient());
    for disclosure in &listed {
        text.push('\n');
        text.push_str(&render::disclosure_line(disclosure));
    }
    Ok(Output {
        json: json!({
            "patient": record.patient(),
            "disclosures": listed.iter().map(render::disclosure_json).collect::<Vec<_>>(),
        }),
        text,
    })
}

/// The GDPR recipients of the caller's record's data.
async fn recipients(profile: Profile) -> Result<Output> {
    let client = MedrixClient::open(profile).await?;
    let record = client.own_record().await?;
    let reads = client.read_log(&record).await?;
    let now = now_ms();
    // In force now: a personal contract that allows access, or a standing emergency contract
    // (its organisation's clinicians may break the glass, so it may receive data).
    let holding: Vec<(String, Vec<DataClass>)> = client
        .access(&record, now)
        .await?
        .into_iter()
        .filter(|access| {
            let grant = &access.contract.grant;
            access.decision.is_allowed()
                || (grant.is_standing_emergency()
                    && grant.status == medrix_records::Status::Active
                    && grant.valid.contains(now))
        })
        .map(|access| {
            let grant = access.contract.grant;
            (grant.grantee.as_str().to_owned(), grant.classes.into_iter().collect())
        })
        .collect();
    let listed = audit_reports::recipients(&reads, &holding);
    let mut text = format!("{} recipient(s) of the record of {}", listed.len(), record.patient());
    for recipient in &listed {
        text.push('\n');
        text.push_str(&render::recipient_line(recipient));
    }
    Ok(Output {
        json: json!({
            "patient": record.patient(),
            "recipients": listed.iter().map(render::recipient_json).collect::<Vec<_>>(),
        }),
        text,
    })
}

/// The caller's record exported for the verifier.
async fn audit_export(profile: Profile, out: &Path) -> Result<Output> {
    let client = MedrixClient::open(profile).await?;
    let record = client.own_record().await?;
    let export = client.export_for_audit(&record).await?;
    let rooms = export["rooms"].as_array().map_or(0, Vec::len);
    let events: usize = export["rooms"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|room| room["events"].as_array().map_or(0, Vec::len))
        .sum();
    std::fs::write(out, export.to_string())
        .map_err(|error| CliError::Write { path: out.to_owned(), error })?;
    Ok(Output {
        json: json!({"out": out, "rooms": rooms, "events": events}),
        text: format!("Wrote {} ({rooms} room(s), {events} event(s)).", out.display()),
    })
}

/// Checks an export with the independent verifier; problems fail the exit status.
fn audit_verify(file: &Path) -> Result<Output> {
    let text = std::fs::read_to_string(file)
        .map_err(|error| CliError::Read { path: file.to_owned(), error })?;
    let value: Value = serde_json::from_str(&text)
        .map_err(|err| CliError::Input(format!("{} is not JSON: {err}", file.display())))?;
    let export = medrix_verify::Export::parse(&value)
        .map_err(|err| CliError::Input(format!("{}: {err}", file.display())))?;
    let report = medrix_verify::verify(&export);
    let summary = format!(
        "{} room(s), {} event(s), {} read-log entries, {} checkpoint(s)",
        report.rooms, report.events, report.log_entries, report.checkpoints
    );
    let problems: Vec<Value> = report
        .problems
        .iter()
        .map(|problem| json!({"place": problem.place, "what": problem.what}))
        .collect();
    let json = json!({
        "valid": report.is_valid(), "rooms": report.rooms, "events": report.events,
        "log_entries": report.log_entries, "checkpoints": report.checkpoints,
        "problems": problems,
    });
    if report.is_valid() {
        return Ok(Output { json, text: format!("valid: {summary}") });
    }
    let mut text = format!("invalid: {} problem(s) in {summary}", report.problems.len());
    for problem in &report.problems {
        text.push_str(&format!("\n  {problem}"));
    }
    Err(CliError::Finding(Output { json, text }))
}

async fn record_for(client: &MedrixClient, patient: Option<&str>) -> Result<Record> {
    Ok(match patient {
        None => client.own_record().await?,
        Some(patient) => {
            let patient = resolve_user(patient, client.user_id())?;
            client.record_of(&patient).await?
        }
    })
}

async fn session_output(client: &MedrixClient, verb: &str) -> Result<Output> {
    let session = client.session().await?;
    let mut text = format!(
        "{verb} {} (device {}) on {}.",
        session.user_id, session.device_id, session.homeserver
    );
    if !session.cross_signed {
        text.push_str(
            "\nThis device is not cross-signed (the account's identity was set up on another \
             device): records shared with you cannot hand their history to it.",
        );
    }
    Ok(Output {
        json: json!({
            "user_id": session.user_id,
            "device_id": session.device_id,
            "homeserver": session.homeserver,
            "cross_signed": session.cross_signed,
        }),
        text,
    })
}

/// A user ID, or a user name on the caller's server.
fn resolve_user(text: &str, me: &UserId) -> Result<UserId> {
    let full = if text.starts_with('@') {
        text.to_owned()
    } else {
        format!("@{text}:{}", me.server_name())
    };
    UserId::parse(&full)
        .ok_or_else(|| CliError::Input(format!("`{text}` is not a user name or a user ID")))
}

/// The resources of a FHIR file, each routed to a class.
fn read_fhir(path: &Path) -> Result<Vec<NewEntry>> {
    let bytes =
        std::fs::read(path).map_err(|error| CliError::Read { path: path.to_owned(), error })?;
    let text = String::from_utf8(bytes).map_err(|_| CliError::NotText(path.to_owned()))?;
    read_resources(&text).map_err(|error| CliError::Fhir { path: path.to_owned(), error })
}

fn write(path: &Path, value: &Value) -> Result<()> {
    std::fs::write(path, pretty(value) + "\n")
        .map_err(|error| CliError::Write { path: path.to_owned(), error })
}

fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn profile_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(dir) = given {
        return Ok(dir);
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".local/share")))
        .ok_or(CliError::NoProfile)?;
    Ok(data.join("medrix-cli"))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}
