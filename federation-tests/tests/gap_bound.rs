//! Gap filling is bounded in requests, not only in events: a server that answers each
//! `get_missing_events` round with a single event (honest answers bring up to 20) cannot hold
//! the server under test for one round trip per event. The hospital's process is stopped and
//! an impostor with its name, certificate and key answers in its place, dragging the gap out.

use matrix_sdk::ruma::{OwnedEventId, OwnedUserId};
use medrix_federation_tests::{TestNet, impostor::Impostor, room_calls, room_reads};
use medrix_protocol::{
    RoomVersion,
    build::{EventDraft, sign_new_event},
    canonical::{encode, object_from_value},
};
use serde_json::{Value, json};

/// The events the impostor holds back: far more than the bound lets the clinic ask for.
const CHAIN: usize = 100;
/// `MAX_GAP_REQUESTS` in `service/federation/rooms.rs`: 500 events / 20 per answer + 5.
const MAX_GAP_REQUESTS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_answering_one_event_per_round_gets_a_bounded_number_of_requests() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let mut hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor_token = hospital.server.register("doctor", "pw").await;
    let doctor: OwnedUserId = hospital.user_id("doctor").try_into().unwrap();

    let room_id =
        room_calls::create_room(&clinic, &patient, json!({ "invite": [doctor.as_str()] })).await;
    room_calls::post(
        &hospital,
        &doctor_token,
        &format!("/_matrix/client/v3/join/{room_id}"),
        json!({}),
    )
    .await;
    let state_id = |kind: &'static str, key: String| {
        let (clinic, patient, room_id) = (&clinic, &patient, &room_id);
        async move {
            let id = room_reads::state_id(clinic, patient, room_id, kind, &key).await;
            OwnedEventId::try_from(id).unwrap()
        }
    };
    let power_levels = state_id("m.room.power_levels", String::new()).await;
    let doctor_join = state_id("m.room.member", doctor.to_string()).await;
    let tip: OwnedEventId =
        room_reads::newest_event(&clinic, &patient, &room_id).await.try_into().unwrap();

    // The doctor's messages, each on the one before, the first on what the clinic has.
    let key = hospital.signing_key();
    let mut chain: Vec<(OwnedEventId, Value)> = Vec::new();
    for n in 0..CHAIN {
        let prev = chain.last().map_or(tip.clone(), |(id, _)| id.clone());
        let draft = EventDraft {
            room_id: Some(room_id.as_str().try_into().unwrap()),
            sender: doctor.clone(),
            kind: "m.room.message".into(),
            state_key: None,
            content: object_from_value(json!({"msgtype": "m.text", "body": format!("note {n}")}))
                .unwrap(),
            prev_events: vec![prev],
            auth_events: vec![power_levels.clone(), doctor_join.clone()],
            depth: 100 + n as u64,
            origin_server_ts: 1_800_000_000_000 + n as u64,
            redacts: None,
        };
        let signed = sign_new_event(&draft, RoomVersion::V12, &key).unwrap();
        chain.push((signed.event_id, serde_json::from_str(&encode(&signed.json)).unwrap()));
    }

    // The hospital goes away; the impostor takes its place and gives up one predecessor per
    // round: the one before the newest event it is asked about.
    hospital.server.kill();
    let served = chain.clone();
    let impostor = Impostor::start(&net, &hospital, "hospital", move |request| {
        if request.path.starts_with("/_matrix/federation/v1/get_missing_events/") {
            let asked = &request.body["latest_events"];
            let position = served.iter().position(|(id, _)| asked[0] == json!(id));
            let before = position.and_then(|i| i.checked_sub(1)).map(|i| served[i].1.clone());
            return (200, json!({ "events": before.into_iter().collect::<Vec<_>>() }));
        }
        if request.path.starts_with("/_matrix/federation/v1/send/") {
            return (200, json!({ "pdus": {} }));
        }
        (404, json!({ "errcode": "M_NOT_FOUND", "error": "the impostor does not say" }))
    })
    .await;

    // Only the newest event arrives, so the clinic must fill the gap behind it.
    let newest = chain.last().unwrap().1.clone();
    let body = json!({
        "origin": hospital.server_name, "origin_server_ts": 1_800_000_000_000u64, "pdus": [newest],
    });
    let (status, answer) = net.put_transaction(&hospital, &clinic, "dragged-out", &body).await;
    assert_eq!(status, 200, "{answer}");

    let rounds = impostor.requests_to("/_matrix/federation/v1/get_missing_events/").len();
    assert!(rounds > 1, "the clinic walked the gap back in rounds: {rounds}");
    assert!(
        rounds <= MAX_GAP_REQUESTS,
        "{rounds} get_missing_events requests for one gap; at most {MAX_GAP_REQUESTS}"
    );
    // The rest of the gap was never filled, so the clinic asked for the state at the event
    // instead, and the impostor did not give it: the event is not in the clinic's timeline.
    let (status, _) = clinic
        .server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{room_id}/event/{}", chain[CHAIN - 1].0),
            Some(&patient),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // And the clinic serves its users as before.
    room_calls::send(&clinic, &patient, &room_id, "after", "still here").await;
}
