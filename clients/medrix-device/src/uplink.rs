//! The device's side of the record: pairing with the credentials the patient was shown, and
//! the loop that drains the queue into the device's room. Nothing leaves the queue until the
//! homeserver has answered with its event; a failure (a cut, a timeout, the server away) is
//! retried after a pause that grows to `MAX_PAUSE`, with the same reading IDs, so a reading
//! sent twice is stored once. A closed device account (the patient removed the device) ends
//! the loop: retrying cannot help.

use std::path::{Path, PathBuf};
use std::time::Duration;

use medrix_client::{
    ClientError, DeviceCredentials, MedrixClient, Profile, Reading, ReadingBody, class_of_kind,
};

use crate::queue::{Backlog, Kind, Queue};

/// Readings sent between two commits of the queue: a failure resends at most these.
const BATCH: usize = 20;
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const MAX_PAUSE: Duration = Duration::from_secs(15);
/// How often an idle `run` looks for new readings.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The files of a device's profile directory beside matrix-sdk's.
pub struct DeviceProfile {
    pub dir: PathBuf,
}

impl DeviceProfile {
    pub fn new(dir: &Path) -> DeviceProfile {
        DeviceProfile { dir: dir.to_owned() }
    }

    /// The pairing, without the token (which matrix-sdk's session file keeps).
    fn pairing_file(&self) -> PathBuf {
        self.dir.join("device.json")
    }

    pub fn queue(&self) -> Result<Queue, String> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|err| format!("cannot create {}: {err}", self.dir.display()))?;
        let path = self.dir.join("queue.sqlite");
        Queue::open(&path).map_err(|err| format!("the queue {}: {err}", path.display()))
    }

    pub fn pairing(&self) -> Result<DeviceCredentials, String> {
        let path = self.pairing_file();
        let text = std::fs::read_to_string(&path).map_err(|_| {
            format!(
                "this profile is not paired (no {}): run `medrix-device pair` first",
                path.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|err| format!("{} is damaged: {err}", path.display()))
    }
}

/// Pairs the device: its session from the credentials, keys and identity set up, the
/// patient's invitations accepted; the pairing kept in the profile.
pub async fn pair(
    profile: &DeviceProfile,
    mut credentials: DeviceCredentials,
) -> Result<(), String> {
    MedrixClient::pair(Profile::new(profile.dir.clone()), &credentials)
        .await
        .map_err(|err| err.to_string())?;
    credentials.access_token = String::new();
    let text = serde_json::to_string_pretty(&credentials).map_err(|err| err.to_string())?;
    std::fs::write(profile.pairing_file(), text)
        .map_err(|err| format!("cannot write {}: {err}", profile.pairing_file().display()))
}

/// Drains the queue into the device's room: until it is empty (`until_empty`), or for as
/// long as the process runs, looking for new readings when idle. `progress` hears the backlog
/// after each batch.
pub async fn run(
    profile: &DeviceProfile,
    until_empty: bool,
    progress: &mut dyn FnMut(Backlog),
) -> Result<Backlog, String> {
    let pairing = profile.pairing()?;
    let class = class_of_kind(&pairing.kind);
    let mut queue = profile.queue()?;
    let client = MedrixClient::open(Profile::new(profile.dir.clone()))
        .await
        .map_err(|err| err.to_string())?;
    let mut target = None;
    let mut failures: u32 = 0;
    loop {
        let batch = queue.pending(BATCH).map_err(|err| format!("the queue: {err}"))?;
        if batch.is_empty() {
            let backlog = queue.backlog().map_err(|err| format!("the queue: {err}"))?;
            if until_empty {
                return Ok(backlog);
            }
            tokio::time::sleep(IDLE_POLL).await;
            continue;
        }
        let sent = async {
            if target.is_none() {
                target = Some(client.device_room(&pairing).await?);
            }
            let Some((record, room)) = &target else { unreachable!("just set") };
            let readings: Vec<Reading> = batch
                .iter()
                .map(|queued| Reading {
                    id: queued.id.clone(),
                    body: match queued.kind {
                        Kind::Reading => ReadingBody::Observation(queued.content.clone()),
                        Kind::Alert => ReadingBody::Notice(queued.content.clone()),
                    },
                    clinical_time_ms: queued.clinical_time_ms,
                })
                .collect();
            client.send_readings(record, room, class, &readings).await
        }
        .await;
        match sent {
            Ok(events) => {
                let sent: Vec<(String, String)> =
                    batch.iter().map(|queued| queued.id.clone()).zip(events).collect();
                queue.mark_sent(&sent).map_err(|err| format!("the queue: {err}"))?;
                failures = 0;
                progress(queue.backlog().map_err(|err| format!("the queue: {err}"))?);
            }
            Err(err) if is_closed(&err) => {
                return Err(format!("the homeserver no longer knows this device: {err}"));
            }
            Err(err) => {
                failures += 1;
                // The room and record are looked up again: the failure may have been theirs.
                target = None;
                let pause = FIRST_PAUSE.saturating_mul(1 << failures.min(6)).min(MAX_PAUSE);
                eprintln!(
                    "medrix-device: sending failed ({}); trying again in {} ms",
                    one_line(&err.to_string()),
                    pause.as_millis()
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Whether the server says the session is gone (the device account was closed).
fn is_closed(err: &ClientError) -> bool {
    err.errcode().is_some_and(|code| code == "M_UNKNOWN_TOKEN" || code == "M_USER_DEACTIVATED")
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
