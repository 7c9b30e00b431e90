//! Health devices, end to end, with the real binaries on one `medrix serve`: the patient
//! registers a device with `medrix-cli device add`, the device pairs and sends its readings
//! with `medrix-device`; it reads nothing of anyone else's and writes nothing but readings in
//! its own room; a grantee of the class reads its readings; removing it closes it at once.
//! And through a relay the test cuts, and a `kill -9` of the sender, every reading of an hour
//! of heart rates (batched a minute to an Observation) is stored exactly once.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Person, Run};
use medrix_tests::{
    TestServer, medrix_binary, proxy::CuttableProxy, unique_temp_dir, workspace_binary,
};
use serde_json::{Value, json};

/// A device's side: `medrix-device` with a profile of its own.
struct Device {
    profile: PathBuf,
}

impl Device {
    fn new() -> Device {
        Device { profile: unique_temp_dir("medrix-device") }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(workspace_binary("medrix-device"));
        command
            .args(args)
            .env("MEDRIX_DEVICE_PROFILE", &self.profile)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("medrix-device runs");
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn json(&self, args: &[&str]) -> Value {
        let run = self.run(args);
        assert!(run.success, "medrix-device {args:?} failed: {run:?}");
        serde_json::from_str(&run.stdout).unwrap_or_else(|_| panic!("no JSON: {run:?}"))
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A blood pressure of 120/80 (MAP 93) the cuff time-stamped 2024-03-05 07:`minute`.
fn blood_pressure(minute: u8) -> String {
    format!("2A35 02 7800 5000 5d00 e807 03 05 07 {minute:02x} 00")
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

/// The patient's entries of `class`, as `record list` gives them.
fn entries(patient: &Person, class: &str) -> Vec<Value> {
    patient.json(&["record", "list", "--class", class])["entries"].as_array().unwrap().clone()
}

async fn wait_for_join(server: &TestServer, patient: &Person, room: &str, user: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}");
    loop {
        let (_, content) = server.call("GET", &path, Some(&patient.access_token()), None).await;
        if content["membership"] == "join" {
            return;
        }
        assert!(Instant::now() < deadline, "{user} did not join {room}: {content}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every event the device account sent into `room`, as the patient pages the room.
async fn sent_by(server: &TestServer, patient: &Person, room: &str, sender: &str) -> usize {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1000");
    let (status, page) = server.call("GET", &path, Some(&patient.access_token()), None).await;
    assert_eq!(status, 200, "{page}");
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["sender"] == sender && event["type"] == "m.room.encrypted")
        .count()
}

/// The patient's record, created, with the executor in it.
async fn record_of(server: &TestServer, patient: &Person) -> Value {
    let created = patient.json(&["record", "create"]);
    let space = created["space"].as_str().unwrap();
    wait_for_join(server, patient, space, "@medrix-contracts:localhost").await;
    created
}

/// `device add NAME --kind KIND --out FILE`: the file, and what the command printed.
fn add_device(patient: &Person, name: &str, kind: &str) -> (PathBuf, Value) {
    let file = patient.file(&format!("{name}.json"));
    let added =
        patient.json(&["device", "add", name, "--kind", kind, "--out", file.to_str().unwrap()]);
    (file, added)
}

/// A server, a patient with a record, and a device of theirs registered and paired: the
/// server, the patient, the credentials file and the device.
async fn paired_device(name: &str, kind: &str) -> (TestServer, Person, PathBuf, Device) {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    record_of(&server, &patient).await;
    let (credentials_file, _) = add_device(&patient, name, kind);
    let device = Device::new();
    device.json(&["pair", credentials_file.to_str().unwrap()]);
    (server, patient, credentials_file, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_writes_readings_and_reads_nothing_else() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let doctor = Person::registered(&server, "doctor");
    let created = record_of(&server, &patient).await;
    let space = created["space"].as_str().unwrap().to_owned();
    let own_room = created["classes"]["vital-signs"][0].as_str().unwrap().to_owned();

    // Bad input is refused with the reason, and changes nothing.
    let refused = patient.fails(&["device", "add", "cuff", "--kind", "toaster"]);
    assert!(refused.contains("device kind"), "{refused}");
    let (credentials_file, added) = add_device(&patient, "cuff", "blood-pressure");
    let device_user = added["user_id"].as_str().unwrap().to_owned();
    let device_room = added["room"].as_str().unwrap().to_owned();
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&credentials_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "credentials are the patient's alone");
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials_file).unwrap()).unwrap();
    let token = credentials["access_token"].as_str().unwrap().to_owned();
    let listed = patient.json(&["device", "list"]);
    assert_eq!(listed["devices"][0]["name"], "cuff");
    assert!(patient.fails(&["device", "add", "cuff", "--kind", "scale"]).contains("already"));

    let device = Device::new();
    let paired = device.json(&["pair", credentials_file.to_str().unwrap()]);
    assert_eq!(paired["user_id"], device_user.as_str());
    wait_for_join(&server, &patient, &device_room, &device_user).await;

    // Three readings and a line that is not one; the same file again adds nothing.
    let input = patient.file("readings.txt");
    let mut lines: Vec<String> = (0x1e..0x21).map(blood_pressure).collect();
    lines.push("2A35 0078".to_owned());
    write_lines(&input, &lines);
    let ingested = device.run(&["ingest", input.to_str().unwrap()]);
    assert_eq!(ingested.code, Some(1), "a malformed line fails the exit: {ingested:?}");
    let ingested: Value = serde_json::from_str(&ingested.stdout).unwrap();
    assert_eq!(ingested["queued"], 3);
    assert_eq!(ingested["malformed"][0]["line"], 4);
    let again: Value =
        serde_json::from_str(&device.run(&["ingest", input.to_str().unwrap()]).stdout).unwrap();
    assert_eq!(again["queued"], 0, "the same readings are queued once");
    assert_eq!(device.json(&["status"]), json!({"pending": 3, "sent": 0}));
    assert_eq!(device.json(&["run", "--until-empty"]), json!({"pending": 0, "sent": 3}));
    assert_eq!(device.json(&["run", "--until-empty"]), json!({"pending": 0, "sent": 3}));

    let readings = entries(&patient, "vital-signs");
    assert_eq!(readings.len(), 3, "{readings:?}");
    for reading in &readings {
        assert_eq!(reading["source"], json!({"kind": "device", "id": device_user}));
        assert_eq!(reading["resource"]["code"]["coding"][0]["code"], "85354-9");
    }
    assert_eq!(sent_by(&server, &patient, &device_room, &device_user).await, 3);

    // It reads nothing of anyone else's: the patient's message in the space is not shown to
    // it, in /messages or /sync; it sees the rooms' state (whom to encrypt for).
    let said = json!({"msgtype": "m.text", "body": "my own note"});
    let path = format!("/_matrix/client/v3/rooms/{space}/send/m.room.message/note1");
    let (status, _) = server.call("PUT", &path, Some(&patient.access_token()), Some(said)).await;
    assert_eq!(status, 200);
    let path = format!("/_matrix/client/v3/rooms/{space}/messages?dir=b&limit=100");
    let (status, page) = server.call("GET", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{page}");
    let chunk = page["chunk"].as_array().unwrap();
    assert!(chunk.iter().all(|e| e["type"] != "m.room.message"), "{page}");
    assert!(chunk.iter().any(|e| e["type"] == "org.medrix.record"), "state is shown: {page}");
    let (_, synced) = server.call("GET", "/_matrix/client/v3/sync", Some(&token), None).await;
    assert!(!synced.to_string().contains("my own note"), "{synced}");

    // It writes nothing but encrypted readings in its own room, and joins no other room.
    for (room, kind) in
        [(&space, "m.room.message"), (&device_room, "m.room.message"), (&space, "m.room.encrypted")]
    {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/t-{kind}");
        let (status, answer) =
            server.call("PUT", &path, Some(&token), Some(json!({"body": "x"}))).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (403, Some("M_FORBIDDEN")),
            "{room} {kind}"
        );
    }
    let path = format!("/_matrix/client/v3/join/{own_room}");
    let (status, _) = server.call("POST", &path, Some(&token), Some(json!({}))).await;
    assert_eq!(status, 403, "the patient's own vital-signs room is not the device's");
    let (status, _) =
        server.call("POST", "/_matrix/client/v3/createRoom", Some(&token), Some(json!({}))).await;
    assert_eq!(status, 403);

    // A grantee of vital signs reads the device's readings as any of the class.
    patient.json(&[
        "grant",
        "doctor",
        "--classes",
        "vital-signs",
        "--purpose",
        "TREAT",
        "--until",
        "+1d",
    ]);
    let seen = doctor.json(&["record", "list", "--patient", "@patient:localhost"]);
    assert_eq!(seen["entries"].as_array().unwrap().len(), 3, "{seen}");
    assert_eq!(seen["unreadable"], json!([]));

    // Removed: its token stops working at once; what it still holds goes nowhere.
    let removed = patient.json(&["device", "remove", "cuff"]);
    assert_eq!(removed["removed"], true);
    let (status, answer) = server.call("GET", "/_matrix/client/v3/sync", Some(&token), None).await;
    assert_eq!((status, answer["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")));
    write_lines(&input, &[blood_pressure(0x30)]);
    device.json(&["ingest", input.to_str().unwrap()]);
    let refused = device.run(&["run", "--until-empty"]);
    assert!(!refused.success && refused.stderr.contains("no longer knows"), "{refused:?}");
    assert_eq!(entries(&patient, "vital-signs").len(), 3);
    assert_eq!(patient.json(&["device", "list"])["devices"], json!([]));
}

/// An hour of heart rates (600 readings in 60 minute batches) through a relay cut twice while
/// they are sent, and a sender killed with SIGKILL half way and started again: every reading
/// is stored, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_reading_is_lost_or_doubled_by_cuts_and_kills() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    record_of(&server, &patient).await;
    let relay = CuttableProxy::start(server.base.trim_start_matches("http://")).await;
    let (credentials_file, _) = add_device(&patient, "strap", "heart-rate");
    // The device reaches the server through the relay.
    let mut credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(&credentials_file).unwrap()).unwrap();
    credentials["homeserver"] = json!(relay.base);
    std::fs::write(&credentials_file, credentials.to_string()).unwrap();
    let device_user = credentials["user_id"].as_str().unwrap().to_owned();
    let device_room = credentials["room"].as_str().unwrap().to_owned();
    let device = Device::new();
    device.json(&["pair", credentials_file.to_str().unwrap()]);

    // An hour of heart rates, one every 6 s (60 to 119 bpm, over and over), each with its
    // moment of receipt: 600 readings, batched a minute to an Observation.
    let input = patient.file("hr.txt");
    let sent: Vec<(String, i64)> = (0..600)
        .map(|i| {
            let (minute, second) = (i * 6 / 60, i * 6 % 60);
            (format!("2024-03-05T07:{minute:02}:{second:02}Z"), 60 + i % 60)
        })
        .collect();
    let lines: Vec<String> =
        sent.iter().map(|(at, bpm)| format!("2A37 00 {bpm:02x} {at}")).collect();
    write_lines(&input, &lines);
    assert_eq!(device.json(&["ingest", input.to_str().unwrap()])["queued"], 60);

    let mut sender =
        device.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let progress = |least: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = device.json(&["status"]);
            if status["sent"].as_u64().unwrap() >= least {
                return status;
            }
            assert!(Instant::now() < deadline, "stuck: {status}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // Cut while sending, twice; the sender goes on by itself once the relay is back.
    let at_cut = progress(5);
    assert!(at_cut["pending"].as_u64().unwrap() > 0, "cut while readings wait: {at_cut}");
    relay.cut();
    tokio::time::sleep(Duration::from_secs(2)).await;
    relay.restore();
    progress(20);
    relay.cut();
    tokio::time::sleep(Duration::from_secs(1)).await;
    relay.restore();
    let at_kill = progress(30);
    assert!(at_kill["pending"].as_u64().unwrap() > 0, "killed while readings wait: {at_kill}");
    // Killed half way (SIGKILL: no chance to tidy up), then started again.
    sender.kill().unwrap();
    sender.wait().unwrap();
    let finished = device.json(&["run", "--until-empty"]);
    assert_eq!(finished, json!({"pending": 0, "sent": 60}));
    assert!(relay.relayed() > 2, "the relay carried the traffic");

    // Every reading back from the record, at its second, once.
    let mut stored: Vec<(String, i64)> = Vec::new();
    for entry in entries(&patient, "vital-signs") {
        let resource = entry["resource"].as_object().unwrap();
        for (at, value) in medrix_devices::sampled::samples(resource) {
            let at = at.format(&time::format_description::well_known::Rfc3339).unwrap();
            stored.push((at, value.parse().unwrap()));
        }
    }
    stored.sort();
    let mut expected = sent.clone();
    expected.sort();
    assert_eq!(stored, expected, "every reading, once");
    assert_eq!(sent_by(&server, &patient, &device_room, &device_user).await, 60, "stored once");
}

/// A reading past a threshold raises its alert, a notice every client shows, which the
/// patient lists; a reading within raises nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reading_past_a_threshold_raises_an_alert_and_one_within_none() {
    let (_server, patient, credentials_file, device) =
        paired_device("cuff", "blood-pressure").await;
    // 185/95 (MAP 111) at 07:30, then 120/80 at 07:31.
    let input = patient.file("readings.txt");
    write_lines(
        &input,
        &["2A35 02 b900 5f00 6f00 e807 03 05 07 1e 00".to_owned(), blood_pressure(0x1f)],
    );
    let ingested = device.json(&["ingest", input.to_str().unwrap()]);
    assert_eq!(ingested["queued"], 3, "two readings and one alert: {ingested}");
    assert_eq!(device.json(&["run", "--until-empty"]), json!({"pending": 0, "sent": 3}));

    let readings = entries(&patient, "vital-signs");
    assert_eq!(readings.len(), 2);
    let high = readings
        .iter()
        .find(|r| r["resource"]["component"][0]["valueQuantity"]["value"] == json!(185))
        .unwrap_or_else(|| panic!("no 185 reading: {readings:?}"));
    let alerts = patient.json(&["alerts"])["alerts"].as_array().unwrap().clone();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let alert = &alerts[0];
    assert_eq!(alert["rule"], "hypertensive-crisis");
    assert_eq!(alert["severity"], "critical");
    assert_eq!(alert["reading_id"], high["resource"]["id"]);
    assert!(alert["body"].as_str().unwrap().contains("185"), "{alert}");
    // Raised by the room's own device (only its notices count).
    assert_eq!(alert["device"], device_of(&credentials_file));
}

fn device_of(credentials: &Path) -> Value {
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(credentials).unwrap()).unwrap();
    credentials["user_id"].clone()
}

/// A phone's Open mHealth export, one data point per line, enters the record through the
/// same queue; a line that is no data point Medrix reads is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_mhealth_data_points_enter_the_record() {
    let (_server, patient, _credentials, device) = paired_device("phone", "gateway").await;
    let input = patient.file("omh.ndjson");
    write_lines(
        &input,
        &[
            r#"{"header": {"schema_id": {"namespace": "omh", "name": "step-count", "version": "2.0"}}, "body": {"step_count": {"value": 8412, "unit": "steps"}, "effective_time_frame": {"time_interval": {"start_date_time": "2024-03-05T00:00:00Z", "end_date_time": "2024-03-06T00:00:00Z"}}}}"#.to_owned(),
            r#"{"body_weight": {"value": 67.5, "unit": "kg"}, "effective_time_frame": {"date_time": "2024-03-05T07:00:00Z"}}"#.to_owned(),
            r#"{"sleep_duration": {"value": 8, "unit": "h"}}"#.to_owned(),
        ],
    );
    let ingested = device.run(&["ingest", "--format", "omh", input.to_str().unwrap()]);
    let ingested: Value = serde_json::from_str(&ingested.stdout).unwrap();
    assert_eq!(ingested["queued"], 2, "{ingested}");
    assert_eq!(ingested["malformed"][0]["line"], 3);
    assert_eq!(device.json(&["run", "--until-empty"]), json!({"pending": 0, "sent": 2}));
    let mut codes: Vec<String> = entries(&patient, "vital-signs")
        .iter()
        .map(|entry| entry["resource"]["code"]["coding"][0]["code"].as_str().unwrap().to_owned())
        .collect();
    codes.sort();
    assert_eq!(codes, ["29463-7", "55423-8"]);
}

/// A spreadsheet of home measurements, with a column mapping: a row with a blood pressure
/// and a pulse is two readings, a row with a bad cell is named and the others go in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_rows_enter_the_record_by_their_column_mapping() {
    let (_server, patient, _credentials, device) =
        paired_device("notebook", "blood-pressure").await;
    let input = patient.file("home.csv");
    write_lines(
        &input,
        &[
            "When,Sys,Dia,Pulse,Note".to_owned(),
            "2024-03-05T07:30:00Z,121,79,64,\"after coffee, seated\"".to_owned(),
            "2024-03-06T07:30:00Z,118,77,,".to_owned(),
            "2024-03-07T07:30:00Z,high,77,,".to_owned(),
        ],
    );
    let columns = [
        "time=When",
        "systolic_blood_pressure=Sys:mmHg",
        "diastolic_blood_pressure=Dia:mmHg",
        "heart_rate=Pulse:beats/min",
    ];
    let mut args = vec!["ingest", "--format", "csv", "--single", input.to_str().unwrap()];
    for column in &columns {
        args.extend(["--column", column]);
    }
    let ingested = device.run(&args);
    let ingested: Value = serde_json::from_str(&ingested.stdout).unwrap();
    assert_eq!(ingested["queued"], 3, "{ingested}");
    assert_eq!(ingested["malformed"][0]["line"], 4);
    assert_eq!(device.json(&["run", "--until-empty"]), json!({"pending": 0, "sent": 3}));
    let mut systolic: Vec<i64> = entries(&patient, "vital-signs")
        .iter()
        .filter_map(|entry| entry["resource"]["component"][0]["valueQuantity"]["value"].as_i64())
        .collect();
    systolic.sort_unstable();
    assert_eq!(systolic, [118, 121]);
    // A mapping that names a column the file lacks is refused before anything is queued.
    let refused = device.run(&[
        "ingest",
        "--format",
        "csv",
        input.to_str().unwrap(),
        "--column",
        "time=When",
        "--column",
        "body_weight=Kg:kg",
    ]);
    assert!(!refused.success && refused.stderr.contains("no column `Kg`"), "{refused:?}");
}

/// An Apple Health export of more than a gigabyte (written here: mostly record types Medrix
/// does not read, as real exports are, with a heart rate every so often and a blood pressure)
/// imports in bounded memory, and its readings reach the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gigabyte_apple_health_export_imports_in_bounded_memory() {
    use std::io::Write;
    let (_server, patient, _credentials, device) = paired_device("phone", "gateway").await;

    let export = patient.file("export.xml");
    let mut out =
        std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&export).unwrap());
    out.write_all(
        b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!DOCTYPE HealthData [\n<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout)*)>\n]>\n<HealthData locale=\"en_GB\">\n <ExportDate value=\"2024-03-06 10:00:00 +0100\"/>\n",
    )
    .unwrap();
    let filler = b" <Record type=\"HKQuantityTypeIdentifierActiveEnergyBurned\" sourceName=\"Watch\" sourceVersion=\"10.3\" unit=\"kcal\" creationDate=\"2024-03-05 07:30:05 +0100\" startDate=\"2024-03-05 07:30:00 +0100\" endDate=\"2024-03-05 07:31:00 +0100\" value=\"1.25\"/>\n";
    let (mut written, mut heart_rates) = (0u64, 0u32);
    while written < (1 << 30) + (1 << 20) {
        for _ in 0..20_000 {
            out.write_all(filler).unwrap();
        }
        written += 20_000 * filler.len() as u64;
        // One heart rate per block, each in a minute of its own.
        let (hour, minute) = (heart_rates / 60, heart_rates % 60);
        writeln!(
            out,
            " <Record type=\"HKQuantityTypeIdentifierHeartRate\" unit=\"count/min\" startDate=\"2024-03-05 {hour:02}:{minute:02}:00 +0100\" endDate=\"2024-03-05 {hour:02}:{minute:02}:00 +0100\" value=\"{}\"/>",
            60 + heart_rates % 40
        )
        .unwrap();
        heart_rates += 1;
    }
    out.write_all(b" <Correlation type=\"HKCorrelationTypeIdentifierBloodPressure\" startDate=\"2024-03-06 08:00:00 +0100\" endDate=\"2024-03-06 08:00:00 +0100\">\n  <Record type=\"HKQuantityTypeIdentifierBloodPressureSystolic\" unit=\"mmHg\" startDate=\"2024-03-06 08:00:00 +0100\" endDate=\"2024-03-06 08:00:00 +0100\" value=\"122\"/>\n  <Record type=\"HKQuantityTypeIdentifierBloodPressureDiastolic\" unit=\"mmHg\" startDate=\"2024-03-06 08:00:00 +0100\" endDate=\"2024-03-06 08:00:00 +0100\" value=\"81\"/>\n </Correlation>\n</HealthData>\n").unwrap();
    out.flush().unwrap();
    drop(out);
    let size = std::fs::metadata(&export).unwrap().len();
    assert!(size > 1 << 30, "{size} bytes");

    let ingested = device.json(&["ingest", "--format", "apple-health", export.to_str().unwrap()]);
    let _ = std::fs::remove_file(&export);
    assert_eq!(ingested["queued"], heart_rates + 1, "{ingested}");
    assert_eq!(ingested["malformed"], json!([]));
    let peak_kb = ingested["peak_rss_kb"].as_u64().unwrap();
    eprintln!("a {} MB export imported with a peak RSS of {} MB", size >> 20, peak_kb >> 10);
    assert!(peak_kb < 100 * 1024, "bounded memory: peak RSS {peak_kb} KiB for {size} bytes");

    assert_eq!(
        device.json(&["run", "--until-empty"]),
        json!({"pending": 0, "sent": heart_rates + 1})
    );
    let readings = entries(&patient, "vital-signs");
    let blood_pressures =
        readings.iter().filter(|r| r["resource"]["code"]["coding"][0]["code"] == "85354-9").count();
    assert_eq!((readings.len() as u32, blood_pressures), (heart_rates + 1, 1));
}
