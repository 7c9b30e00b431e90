//! The independent audit verifier (`spec/audit.md` §6). Given an exported record (each
//! room's events as signed, its read log, and the signing servers' key documents), it checks
//! with the pure protocol crates only, trusting nothing the server says about them:
//!
//! 1. every event's format, signatures, content hash and ID (`medrix_protocol::incoming`);
//! 2. the DAG: every `prev_events` and `auth_events` reference is in the export;
//! 3. every event's authorization, replaying the room in DAG order (`decide`, with state
//!    resolved where the DAG forks);
//! 4. each read log's hash chain (the patient's server's, and the other Medrix servers' logs of
//!    their own users' reads), and its agreement with the checkpoints anchored for that server
//!    (`org.medrix.audit.checkpoint` events in the DAG, keyed by its name);
//! 5. each logged read's basis: the contract it names allowed the reader that room's class at
//!    that moment (`medrix_records::evaluate`), or the reader was the patient, the executor,
//!    or (under no contract) a user served only their own membership.
//!
//! It reports every problem with the room and the event ID or log index where it is.

mod events;
mod export;
mod reads;

pub use export::{Export, ExportError, RoomExport};

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The room, and an event ID or `read log entry N`.
    pub place: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.place, self.what)
    }
}

/// What was checked, and what is wrong.
#[derive(Debug, Default)]
pub struct Report {
    pub rooms: usize,
    pub events: usize,
    pub log_entries: usize,
    pub checkpoints: usize,
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole export.
pub fn verify(export: &Export) -> Report {
    let mut report = Report { rooms: export.rooms.len(), ..Report::default() };
    let keys = export::verify_keys(export, &mut report.problems);
    let mut replayed = Vec::new();
    for room in &export.rooms {
        let room_events = events::check_room(room, &keys, &mut report.problems);
        report.events += room_events.events.len();
        replayed.push(room_events);
    }
    let record = reads::Record::find(export, &replayed);
    for (room, room_events) in export.rooms.iter().zip(&replayed) {
        let logs = std::iter::once((record.server.as_str(), &room.read_log))
            .chain(room.remote_logs.iter().map(|(server, log)| (server.as_str(), log)));
        for (server, log) in logs {
            let log = reads::Log { room, server, entries: log };
            let checked = reads::check_room_log(&log, room_events, &record, &mut report.problems);
            report.log_entries += checked.entries;
            report.checkpoints += checked.checkpoints;
        }
    }
    report
}
