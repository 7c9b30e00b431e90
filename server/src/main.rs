//! `medrix`: the Medrix homeserver (`medrix serve`) and the protocol core's checks for
//! operators and implementers: verify an event, compute its ID, check the test vectors.

mod cli_event;
mod cli_vectors;
mod clock;
mod config;
mod http;
mod metrics;
mod random;
mod serve;
mod service;
mod signing_keys;
mod storage;
mod tls;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Every received event is parsed into a tree of small allocations (canonical JSON), redacted,
/// encoded and dropped again; glibc's malloc took about a sixth of the server's CPU under
/// federation ingest, mimalloc's thread-local free lists take much less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage the server's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Retire the current signing key (it stays published as an old key) and make a new one.
    /// Run it while the server is stopped; the new key is used from the next start.
    Rotate {
        /// The data directory holding the keys.
        #[arg(long)]
        data_dir: std::path::PathBuf,
        /// The server name the keys belong to.
        #[arg(long)]
        server_name: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Event(command) => cli_event::run(command),
        Command::Vectors(command) => cli_vectors::run(command),
        Command::Keys(KeysCommand::Rotate { data_dir, server_name }) => {
            signing_keys::rotate(&data_dir, &server_name, clock::now_ms()).map(|key_id| {
                println!("new signing key {key_id}; the previous one is kept as an old key");
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("medrix: {message}");
            ExitCode::FAILURE
        }
    }
}
