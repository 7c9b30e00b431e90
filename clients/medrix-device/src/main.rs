//! `medrix-device`: the device bot's decoder on the command line. `decode CHARACTERISTIC HEX`
//! prints one Bluetooth GATT health reading as one JSON object (the keys are
//! spec/devices.md's), with the exact decimals the device sent.
//!
//! Exit codes: 0 decoded; 1 the payload is malformed (`{"error": "malformed: ..."}` on
//! stdout); 2 the arguments are wrong (one line on stderr).

use std::io::Write;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Parser, Subcommand};
use medrix_devices::{Characteristic, decode, json_string};

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
    },
}

const EXIT_MALFORMED: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return argument_error(&error),
    };
    match cli.command {
        Command::Decode { characteristic, hex } => {
            let payload = match parse_hex(&hex.concat()) {
                Ok(payload) => payload,
                Err(problem) => return usage_error(&problem),
            };
            match decode(characteristic, &payload) {
                Ok(reading) => print_json(&reading.to_json(), ExitCode::SUCCESS),
                Err(error) => {
                    let line = format!("{{\"error\": {}}}", json_string(&error.to_string()));
                    print_json(&line, ExitCode::from(EXIT_MALFORMED))
                }
            }
        }
    }
}

/// Prints one JSON line; a stdout that cannot be written to is a failure, not a panic.
fn print_json(line: &str, code: ExitCode) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{line}").and_then(|()| stdout.flush()) {
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
