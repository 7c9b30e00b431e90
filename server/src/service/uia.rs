//! User-interactive authentication sessions: which stages a client completed, for how long.
//! Held in memory (a restart only makes a client start its flow again), bounded in count.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};

use crate::locks::LockExt;

/// How long a client has to finish a flow.
const SESSION_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// The most sessions kept at once; the oldest go first.
const MAX_SESSIONS: usize = 10_000;

#[derive(Default)]
pub struct UiaSessions {
    sessions: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

impl UiaSessions {
    /// Starts a session and returns its ID.
    pub fn start(&self) -> String {
        let id = URL_SAFE_NO_PAD.encode(crate::random::bytes::<18>());
        let mut sessions = self.sessions.locked();
        let now = Instant::now();
        sessions.retain(|_, (started, _)| now.duration_since(*started) < SESSION_LIFETIME);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) =
                sessions.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(id.clone(), (now, Vec::new()));
        id
    }

    /// The stages completed in a live session; `None` if it is unknown or expired.
    pub fn completed(&self, id: &str) -> Option<Vec<String>> {
        let sessions = self.sessions.locked();
        sessions
            .get(id)
            .filter(|(started, _)| started.elapsed() < SESSION_LIFETIME)
            .map(|(_, stages)| stages.clone())
    }

    /// Records a completed stage.
    pub fn complete(&self, id: &str, stage: &str) {
        if let Some((_, stages)) = self.sessions.locked().get_mut(id)
            && !stages.iter().any(|s| s == stage)
        {
            stages.push(stage.to_owned());
        }
    }

    /// Ends a session once its flow succeeded.
    pub fn finish(&self, id: &str) {
        self.sessions.locked().remove(id);
    }
}
