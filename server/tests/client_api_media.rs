//! Authenticated media over real HTTP: upload, download through the visibility rule (a
//! stranger or a revoked member gets nothing uploaded after their access), size limits, and
//! durability across `kill -9`.

mod support;

use serde_json::{Value, json};
use support::TestServer;

async fn upload(server: &TestServer, token: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = server
        .http
        .post(server.url("/_matrix/media/v3/upload?filename=scan%201.bin"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn media_reaches_room_members_only_while_they_have_access() {
    let mut server = support::start().await;
    let patient = server.register("patient", "pw").await;
    let doctor = server.register("doctor", "pw").await;
    let stranger = server.register("stranger", "pw").await;
    let (_, room) = server
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient),
            Some(json!({"invite": ["@doctor:localhost"]})),
        )
        .await;
    let room = room["room_id"].as_str().unwrap().to_owned();
    server
        .call("POST", &format!("/_matrix/client/v3/join/{room}"), Some(&doctor), Some(json!({})))
        .await;

    // Opaque bytes (an encrypted attachment) round-trip exactly.
    let scan: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let (status, body) = upload(&server, &patient, scan.clone()).await;
    assert_eq!(status, 200, "{body}");
    let before_kick = body["content_uri"].as_str().unwrap().to_owned();
    assert!(before_kick.starts_with("mxc://localhost/"), "{before_kick}");
    assert_eq!(server.download_media(&patient, &before_kick).await, (200, scan.clone()));
    assert_eq!(server.download_media(&doctor, &before_kick).await, (200, scan.clone()));
    assert_eq!(server.download_media(&stranger, &before_kick).await.0, 404);

    // After the kick the doctor keeps what was shared but gets nothing newer.
    let (status, _) = server
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            Some(&patient),
            Some(json!({"user_id": "@doctor:localhost"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, body) = upload(&server, &patient, b"after the kick".to_vec()).await;
    let after_kick = body["content_uri"].as_str().unwrap().to_owned();
    assert_eq!(server.download_media(&doctor, &after_kick).await.0, 404);
    assert_eq!(server.download_media(&doctor, &before_kick).await.0, 200);

    // Unknown, malformed and remote IDs are not found; no token is refused.
    let (status, _) =
        server.download_media(&patient, "mxc://localhost/AAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(status, 404);
    let (status, _) =
        server.download_media(&patient, "mxc://localhost/..%2F..%2Fsigning.key").await;
    assert_eq!(status, 404);
    let (status, _) =
        server.download_media(&patient, "mxc://elsewhere.example/AAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(status, 404);
    let response =
        server.http.post(server.url("/_matrix/media/v3/upload")).body("x").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);

    // The limit is advertised and enforced.
    let (_, config) =
        server.call("GET", "/_matrix/client/v1/media/config", Some(&patient), None).await;
    let limit = config["m.upload.size"].as_u64().unwrap();
    let (status, body) = upload(&server, &patient, vec![0; limit as usize + 1]).await;
    assert_eq!((status, body["errcode"].as_str()), (413, Some("M_TOO_LARGE")));

    // An acknowledged upload survives kill -9.
    server.crash_and_restart().await;
    assert_eq!(server.download_media(&patient, &before_kick).await, (200, scan));
}
