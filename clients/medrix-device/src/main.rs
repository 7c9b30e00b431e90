//! `medrix-device`: the device bot's decoder on the command line. `decode CHARACTERISTIC HEX`
//! prints one Bluetooth GATT health reading as one JSON object (the keys are
//! spec/devices.md's), with the exact decimals the device sent; with `--fhir`, the FHIR R4
//! Observations it becomes instead, one per line (NDJSON, which `medrix-cli record add` reads).
//!
//! Exit codes: 0 decoded; 1 the payload is malformed (`{"error": "malformed: ..."}` on
//! stdout); 2 the arguments are wrong (one line on stderr).

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use medrix_devices::fhir::{ObservationContext, observations};
use medrix_devices::{Characteristic, decode, json_string};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Decode Bluetooth GATT health readings into exact JSON.
#[derive(Debug, Parser)]
#[command(name = "medrix-device", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    }
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

/// `2A35`, `2a35`, `0x2A35`: four hex digits naming a characteristic this tool decodes.
fn parse_characteristic(text: &str) -> Result<Characteristic, String> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).unwrap_or(text);
    let uuid = Some(digits)
        .filter(|digits| digits.len() == 4 && digits.chars().all(|c| c.is_ascii_hexdigit()))
        .and_then(|digits| u16::from_str_radix(digits, 16).ok())
        .ok_or_else(|| format!("not a 16-bit UUID in hex such as 2A35: `{text}`"))?;
    Characteristic::from_uuid(uuid).ok_or_else(|| {
        let known: Vec<String> =
            Characteristic::ALL.iter().map(|known| format!("{:04X}", known.uuid())).collect();
        format!("0x{uuid:04X} is not a characteristic this tool decodes ({})", known.join(", "))
    })
}

/// `Type/id`: a FHIR relative reference (a resource type, then an id of 1-64 letters, digits,
/// `-` and `.`).
fn parse_reference(text: &str) -> Result<String, String> {
    let valid = text.split_once('/').is_some_and(|(kind, id)| {
        kind.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && kind.chars().all(|c| c.is_ascii_alphabetic())
            && (1..=64).contains(&id.len())
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    });
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("not a FHIR reference such as Patient/p1: `{text}`"))
    }
}

fn parse_instant(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| format!("not an RFC 3339 time such as 2024-03-05T07:30:00Z: `{text}`"))
}

/// `+01:00`, `-05:30`, `Z`.
fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    let bad = || format!("not a UTC offset such as +01:00: `{text}`");
    if text == "Z" {
        return Ok(UtcOffset::UTC);
    }
    let (sign, rest) = match text.split_at_checked(1) {
        Some(("+", rest)) => (1, rest),
        Some(("-", rest)) => (-1, rest),
        _ => return Err(bad()),
    };
    let (hours, minutes) = rest.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: i8 = hours.parse().map_err(|_| bad())?;
    let minutes: i8 = minutes.parse().map_err(|_| bad())?;
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).map_err(|_| bad())
}

/// Hex digits, whitespace between them ignored, into bytes.
fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: Vec<u8> = text.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    if let Some(bad) = text.chars().find(|c| !c.is_ascii_hexdigit() && !c.is_ascii_whitespace()) {
        return Err(format!("HEX has a character that is not a hex digit: `{bad}`"));
    }
    if !digits.len().is_multiple_of(2) {
        return Err(format!("HEX has an odd number of digits ({})", digits.len()));
    }
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).map_err(|error| error.to_string())?;
            u8::from_str_radix(pair, 16).map_err(|error| error.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{parse_characteristic, parse_hex};
    use medrix_devices::Characteristic;

    #[test]
    fn characteristics_are_four_hex_digits_with_an_optional_prefix() {
        for text in ["2A35", "2a35", "0x2a35", "0X2A35"] {
            assert_eq!(parse_characteristic(text), Ok(Characteristic::BloodPressureMeasurement));
        }
        assert!(parse_characteristic("2A3").is_err());
        assert!(parse_characteristic("0x").is_err());
        assert!(parse_characteristic("+2A3").is_err());
        assert!(parse_characteristic("2A00").unwrap_err().contains("2A37, 2A35"));
    }

    #[test]
    fn hex_may_have_spaces_but_not_odd_digits_or_other_characters() {
        assert_eq!(parse_hex("00 78 00\t50"), Ok(vec![0x00, 0x78, 0x00, 0x50]));
        assert_eq!(parse_hex(""), Ok(vec![]));
        assert!(parse_hex("007").unwrap_err().contains("odd"));
        assert!(parse_hex("0g").unwrap_err().contains("`g`"));
        assert!(parse_hex("é0").unwrap_err().contains("`é`"));
    }
}
