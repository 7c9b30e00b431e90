//! matrix-sdk, the reference Rust client, against a real `medrix serve`: registration with a
//! registration token, an end-to-end encrypted room, messages each side decrypts, and a
//! revocation (kick) after which the kicked client receives nothing new.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    ruma::{
        OwnedRoomId, UserId,
        api::client::{
            account::register,
            room::create_room::v3::Request as CreateRoomRequest,
            uiaa::{AuthData, RegistrationToken},
        },
        events::{
            InitialStateEvent,
            room::{
                encryption::RoomEncryptionEventContent,
                message::{MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            },
        },
    },
};
use medrix_tests::{REGISTRATION_TOKEN, TestServer, medrix_binary};

/// A client that registered itself through the token flow, then logged in.
async fn registered_client(server: &TestServer, localpart: &str) -> Client {
    let client = Client::builder().homeserver_url(&server.base).build().await.unwrap();
    let mut request = register::v3::Request::new();
    request.username = Some(localpart.to_owned());
    request.password = Some(format!("{localpart}-password"));
    request.inhibit_login = true;
    // The first request gets the flows and a session; the second completes the token stage.
    let session = match client.matrix_auth().register(request.clone()).await {
        Err(err) => {
            err.as_uiaa_response().and_then(|info| info.session.clone()).expect("a UIA session")
        }
        Ok(_) => panic!("registration must ask for the token"),
    };
    let mut token = RegistrationToken::new(REGISTRATION_TOKEN.to_owned());
    token.session = Some(session);
    request.auth = Some(AuthData::RegistrationToken(token));
    client.matrix_auth().register(request).await.expect("registration with the token");
    client
        .matrix_auth()
        .login_username(localpart, &format!("{localpart}-password"))
        .initial_device_display_name(&format!("{localpart}'s test device"))
        .await
        .expect("login");
    client
}

/// Records the plaintext bodies of the messages a client decrypted.
fn collect_bodies(client: &Client) -> Arc<Mutex<Vec<String>>> {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    client.add_event_handler(move |event: OriginalSyncRoomMessageEvent| {
        let sink = sink.clone();
        async move {
            if let MessageType::Text(text) = event.content.msgtype {
                sink.lock().unwrap().push(text.body);
            }
        }
    });
    bodies
}

async fn sync_once(client: &Client) {
    client
        .sync_once(SyncSettings::default().timeout(Duration::from_millis(500)))
        .await
        .expect("sync");
}

/// Syncs both clients until `client`'s decrypted bodies contain `body`, or fails after 30 s.
async fn sync_until_seen(clients: &[&Client], bodies: &Arc<Mutex<Vec<String>>>, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !bodies.lock().unwrap().iter().any(|b| b == body) {
        assert!(
            Instant::now() < deadline,
            "{body:?} never arrived decrypted; saw {:?}",
            bodies.lock().unwrap()
        );
        for client in clients {
            sync_once(client).await;
        }
    }
}

async fn joined_room(client: &Client, room_id: &OwnedRoomId) -> Room {
    for _ in 0..40 {
        if let Some(room) = client.get_room(room_id) {
            return room;
        }
        sync_once(client).await;
    }
    panic!("room {room_id} never appeared");
}

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
    let mut create = CreateRoomRequest::new();
    create.name = Some("Laboratory".to_owned());
    create.invite = vec![UserId::parse("@doctor:localhost").unwrap()];
    create.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room = patient.create_room(create).await.expect("create the room");
    let room_id = room.room_id().to_owned();
    assert!(room.latest_encryption_state().await.unwrap().is_encrypted());

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
    let raw = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100"),
            Some(&doctor.access_token().unwrap()),
            None,
        )
        .await
        .1;
    // The server hides the third (post-kick) ciphertext too, not only the client's keys.
    let encrypted =
        raw["chunk"].as_array().unwrap().iter().filter(|e| e["type"] == "m.room.encrypted").count();
    assert_eq!(encrypted, 2, "exactly the two records shared while granted: {raw}");
}
