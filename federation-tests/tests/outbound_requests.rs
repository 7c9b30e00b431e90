//! What a stranger can make a server do on the network: an unauthenticated client may not
//! make it sign a request to a host of their choosing, an unauthenticated federation request
//! may not learn why its named origin could not be reached, nor make the server fetch that
//! origin's keys again and again. The "remote server" is a plain loopback listener that
//! counts the connections it is offered.

use std::time::Duration;

use medrix_federation_tests::{FederatingServer, TestNet};
use serde_json::Value;
use tokio::{io::AsyncWriteExt, net::TcpListener};

/// A loopback port standing in for `remote.test`: accepts connections and answers with
/// bytes that are no TLS.
struct FakeRemote {
    listener: TcpListener,
    port: u16,
}

impl FakeRemote {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        Self { listener, port }
    }

    fn server_name(&self) -> String {
        format!("remote.test:{}", self.port)
    }

    /// How many connections wait or arrive within `wait`; each gets garbage and is closed.
    async fn connections(&self, wait: Duration) -> usize {
        let mut count = 0;
        while let Ok(Ok((mut stream, _))) = tokio::time::timeout(wait, self.listener.accept()).await
        {
            count += 1;
            let _ = stream.write_all(b"secret-internal-detail\r\n").await;
        }
        count
    }
}

async fn get(server: &FederatingServer, path: &str, token: Option<&str>) -> (u16, Value) {
    server.server.call("GET", path, token, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_lookups_of_remote_users_send_nothing() {
    let net = TestNet::new();
    let hub = net.start("hub", &[], &["remote"]).await;
    let remote = FakeRemote::bind().await;
    let bob = format!("@bob:{}", remote.server_name());
    let alias = format!("%23ward:{}", remote.server_name());
    let lookups = [
        format!("/_matrix/client/v3/profile/{bob}"),
        format!("/_matrix/client/v3/profile/{bob}/displayname"),
        format!("/_matrix/client/v3/profile/{bob}/avatar_url"),
    ];
    for path in &lookups {
        let (status, body) = get(&hub, path, None).await;
        assert_eq!((status, body["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")), "{path}");
    }
    // The answers came after any request would have been made: none was.
    assert_eq!(remote.connections(Duration::from_millis(300)).await, 0);

    // Local profiles need a token too (names are personal data here).
    let alice = hub.server.register("alice", "pw").await;
    let own = format!("/_matrix/client/v3/profile/{}", hub.user_id("alice"));
    assert_eq!(get(&hub, &own, None).await.0, 401);
    assert_eq!(get(&hub, &own, Some(&alice)).await.0, 200);

    // A signed-in user's lookup does go out (so the count above can see one).
    let (status, _) = get(&hub, &lookups[0], Some(&alice)).await;
    assert_eq!(status, 404);
    assert!(remote.connections(Duration::from_secs(2)).await >= 1);

    // Room aliases stay resolvable without a token, as the spec and standard clients have
    // it (matrix-sdk sends none); the lookup is held to the per-client rate limit, and what
    // the other side answered is not echoed back.
    let path = format!("/_matrix/client/v3/directory/room/{alias}");
    let (status, body) = get(&hub, &path, None).await;
    assert_eq!(status, 404, "{body}");
    assert!(!body.to_string().contains("secret-internal-detail"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_from_an_unreachable_origin_learns_nothing_of_the_network() {
    let net = TestNet::new();
    let hub = net.start("hub", &[], &["remote"]).await;
    let remote = FakeRemote::bind().await;
    let https = net.https_client(&[&hub]);
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", hub.user_id("alice"));
    let header = format!(
        "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:k\",sig=\"c2lnbmF0dXJl\"",
        remote.server_name(),
        hub.server_name
    );
    let mut answers = Vec::new();
    for _ in 0..2 {
        let request = https.get(hub.federation_url(&path)).header("authorization", &header);
        // The hub's key fetch is answered with garbage while the request waits.
        let (response, _) =
            tokio::join!(request.send(), remote.connections(Duration::from_millis(200)));
        let response = response.unwrap();
        let status = response.status().as_u16();
        answers.push((status, response.json::<Value>().await.unwrap()));
    }
    for (status, body) in &answers {
        assert_eq!((*status, body["errcode"].as_str()), (401, Some("M_UNAUTHORIZED")), "{body}");
        let message = body["error"].as_str().unwrap();
        for detail in ["https://", &format!(":{}", remote.port), "_matrix/key", "secret"] {
            assert!(!message.contains(detail), "the answer names {detail:?}: {message}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_fetches_for_one_origin_are_rate_limited_before_they_happen() {
    let net = TestNet::new();
    // A burst of 3, and no refill within the test however slow the machine.
    let config = net.dir().join("key-fetches.toml");
    std::fs::write(&config, "[federation]\nkey_fetch_burst = 3\nkey_fetch_every_secs = 3600\n")
        .unwrap();
    let resolve = ["hub.test=127.0.0.1".to_owned(), "remote.test=127.0.0.1".to_owned()];
    let flags = ["--config", config.to_str().unwrap()];
    let hub = net.start_medrix_with("hub", "hub.test", &[], &resolve, &flags).await;
    let remote = FakeRemote::bind().await;
    let https = net.https_client(&[&hub]);
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", hub.user_id("alice"));
    let header = format!(
        "X-Matrix origin=\"{}\",destination=\"{}\",key=\"ed25519:k\",sig=\"c2lnbmF0dXJl\"",
        remote.server_name(),
        hub.server_name
    );
    let (mut fetches, started) = (0, std::time::Instant::now());
    for _ in 0..8 {
        let request = https.get(hub.federation_url(&path)).header("authorization", &header);
        let (response, seen) =
            tokio::join!(request.send(), remote.connections(Duration::from_millis(200)));
        assert_eq!(response.unwrap().status(), 401);
        fetches += seen;
    }
    fetches += remote.connections(Duration::from_millis(500)).await;
    assert_eq!(fetches, 3, "the hub fetched the origin's keys {fetches} times");
    eprintln!("8 requests in {:?}", started.elapsed());
}
