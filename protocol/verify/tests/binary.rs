//! The `medrix-verify` binary as a user runs it: usage, files it cannot read, and the verdict
//! on an export with nothing in it. (Real exports, untouched and tampered with, are checked in
//! `clients/medrix-cli/tests/audit_trail.rs`, against a real server's.)

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_medrix-verify")).args(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("medrix-verify-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn usage_and_unreadable_files_exit_2() {
    let (code, _, err) = run(&[]);
    assert_eq!(code, 2);
    assert!(err.contains("usage"), "{err}");
    let (code, _, err) = run(&["/nonexistent/export.json"]);
    assert_eq!((code, err.contains("cannot read")), (2, true), "{err}");
    let not_export = temp_file("other.json", r#"{"resourceType": "Bundle"}"#);
    let (code, _, err) = run(&[not_export.to_str().unwrap()]);
    assert_eq!((code, err.contains("not a Medrix audit export")), (2, true), "{err}");
    let _ = std::fs::remove_file(not_export);
}

#[test]
fn an_empty_export_is_valid_and_a_bad_key_document_is_not() {
    let empty = temp_file(
        "empty.json",
        r#"{"format": "medrix-audit-export/1", "patient": "@p:example.org", "rooms": [], "server_keys": {}}"#,
    );
    let (code, out, _) = run(&[empty.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("valid: 0 room(s)"), "{out}");
    let bad_keys = temp_file(
        "keys.json",
        r#"{"format": "medrix-audit-export/1", "patient": "@p:example.org", "rooms": [],
            "server_keys": {"example.org": {"server_name": "example.org", "valid_until_ts": 1,
                            "verify_keys": {}, "signatures": {}}}}"#,
    );
    let (code, out, _) = run(&[bad_keys.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("the key document of example.org: does not check"), "{out}");
    let _ = std::fs::remove_file(empty);
    let _ = std::fs::remove_file(bad_keys);
}
