//! What the medrix-cli tests share: a person at a terminal (the real `medrix-cli` binary with
//! a profile of their own, against a real `medrix serve` on loopback), the fixtures, and the
//! pinned FHIR validator.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use medrix_tests::{REGISTRATION_TOKEN, TestServer, unique_temp_dir};
use serde_json::Value;

/// One person with medrix-cli: their profile directory and their server.
pub struct Person {
    pub profile: PathBuf,
    pub homeserver: String,
    pub user_id: String,
}

/// What one run of medrix-cli did.
#[derive(Debug)]
pub struct Run {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Person {
    /// A person not registered yet, with an empty profile.
    pub fn new(server: &TestServer, localpart: &str) -> Person {
        Person::at(&server.base, localpart)
    }

    /// A person whose homeserver is `homeserver` (perhaps one that is not there).
    pub fn at(homeserver: &str, localpart: &str) -> Person {
        Person {
            profile: unique_temp_dir(&format!("medrix-cli-{localpart}")),
            homeserver: homeserver.to_owned(),
            user_id: format!("@{localpart}:localhost"),
        }
    }

    /// Registers through the CLI (with the test server's registration token).
    pub fn registered(server: &TestServer, localpart: &str) -> Person {
        Person::registered_on(server, localpart, "localhost")
    }

    /// Registers on a server named `server_name` (a federating one).
    pub fn registered_on(server: &TestServer, localpart: &str, server_name: &str) -> Person {
        let mut person = Person::new(server, localpart);
        person.user_id = format!("@{localpart}:{server_name}");
        let password = format!("{localpart}-password");
        let registered = person.json(&[
            "register",
            localpart,
            "--password",
            &password,
            "--registration-token",
            REGISTRATION_TOKEN,
        ]);
        assert_eq!(registered["user_id"], person.user_id.as_str());
        assert_eq!(registered["cross_signed"], true, "registration sets up cross-signing");
        person
    }

    /// Runs medrix-cli with these arguments, the profile and homeserver from the environment
    /// as a script would set them.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("medrix-cli runs");
        Run {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Starts a long-running command (a service such as `custodian run`), its stdout piped;
    /// killed when the returned guard is dropped.
    pub fn spawn(&self, args: &[&str]) -> Service {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("medrix-cli starts");
        Service { child }
    }

    /// medrix-cli with these arguments, as this person's terminal runs it.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_medrix-cli"));
        command
            .args(args)
            .env("MEDRIX_PROFILE", &self.profile)
            .env("MEDRIX_HOMESERVER", &self.homeserver)
            .env_remove("MEDRIX_PASSWORD")
            .env_remove("MEDRIX_LOG")
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null());
        command
    }

    /// Runs a command that must succeed, with `--json`; its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        let run = self.run(&with_json);
        assert!(run.success, "medrix-cli {args:?} failed: {}", run.stderr);
        serde_json::from_str(&run.stdout)
            .unwrap_or_else(|err| panic!("medrix-cli {args:?} printed no JSON ({err}): {run:?}"))
    }

    /// `json` with a command line written as one string (arguments without spaces).
    pub fn json_line(&self, line: &str) -> Value {
        self.json(&line.split_whitespace().collect::<Vec<_>>())
    }

    /// Runs a command that must fail: its one line of error.
    pub fn fails(&self, args: &[&str]) -> String {
        let run = self.run(args);
        assert!(!run.success, "medrix-cli {args:?} succeeded: {}", run.stdout);
        assert!(!run.stderr.contains("panicked"), "medrix-cli {args:?} panicked: {}", run.stderr);
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "medrix-cli {args:?} said more than one line: {lines:?}");
        assert!(lines[0].starts_with("medrix-cli: "), "{}", lines[0]);
        lines[0].to_owned()
    }

    /// The access token in the profile's session, for checking what the server hands out.
    pub fn access_token(&self) -> String {
        let session: Value = serde_json::from_str(
            &std::fs::read_to_string(self.profile.join("session.json")).unwrap(),
        )
        .unwrap();
        session["access_token"].as_str().unwrap().to_owned()
    }

    /// A file in this person's profile's parent, for exports.
    pub fn file(&self, name: &str) -> PathBuf {
        self.profile.with_extension(name)
    }
}

/// A medrix-cli process left running; killed on drop.
pub struct Service {
    child: std::process::Child,
}

impl Service {
    /// Stops it and answers what it printed on stdout.
    pub fn stop(mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = self.child.stdout.take() {
            let _ = stdout.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Person {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A fixture file's path.
pub fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The resources of a fixture: a Bundle's entries, one resource, or NDJSON lines.
pub fn fixture_resources(name: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(fixture(name)).unwrap();
    match serde_json::from_str::<Value>(&text) {
        Ok(bundle) if bundle["resourceType"] == "Bundle" => bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["resource"].clone())
            .collect(),
        Ok(resource) => vec![resource],
        Err(_) => text.lines().map(|line| serde_json::from_str(line).unwrap()).collect(),
    }
}

/// The `id`s of the listed entries, sorted.
pub fn listed_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// The classes of the entries a reader could not decrypt, sorted.
pub fn unreadable_classes(list: &Value) -> Vec<String> {
    let mut classes: Vec<String> = list["unreadable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["class"].as_str().unwrap().to_owned())
        .collect();
    classes.sort();
    classes
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[path = "../../../../tests/fhir/validate.rs"]
mod fhir_validator;

/// Runs the pinned FHIR R4 validator (`tests/fhir`) on `resource`: `Ok(())` when valid,
/// else its messages.
pub fn validate_fhir(resource: &Value) -> Result<(), String> {
    fhir_validator::validate_fhir(&repo_root(), resource)
}
