//! Paging back past a server's join (backfill): a hospital's doctor who joins a clinic's room
//! late reads, through the hospital's server, what the patient wrote before they came, page by
//! page down to the room's creation, in order, each event once; forward paging from the start
//! goes through the same events the other way. What history visibility hides from the doctor
//! stays hidden after backfill, and the same works against Synapse holding the room.

use std::collections::HashSet;

use medrix_federation_tests::{
    FederatingServer, TestNet,
    room_calls::{create_room, post, send},
    room_reads::until_readable,
    synapse::SynapseServer,
};
use serde_json::{Value, json};

/// Every event of the room `token`'s user reads paging `dir` (`b` or `f`) in pages of
/// `limit`, in the order read, with how many pages it took.
async fn page_through(
    server: &FederatingServer,
    token: &str,
    room: &str,
    dir: &str,
    limit: usize,
) -> (Vec<Value>, usize) {
    let mut events = Vec::new();
    let mut from: Option<String> = None;
    for pages in 1..=100 {
        let mut path = format!("/_matrix/client/v3/rooms/{room}/messages?dir={dir}&limit={limit}");
        if let Some(from) = &from {
            path.push_str(&format!("&from={from}"));
        }
        let (status, page) = server.server.call("GET", &path, Some(token), None).await;
        assert_eq!(status, 200, "{page}");
        events.extend(page["chunk"].as_array().unwrap().iter().cloned());
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => return (events, pages),
        }
    }
    panic!("paging never ended");
}

fn bodies(events: &[Value]) -> Vec<String> {
    events.iter().filter_map(|e| e["content"]["body"].as_str().map(ToOwned::to_owned)).collect()
}

fn assert_each_once(events: &[Value]) {
    let mut seen = HashSet::new();
    for event in events {
        let id = event["event_id"].as_str().unwrap();
        assert!(seen.insert(id.to_owned()), "{id} read twice");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doctor_who_joined_late_pages_back_to_the_rooms_creation() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;

    let room = create_room(&clinic, &patient, json!({ "name": "Shared history" })).await;
    let earlier: Vec<String> = (0..25).map(|i| format!("before the doctor ({i:02})")).collect();
    for (i, body) in earlier.iter().enumerate() {
        send(&clinic, &patient, &room, &format!("b{i}"), body).await;
    }
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    post(&clinic, &patient, &invite, json!({ "user_id": hospital.user_id("doctor") })).await;
    post(&hospital, &doctor, &format!("/_matrix/client/v3/join/{room}"), json!({})).await;
    let after = send(&clinic, &patient, &room, "a1", "after the doctor came").await;
    until_readable(&hospital, &doctor, &room, &after).await;

    // Back, ten at a time: the hospital fetches what precedes its join as the doctor reads.
    let (back, pages) = page_through(&hospital, &doctor, &room, "b", 10).await;
    assert_each_once(&back);
    let mut expected: Vec<String> = earlier.iter().rev().cloned().collect();
    expected.insert(0, "after the doctor came".to_owned());
    assert_eq!(bodies(&back), expected);
    assert_eq!(back.last().unwrap()["type"], "m.room.create", "down to the room's creation");
    assert!(pages >= 3, "{pages} pages");
    // The room's state from before the join is part of its history too.
    let types: Vec<&str> = back.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"m.room.power_levels") && types.contains(&"m.room.name"), "{types:?}");

    // Forward from the start: the same events, oldest first.
    let (forward, _) = page_through(&hospital, &doctor, &room, "f", 7).await;
    let ids = |events: &[Value]| -> Vec<String> {
        events.iter().map(|e| e["event_id"].as_str().unwrap().to_owned()).collect()
    };
    let mut reversed = ids(&back);
    reversed.reverse();
    assert_eq!(ids(&forward), reversed);

    // Reading back again asks nobody: it is all here now, and the same.
    let (again, _) = page_through(&hospital, &doctor, &room, "b", 50).await;
    assert_eq!(ids(&again), ids(&back));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_hidden_from_the_doctor_stays_hidden_after_backfill() {
    let net = TestNet::new();
    let clinic = net.start("clinic", &[], &["hospital"]).await;
    let hospital = net.start("hospital", &[], &["clinic"]).await;
    let patient = clinic.server.register("patient", "pw").await;
    let doctor = hospital.server.register("doctor", "pw").await;

    let visibility = json!({
        "type": "m.room.history_visibility", "state_key": "",
        "content": { "history_visibility": "joined" },
    });
    let room = create_room(&clinic, &patient, json!({ "initial_state": [visibility] })).await;
    send(&clinic, &patient, &room, "s1", "written before the doctor came").await;
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    post(&clinic, &patient, &invite, json!({ "user_id": hospital.user_id("doctor") })).await;
    post(&hospital, &doctor, &format!("/_matrix/client/v3/join/{room}"), json!({})).await;
    let after = send(&clinic, &patient, &room, "s2", "for the doctor").await;
    until_readable(&hospital, &doctor, &room, &after).await;

    let (back, _) = page_through(&hospital, &doctor, &room, "b", 10).await;
    assert_eq!(bodies(&back), ["for the doctor"]);
    assert!(
        back.iter().all(|e| e["content"]["body"] != "written before the doctor came"),
        "{back:?}"
    );
    // Their own join is theirs to see; nothing the patient sent before it is.
    let senders: HashSet<&str> = back
        .iter()
        .filter(|e| e["type"] != "m.room.member")
        .map(|e| e["sender"].as_str().unwrap())
        .collect();
    // Visibility is judged where each event sits: the room's creation came before its
    // history visibility was set, when the default (`shared`) let every later member see it.
    assert_eq!(back.last().unwrap()["type"], "m.room.create", "{back:?}");
    assert_eq!(senders, HashSet::from([clinic.user_id("patient").as_str()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_medrix_user_pages_back_into_a_synapse_rooms_history() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;
    let patient = synapse.register("patient", "patient-password").await;
    let doctor = medrix.server.register("doctor", "pw").await;

    let (status, created) = synapse
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&patient.access_token),
            Some(json!({ "preset": "private_chat", "name": "Records at Synapse" })),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    for i in 0..12 {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t{i}");
        let body = json!({ "msgtype": "m.text", "body": format!("at Synapse ({i:02})") });
        let (status, sent) =
            synapse.call("PUT", &path, Some(&patient.access_token), Some(body)).await;
        assert_eq!(status, 200, "{sent}");
    }
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let body = json!({ "user_id": medrix.user_id("doctor") });
    let (status, invited) =
        synapse.call("POST", &invite, Some(&patient.access_token), Some(body)).await;
    assert_eq!(status, 200, "{invited}");
    let join = format!("/_matrix/client/v3/join/{room}?server_name={}", synapse.server_name);
    // The invite travels to Medrix first; until then a join has nobody to ask.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, joined) =
            medrix.server.call("POST", &join, Some(&doctor), Some(json!({}))).await;
        if status == 200 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{joined}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }

    let (back, _) = page_through(&medrix, &doctor, &room, "b", 5).await;
    assert_each_once(&back);
    let expected: Vec<String> = (0..12).rev().map(|i| format!("at Synapse ({i:02})")).collect();
    assert_eq!(bodies(&back), expected);
    assert_eq!(back.last().unwrap()["type"], "m.room.create");
}
