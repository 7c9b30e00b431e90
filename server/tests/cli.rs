//! The `medrix` binary, run as a user would run it.

use std::process::Command;

fn medrix(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_medrix"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("medrix runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

fn vector_event(file: &str) -> (serde_json::Value, String) {
    let path = format!("{}/../spec/vectors/{file}", env!("CARGO_MANIFEST_DIR"));
    let vector: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let seed = vector["signing_key"]["seed"].as_str().unwrap();
    let key =
        medrix_protocol::keys::ServerSigningKey::from_base64_seed("patient.example", "1", seed)
            .unwrap();
    (vector, key.public_key_base64())
}

#[test]
fn vectors_verify_passes_on_the_shipped_vectors() {
    let (ok, out) = medrix(&["vectors", "verify", "spec/vectors"]);
    assert!(ok, "{out}");
    assert!(out.contains("0 files failed"), "{out}");
    assert!(out.contains("matrix-appendix/signing.json"), "{out}");
}

#[test]
fn event_verify_tells_valid_tampered_and_unverifiable_apart() {
    let (vector, public_key) = vector_event("events/v12-encrypted-record.json");
    let dir = std::env::temp_dir().join(format!("medrix-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_arg = format!("patient.example=ed25519:1={public_key}");

    let intact = dir.join("intact.json");
    std::fs::write(&intact, vector["signed"].to_string()).unwrap();
    let (ok, out) = medrix(&["event", "verify", "--key", &key_arg, intact.to_str().unwrap()]);
    assert!(ok && out.contains("VALID: signatures and content hash"), "{out}");
    assert!(out.contains(vector["event_id"].as_str().unwrap()), "{out}");

    let mut tampered = vector["signed"].clone();
    tampered["content"]["ciphertext"] = "tampered".into();
    let tampered_path = dir.join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).unwrap();
    let (ok, out) =
        medrix(&["event", "verify", "--key", &key_arg, tampered_path.to_str().unwrap()]);
    assert!(ok && out.contains("CONTENT HASH MISMATCH"), "{out}");

    let mut forged = vector["signed"].clone();
    forged["origin_server_ts"] = 1.into();
    let forged_path = dir.join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let (ok, out) = medrix(&["event", "verify", "--key", &key_arg, forged_path.to_str().unwrap()]);
    assert!(!ok && out.contains("INVALID") && out.contains("does not verify"), "{out}");

    let (ok, out) = medrix(&["event", "verify", "--key", "bad", intact.to_str().unwrap()]);
    assert!(!ok && out.contains("SERVER=KEY_ID=BASE64"), "{out}");
    std::fs::remove_dir_all(dir).ok();
}
