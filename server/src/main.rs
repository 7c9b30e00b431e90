//! `medrix`: the Medrix command line. Until the homeserver lands (`medrix serve`), it offers
//! the protocol core's checks to operators and implementers: verify an event, compute its ID,
//! and check the test vectors of `spec/vectors`.

mod cli_event;
mod cli_vectors;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "medrix", version, about = "Medrix: patient-controlled health records on Matrix")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check events: signatures, hashes, format, event ID.
    #[command(subcommand)]
    Event(cli_event::EventCommand),
    /// Check test-vector files against this implementation.
    #[command(subcommand)]
    Vectors(cli_vectors::VectorsCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Event(command) => cli_event::run(command),
        Command::Vectors(command) => cli_vectors::run(command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medrix: {message}");
            ExitCode::FAILURE
        }
    }
}
