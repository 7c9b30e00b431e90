//! The client-server API's discovery and account endpoints, over real HTTP on loopback,
//! against a real `medrix serve` process on its own RocksDB.

mod support;

use serde_json::json;
use support::{REGISTRATION_TOKEN, TestServer};

#[tokio::test]
async fn discovery_answers_versions_capabilities_and_well_known() {
    let server = support::start().await;
    let (status, body) = server.call("GET", "/_matrix/client/versions", None, None).await;
    assert_eq!(status, 200);
    assert!(body["versions"].as_array().unwrap().iter().any(|v| v == "v1.11"), "{body}");

    let token = server.register("alice", "correct horse").await;
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/capabilities", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["capabilities"]["m.room_versions"]["default"], "12");
    for version in ["10", "11", "12"] {
        assert_eq!(body["capabilities"]["m.room_versions"]["available"][version], "stable");
    }
    let (status, body) = server.call("GET", "/.well-known/matrix/client", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["m.homeserver"]["base_url"], server.base);
}

#[tokio::test]
async fn unknown_endpoints_and_wrong_methods_are_unrecognized() {
    let server = support::start().await;
    let (status, body) = server.call("GET", "/_matrix/client/v3/no/such/thing", None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_UNRECOGNIZED")), "{body}");
    let (status, body) = server.call("DELETE", "/_matrix/client/versions", None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (405, Some("M_UNRECOGNIZED")), "{body}");
}

#[tokio::test]
async fn registration_walks_the_token_flow_and_refuses_bad_input() {
    let server = support::start().await;
    let register = "/_matrix/client/v3/register";

    // No auth: the flows and a session.
    let (status, body) = server
        .call("POST", register, None, Some(json!({"username": "bob", "password": "pw"})))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["flows"], json!([{"stages": ["m.login.registration_token", "m.login.dummy"]}]));
    let session = body["session"].as_str().unwrap().to_owned();

    // matrix-nio's habit: m.login.dummy on the first request. Still the flows, no account.
    let (status, body) = server
        .call(
            "POST",
            register,
            None,
            Some(json!({"username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"}})),
        )
        .await;
    assert_eq!(status, 401, "{body}");

    // A wrong token is refused within the session.
    let (status, body) = server
        .call(
            "POST",
            register,
            None,
            Some(json!({"username": "bob", "password": "pw",
            "auth": {"type": "m.login.registration_token", "token": "wrong", "session": session}})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_FORBIDDEN")), "{body}");

    // The right token completes its stage; the dummy stage then completes the flow.
    let (status, body) = server
        .call("POST", register, None, Some(json!({"username": "bob", "password": "pw",
            "auth": {"type": "m.login.registration_token", "token": REGISTRATION_TOKEN, "session": session}})))
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["completed"], json!(["m.login.registration_token"]));
    let (status, body) = server
        .call(
            "POST",
            register,
            None,
            Some(json!({"username": "bob", "password": "pw",
            "auth": {"type": "m.login.dummy", "session": session}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@bob:localhost");
    assert!(body["access_token"].as_str().unwrap().len() > 30);

    // Taken and invalid names.
    let (status, body) = server
        .call(
            "POST",
            register,
            None,
            Some(json!({"username": "bob", "password": "pw",
            "auth": {"type": "m.login.registration_token", "token": REGISTRATION_TOKEN}})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_USER_IN_USE")), "{body}");
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/register/available?username=bob", None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_USER_IN_USE")), "{body}");
    let (status, body) = server
        .call("GET", "/_matrix/client/v3/register/available?username=carol", None, None)
        .await;
    assert_eq!((status, body["available"].as_bool()), (200, Some(true)), "{body}");
    let (status, body) = server
        .call("GET", "/_matrix/client/v3/register/available?username=Not%20Valid!", None, None)
        .await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_INVALID_USERNAME")), "{body}");
}

#[tokio::test]
async fn registration_is_closed_without_a_token_configured() {
    let server = support::start_with(&[]).await;
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/register",
            None,
            Some(json!({"username": "eve", "password": "pw"})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");
}

#[tokio::test]
async fn login_whoami_and_logout() {
    let server = support::start().await;
    server.register("dana", "s3cret pass").await;
    let login = "/_matrix/client/v3/login";

    let (status, body) = server.call("GET", login, None, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["flows"][0]["type"], "m.login.password");

    // Localpart, and the full user ID as matrix-nio sends it.
    let mut tokens = Vec::new();
    for user in ["dana", "@dana:localhost"] {
        let (status, body) = server
            .call(
                "POST",
                login,
                None,
                Some(json!({"type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": user}, "password": "s3cret pass"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let (status, body) = server
        .call(
            "POST",
            login,
            None,
            Some(json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "dana"}, "password": "wrong"})),
        )
        .await;
    assert_eq!((status, body["errcode"].as_str()), (403, Some("M_FORBIDDEN")), "{body}");

    let (status, body) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(&tokens[0]), None).await;
    assert_eq!((status, body["user_id"].as_str()), (200, Some("@dana:localhost")), "{body}");

    // The legacy r0 prefix answers too.
    let (status, _) =
        server.call("GET", "/_matrix/client/r0/account/whoami", Some(&tokens[1]), None).await;
    assert_eq!(status, 200);

    let (status, _) =
        server.call("POST", "/_matrix/client/v3/logout", Some(&tokens[0]), None).await;
    assert_eq!(status, 200);
    let (status, body) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(&tokens[0]), None).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_UNKNOWN_TOKEN")), "{body}");
    let (status, _) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(&tokens[1]), None).await;
    assert_eq!(status, 200, "the other device stays logged in");

    let (status, _) =
        server.call("POST", "/_matrix/client/v3/logout/all", Some(&tokens[1]), None).await;
    assert_eq!(status, 200);
    let (status, _) =
        server.call("GET", "/_matrix/client/v3/account/whoami", Some(&tokens[1]), None).await;
    assert_eq!(status, 401);
    let (status, body) = server.call("GET", "/_matrix/client/v3/account/whoami", None, None).await;
    assert_eq!((status, body["errcode"].as_str()), (401, Some("M_MISSING_TOKEN")), "{body}");
}

#[tokio::test]
async fn malformed_bodies_get_matrix_errors_and_the_server_stays_up() {
    let server = support::start().await;
    let login = "/_matrix/client/v3/login";
    let (status, body) = server.raw("POST", login, b"{not json".to_vec()).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_NOT_JSON")), "{body}");
    let (status, body) = server.raw("POST", login, br#"{"type": 42}"#.to_vec()).await;
    assert_eq!((status, body["errcode"].as_str()), (400, Some("M_BAD_JSON")), "{body}");
    let (status, body) = server.raw("POST", login, vec![b' '; 2 << 20]).await;
    assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")), "{body}");
    // The server closes a connection whose body it refused to read; a new one is served.
    let fresh = reqwest::Client::new();
    let status = fresh.get(server.url("/_matrix/client/versions")).send().await.unwrap().status();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn rate_limits_answer_with_retry_after() {
    let server = support::start_with(&["--registration-token", REGISTRATION_TOKEN]).await;
    let mut limited = None;
    for _ in 0..200 {
        let (status, body) = server
            .call(
                "POST",
                "/_matrix/client/v3/login",
                None,
                Some(json!({"type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "nobody"}, "password": "x"})),
            )
            .await;
        if status == 429 {
            limited = Some(body);
            break;
        }
    }
    let body = limited.expect("rate limit reached within 200 requests");
    assert_eq!(body["errcode"], "M_LIMIT_EXCEEDED");
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0, "{body}");
}

#[tokio::test]
async fn acknowledged_registrations_survive_kill_9() {
    let mut server = support::start().await;
    server.register("erin", "durable").await;
    server.crash_and_restart().await;
    let (status, body) = server
        .call(
            "POST",
            "/_matrix/client/v3/login",
            None,
            Some(json!({"type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "erin"}, "password": "durable"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn metrics_are_served_and_sigterm_stops_cleanly() {
    let mut server = support::start().await;
    server.call("GET", "/_matrix/client/versions", None, None).await;
    let metrics = server.http.get(format!("{}/metrics", server.metrics)).send().await.unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("medrix_http_requests_total"), "{text}");
    assert!(server.terminate(), "exit status after SIGTERM");
}

#[tokio::test]
async fn password_change_and_deactivation_without_a_token_answer_missing_token() {
    let server = support::start().await;
    server.register("alice", "pw").await;
    for (path, body) in [
        ("/_matrix/client/v3/account/password", json!({"new_password": "new"})),
        ("/_matrix/client/v3/account/deactivate", json!({})),
        (
            "/_matrix/client/r0/account/password",
            json!({"new_password": "new", "logout_devices": true}),
        ),
    ] {
        let (status, answer) = server.call("POST", path, None, Some(body)).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (401, Some("M_MISSING_TOKEN")),
            "{path}: {answer}"
        );
    }
    // Nothing changed: the old password still logs in.
    let login = json!({"type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw"});
    let (status, body) = server.call("POST", "/_matrix/client/v3/login", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn two_servers_share_a_machine_given_only_their_client_ports() {
    /// A server process, killed and its data removed however the test ends.
    struct Started(std::process::Child, u16, std::path::PathBuf);
    impl Drop for Started {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
            let _ = std::fs::remove_dir_all(&self.2);
        }
    }
    // Without a metrics port, neither reaches for a fixed one the other already holds.
    let mut servers = Vec::new();
    for _ in 0..2 {
        let (port, dir) = (medrix_tests::free_port(), medrix_tests::unique_temp_dir("medrix-two"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_medrix"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--data-dir", dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        servers.push(Started(child, port, dir));
    }
    let http = reqwest::Client::new();
    for Started(child, port, _) in &mut servers {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let url = format!("http://127.0.0.1:{port}/_matrix/client/versions");
            if http.get(&url).send().await.is_ok_and(|r| r.status().is_success()) {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "the server on {port} exited");
            assert!(std::time::Instant::now() < deadline, "the server on {port} did not start");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn of_concurrent_registrations_of_one_name_exactly_one_succeeds() {
    let server = support::start().await;
    // A few rounds, each for a name of its own: one round may by chance not overlap.
    for round in 0..3 {
        let outcomes = register_at_once(&server, &format!("popular{round}"), 16).await;
        let succeeded = outcomes.iter().filter(|(status, _)| *status == 200).count();
        assert_eq!(succeeded, 1, "round {round}: {outcomes:?}");
        let in_use = (400, Some("M_USER_IN_USE".to_owned()));
        assert!(outcomes.iter().all(|o| o.0 == 200 || *o == in_use), "{outcomes:?}");
    }
}

/// `clients` registrations of `localpart`, each through the token stage on its own session,
/// their last stages sent at once; answers each status and errcode.
async fn register_at_once(
    server: &TestServer,
    localpart: &str,
    clients: usize,
) -> Vec<(u16, Option<String>)> {
    let path = "/_matrix/client/v3/register";
    // No password: nothing slow (hashing) spreads the last stages out in time.
    let account = json!({"username": localpart});
    let mut finals = Vec::new();
    for _ in 0..clients {
        let (_, opened) = server.call("POST", path, None, Some(account.clone())).await;
        let session = opened["session"].clone();
        let mut body = account.clone();
        body["auth"] = json!({"type": "m.login.registration_token", "token": REGISTRATION_TOKEN, "session": session});
        let (status, answer) = server.call("POST", path, None, Some(body.clone())).await;
        assert_eq!(status, 401, "{answer}");
        body["auth"] = json!({"type": "m.login.dummy", "session": session});
        finals.push(body);
    }
    let tasks: Vec<_> = finals
        .into_iter()
        .map(|body| {
            let (http, url) = (server.http.clone(), server.url(path));
            tokio::spawn(async move {
                medrix_tests::call_json(&http, "POST", &url, None, Some(body)).await
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        outcomes.push((status, body["errcode"].as_str().map(ToOwned::to_owned)));
    }
    outcomes
}
