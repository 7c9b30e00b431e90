//! `medrix`: the Medrix homeserver (`medrix serve`) and the protocol core's checks for
//! operators and implementers: verify an event, compute its ID, check the test vectors.

mod cli_event;
mod cli_vectors;
mod config;
mod http;
mod metrics;
mod serve;
mod service;
mod storage;
mod tls;

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
    /// Run the homeserver.
    Serve(serve::ServeArgs),
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
        Command::Serve(args) => serve::run(args),
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
