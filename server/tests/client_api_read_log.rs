//! The read log over real HTTP: every read of a record room's events a client is served
//! (`/messages`, `/event`, `/context`, `/sync`, and a file's download) is an entry of the room's hash chain, naming
//! the reader's user and device and the contract that allowed it; the patient reads the whole
//! log, a grantee only their own reads, anyone else nothing; the chain verifies with the pure
//! function the verifier uses, and survives `kill -9`. A read after the contract's end serves
//! nothing sent after it.

mod support;

use std::time::Duration;

use medrix_records::{LogReader, ReadBasis, ReadEntry, ReadPath, verify_chain};
use medrix_tests::records::{
    Record, contract as grant, create_record, now_ms, put_contract, wait_for_membership, whoami,
};
use serde_json::{Value, json};
use support::{TestServer, start};

async fn read_log(server: &TestServer, token: &str, room: &str) -> (u16, Value) {
    let path = format!("/_medrix/client/v1/rooms/{room}/read_log?limit=1000");
    server.call("GET", &path, Some(token), None).await
}

fn entries(body: &Value) -> Vec<ReadEntry> {
    body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| ReadEntry::from_json(entry).unwrap())
        .collect()
}

/// The patient's contract `c-lab` for the doctor (laboratory, until `end`), and the doctor in
/// the record's space and laboratory room, given the patient's and the doctor's tokens
/// and the doctor's user ID.
async fn grant_laboratory(
    server: &TestServer,
    (patient, doctor, doctor_id): (&str, &str, &str),
    record: &Record,
    end: u64,
) {
    let contract = grant("c-lab", doctor_id, &["laboratory"], end, "active");
    let (status, body) = put_contract(server, patient, &record.space, doctor_id, contract).await;
    assert_eq!(status, 200, "{body}");
    for room in [record.space.as_str(), record.room("laboratory")] {
        let path = format!("/_matrix/client/v3/rooms/{room}/invite");
        let (status, body) =
            server.call("POST", &path, Some(patient), Some(json!({"user_id": doctor_id}))).await;
        assert_eq!(status, 200, "{body}");
        let join = format!("/_matrix/client/v3/join/{room}");
        let (status, body) = server.call("POST", &join, Some(doctor), Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn send(server: &TestServer, token: &str, room: &str, txn: &str) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (status, body) = server
        .call("PUT", &path, Some(token), Some(json!({"msgtype": "m.text", "body": txn})))
        .await;
    assert_eq!(status, 200, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

async fn messages(server: &TestServer, token: &str, room: &str) -> Vec<String> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (status, body) = server.call("GET", &path, Some(token), None).await;
    assert_eq!(status, 200, "{body}");
    body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().into())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_of_a_record_room_is_logged_under_its_contract_and_the_chain_holds() {
    let mut server = start().await;
    let patient = server.register("patient", "pw").await;
    let doctor = server.register("doctor", "pw").await;
    let nurse = server.register("nurse", "pw").await;
    let doctor_id = whoami(&server, &doctor).await;
    let record = create_record(&server, &patient, &["laboratory"]).await;
    let lab = record.room("laboratory").to_owned();

    let end = now_ms() + 6_000;
    grant_laboratory(&server, (&patient, &doctor, &doctor_id), &record, end).await;
    let first = send(&server, &patient, &lab, "potassium 4.1").await;
    let second = send(&server, &patient, &lab, "sodium 140").await;

    // The doctor reads four ways; the patient reads once.
    let read = messages(&server, &doctor, &lab).await;
    assert!(read.contains(&first) && read.contains(&second), "{read:?}");
    let (status, _) = server
        .call("GET", &format!("/_matrix/client/v3/rooms/{lab}/event/{first}"), Some(&doctor), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{lab}/context/{second}?limit=2"),
            Some(&doctor),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = server.call("GET", "/_matrix/client/v3/sync", Some(&doctor), None).await;
    assert_eq!(status, 200);
    messages(&server, &patient, &lab).await;
    // A file the patient attached while both are in the room: the doctor's download is a read.
    let uploaded = server
        .http
        .post(server.url("/_matrix/media/v3/upload"))
        .bearer_auth(&patient)
        .header("content-type", "application/octet-stream")
        .body(b"encrypted scan".to_vec())
        .send()
        .await
        .unwrap();
    let mxc = uploaded.json::<Value>().await.unwrap()["content_uri"].as_str().unwrap().to_owned();
    let (status, bytes) = server.download_media(&doctor, &mxc).await;
    assert_eq!((status, bytes.as_slice()), (200, b"encrypted scan".as_slice()));

    // The patient's view: every read, the doctor's under the contract.
    let (status, body) = read_log(&server, &patient, &lab).await;
    assert_eq!(status, 200, "{body}");
    let log = entries(&body);
    let head = verify_chain(&lab, &log).unwrap();
    assert_eq!(body["head"], json!({"count": head.count, "hash": head.hash}), "{body}");
    let doctors: Vec<&ReadEntry> = log
        .iter()
        .filter(|e| matches!(&e.reader, LogReader::User { user_id, device_id: Some(_) } if *user_id == doctor_id))
        .collect();
    let paths: Vec<ReadPath> = doctors.iter().map(|e| e.path).collect();
    for path in
        [ReadPath::Messages, ReadPath::Event, ReadPath::Context, ReadPath::Sync, ReadPath::Media]
    {
        assert!(paths.contains(&path), "{path:?} read not logged: {paths:?}");
    }
    for entry in &doctors {
        assert_eq!(
            entry.basis,
            ReadBasis::Contract {
                contract_id: "c-lab".into(),
                purpose: "TREAT".into(),
                break_glass: false
            }
        );
    }
    let event_read = doctors.iter().find(|e| e.path == ReadPath::Event).unwrap();
    assert_eq!(event_read.events, vec![first.clone()]);
    let file_read = doctors.iter().find(|e| e.path == ReadPath::Media).unwrap();
    assert_eq!(file_read.events, vec![mxc.clone()]);
    assert!(log.iter().any(|e| e.basis == ReadBasis::Patient), "the patient's own read");

    // The doctor sees only their own reads; the nurse, never in the room, nothing at all.
    let (status, body) = read_log(&server, &doctor, &lab).await;
    assert_eq!(status, 200, "{body}");
    let own = entries(&body);
    assert_eq!(own.len(), doctors.len());
    assert!(body.get("head").is_none(), "{body}");
    let (status, body) = read_log(&server, &nurse, &lab).await;
    assert_eq!((status, body["errcode"].as_str()), (404, Some("M_NOT_FOUND")), "{body}");

    // After the contract's end, nothing sent since reaches the doctor, whether or not the
    // executor's removal has landed yet.
    tokio::time::sleep(Duration::from_millis(end.saturating_sub(now_ms()) + 10)).await;
    let late = send(&server, &patient, &lab, "after the end").await;
    let (_, page) = server
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{lab}/messages?dir=b&limit=50"),
            Some(&doctor),
            None,
        )
        .await;
    assert!(!page.to_string().contains(&late), "{page}");
    wait_for_membership(&server, &patient, &lab, &doctor_id, "leave", Duration::from_secs(6)).await;

    // Every answered read is still there after kill -9, and the chain still holds.
    server.crash_and_restart().await;
    let (status, body) = read_log(&server, &patient, &lab).await;
    assert_eq!(status, 200, "{body}");
    let after = entries(&body);
    assert!(after.len() >= log.len());
    assert_eq!(&after[..log.len()], &log[..]);
    verify_chain(&lab, &after).unwrap();
}

/// `kill -9` while a provider reads as fast as they can: after the restart the chain holds and
/// every read that was answered has its entry (an entry is durable before its answer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_answered_read_is_missing_from_the_log_after_kill_9_under_load() {
    let mut server = start().await;
    let patient = server.register("patient", "pw").await;
    let doctor = server.register("doctor", "pw").await;
    let doctor_id = whoami(&server, &doctor).await;
    let record = create_record(&server, &patient, &["laboratory"]).await;
    let lab = record.room("laboratory").to_owned();
    let end = now_ms() + 3_600_000;
    grant_laboratory(&server, (&patient, &doctor, &doctor_id), &record, end).await;
    send(&server, &patient, &lab, "potassium 4.1").await;

    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let url = server.url(&format!("/_matrix/client/v3/rooms/{lab}/messages?dir=b&limit=10"));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (url, token, answered) = (url.clone(), doctor.clone(), answered.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                loop {
                    let response = http.get(&url).bearer_auth(&token).send().await;
                    let Ok(response) = response else { return };
                    let Ok(body) = response.json::<Value>().await else { return };
                    if body["chunk"].as_array().is_some_and(|chunk| !chunk.is_empty()) {
                        answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    server.crash_and_restart().await;
    for reader in readers {
        let _ = reader.await;
    }
    let answered = answered.load(std::sync::atomic::Ordering::SeqCst);
    assert!(answered > 10, "the readers were answered {answered} times");

    let mut log = Vec::new();
    loop {
        let path = format!("/_medrix/client/v1/rooms/{lab}/read_log?limit=1000&from={}", log.len());
        let (status, body) = server.call("GET", &path, Some(&patient), None).await;
        assert_eq!(status, 200, "{body}");
        log.extend(entries(&body));
        if body.get("next").is_none() {
            break;
        }
    }
    verify_chain(&lab, &log).unwrap();
    let logged = log
        .iter()
        .filter(|e| e.path == ReadPath::Messages)
        .filter(|e| matches!(&e.reader, LogReader::User { user_id, .. } if *user_id == doctor_id))
        .count();
    assert!(logged >= answered, "{answered} reads answered, {logged} logged");
}
