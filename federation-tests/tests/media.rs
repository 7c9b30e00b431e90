//! Files across servers (authenticated media over federation): a doctor on a hospital's
//! server downloads, through their own server, a file a patient uploaded on a clinic's server
//! once they share a room, byte for byte; a server with nobody in the patient's rooms is
//! refused, as is the hospital before its doctor joined.

use medrix_federation_tests::{
    FederatingServer, TestNet,
    room_calls::{create_room, post},
};
use serde_json::json;

/// Uploads `bytes` as `token`'s user; answers the file's `mxc://` URI.
async fn upload(server: &FederatingServer, token: &str, bytes: &[u8]) -> String {
    let response = reqwest::Client::new()
        .post(server.server.url("/_matrix/media/v3/upload?filename=scan.bin"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    answer["content_uri"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_reaches_another_server_only_for_a_member_of_the_uploaders_rooms() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital", "stranger"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let stranger = net.start("stranger", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;
    let outsider = stranger.server.register("outsider", "pw").await;

    let room = create_room(&clinic, &patient, json!({ "name": "Scans" })).await;
    // Not plain text, and larger than one TLS record, so a lossy path would show.
    let scan: Vec<u8> =
        (0..70_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mxc = upload(&clinic, &patient, &scan).await;

    // Nobody of the hospital's is in the patient's rooms yet: not even the ciphertext leaves.
    assert_eq!(hospital.server.download_media(&doctor, &mxc).await.0, 404);

    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    post(&clinic, &patient, &invite, json!({ "user_id": hospital.user_id("doctor") })).await;
    post(&hospital, &doctor, &format!("/_matrix/client/v3/join/{room}"), json!({})).await;
    let (status, bytes) = hospital.server.download_media(&doctor, &mxc).await;
    assert_eq!(status, 200);
    assert!(bytes == scan, "the file arrived changed ({} bytes)", bytes.len());

    // A server none of whose users shares a room with the patient.
    assert_eq!(stranger.server.download_media(&outsider, &mxc).await.0, 404);
}
