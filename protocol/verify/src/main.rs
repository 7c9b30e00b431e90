//! `medrix-verify FILE`: checks an exported health record (`medrix-cli audit export`) without
//! trusting the server that made it. Prints `valid` and what was checked, exit 0; or
//! `invalid` and every problem with its place, exit 1; a file it cannot read, exit 2.

use std::process::ExitCode;

use medrix_verify::{Export, verify};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path] = args.as_slice() else {
        eprintln!("usage: medrix-verify EXPORT.json");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("cannot read {path}: {err}");
            return ExitCode::from(2);
        }
    };
    let export = match serde_json::from_str(&text)
        .map_err(|e| e.to_string())
        .and_then(|value| Export::parse(&value).map_err(|e| e.to_string()))
    {
        Ok(export) => export,
        Err(err) => {
            eprintln!("{path}: {err}");
            return ExitCode::from(2);
        }
    };
    let report = verify(&export);
    let summary = format!(
        "{} room(s), {} event(s), {} read-log entries, {} checkpoint(s)",
        report.rooms, report.events, report.log_entries, report.checkpoints
    );
    if report.is_valid() {
        println!("valid: {summary}");
        ExitCode::SUCCESS
    } else {
        println!("invalid: {} problem(s) in {summary}", report.problems.len());
        for problem in &report.problems {
            println!("  {problem}");
        }
        ExitCode::from(1)
    }
}
