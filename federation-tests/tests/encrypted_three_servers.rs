//! The federation scenario the product rests on, with real matrix-sdk clients: a patient's
//! record room on the clinic's server, end-to-end encrypted, shared with a doctor on the
//! hospital's server and a technician on the lab's. Three `medrix serve` processes, each with
//! its own RocksDB, federating over TLS on loopback. Messages are decrypted on every server;
//! a server killed with `kill -9` mid-conversation and a server cut off for a while both
//! catch up with nothing lost; a kicked member's server gets nothing newer.

#[path = "../../tests/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{collect_bodies, joined_room, registered_client, sync_once, sync_until_seen};
use matrix_sdk::{
    Client,
    ruma::{
        OwnedRoomId, UserId,
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{
            InitialStateEvent,
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
        },
    },
};
use medrix_federation_tests::TestNet;

/// Syncs `client` until it is invited to `room_id`, then joins it (through the server that
/// sent the invite: the client names none).
async fn accept_invite(client: &Client, room_id: &OwnedRoomId) {
    for _ in 0..60 {
        sync_once(client).await;
        if client.get_room(room_id).is_some() {
            client.join_room_by_id(room_id).await.expect("join across servers");
            return;
        }
    }
    panic!("the invite to {room_id} never arrived");
}

async fn send(client: &Client, room_id: &OwnedRoomId, body: &str) {
    let room = joined_room(client, room_id).await;
    room.send(RoomMessageEventContent::text_plain(body)).await.expect("send");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_record_room_spans_three_servers_through_crashes_partitions_and_a_kick() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital", "lab"]).await;
    let mut hospital = net.start("hospital", &[], &["clinic", "lab"]).await;
    let mut lab = net.start("lab", &[], &["clinic", "hospital"]).await;

    let patient = registered_client(&clinic.server, "patient").await;
    let doctor = registered_client(&hospital.server, "doctor").await;
    let tech = registered_client(&lab.server, "tech").await;
    let (patient_saw, doctor_saw, tech_saw) =
        (collect_bodies(&patient), collect_bodies(&doctor), collect_bodies(&tech));
    for client in [&patient, &doctor, &tech] {
        sync_once(client).await;
    }

    let mut create = CreateRoomRequest::new();
    create.name = Some("Records".to_owned());
    create.invite = vec![
        UserId::parse(hospital.user_id("doctor")).unwrap(),
        UserId::parse(lab.user_id("tech")).unwrap(),
    ];
    create.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room = patient.create_room(create).await.expect("create the record room");
    let room_id = room.room_id().to_owned();
    accept_invite(&doctor, &room_id).await;
    accept_invite(&tech, &room_id).await;
    let members_path = format!("/_matrix/client/v3/rooms/{room_id}/joined_members");
    let token = patient.access_token().unwrap();
    let mut joined = 0;
    for _ in 0..60 {
        sync_once(&patient).await;
        let (_, members) = clinic.server.call("GET", &members_path, Some(&token), None).await;
        joined = members["joined"].as_object().map_or(0, |m| m.len());
        if joined == 3 {
            break;
        }
    }
    assert_eq!(joined, 3, "both providers joined across servers");
    // The patient's client counts them too (the sync room summary).
    sync_once(&patient).await;
    assert_eq!(room.joined_members_count(), 3);
    assert!(
        joined_room(&doctor, &room_id)
            .await
            .latest_encryption_state()
            .await
            .unwrap()
            .is_encrypted()
    );

    // Every server's member decrypts what the others send.
    let everyone = [&patient, &doctor, &tech];
    send(&patient, &room_id, "HbA1c 6.1% (March)").await;
    sync_until_seen(&everyone, &doctor_saw, "HbA1c 6.1% (March)").await;
    sync_until_seen(&everyone, &tech_saw, "HbA1c 6.1% (March)").await;
    send(&doctor, &room_id, "Reviewed; repeat in June").await;
    sync_until_seen(&everyone, &patient_saw, "Reviewed; repeat in June").await;
    sync_until_seen(&everyone, &tech_saw, "Reviewed; repeat in June").await;

    // The hospital's server is killed mid-conversation; what is said meanwhile reaches it once
    // it is back (the senders' queues are in their databases), and what its user says then
    // reaches the others.
    hospital.server.kill();
    send(&patient, &room_id, "Sent while the hospital was down").await;
    send(&tech, &room_id, "Lab result: potassium 4.2").await;
    hospital.server.start_again().await;
    send(&doctor, &room_id, "Back online").await;
    let reachable = [&patient, &doctor, &tech];
    sync_until_seen(&reachable, &doctor_saw, "Sent while the hospital was down").await;
    sync_until_seen(&reachable, &doctor_saw, "Lab result: potassium 4.2").await;
    sync_until_seen(&reachable, &patient_saw, "Back online").await;
    sync_until_seen(&reachable, &tech_saw, "Back online").await;

    // The lab's server is cut off (stopped, unreachable) while the others talk on.
    assert!(lab.server.terminate(), "clean stop");
    send(&patient, &room_id, "During the partition (clinic)").await;
    send(&doctor, &room_id, "During the partition (hospital)").await;
    sync_until_seen(&[&patient, &doctor], &patient_saw, "During the partition (hospital)").await;
    lab.server.start_again().await;
    send(&tech, &room_id, "Lab is back").await;
    sync_until_seen(&everyone, &tech_saw, "During the partition (clinic)").await;
    sync_until_seen(&everyone, &tech_saw, "During the partition (hospital)").await;
    sync_until_seen(&everyone, &patient_saw, "Lab is back").await;

    // The patient revokes the lab's access: the lab's member sees the kick, and nothing
    // sent afterwards reaches it, while the doctor still reads on.
    room.kick_user(&UserId::parse(lab.user_id("tech")).unwrap(), Some("access revoked"))
        .await
        .expect("kick across servers");
    for _ in 0..20 {
        sync_once(&tech).await;
        if tech.get_room(&room_id).is_some_and(|r| r.state() == matrix_sdk::RoomState::Left) {
            break;
        }
    }
    assert_eq!(tech.get_room(&room_id).unwrap().state(), matrix_sdk::RoomState::Left);
    send(&patient, &room_id, "After revoking the lab").await;
    sync_until_seen(&[&patient, &doctor], &doctor_saw, "After revoking the lab").await;
    for _ in 0..4 {
        sync_once(&tech).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        !tech_saw.lock().unwrap().iter().any(|b| b == "After revoking the lab"),
        "the removed member read a message sent after the revocation"
    );

    // Nothing was lost: each member decrypted each message sent while they were in the room.
    let said = [
        "HbA1c 6.1% (March)",
        "Reviewed; repeat in June",
        "Sent while the hospital was down",
        "Lab result: potassium 4.2",
        "Back online",
        "During the partition (clinic)",
        "During the partition (hospital)",
        "Lab is back",
    ];
    for (who, saw) in [("patient", &patient_saw), ("doctor", &doctor_saw), ("tech", &tech_saw)] {
        let saw = saw.lock().unwrap();
        for body in said {
            assert_eq!(saw.iter().filter(|b| *b == body).count(), 1, "{who} saw {saw:?}");
        }
    }
    // And it all went as the senders signed it: no request between them was refused (a
    // refused transaction could be made up for by gap filling and go unseen otherwise).
    for server in [&clinic, &hospital, &lab] {
        assert_eq!(server.bad_signatures_refused().await, 0, "{}", server.server_name);
    }
}
