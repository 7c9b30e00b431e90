//! The shared harness (`medrix-tests`), started with this package's `medrix` binary.
#![allow(dead_code)]

#[allow(unused_imports)]
pub use medrix_tests::{REGISTRATION_TOKEN, TestServer};

/// A server with registration open by token and no rate limits.
pub async fn start() -> TestServer {
    TestServer::start(env!("CARGO_BIN_EXE_medrix")).await
}

/// A server with exactly these extra `serve` flags.
pub async fn start_with(args: &[&str]) -> TestServer {
    TestServer::start_with(env!("CARGO_BIN_EXE_medrix"), args).await
}

/// A server with these `[limits]` lines in its config file (and registration open by token,
/// no rate limits).
pub async fn start_with_limits(limits: &str) -> TestServer {
    let dir = medrix_tests::unique_temp_dir("medrix-limits");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("medrix.toml");
    std::fs::write(&config, format!("[limits]\n{limits}\n")).unwrap();
    let config = config.to_str().unwrap().to_owned();
    start_with(&[
        "--config",
        &config,
        "--registration-token",
        REGISTRATION_TOKEN,
        "--no-rate-limits",
    ])
    .await
}
