//! A provider whose homeserver is Synapse, the reference homeserver, and a patient on Medrix:
//! the provider asks by knocking (Synapse's `make_knock`/`send_knock` to Medrix), the patient
//! grants a contract and invites, the provider joins through Synapse and reads what the
//! patient sends, and a revocation has the patient's executor remove them, which Synapse
//! learns.

use std::time::Duration;

use medrix_federation_tests::{TestNet, synapse::SynapseServer};
use medrix_tests::records::{contract, create_record, now_ms, put_contract, wait_for_membership};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_on_synapse_knocks_is_granted_reads_and_is_removed_on_revocation() {
    let net = TestNet::new();
    let medrix = net.start_ip("medrix", &[]).await;
    let synapse = SynapseServer::start(&net).await;
    let patient = medrix.server.register("patient", "pw").await;
    let doctor = synapse.register("doctor", "doctor-password").await;
    let (doctor_id, token) = (doctor.user_id.clone(), doctor.access_token.clone());
    let record = create_record(&medrix.server, &patient, &["laboratory"]).await;
    let (space, lab) = (record.space.clone(), record.room("laboratory").to_owned());

    // The knock, through Synapse.
    let knock = format!("/_matrix/client/v3/knock/{space}?via={}", medrix.server_name);
    let body = json!({"reason": "follow-up of your HbA1c"});
    let (status, answer) = synapse.call("POST", &knock, Some(&token), Some(body)).await;
    assert_eq!(status, 200, "{answer}\n{}", synapse.log_tail(30));
    let knocked = wait_for_membership(
        &medrix.server,
        &patient,
        &space,
        &doctor_id,
        "knock",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(knocked["reason"], "follow-up of your HbA1c");

    // Granted: the contract, the invitations (co-signed by Synapse), the joins through it.
    let terms = contract("c-synapse", &doctor_id, &["laboratory"], now_ms() + 3_600_000, "active");
    let (status, answer) = put_contract(&medrix.server, &patient, &space, &doctor_id, terms).await;
    assert_eq!(status, 200, "{answer}");
    for room in [&space, &lab] {
        let path = format!("/_matrix/client/v3/rooms/{room}/invite");
        let invite = json!({"user_id": doctor_id});
        let (status, answer) =
            medrix.server.call("POST", &path, Some(&patient), Some(invite)).await;
        assert_eq!(status, 200, "{answer}");
        let join = format!("/_matrix/client/v3/join/{room}?via={}", medrix.server_name);
        let (status, answer) = synapse.call("POST", &join, Some(&token), Some(json!({}))).await;
        assert_eq!(status, 200, "{answer}\n{}", synapse.log_tail(30));
    }
    let path = format!("/_matrix/client/v3/rooms/{lab}/send/m.room.message/t1");
    let message = json!({"msgtype": "m.text", "body": "HbA1c 6.1 %"});
    let (status, answer) = medrix.server.call("PUT", &path, Some(&patient), Some(message)).await;
    assert_eq!(status, 200, "{answer}");
    let messages = format!("/_matrix/client/v3/rooms/{lab}/messages?dir=b&limit=20");
    let mut read = false;
    for _ in 0..100 {
        let (_, page) = synapse.call("GET", &messages, Some(&token), None).await;
        let mut bodies = page["chunk"].as_array().into_iter().flatten();
        if bodies.any(|event| event["content"]["body"] == "HbA1c 6.1 %") {
            read = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(read, "the doctor on Synapse read the patient's message");

    // Revoked: the executor removes the doctor at once; Synapse learns it.
    let revoked =
        contract("c-synapse", &doctor_id, &["laboratory"], now_ms() + 3_600_000, "revoked");
    let (status, answer) =
        put_contract(&medrix.server, &patient, &space, &doctor_id, revoked).await;
    assert_eq!(status, 200, "{answer}");
    let removed = wait_for_membership(
        &medrix.server,
        &patient,
        &lab,
        &doctor_id,
        "leave",
        Duration::from_secs(5),
    )
    .await;
    assert!(removed["reason"].as_str().unwrap_or_default().contains("c-synapse"), "{removed}");
    let member = format!("/_matrix/client/v3/rooms/{lab}/state/m.room.member/{doctor_id}");
    let mut seen = json!(null);
    for _ in 0..100 {
        seen = synapse.call("GET", &member, Some(&token), None).await.1;
        if seen["membership"] == "leave" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen["membership"], "leave", "Synapse's view: {seen}");
}
