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
