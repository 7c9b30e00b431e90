//! The pinned FHIR R4 validator (`tests/fhir/validate.mjs`, installed by `tests/fhir/setup`,
//! which `./dev setup` runs), called from Rust tests. Included by path (`#[path]`) from the
//! tests of the crates that export FHIR, so there is one copy and no crate to depend on.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs the validator on `resource`: `Ok(())` when valid, else its messages. `repo_root` is
/// the repository's root directory.
pub fn validate_fhir(repo_root: &Path, resource: &Value) -> Result<(), String> {
    let setup = Command::new("bash")
        .arg(repo_root.join("tests/fhir/setup"))
        .arg("--check")
        .output()
        .expect("bash runs tests/fhir/setup");
    assert!(
        setup.status.success(),
        "the FHIR validator is not installed: run ./dev setup (or bash tests/fhir/setup)\n{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    let stdout = String::from_utf8_lossy(&setup.stdout).into_owned();
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .unwrap_or_else(|| panic!("setup printed no {name}: {stdout}"))
            .to_owned()
    };
    let mut child = Command::new(field("node="))
        .arg(field("validate="))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    child.stdin.take().unwrap().write_all(resource.to_string().as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    let messages = String::from_utf8_lossy(&output.stderr).into_owned();
    match output.status.code() {
        Some(0) => Ok(()),
        Some(1) => Err(messages),
        other => panic!("the validator failed to run ({other:?}): {messages}"),
    }
}
