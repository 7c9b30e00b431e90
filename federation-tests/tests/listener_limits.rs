//! The federation listener's connection limits: a connection that never finishes its TLS
//! handshake (nor, past it, its headers) is closed at the header timeout, and the server
//! keeps answering other servers meanwhile.

use std::time::{Duration, Instant};

use medrix_federation_tests::TestNet;
use tokio::{io::AsyncReadExt, net::TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_to_the_federation_listener_is_closed_at_the_header_timeout() {
    let net = TestNet::new();
    let config = net.dir().join("limits.toml");
    std::fs::write(&config, "[limits]\nheader_read_timeout_secs = 2\n").unwrap();
    let hub = net
        .start_medrix_with(
            "hub",
            "hub.test",
            &[],
            &["hub.test=127.0.0.1".to_owned()],
            &["--config", config.to_str().unwrap()],
        )
        .await;
    let mut silent =
        TcpStream::connect(("127.0.0.1", hub.federation_port)).await.expect("the listener");
    let started = Instant::now();
    let https = net.https_client(&[&hub]);
    let key_document = https.get(hub.federation_url("/_matrix/key/v2/server")).send().await;
    assert_eq!(key_document.unwrap().status(), 200, "other servers are served meanwhile");
    let mut received = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(8), silent.read_to_end(&mut received))
        .await
        .is_ok();
    let after = started.elapsed();
    assert!(closed, "the silent connection was still open after {after:?}");
    assert!((Duration::from_millis(1500)..Duration::from_secs(5)).contains(&after), "{after:?}");
}
