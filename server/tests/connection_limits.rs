//! Connection limits against clients that hold connections without finishing requests (slow
//! loris): headers trickled byte by byte are cut off at the header timeout, a body that
//! stops arriving is answered at the body timeout, connections past the per-address cap are
//! closed at once, and the server goes on serving everyone else throughout.

mod support;

use std::time::{Duration, Instant};

use support::{TestServer, start_with_limits};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

async fn connect(server: &TestServer) -> TcpStream {
    TcpStream::connect(server.base.strip_prefix("http://").unwrap()).await.unwrap()
}

/// Whether the server still serves a fresh client.
async fn serves(server: &TestServer) -> bool {
    let client = reqwest::Client::new();
    let response = client.get(server.url("/_matrix/client/versions")).send().await;
    response.is_ok_and(|response| response.status() == 200)
}

/// Reads until the server closes the connection (or `within` passes); returns what came.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut received)).await;
    match read {
        Ok(_) => Some(received),
        Err(_) => None,
    }
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_cut_off_while_others_are_served() {
    let server = start_with_limits("header_read_timeout_secs = 2").await;
    let mut slow = connect(&server).await;
    let started = Instant::now();
    let request = b"GET /_matrix/client/versions HTTP/1.1\r\nHost: localhost\r\nX-Padding: ";
    let mut cut_off = None;
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if slow.write_all(&[*byte]).await.is_err() {
            cut_off = Some(started.elapsed());
            break;
        }
        // A closed connection shows as a read of 0 bytes (or a reset).
        let mut buffer = [0; 64];
        match tokio::time::timeout(Duration::from_millis(250), slow.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                cut_off = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => panic!("the server answered an unfinished request"),
            Err(_) => {}
        }
        assert!(serves(&server).await, "others are served meanwhile");
        if started.elapsed() > Duration::from_secs(10) {
            break;
        }
    }
    let cut_off = cut_off.expect("the trickling client was never cut off");
    assert!(cut_off >= Duration::from_millis(1500), "cut off early: {cut_off:?}");
    assert!(cut_off < Duration::from_secs(5), "cut off late: {cut_off:?}");
    assert!(serves(&server).await);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_answered_at_the_body_timeout() {
    let server = start_with_limits("body_read_timeout_secs = 1").await;
    let mut stream = connect(&server).await;
    stream
        .write_all(
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"type\":",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut stream, Duration::from_secs(5))
        .await
        .expect("the server is still waiting for the body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"errcode\":\"M_UNKNOWN\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(serves(&server).await);
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_closed_at_once() {
    let server = start_with_limits("max_connections_per_ip = 3").await;
    // Idle connections, as a slow-loris client opens them; the harness's own kept-alive
    // connection may hold one of the places.
    let mut held = Vec::new();
    let mut refused = None;
    for index in 0..6 {
        let mut stream = connect(&server).await;
        let mut buffer = [0; 16];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                refused = Some(index);
                break;
            }
            Ok(Ok(_)) => panic!("data on an idle connection"),
            Err(_) => held.push(stream),
        }
    }
    let refused = refused.expect("six idle connections from one address were all kept");
    assert!((2..=3).contains(&refused), "the connection refused was number {}", refused + 1);
    // Places free up as connections close.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(serves(&server).await);
}
