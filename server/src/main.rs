//! `medrix`: the Medrix homeserver (`medrix serve`) and the protocol core's checks for
//! operators and implementers: verify an event, compute its ID, check the test vectors.

// A panic in a handler drops the client's connection without an answer: bad input gets a
// Matrix error instead. Where a value truly cannot be absent, an `#[allow]` says why.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod cli_event;
mod cli_vectors;
mod clock;
mod config;
mod connections;
mod http;
mod locks;
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

/// mimalloc's `mi_option_purge_delay` (the C enum's position in the v3 library that
/// libmimalloc-sys 0.1.49 builds; its Rust constants skip this one).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Freed memory goes back to the system at once. With mimalloc's default delay, memory freed
/// by a burst (argon2 password hashing takes 19 MiB a time) stayed resident in an idle server:
/// 99 MiB after registering 20 users, against 41 MiB with no delay, at no measurable cost to
/// federation ingest (A/B, 4 rounds each).
fn return_freed_memory_promptly() {
    // SAFETY: sets a plain integer option; mimalloc reads options at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[derive(Parser)]
#[command(name = "medrix", version, about = "Medrix: patient-controlled health records on Matrix")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the homeserver. (Boxed: its flags are most of the enum's size.)
    Serve(Box<serve::ServeArgs>),
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
    return_freed_memory_promptly();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(*args),
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // If a libmimalloc-sys update moved the option, this reads another one's default.
        // SAFETY: reads a plain integer option.
        let default = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(default, 1000, "mimalloc v3's documented default purge delay");
        }
        super::return_freed_memory_promptly();
        // SAFETY: as above.
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) }, 0);
    }
}
