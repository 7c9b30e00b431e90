//! Encrypted rooms between Medrix and Synapse, the reference homeserver, with matrix-sdk
//! clients on both: a Synapse user joins a Medrix room (Medrix's `/invite` to Synapse,
//! Synapse's `make_join`/`send_join` to Medrix), and a Medrix user joins a Synapse room (the
//! other way round). In each, the joined server's users decrypt what the others send, a new
//! device on either side is told of (device-list EDUs) and decrypts what follows, a second
//! user of the joined server joins locally (its server is in the room already), a kick
//! keeps later messages from the removed user, and the servers hold only ciphertext.

#[path = "../../tests/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{
    collect_bodies, create_encrypted_room, history_types, joined_room, registered_client,
    sync_once, sync_until_seen,
};
use matrix_sdk::{
    Client, RoomState,
    ruma::{
        EventId, OwnedEventId, OwnedRoomId, OwnedServerName, RoomAliasId, RoomOrAliasId,
        RoomVersionId, UserId,
        api::client::{
            receipt::create_receipt,
            room::create_room::v3::{Request as CreateRoomRequest, RoomPreset},
        },
        events::{
            InitialStateEvent,
            receipt::{ReceiptThread, ReceiptType},
            room::{
                encryption::RoomEncryptionEventContent, member::MembershipState,
                message::RoomMessageEventContent,
            },
            typing::SyncTypingEvent,
        },
    },
};
use medrix_federation_tests::{FederatingServer, TestNet, synapse::SynapseServer};

/// A matrix-sdk client of a user registered on Synapse (shared-secret registration, then a
/// password login on the client's own device).
async fn synapse_client(synapse: &SynapseServer, localpart: &str) -> Client {
    synapse.register(localpart, &format!("{localpart}-password")).await;
    login(&synapse.client_base, localpart).await
}

/// A new device of an existing user (registered with the password `<localpart>-password`).
async fn login(homeserver: &str, localpart: &str) -> Client {
    let client = Client::builder().homeserver_url(homeserver).build().await.unwrap();
    client
        .matrix_auth()
        .login_username(localpart, &format!("{localpart}-password"))
        .initial_device_display_name(&format!("{localpart}'s test device"))
        .await
        .expect("login");
    client
}

/// Syncs `client` until it is invited to `room_id`, then joins it through `via` (empty: the
/// server that sent the invite, or its own when it is in the room).
async fn accept_invite(client: &Client, room_id: &OwnedRoomId, via: &[OwnedServerName]) {
    wait_invited(client, room_id).await;
    let room = <&RoomOrAliasId>::from(&**room_id);
    client.join_room_by_id_or_alias(room, via).await.expect("join across servers");
}

async fn wait_invited(client: &Client, room_id: &OwnedRoomId) {
    for _ in 0..60 {
        sync_once(client).await;
        if client.get_room(room_id).is_some_and(|room| room.state() == RoomState::Invited) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the invite to {room_id} never arrived");
}

/// How many members `client`'s server counts as joined to `room_id` (`/joined_members`).
async fn joined_members(client: &Client, room_id: &OwnedRoomId) -> usize {
    let url = client
        .homeserver()
        .join(&format!("_matrix/client/v3/rooms/{room_id}/joined_members"))
        .unwrap();
    let token = client.access_token().unwrap();
    let (status, members) =
        medrix_tests::call_json(&reqwest::Client::new(), "GET", url.as_str(), Some(&token), None)
            .await;
    assert_eq!(status, 200, "{members}");
    members["joined"].as_object().map_or(0, |joined| joined.len())
}

/// Syncs the clients until each one's server counts `joined` members in the room.
async fn wait_joined(clients: &[&Client], room_id: &OwnedRoomId, joined: usize) {
    let mut counts = Vec::new();
    for _ in 0..60 {
        counts.clear();
        for client in clients {
            sync_once(client).await;
            counts.push(joined_members(client, room_id).await);
        }
        if counts.iter().all(|count| *count == joined) {
            return;
        }
    }
    panic!("{room_id} never had {joined} joined members on every server: {counts:?}");
}

/// Syncs `client` until it knows `device`'s keys (its server reported the device list
/// change, and the client queried the new keys through it).
async fn wait_knows_device(client: &Client, device: &Client) {
    let (user, device_id) = (device.user_id().unwrap(), device.device_id().unwrap());
    for _ in 0..60 {
        sync_once(client).await;
        sync_once(device).await;
        if client.encryption().get_device(user, device_id).await.unwrap().is_some() {
            return;
        }
    }
    panic!("{} never learnt of {user}'s new device {device_id}", client.user_id().unwrap());
}

/// Syncs `client` until its membership in the room is `left`.
async fn wait_left(client: &Client, room_id: &OwnedRoomId) {
    for _ in 0..60 {
        sync_once(client).await;
        if client.get_room(room_id).is_some_and(|room| room.state() == RoomState::Left) {
            return;
        }
    }
    panic!("{} never saw itself removed from {room_id}", client.user_id().unwrap());
}

async fn send(client: &Client, room_id: &OwnedRoomId, body: &str) {
    let room = joined_room(client, room_id).await;
    room.send(RoomMessageEventContent::text_plain(body)).await.expect("send");
}

/// Syncs `client` a few times and checks it never decrypted `body`.
async fn never_sees(client: &Client, bodies: &std::sync::Mutex<Vec<String>>, body: &str) {
    for _ in 0..4 {
        sync_once(client).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(!bodies.lock().unwrap().iter().any(|b| b == body), "a removed member read {body:?}");
}

/// Both servers' `/messages` show the room's messages as `m.room.encrypted` only: as many
/// as each user may read (Medrix shows a member only what was sent while they were joined;
/// Synapse, in a room with `shared` history, all of it).
async fn assert_ciphertext_only(
    (medrix, medrix_user, medrix_messages): (&FederatingServer, &Client, usize),
    (synapse, synapse_user, synapse_messages): (&SynapseServer, &Client, usize),
    room_id: &OwnedRoomId,
) {
    let types = history_types(&medrix.server, room_id, &medrix_user.access_token().unwrap()).await;
    let count = |kind: &str| types.iter().filter(|t| *t == kind).count();
    let counts = (count("m.room.encrypted"), count("m.room.message"));
    assert_eq!(counts, (medrix_messages, 0), "{types:?}");

    let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=100");
    let token = synapse_user.access_token().unwrap();
    let (status, history) = synapse.call("GET", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{history}");
    let types: Vec<&str> = history["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap_or_default())
        .collect();
    let count = |kind: &str| types.iter().filter(|t| **t == kind).count();
    let counts = (count("m.room.encrypted"), count("m.room.message"));
    assert_eq!(counts, (synapse_messages, 0), "{types:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synapse_user_joins_an_encrypted_medrix_room_and_both_decrypt() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let alice = registered_client(&medrix.server, "alice").await;
    let bob = synapse_client(&synapse, "bob").await;
    let dan = synapse_client(&synapse, "dan").await;
    let (alice_saw, bob_saw, dan_saw) =
        (collect_bodies(&alice), collect_bodies(&bob), collect_bodies(&dan));
    for client in [&alice, &bob, &dan] {
        sync_once(client).await;
    }

    // Medrix invites (`/invite` v2 to Synapse); Synapse joins through Medrix.
    let bob_id = bob.user_id().unwrap().to_string();
    let room = create_encrypted_room(&alice, "Records at Medrix", &bob_id).await;
    let room_id = room.room_id().to_owned();
    accept_invite(&bob, &room_id, &[]).await;
    wait_joined(&[&alice, &bob], &room_id, 2).await;
    assert!(
        joined_room(&bob, &room_id).await.latest_encryption_state().await.unwrap().is_encrypted()
    );

    send(&alice, &room_id, "From Medrix: HbA1c 6.1%").await;
    sync_until_seen(&[&alice, &bob], &bob_saw, "From Medrix: HbA1c 6.1%").await;
    send(&bob, &room_id, "From Synapse: noted").await;
    sync_until_seen(&[&alice, &bob], &alice_saw, "From Synapse: noted").await;

    // Bob signs in on a second device: Synapse tells Medrix (a device-list EDU), Medrix tells
    // Alice's client, and what she sends next is shared with that device too.
    let bob_phone = login(&synapse.client_base, "bob").await;
    let phone_saw = collect_bodies(&bob_phone);
    wait_knows_device(&alice, &bob_phone).await;
    send(&alice, &room_id, "From Medrix: for both of Bob's devices").await;
    sync_until_seen(&[&alice, &bob_phone], &phone_saw, "From Medrix: for both of Bob's devices")
        .await;

    // A second Synapse user joins: Synapse is in the room, so the join is its own.
    room.invite_user_by_id(dan.user_id().unwrap()).await.expect("invite dan");
    accept_invite(&dan, &room_id, &[]).await;
    wait_joined(&[&alice, &bob, &dan], &room_id, 3).await;
    send(&dan, &room_id, "From Synapse: Dan here").await;
    sync_until_seen(&[&alice, &dan], &alice_saw, "From Synapse: Dan here").await;

    // Alice removes Bob: Dan reads on, Bob does not.
    room.kick_user(bob.user_id().unwrap(), Some("access revoked")).await.expect("kick bob");
    wait_left(&bob, &room_id).await;
    send(&alice, &room_id, "From Medrix: after Bob left").await;
    sync_until_seen(&[&alice, &dan], &dan_saw, "From Medrix: after Bob left").await;
    never_sees(&bob, &bob_saw, "From Medrix: after Bob left").await;

    // Dan, on Synapse, reads the history from before he joined (`shared`).
    assert_ciphertext_only((&medrix, &alice, 5), (&synapse, &dan, 5), &room_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medrix_user_joins_an_encrypted_synapse_room_and_both_decrypt() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let alice = registered_client(&medrix.server, "alice").await;
    let carol = registered_client(&medrix.server, "carol").await;
    let bob = synapse_client(&synapse, "bob").await;
    let (alice_saw, bob_saw, carol_saw) =
        (collect_bodies(&alice), collect_bodies(&bob), collect_bodies(&carol));
    for client in [&alice, &bob, &carol] {
        sync_once(client).await;
    }

    // Synapse invites (`/invite` v2 to Medrix); Medrix joins through Synapse. Synapse's
    // default room version is 12, whose room IDs name no server: the client names it.
    let alice_id = alice.user_id().unwrap().to_string();
    let room = create_encrypted_room(&bob, "Records at Synapse", &alice_id).await;
    let room_id = room.room_id().to_owned();
    wait_invited(&alice, &room_id).await;
    let invited = alice.get_room(&room_id).unwrap();
    assert_eq!(invited.name().as_deref(), Some("Records at Synapse"), "the invite's room state");
    let via = [OwnedServerName::try_from(synapse.server_name.as_str()).unwrap()];
    accept_invite(&alice, &room_id, &via).await;
    wait_joined(&[&bob, &alice], &room_id, 2).await;
    assert!(
        joined_room(&alice, &room_id).await.latest_encryption_state().await.unwrap().is_encrypted()
    );

    send(&bob, &room_id, "From Synapse: blood pressure 120/80").await;
    sync_until_seen(&[&alice, &bob], &alice_saw, "From Synapse: blood pressure 120/80").await;
    send(&alice, &room_id, "From Medrix: next check in June").await;
    sync_until_seen(&[&alice, &bob], &bob_saw, "From Medrix: next check in June").await;

    // Alice signs in on a second device: Medrix tells Synapse, Synapse tells Bob's client.
    let alice_phone = login(&medrix.server.base, "alice").await;
    let phone_saw = collect_bodies(&alice_phone);
    wait_knows_device(&bob, &alice_phone).await;
    send(&bob, &room_id, "From Synapse: for both of Alice's devices").await;
    sync_until_seen(&[&bob, &alice_phone], &phone_saw, "From Synapse: for both of Alice's devices")
        .await;

    // A second Medrix user joins: Medrix is in the room, so the join is its own.
    room.invite_user_by_id(carol.user_id().unwrap()).await.expect("invite carol");
    accept_invite(&carol, &room_id, &[]).await;
    wait_joined(&[&bob, &alice, &carol], &room_id, 3).await;
    send(&carol, &room_id, "From Medrix: Carol here").await;
    sync_until_seen(&[&bob, &carol], &bob_saw, "From Medrix: Carol here").await;

    // Bob removes Alice: Carol reads on, Alice does not.
    room.kick_user(&UserId::parse(&alice_id).unwrap(), Some("access revoked"))
        .await
        .expect("kick alice");
    wait_left(&alice, &room_id).await;
    send(&bob, &room_id, "From Synapse: after Alice left").await;
    sync_until_seen(&[&bob, &carol], &carol_saw, "From Synapse: after Alice left").await;
    never_sees(&alice, &alice_saw, "From Synapse: after Alice left").await;

    // Alice, on Medrix, reads up to her removal.
    assert_ciphertext_only((&medrix, &alice, 4), (&synapse, &bob, 5), &room_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medrix_user_who_left_a_synapse_room_is_invited_back_and_rejoins() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let (alice, bob, alice_saw, bob_saw) = alice_and_bob(&medrix, &synapse).await;

    let alice_id = UserId::parse(alice.user_id().unwrap().as_str()).unwrap();
    let room = create_encrypted_room(&bob, "Records at Synapse", alice_id.as_str()).await;
    let room_id = room.room_id().to_owned();
    let via = [OwnedServerName::try_from(synapse.server_name.as_str()).unwrap()];
    accept_invite(&alice, &room_id, &via).await;
    wait_joined(&[&bob, &alice], &room_id, 2).await;

    // Alice leaves: Medrix has no member in the room any more, and hears nothing of it.
    joined_room(&alice, &room_id).await.leave().await.expect("leave");
    wait_joined(&[&bob], &room_id, 1).await;
    send(&bob, &room_id, "From Synapse: while Alice was away").await;

    // Bob invites her back: the invite reaches Medrix through `/invite` alone, and her join
    // must go through Synapse again (Medrix's copy of the room is stale).
    room.invite_user_by_id(&alice_id).await.expect("invite alice again");
    accept_invite(&alice, &room_id, &via).await;
    wait_joined(&[&bob, &alice], &room_id, 2).await;
    send(&bob, &room_id, "From Synapse: welcome back").await;
    sync_until_seen(&[&alice, &bob], &alice_saw, "From Synapse: welcome back").await;
    send(&alice, &room_id, "From Medrix: glad to be back").await;
    sync_until_seen(&[&alice, &bob], &bob_saw, "From Medrix: glad to be back").await;
    never_sees(&alice, &alice_saw, "From Synapse: while Alice was away").await;
}

/// Records the user IDs `client` was told are typing (in any room).
fn collect_typing(client: &Client) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    let typing = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = typing.clone();
    client.add_event_handler(move |event: SyncTypingEvent| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().extend(event.content.user_ids.iter().map(|u| u.to_string()));
        }
    });
    typing
}

/// Syncs `client` until it holds `reader`'s read receipt on `event_id`.
async fn wait_receipt(client: &Client, room_id: &OwnedRoomId, reader: &Client, event_id: &EventId) {
    let reader_id = reader.user_id().unwrap();
    for _ in 0..60 {
        sync_once(client).await;
        let room = joined_room(client, room_id).await;
        let receipt = room
            .load_user_receipt(ReceiptType::Read, ReceiptThread::Unthreaded, reader_id)
            .await
            .unwrap();
        if receipt.is_some_and(|(id, _)| id == event_id) {
            return;
        }
    }
    panic!(
        "{}'s read receipt on {event_id} never reached {}",
        reader_id,
        client.user_id().unwrap()
    );
}

/// Syncs `client` until it was told `typist` is typing.
async fn wait_typing(client: &Client, typing: &std::sync::Mutex<Vec<String>>, typist: &Client) {
    let typist = typist.user_id().unwrap().to_string();
    for _ in 0..60 {
        sync_once(client).await;
        if typing.lock().unwrap().contains(&typist) {
            return;
        }
    }
    panic!("{} never saw {typist} typing", client.user_id().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_and_typing_cross_between_medrix_and_synapse() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let alice = registered_client(&medrix.server, "alice").await;
    let bob = synapse_client(&synapse, "bob").await;
    let (alice_typing, bob_typing) = (collect_typing(&alice), collect_typing(&bob));
    sync_once(&alice).await;
    sync_once(&bob).await;
    let room =
        create_encrypted_room(&alice, "Records at Medrix", bob.user_id().unwrap().as_str()).await;
    let room_id = room.room_id().to_owned();
    accept_invite(&bob, &room_id, &[]).await;
    wait_joined(&[&alice, &bob], &room_id, 2).await;

    let from_alice = joined_room(&alice, &room_id)
        .await
        .send(RoomMessageEventContent::text_plain("From Medrix"))
        .await
        .unwrap()
        .response
        .event_id;
    let from_bob = joined_room(&bob, &room_id)
        .await
        .send(RoomMessageEventContent::text_plain("From Synapse"))
        .await
        .unwrap()
        .response
        .event_id;
    sync_once(&alice).await;
    sync_once(&bob).await;

    // Each reads the other's message: the receipt crosses as an `m.receipt` EDU.
    let read = |client: &Client, event_id: OwnedEventId| {
        let client = client.clone();
        let room_id = room_id.clone();
        async move {
            joined_room(&client, &room_id)
                .await
                .send_single_receipt(
                    create_receipt::v3::ReceiptType::Read,
                    ReceiptThread::Unthreaded,
                    event_id,
                )
                .await
                .expect("receipt")
        }
    };
    read(&bob, from_alice.clone()).await;
    wait_receipt(&alice, &room_id, &bob, &from_alice).await;
    read(&alice, from_bob.clone()).await;
    wait_receipt(&bob, &room_id, &alice, &from_bob).await;

    // And each sees the other typing (`m.typing` EDUs).
    joined_room(&bob, &room_id).await.typing_notice(true).await.expect("typing");
    wait_typing(&alice, &alice_typing, &bob).await;
    joined_room(&alice, &room_id).await.typing_notice(true).await.expect("typing");
    wait_typing(&bob, &bob_typing, &alice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medrix_user_declines_a_synapse_invite() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let alice = registered_client(&medrix.server, "alice").await;
    let bob = synapse_client(&synapse, "bob").await;
    sync_once(&alice).await;
    sync_once(&bob).await;
    let room =
        create_encrypted_room(&bob, "Records at Synapse", alice.user_id().unwrap().as_str()).await;
    let room_id = room.room_id().to_owned();
    wait_invited(&alice, &room_id).await;

    // Medrix is not in the room: the refusal travels as `make_leave`/`send_leave` to Synapse.
    alice.get_room(&room_id).unwrap().leave().await.expect("decline the invite");
    let alice_id = alice.user_id().unwrap().to_owned();
    for _ in 0..60 {
        sync_once(&bob).await;
        let member = room.get_member_no_sync(&alice_id).await.unwrap();
        if member.is_some_and(|m| *m.membership() == MembershipState::Leave) {
            // matrix-sdk forgets a declined invite; Medrix must not bring it back.
            sync_once(&alice).await;
            let shown = alice.get_room(&room_id).map(|room| room.state());
            assert!(shown.is_none_or(|state| state == RoomState::Left), "{shown:?}");
            return;
        }
    }
    panic!("Synapse never heard that Alice declined");
}

type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// Alice on Medrix and Bob on Synapse, each with what their client decrypts, synced once.
async fn alice_and_bob(
    medrix: &FederatingServer,
    synapse: &SynapseServer,
) -> (Client, Client, Seen, Seen) {
    let alice = registered_client(&medrix.server, "alice").await;
    let bob = synapse_client(synapse, "bob").await;
    let (alice_saw, bob_saw) = (collect_bodies(&alice), collect_bodies(&bob));
    sync_once(&alice).await;
    sync_once(&bob).await;
    (alice, bob, alice_saw, bob_saw)
}

/// Bob (on Synapse) and Alice (on Medrix) in an encrypted room of Bob's, with the message
/// "Before the crash" from Bob decrypted on both sides.
struct BobsRoom {
    alice: Client,
    bob: Client,
    alice_saw: Seen,
    bob_saw: Seen,
    room_id: OwnedRoomId,
}

async fn bobs_room_with_alice(medrix: &FederatingServer, synapse: &SynapseServer) -> BobsRoom {
    let (alice, bob, alice_saw, bob_saw) = alice_and_bob(medrix, synapse).await;
    let room =
        create_encrypted_room(&bob, "Records at Synapse", alice.user_id().unwrap().as_str()).await;
    let room_id = room.room_id().to_owned();
    let via = [OwnedServerName::try_from(synapse.server_name.as_str()).unwrap()];
    accept_invite(&alice, &room_id, &via).await;
    wait_joined(&[&bob, &alice], &room_id, 2).await;
    send(&bob, &room_id, "Before the crash").await;
    sync_until_seen(&[&alice, &bob], &alice_saw, "Before the crash").await;
    BobsRoom { alice, bob, alice_saw, bob_saw, room_id }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medrix_gets_what_a_synapse_room_said_while_it_was_down() {
    let net = TestNet::new();
    let mut medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let BobsRoom { alice, bob, alice_saw, bob_saw, room_id } =
        bobs_room_with_alice(&medrix, &synapse).await;

    // Medrix is killed while Bob talks on; Synapse retries its transaction until Medrix is
    // back (when Synapse gives transactions up instead: the next test).
    medrix.server.kill();
    for body in
        ["While Medrix was down (1)", "While Medrix was down (2)", "While Medrix was down (3)"]
    {
        send(&bob, &room_id, body).await;
    }
    medrix.server.start_again().await;
    send(&bob, &room_id, "After Medrix came back").await;
    for body in [
        "While Medrix was down (1)",
        "While Medrix was down (2)",
        "While Medrix was down (3)",
        "After Medrix came back",
    ] {
        sync_until_seen(&[&alice, &bob], &alice_saw, body).await;
    }
    send(&alice, &room_id, "From Medrix: all caught up").await;
    sync_until_seen(&[&alice, &bob], &bob_saw, "From Medrix: all caught up").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_of_versions_10_and_11_work_between_medrix_and_synapse() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let (alice, bob, alice_saw, bob_saw) = alice_and_bob(&medrix, &synapse).await;

    for (creator, joiner, version) in [(&bob, &alice, "10"), (&alice, &bob, "11")] {
        let mut create = CreateRoomRequest::new();
        create.room_version = Some(RoomVersionId::try_from(version).unwrap());
        create.invite = vec![joiner.user_id().unwrap().to_owned()];
        create.initial_state = vec![
            InitialStateEvent::with_empty_state_key(
                RoomEncryptionEventContent::with_recommended_defaults(),
            )
            .to_raw_any(),
        ];
        let room = creator.create_room(create).await.expect("create the room");
        let room_id = room.room_id().to_owned();
        assert!(room_id.server_name().is_some(), "a version {version} room ID names its server");
        // The room ID names the server to join through.
        accept_invite(joiner, &room_id, &[]).await;
        wait_joined(&[creator, joiner], &room_id, 2).await;
        let (first, second) =
            (format!("v{version}: from the creator"), format!("v{version}: reply"));
        send(creator, &room_id, &first).await;
        sync_until_seen(
            &[&alice, &bob],
            if version == "10" { &alice_saw } else { &bob_saw },
            &first,
        )
        .await;
        send(joiner, &room_id, &second).await;
        sync_until_seen(
            &[&alice, &bob],
            if version == "10" { &bob_saw } else { &alice_saw },
            &second,
        )
        .await;
    }
}

/// A public encrypted room named by the alias `#<name>:<client's server>`.
async fn create_public_room_with_alias(client: &Client, name: &str) -> OwnedRoomId {
    let mut create = CreateRoomRequest::new();
    create.room_alias_name = Some(name.to_owned());
    create.preset = Some(RoomPreset::PublicChat);
    create.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    client.create_room(create).await.expect("create the room").room_id().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_aliases_resolve_and_join_across_medrix_and_synapse() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;

    let (alice, bob, alice_saw, bob_saw) = alice_and_bob(&medrix, &synapse).await;
    let clinic_room = create_public_room_with_alias(&alice, "clinic").await;
    let ward_room = create_public_room_with_alias(&bob, "ward").await;

    // Synapse asks Medrix's directory (`/query/directory`) and joins through what it names.
    let clinic = RoomAliasId::parse(format!("#clinic:{}", medrix.server_name)).unwrap();
    let answer = bob.resolve_room_alias(&clinic).await.expect("Synapse resolves a Medrix alias");
    assert_eq!(answer.room_id, clinic_room);
    assert_eq!(answer.servers, [OwnedServerName::try_from(medrix.server_name.as_str()).unwrap()]);
    let joined = bob.join_room_by_id_or_alias((&*clinic).into(), &[]).await.expect("join");
    assert_eq!(joined.room_id(), clinic_room);

    // Medrix asks Synapse's, and joins the same way.
    let ward = RoomAliasId::parse(format!("#ward:{}", synapse.server_name)).unwrap();
    let answer = alice.resolve_room_alias(&ward).await.expect("Medrix resolves a Synapse alias");
    assert_eq!(answer.room_id, ward_room);
    assert!(answer.servers.iter().any(|server| server.as_str() == synapse.server_name));
    let joined = alice.join_room_by_id_or_alias((&*ward).into(), &[]).await.expect("join");
    assert_eq!(joined.room_id(), ward_room);

    wait_joined(&[&alice, &bob], &clinic_room, 2).await;
    wait_joined(&[&alice, &bob], &ward_room, 2).await;
    send(&bob, &clinic_room, "In the clinic room, from Synapse").await;
    sync_until_seen(&[&alice, &bob], &alice_saw, "In the clinic room, from Synapse").await;
    send(&alice, &ward_room, "In the ward room, from Medrix").await;
    sync_until_seen(&[&alice, &bob], &bob_saw, "In the ward room, from Medrix").await;

    // An alias its server does not have is unknown, asked across too.
    let nothing = RoomAliasId::parse(format!("#nothing:{}", synapse.server_name)).unwrap();
    let err = alice.resolve_room_alias(&nothing).await.expect_err("no such alias");
    assert_eq!(err.as_client_api_error().map(|e| e.status_code.as_u16()), Some(404), "{err}");
}

/// The bodies of the room's latest messages (up to 100) as `client` decrypts them from
/// `/messages`, oldest first: what its server stored, not only what `/sync` showed.
async fn decrypted_history(client: &Client, room_id: &OwnedRoomId) -> Vec<String> {
    let room = joined_room(client, room_id).await;
    let mut options = matrix_sdk::room::MessagesOptions::backward();
    options.limit = 100u32.into();
    let page = room.messages(options).await.expect("/messages");
    let mut bodies: Vec<String> = page
        .chunk
        .iter()
        .filter_map(|event| {
            let event: serde_json::Value = serde_json::from_str(event.raw().json().get()).ok()?;
            event["content"]["body"].as_str().map(ToOwned::to_owned)
        })
        .collect();
    bodies.reverse();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medrix_gets_everything_after_synapse_gave_up_its_transactions() {
    let net = TestNet::new();
    let mut medrix = net.start_ip("medrix", &[]).await;
    // Synapse gives a transaction up at its first failure and marks Medrix as down ("catch-up"
    // mode): it sends nothing more until its backoff is over and, here, until Medrix calls in.
    let synapse = SynapseServer::start_with_federation_settings(&net, "max_long_retries: 0").await;

    let BobsRoom { alice, bob, alice_saw, bob_saw, room_id } =
        bobs_room_with_alice(&medrix, &synapse).await;

    // More than two `get_missing_events` answers' worth (20 events each) while Medrix is
    // down. Synapse 1.163 then sends them all in one catch-up transaction; had it sent only
    // the newest, Medrix would walk the gap back in rounds (`partition.rs` covers that).
    medrix.server.kill();
    let said_meanwhile: Vec<String> =
        (1..=45).map(|n| format!("While Medrix was down ({n})")).collect();
    for body in &said_meanwhile {
        send(&bob, &room_id, body).await;
    }
    medrix.server.start_again().await;
    // Alice speaks first: Medrix's request tells Synapse it is back (that resets Synapse's
    // backoff), and Synapse catches up with the room's newest event.
    send(&alice, &room_id, "Medrix is back").await;
    sync_until_seen(&[&alice, &bob], &bob_saw, "Medrix is back").await;
    send(&bob, &room_id, "After Medrix came back").await;
    sync_until_seen(&[&alice, &bob], &alice_saw, "After Medrix came back").await;

    let mut expected = vec!["Before the crash".to_owned()];
    expected.extend(said_meanwhile);
    expected.push("After Medrix came back".to_owned());
    let mut history = decrypted_history(&alice, &room_id).await;
    history.retain(|body| body != "Medrix is back");
    assert_eq!(history, expected, "Alice's server holds every message of Bob's, in order");
}
