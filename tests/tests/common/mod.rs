//! What the real-client tests share: a matrix-sdk client (the reference client every other
//! client talks to), and the encrypted conversation between it and a scripted client.

// Each test binary compiles this module and uses a part of it.
#![allow(dead_code)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    ruma::{
        OwnedRoomId, RoomId, UserId,
        api::client::{
            account::register,
            room::create_room::v3::Request as CreateRoomRequest,
            uiaa::{AuthData, Dummy, RegistrationToken},
        },
        events::{
            InitialStateEvent,
            room::{
                encryption::RoomEncryptionEventContent,
                history_visibility::{HistoryVisibility, RoomHistoryVisibilityEventContent},
                message::{MessageType, OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            },
        },
    },
};
use medrix_tests::{REGISTRATION_TOKEN, TestServer, clients::ScriptedClient};
use serde_json::json;

/// A matrix-sdk client that registered itself through the token flow, then logged in.
pub async fn registered_client(server: &TestServer, localpart: &str) -> Client {
    let client = Client::builder().homeserver_url(&server.base).build().await.unwrap();
    let mut request = register::v3::Request::new();
    request.username = Some(localpart.to_owned());
    request.password = Some(format!("{localpart}-password"));
    request.inhibit_login = true;
    // The first request gets the flows and a session; then the token and the dummy stages.
    let session = match client.matrix_auth().register(request.clone()).await {
        Err(err) => {
            err.as_uiaa_response().and_then(|info| info.session.clone()).expect("a UIA session")
        }
        Ok(_) => panic!("registration must ask for the token"),
    };
    let mut token = RegistrationToken::new(REGISTRATION_TOKEN.to_owned());
    token.session = Some(session.clone());
    request.auth = Some(AuthData::RegistrationToken(token));
    // The token stage done, the dummy stage completes the flow.
    match client.matrix_auth().register(request.clone()).await {
        Err(err) => {
            let info = err.as_uiaa_response().expect("the next stage is asked for");
            assert!(
                info.completed.iter().any(|stage| stage.as_str() == "m.login.registration_token")
            );
        }
        Ok(_) => panic!("registration must ask for the dummy stage after the token"),
    }
    let mut dummy = Dummy::new();
    dummy.session = Some(session);
    request.auth = Some(AuthData::Dummy(dummy));
    client.matrix_auth().register(request).await.expect("registration completes");
    client
        .matrix_auth()
        .login_username(localpart, &format!("{localpart}-password"))
        .initial_device_display_name(&format!("{localpart}'s test device"))
        .await
        .expect("login");
    client
}

/// Records the plaintext bodies of the messages a client decrypted.
pub fn collect_bodies(client: &Client) -> Arc<Mutex<Vec<String>>> {
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

pub async fn sync_once(client: &Client) {
    client
        .sync_once(SyncSettings::default().timeout(Duration::from_millis(500)))
        .await
        .expect("sync");
}

/// Syncs the clients until `bodies` (one client's decrypted bodies) contain `body`, or fails
/// after 30 s.
pub async fn sync_until_seen(clients: &[&Client], bodies: &Arc<Mutex<Vec<String>>>, body: &str) {
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

pub async fn joined_room(client: &Client, room_id: &OwnedRoomId) -> Room {
    for _ in 0..40 {
        if let Some(room) = client.get_room(room_id) {
            return room;
        }
        sync_once(client).await;
    }
    panic!("room {room_id} never appeared");
}

/// Creates a room that is encrypted from its first event, with `invite` invited.
pub async fn create_encrypted_room(client: &Client, name: &str, invite: &str) -> Room {
    create_room_with(client, name, invite, None).await
}

/// The same, with history visible to members from their join on (`joined`), as a record
/// room keeps it: a member granted later is handed nothing from before, not even ciphertext.
#[allow(dead_code)]
pub async fn create_record_room(client: &Client, name: &str, invite: &str) -> Room {
    create_room_with(client, name, invite, Some(HistoryVisibility::Joined)).await
}

async fn create_room_with(
    client: &Client,
    name: &str,
    invite: &str,
    visibility: Option<HistoryVisibility>,
) -> Room {
    let mut create = CreateRoomRequest::new();
    create.name = Some(name.to_owned());
    create.invite = vec![UserId::parse(invite).unwrap()];
    create.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    if let Some(visibility) = visibility {
        create.initial_state.push(
            InitialStateEvent::with_empty_state_key(RoomHistoryVisibilityEventContent::new(
                visibility,
            ))
            .to_raw_any(),
        );
    }
    let room = client.create_room(create).await.expect("create the room");
    assert!(room.latest_encryption_state().await.unwrap().is_encrypted());
    room
}

/// Which side creates the room and invites the other.
pub enum Creator {
    Script,
    MatrixSdk,
}

/// A scripted client (logged in as `script_user`) and a matrix-sdk client converse in an
/// encrypted room: each sends one message and each decrypts the other's. The server stores
/// ciphertext only. The scripts answer `create_room` and `join` only once their client shows
/// the room as encrypted, and fail otherwise.
pub async fn encrypted_conversation(
    server: &TestServer,
    script: &mut ScriptedClient,
    script_user: &str,
    creator: Creator,
) {
    let sdk = registered_client(server, "clinician").await;
    let sdk_user = sdk.user_id().unwrap().to_string();
    let sdk_bodies = collect_bodies(&sdk);
    sync_once(&sdk).await;

    let room_id = match creator {
        Creator::Script => {
            let created = script
                .request(json!({"cmd": "create_room", "invite": [sdk_user], "name": "Records"}))
                .await;
            let room_id = OwnedRoomId::try_from(created["room_id"].as_str().unwrap()).unwrap();
            sync_once(&sdk).await;
            sdk.join_room_by_id(&room_id).await.expect("matrix-sdk joins");
            script
                .request(json!({"cmd": "wait_joined", "room_id": room_id, "user_id": sdk_user}))
                .await;
            room_id
        }
        Creator::MatrixSdk => {
            let room = create_encrypted_room(&sdk, "Records", script_user).await;
            let room_id = room.room_id().to_owned();
            script.request(json!({"cmd": "wait_invite", "room_id": room_id})).await;
            script.request(json!({"cmd": "join", "room_id": room_id})).await;
            room_id
        }
    };
    sync_once(&sdk).await;
    let room = joined_room(&sdk, &room_id).await;
    assert!(room.latest_encryption_state().await.unwrap().is_encrypted());

    let from_script = "Blood pressure 120/80";
    script.request(json!({"cmd": "send", "room_id": room_id, "body": from_script})).await;
    sync_until_seen(&[&sdk], &sdk_bodies, from_script).await;

    let from_sdk = "Noted; next check in June";
    room.send(RoomMessageEventContent::text_plain(from_sdk)).await.expect("matrix-sdk sends");
    // The script answers only once its client decrypted exactly this message from matrix-sdk.
    script
        .request(json!({
            "cmd": "wait_message", "room_id": room_id, "sender": sdk_user, "body": from_sdk,
        }))
        .await;

    // Both messages crossed the server as ciphertext only.
    let types = history_types(server, &room_id, &sdk.access_token().unwrap()).await;
    let count = |kind: &str| types.iter().filter(|t| *t == kind).count();
    assert_eq!(count("m.room.encrypted"), 2, "{types:?}");
    assert_eq!(count("m.room.message"), 0, "{types:?}");
}

/// The types of a room's latest events (up to 100) that `token`'s user may read, newest first.
pub async fn history_types(server: &TestServer, room_id: &RoomId, token: &str) -> Vec<String> {
    let (status, history) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{history}");
    history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}
