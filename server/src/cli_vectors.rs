//! `medrix vectors verify`: checks every vector file under a directory.

use std::path::{Path, PathBuf};

use clap::Subcommand;

#[derive(Subcommand)]
pub enum VectorsCommand {
    /// Check every `*.json` vector file under DIR (default `spec/vectors`).
    Verify {
        #[arg(default_value = "spec/vectors")]
        dir: PathBuf,
    },
}

pub fn run(command: VectorsCommand) -> Result<(), String> {
    let VectorsCommand::Verify { dir } = command;
    let mut files = Vec::new();
    collect(&dir, &mut files)?;
    if files.is_empty() {
        return Err(format!("no vector files under {}", dir.display()));
    }
    files.sort();
    let (mut checks, mut failed_files) = (0, 0);
    for file in &files {
        let text =
            std::fs::read_to_string(file).map_err(|err| format!("{}: {err}", file.display()))?;
        let name = file.strip_prefix(&dir).unwrap_or(file).display();
        match check_file(&text) {
            Ok((passed, failures)) if failures.is_empty() => {
                checks += passed;
                println!("ok    {name} ({passed} checks)");
            }
            Ok((_, failures)) => {
                failed_files += 1;
                println!("FAIL  {name}");
                for failure in &failures {
                    println!("      {failure}");
                }
            }
            Err(err) => {
                failed_files += 1;
                println!("FAIL  {name}: {err}");
            }
        }
    }
    println!("{} files, {checks} checks passed, {failed_files} files failed", files.len());
    if failed_files == 0 { Ok(()) } else { Err(format!("{failed_files} vector files failed")) }
}

/// Checks one vector file with the crate that owns its kind: the record model's vectors
/// (`records_*`) belong to medrix-records, the rest to the Matrix protocol crate. Answers the
/// checks that held and the failures.
fn check_file(text: &str) -> Result<(usize, Vec<String>), String> {
    let kind = serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|file| file["kind"].as_str().map(ToOwned::to_owned))
        .unwrap_or_default();
    if medrix_records::vectors::is_records_kind(&kind) {
        let report = medrix_records::vectors::check_vector_text(text)?;
        Ok((report.passed, report.failures))
    } else {
        let report = medrix_protocol::vectors::check_vector_text(text)?;
        Ok((report.passed, report.failures))
    }
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), String> {
    for entry in std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))? {
        let path = entry.map_err(|err| err.to_string())?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|ext| ext == "json") {
            files.push(path);
        }
    }
    Ok(())
}
