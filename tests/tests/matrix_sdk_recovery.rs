//! matrix-sdk against a real `medrix serve`, for what a patient needs to trust their record
//! across devices and people: cross-signing bootstrap, key backup with recovery onto a new
//! device, and a late joiner who reads what is shared after joining, and nothing before.

mod common;

use matrix_sdk::{
    Client, Room,
    ruma::{EventId, UserId, events::room::message::RoomMessageEventContent},
};
use medrix_tests::{TestServer, medrix_binary};
use serde_json::Value;

use common::{
    collect_bodies, create_record_room, joined_room, registered_client, sync_once, sync_until_seen,
};

/// The plaintext body of an event, if this client can decrypt it now.
async fn decrypted_body(room: &Room, event_id: &EventId) -> Option<String> {
    let event = room.event(event_id, None).await.expect("the event is readable");
    let json: Value = serde_json::from_str(event.raw().json().get()).unwrap();
    (json["type"] == "m.room.message").then(|| json["content"]["body"].as_str().unwrap().to_owned())
}

async fn logged_in_again(server: &TestServer, localpart: &str) -> Client {
    let client = Client::builder().homeserver_url(&server.base).build().await.unwrap();
    client
        .matrix_auth()
        .login_username(localpart, &format!("{localpart}-password"))
        .initial_device_display_name("new phone")
        .await
        .expect("login on a new device");
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_signing_key_backup_and_a_late_joiner() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = registered_client(&server, "patient").await;
    let doctor = registered_client(&server, "doctor").await;
    let nurse = registered_client(&server, "nurse").await;
    let doctor_bodies = collect_bodies(&doctor);
    let nurse_bodies = collect_bodies(&nurse);
    for client in [&patient, &doctor, &nurse] {
        sync_once(client).await;
    }

    // Cross-signing: the first upload needs no password; the device ends up signed by it.
    patient.encryption().bootstrap_cross_signing(None).await.expect("bootstrap cross-signing");
    let status = patient.encryption().cross_signing_status().await.unwrap();
    assert!(status.has_master && status.has_self_signing && status.has_user_signing, "{status:?}");
    // The client learns its device's new signature back from the server (a key query).
    sync_once(&patient).await;
    let own_device = patient.encryption().get_own_device().await.unwrap().unwrap();
    assert!(own_device.is_cross_signed_by_owner(), "the device is signed by the new identity");
    let patient_id = UserId::parse("@patient:localhost").unwrap();
    let seen_by_doctor = doctor.encryption().request_user_identity(&patient_id).await.unwrap();
    assert!(seen_by_doctor.is_some(), "other users see the patient's identity");

    // Recovery: secret storage plus a server-side key backup.
    let recovery_key = patient
        .encryption()
        .recovery()
        .enable()
        .wait_for_backups_to_upload()
        .await
        .expect("enable recovery and key backup");

    let room = create_record_room(&patient, "Cardiology", "@doctor:localhost").await;
    let room_id = room.room_id().to_owned();
    sync_once(&doctor).await;
    doctor.join_room_by_id(&room_id).await.expect("doctor joins");
    sync_once(&patient).await;
    let early = room.send(RoomMessageEventContent::text_plain("ECG: sinus rhythm")).await.unwrap();
    sync_until_seen(&[&doctor, &patient], &doctor_bodies, "ECG: sinus rhythm").await;
    patient.encryption().backups().wait_for_steady_state().await.expect("keys backed up");

    // A late joiner: the nurse is granted later and reads what comes after, not before.
    room.invite_user_by_id(&UserId::parse("@nurse:localhost").unwrap()).await.unwrap();
    sync_once(&nurse).await;
    nurse.join_room_by_id(&room_id).await.expect("nurse joins");
    sync_once(&patient).await;
    sync_once(&doctor).await;
    let doctor_room = joined_room(&doctor, &room_id).await;
    doctor_room.send(RoomMessageEventContent::text_plain("Echo booked for Monday")).await.unwrap();
    sync_until_seen(&[&nurse, &doctor, &patient], &nurse_bodies, "Echo booked for Monday").await;
    assert!(
        !nurse_bodies.lock().unwrap().iter().any(|b| b == "ECG: sinus rhythm"),
        "the late joiner read a record from before her grant"
    );
    let (status, _) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room_id}/event/{}", early.response.event_id),
            Some(&nurse.access_token().unwrap()),
            None,
        )
        .await;
    assert_eq!(status, 404, "the server does not hand the earlier ciphertext to the nurse");

    // The patient's new phone has none of the room keys, until it recovers from the backup.
    let phone = logged_in_again(&server, "patient").await;
    sync_once(&phone).await;
    let phone_room = joined_room(&phone, &room_id).await;
    assert_eq!(decrypted_body(&phone_room, &early.response.event_id).await, None, "no key yet");
    phone.encryption().recovery().recover(&recovery_key).await.expect("recover with the key");
    phone.encryption().backups().download_room_keys_for_room(&room_id).await.expect("download");
    assert_eq!(
        decrypted_body(&phone_room, &early.response.event_id).await.as_deref(),
        Some("ECG: sinus rhythm"),
        "the backed-up key decrypts the earlier record on the new device"
    );
}
