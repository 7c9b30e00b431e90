//! A real network partition: three servers keep running while the lab's links are cut. Both
//! sides go on writing, messages and a conflicting change of the same state (the room topic),
//! so the room's DAG forks. When the links come back, the senders' retries deliver what was
//! queued, each server takes in the other side's branch (fetching what it lacks), resolves
//! the fork by the state resolution rules, and all three end with the same messages and the
//! same topic.

use std::time::{Duration, Instant};

use medrix_federation_tests::{FederatingServer, TestNet};
use serde_json::{Value, json};

struct Member<'a> {
    server: &'a FederatingServer,
    token: String,
}

impl Member<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.server.server.call(method, path, Some(&self.token), body).await;
        assert_eq!(status, 200, "{method} {path}: {answer}");
        answer
    }

    async fn say(&self, room: &str, body: &str) {
        let txn: String = body.chars().filter(char::is_ascii_alphanumeric).collect();
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
        self.call("PUT", &path, Some(json!({ "msgtype": "m.text", "body": body }))).await;
    }

    async fn set_topic(&self, room: &str, topic: &str) {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
        self.call("PUT", &path, Some(json!({ "topic": topic }))).await;
    }

    /// The message bodies this member can read in the room, oldest first.
    async fn bodies(&self, room: &str) -> Vec<String> {
        let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100");
        let history = self.call("GET", &path, None).await;
        let mut bodies: Vec<String> = history["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|event| event["content"]["body"].as_str().map(ToOwned::to_owned))
            .collect();
        bodies.reverse();
        bodies
    }

    async fn topic(&self, room: &str) -> Value {
        let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
        let (_, topic) = self.server.server.call("GET", &path, Some(&self.token), None).await;
        topic["topic"].clone()
    }
}

/// Polls until `done` holds, or fails after 60 s with what `show` says.
async fn eventually<F, Fut>(what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match done().await {
            Ok(()) => return,
            Err(state) if Instant::now() > deadline => panic!("{what} never happened: {state}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// The patient (clinic), the doctor (hospital) and the tech (lab) joined to a room the
/// patient made, each server holding the patient's first message, "Before the partition".
async fn room_of_three<'a>(
    clinic: &'a FederatingServer,
    hospital: &'a FederatingServer,
    lab: &'a FederatingServer,
) -> ([Member<'a>; 3], String) {
    let patient = Member { server: clinic, token: clinic.server.register("patient", "pw").await };
    let doctor = Member { server: hospital, token: hospital.server.register("doctor", "pw").await };
    let tech = Member { server: lab, token: lab.server.register("tech", "pw").await };
    // The creator holds the room in v12 (creators are not listed in the power levels).
    let (doctor_id, tech_id) = (hospital.user_id("doctor"), lab.user_id("tech"));

    let created = patient
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(json!({
                "preset": "private_chat",
                "invite": [doctor_id, tech_id],
                "power_level_content_override": {
                    "users": { doctor_id.clone(): 50, tech_id.clone(): 50 },
                },
            })),
        )
        .await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{room}");
    doctor.call("POST", &join, Some(json!({}))).await;
    tech.call("POST", &join, Some(json!({}))).await;
    patient.say(&room, "Before the partition").await;
    for member in [&doctor, &tech] {
        eventually("the first message everywhere", || async {
            let bodies = member.bodies(&room).await;
            bodies
                .contains(&"Before the partition".to_owned())
                .then_some(())
                .ok_or(format!("{bodies:?}"))
        })
        .await;
    }
    ([patient, doctor, tech], room)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_room_forks_and_every_server_converges_after_the_heal() {
    let net = TestNet::new();
    let (servers, mesh) = net.start_mesh(&["clinic", "hospital", "lab"]).await;
    let [clinic, hospital, lab] = &servers[..] else { unreachable!() };
    let ([patient, doctor, tech], room) = room_of_three(clinic, hospital, lab).await;

    // The lab is cut off; both sides write, and both change the topic.
    mesh.isolate("lab");
    patient.set_topic(&room, "Diabetes care (clinic)").await;
    patient.say(&room, "Clinic, during the partition").await;
    doctor.say(&room, "Hospital, during the partition").await;
    tech.say(&room, "Lab, during the partition").await;
    tech.set_topic(&room, "Diabetes care (lab)").await;
    eventually("the hospital hearing the clinic", || async {
        let bodies = doctor.bodies(&room).await;
        bodies
            .contains(&"Clinic, during the partition".to_owned())
            .then_some(())
            .ok_or(format!("{bodies:?}"))
    })
    .await;
    assert!(
        !tech.bodies(&room).await.contains(&"Clinic, during the partition".to_owned()),
        "the partition let traffic through"
    );
    assert_eq!(tech.topic(&room).await, "Diabetes care (lab)");
    assert_eq!(patient.topic(&room).await, "Diabetes care (clinic)");

    // Healed: every server ends with every message and one topic.
    mesh.reconnect("lab");
    let said = [
        "Before the partition",
        "Clinic, during the partition",
        "Hospital, during the partition",
        "Lab, during the partition",
    ];
    let members = [&patient, &doctor, &tech];
    for member in members {
        eventually("every message on every server", || async {
            let bodies = member.bodies(&room).await;
            let complete = said.iter().all(|body| bodies.iter().filter(|b| b == body).count() == 1);
            complete.then_some(()).ok_or(format!("{} has {bodies:?}", member.server.server_name))
        })
        .await;
    }
    eventually("one topic on every server", || async {
        let mut topics = Vec::new();
        for member in members {
            topics.push(member.topic(&room).await);
        }
        (topics.iter().all(|t| *t == topics[0]) && topics[0].is_string())
            .then_some(())
            .ok_or(format!("{topics:?}"))
    })
    .await;

    // The branches are merged: the next message builds on both, and reaches everyone.
    patient.say(&room, "After the heal").await;
    for member in members {
        eventually("the first message after the heal", || async {
            let bodies = member.bodies(&room).await;
            bodies.contains(&"After the heal".to_owned()).then_some(()).ok_or(format!("{bodies:?}"))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_fills_a_long_gap_from_the_server_that_sent_what_follows_it() {
    let net = TestNet::new();
    let (servers, mesh) = net.start_mesh(&["clinic", "hospital", "lab"]).await;
    let [clinic, hospital, lab] = &servers[..] else { unreachable!() };
    let ([patient, doctor, tech], room) = room_of_three(clinic, hospital, lab).await;

    // Only the clinic and the lab lose each other. The clinic says more than two
    // `get_missing_events` answers' worth (20 events each); the hospital hears it all.
    mesh.cut_between("clinic", "lab");
    let said: Vec<String> =
        (1..=45).map(|n| format!("Clinic, cut off from the lab ({n})")).collect();
    for body in &said {
        patient.say(&room, body).await;
    }
    eventually("the hospital hearing the clinic", || async {
        let bodies = doctor.bodies(&room).await;
        bodies.ends_with(&said).then_some(()).ok_or(format!("{bodies:?}"))
    })
    .await;

    // The hospital's reply builds on the clinic's last message: the lab asks the hospital
    // for everything between, in rounds, and has the whole conversation before the link
    // to the clinic is back.
    doctor.say(&room, "Hospital, replying").await;
    let mut expected = vec!["Before the partition".to_owned()];
    expected.extend(said.iter().cloned());
    expected.push("Hospital, replying".to_owned());
    eventually("the lab holding the whole conversation", || async {
        let bodies = tech.bodies(&room).await;
        (bodies == expected).then_some(()).ok_or(format!("{bodies:?}"))
    })
    .await;
    mesh.heal_between("clinic", "lab");
}
