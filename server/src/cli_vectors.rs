//! `medrix vectors verify`: checks every vector file under a directory.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use medrix_protocol::vectors::check_vector_text;

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
        match check_vector_text(&text) {
            Ok(report) if report.failures.is_empty() => {
                checks += report.passed;
                println!("ok    {name} ({} checks)", report.passed);
            }
            Ok(report) => {
                failed_files += 1;
                println!("FAIL  {name}");
                for failure in &report.failures {
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
