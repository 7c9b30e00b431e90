//! matrix-sdk, the reference Rust client, against a real `medrix serve`: registration with a
//! registration token, an end-to-end encrypted room, messages each side decrypts, and a
//! revocation (kick) after which the kicked client receives nothing new.

mod common;

use matrix_sdk::ruma::{UserId, events::room::message::RoomMessageEventContent};
use medrix_tests::{TestServer, medrix_binary};

use common::{
    collect_bodies, create_encrypted_room, history_types, joined_room, registered_client,
    sync_once, sync_until_seen,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_record_room_with_grant_and_revocation() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = registered_client(&server, "patient").await;
    let doctor = registered_client(&server, "doctor").await;
    let patient_bodies = collect_bodies(&patient);
    let doctor_bodies = collect_bodies(&doctor);
    sync_once(&patient).await;
    sync_once(&doctor).await;

    // The record room: encrypted from its first event, the doctor invited (the grant).
    let room = create_encrypted_room(&patient, "Laboratory", "@doctor:localhost").await;
    let room_id = room.room_id().to_owned();

    sync_once(&doctor).await;
    doctor.join_room_by_id(&room_id).await.expect("the doctor accepts the grant");
    sync_once(&patient).await;
    sync_once(&doctor).await;

    room.send(RoomMessageEventContent::text_plain("HbA1c 6.1%")).await.expect("send");
    sync_until_seen(&[&doctor, &patient], &doctor_bodies, "HbA1c 6.1%").await;

    let doctor_room = joined_room(&doctor, &room_id).await;
    doctor_room
        .send(RoomMessageEventContent::text_plain("Reviewed; repeat in 3 months"))
        .await
        .expect("reply");
    sync_until_seen(&[&patient, &doctor], &patient_bodies, "Reviewed; repeat in 3 months").await;

    // Revocation: a kick. The patient's client rotates the room key; the doctor gets nothing new.
    room.kick_user(&UserId::parse("@doctor:localhost").unwrap(), Some("grant revoked"))
        .await
        .expect("kick");
    sync_once(&patient).await;
    room.send(RoomMessageEventContent::text_plain("After revocation"))
        .await
        .expect("send after kick");
    sync_until_seen(&[&patient], &patient_bodies, "After revocation").await;
    for _ in 0..3 {
        sync_once(&doctor).await;
    }
    assert!(
        !doctor_bodies.lock().unwrap().iter().any(|b| b == "After revocation"),
        "the revoked doctor read a later record"
    );
    // The server hides the third (post-kick) ciphertext too, not only the client's keys.
    let types = history_types(&server, &room_id, &doctor.access_token().unwrap()).await;
    let encrypted = types.iter().filter(|t| *t == "m.room.encrypted").count();
    assert_eq!(encrypted, 2, "exactly the two records shared while granted: {types:?}");
}
