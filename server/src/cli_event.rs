//! `medrix event ...`: checks on one event file.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use medrix_protocol::{
    RoomVersion,
    canonical::{MAX_PDU_BYTES, parse_object},
    incoming::{check_incoming_pdu, event_id, required_signers},
    keys::VerifyKeys,
};

#[derive(Subcommand)]
pub enum EventCommand {
    /// Verify an event's format, signatures and content hash, and print its ID.
    Verify(VerifyArgs),
    /// Print an event's ID (its reference hash), without checking signatures.
    Id(IdArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// Room version of the event's room (10, 11 or 12).
    #[arg(long, default_value = "12")]
    room_version: String,
    /// A server's public key, as SERVER=KEY_ID=BASE64 (repeatable).
    #[arg(long = "key", value_name = "SERVER=KEY_ID=BASE64", required = true)]
    keys: Vec<String>,
    /// The event, as federation JSON.
    file: PathBuf,
}

#[derive(Args)]
pub struct IdArgs {
    /// Room version of the event's room (10, 11 or 12).
    #[arg(long, default_value = "12")]
    room_version: String,
    /// The event, as federation JSON.
    file: PathBuf,
}

pub fn run(command: EventCommand) -> Result<(), String> {
    match command {
        EventCommand::Verify(args) => verify(args),
        EventCommand::Id(args) => {
            let version = RoomVersion::parse(&args.room_version).map_err(|err| err.to_string())?;
            let object = parse_object(&read(&args.file)?, MAX_PDU_BYTES)
                .map_err(|err| format!("{}: {err}", args.file.display()))?;
            let id = event_id(&object, version).map_err(|err| err.to_string())?;
            println!("{id}");
            Ok(())
        }
    }
}

fn verify(args: VerifyArgs) -> Result<(), String> {
    let version = RoomVersion::parse(&args.room_version).map_err(|err| err.to_string())?;
    let mut keys = VerifyKeys::default();
    for key in &args.keys {
        let [server, key_id, public_key] = key.splitn(3, '=').collect::<Vec<_>>()[..] else {
            return Err(format!("--key {key:?}: expected SERVER=KEY_ID=BASE64"));
        };
        keys.insert_base64(server, key_id, public_key)
            .map_err(|err| format!("--key {key:?}: {err}"))?;
    }
    let bytes = read(&args.file)?;
    let checked = check_incoming_pdu(&bytes, version, &keys).map_err(|err| {
        let signers = parse_object(&bytes, MAX_PDU_BYTES)
            .ok()
            .and_then(|object| required_signers(&object, version).ok())
            .map(|servers| servers.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "))
            .unwrap_or_default();
        format!("{}: INVALID: {err} (must be signed by: {signers})", args.file.display())
    })?;
    let pdu = &checked.pdu;
    println!("event_id: {}", pdu.event_id());
    println!("type:     {}", pdu.kind());
    println!("sender:   {}", pdu.sender());
    if let Some(room_id) = pdu.room_id() {
        println!("room_id:  {room_id}");
    }
    if checked.redacted_on_receipt {
        println!("VALID SIGNATURES, CONTENT HASH MISMATCH: keep only the redacted form");
    } else {
        println!("VALID: signatures and content hash check out");
    }
    Ok(())
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("{}: {err}", path.display()))
}
