//! The device's durable queue (spec/devices.md, "Sync that never loses or duplicates"): every
//! reading is written here, committed to disk, before anything is sent, and marked sent only
//! once the homeserver has answered with its event. SQLite (already in the build through
//! matrix-sdk's store) in WAL mode with full syncs: a committed reading survives `kill -9` and
//! a power cut. Each reading's ID is unique here, so the same reading queued twice is kept
//! once, and its ID is the transaction ID it is sent with, so sending it twice stores it once.

use std::path::Path;

use rusqlite::{Connection, params};
use serde_json::{Map, Value};

/// What a queued item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A reading: `content` is its FHIR Observation, sent as an entry.
    Reading,
    /// An alert a reading raised: `content` is the notice's message content.
    Alert,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Reading => "reading",
            Kind::Alert => "alert",
        }
    }
}

/// One queued item.
#[derive(Debug, Clone, PartialEq)]
pub struct Queued {
    pub id: String,
    pub kind: Kind,
    pub content: Map<String, Value>,
    /// The reading's clinical time (for an alert, its reading's): who may have its key.
    pub clinical_time_ms: Option<i64>,
}

/// How much is waiting and how much went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backlog {
    pub pending: u64,
    pub sent: u64,
}

pub struct Queue {
    db: Connection,
}

impl Queue {
    /// Opens (or creates) the queue in `path`.
    pub fn open(path: &Path) -> rusqlite::Result<Queue> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a commit is on disk when it returns, WAL or not.
        db.pragma_update(None, "synchronous", "FULL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS readings (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL,
                content TEXT NOT NULL,
                clinical_time_ms INTEGER,
                event_id TEXT
            );
            CREATE INDEX IF NOT EXISTS pending ON readings (seq) WHERE event_id IS NULL;",
        )?;
        Ok(Queue { db })
    }

    /// Queues readings in one commit; those whose ID is already queued (or sent) are kept
    /// once. Answers how many were new.
    pub fn add(&mut self, readings: &[Queued]) -> rusqlite::Result<usize> {
        let tx = self.db.transaction()?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO readings (id, kind, content, clinical_time_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for reading in readings {
                let content = Value::Object(reading.content.clone()).to_string();
                added += insert.execute(params![
                    reading.id,
                    reading.kind.as_str(),
                    content,
                    reading.clinical_time_ms
                ])?;
            }
        }
        tx.commit()?;
        Ok(added)
    }

    /// The oldest readings not yet sent, at most `limit`.
    pub fn pending(&self, limit: usize) -> rusqlite::Result<Vec<Queued>> {
        let mut select = self.db.prepare_cached(
            "SELECT id, kind, content, clinical_time_ms FROM readings
             WHERE event_id IS NULL ORDER BY seq LIMIT ?1",
        )?;
        let rows = select.query_map(params![limit as i64], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<i64>>(3)?,
            ))
        })?;
        let mut readings = Vec::new();
        for row in rows {
            let (id, kind, text, clinical_time_ms) = row?;
            let kind = if kind == Kind::Alert.as_str() { Kind::Alert } else { Kind::Reading };
            // Written by `add` from a JSON object; anything else is a damaged file.
            let content = match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(content)) => content,
                _ => {
                    return Err(rusqlite::Error::InvalidColumnType(
                        2,
                        "content".to_owned(),
                        rusqlite::types::Type::Text,
                    ));
                }
            };
            readings.push(Queued { id, kind, content, clinical_time_ms });
        }
        Ok(readings)
    }

    /// Marks readings sent, with the events the homeserver stored them as, in one commit.
    pub fn mark_sent(&mut self, sent: &[(String, String)]) -> rusqlite::Result<()> {
        let tx = self.db.transaction()?;
        {
            let mut update =
                tx.prepare_cached("UPDATE readings SET event_id = ?2 WHERE id = ?1")?;
            for (id, event_id) in sent {
                update.execute(params![id, event_id])?;
            }
        }
        tx.commit()
    }

    /// The event a reading was stored as, once sent.
    #[cfg(test)]
    pub fn event_of(&self, id: &str) -> rusqlite::Result<Option<String>> {
        use rusqlite::OptionalExtension;
        self.db
            .query_row("SELECT event_id FROM readings WHERE id = ?1", params![id], |row| {
                row.get::<_, Option<String>>(0)
            })
            .optional()
            .map(Option::flatten)
    }

    pub fn backlog(&self) -> rusqlite::Result<Backlog> {
        self.db.query_row(
            "SELECT COUNT(*) FILTER (WHERE event_id IS NULL), COUNT(*) FILTER (WHERE event_id IS NOT NULL)
             FROM readings",
            [],
            |row| Ok(Backlog { pending: row.get::<_, i64>(0)? as u64, sent: row.get::<_, i64>(1)? as u64 }),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(id: &str, value: i64) -> Queued {
        let content = serde_json::json!({"resourceType": "Observation", "id": id, "value": value});
        let Value::Object(content) = content else { unreachable!() };
        Queued { id: id.to_owned(), kind: Kind::Reading, content, clinical_time_ms: Some(value) }
    }

    fn temp_path(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("medrix-queue-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("queue.sqlite")
    }

    #[test]
    fn a_reading_is_kept_once_and_sent_in_order() {
        let path = temp_path("once");
        let mut queue = Queue::open(&path).unwrap();
        assert_eq!(queue.add(&[reading("a", 1), reading("b", 2)]).unwrap(), 2);
        // The same readings again (a replayed buffer), and one new.
        assert_eq!(queue.add(&[reading("b", 2), reading("a", 1), reading("c", 3)]).unwrap(), 1);
        let pending = queue.pending(10).unwrap();
        let ids: Vec<&str> = pending.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(pending[1], reading("b", 2));
        queue.mark_sent(&[("a".to_owned(), "$ea".to_owned())]).unwrap();
        assert_eq!(queue.backlog().unwrap(), Backlog { pending: 2, sent: 1 });
        // A sent reading queued again stays sent, once.
        assert_eq!(queue.add(&[reading("a", 1)]).unwrap(), 0);
        assert_eq!(queue.event_of("a").unwrap().as_deref(), Some("$ea"));
        assert_eq!(queue.pending(1).unwrap()[0].id, "b");
        // What was committed is there after reopening.
        drop(queue);
        let queue = Queue::open(&path).unwrap();
        assert_eq!(queue.backlog().unwrap(), Backlog { pending: 2, sent: 1 });
    }
}
