//! Every test-vector file under `spec/vectors/` must hold for this implementation, starting
//! with the Matrix specification's own appendix examples.

use std::path::{Path, PathBuf};

use medrix_protocol::vectors::check_vector_text;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/vectors")
}

fn vector_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("spec/vectors exists") {
        let path = entry.expect("readable entry").path();
        // records/ holds the health-record vectors, checked by medrix-records.
        if path.is_dir() && path.file_name() == Some(std::ffi::OsStr::new("records")) {
            continue;
        }
        if path.is_dir() {
            files.extend(vector_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

fn check(path: &Path) -> usize {
    let text = std::fs::read_to_string(path).expect("readable vector file");
    let report = check_vector_text(&text).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
    assert!(
        report.failures.is_empty(),
        "{}: {} failures:\n{}",
        path.display(),
        report.failures.len(),
        report.failures.join("\n")
    );
    report.passed
}

#[test]
fn matrix_canonical_json_examples_reproduce_byte_exact() {
    let passed = check(&vectors_dir().join("matrix-appendix/canonical-json.json"));
    assert_eq!(passed, 10, "every appendix example is checked");
}

#[test]
fn matrix_signing_examples_reproduce_byte_exact() {
    let passed = check(&vectors_dir().join("matrix-appendix/signing.json"));
    assert_eq!(passed, 4, "two JSON and two event signing examples");
}

#[test]
fn every_vector_file_holds() {
    let files = vector_files(&vectors_dir());
    assert!(files.len() >= 2, "vector files found: {files:?}");
    for file in files {
        check(&file);
    }
}
