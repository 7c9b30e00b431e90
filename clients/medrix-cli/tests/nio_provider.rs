//! A provider with a standard Matrix client: matrix-nio (Python, E2EE), not a Medrix client,
//! is granted the laboratory class by a patient using medrix-cli, accepts the invitations,
//! and decrypts the record entries the patient adds afterwards (nio does not take the
//! history bundle a grant hands over, MSC4268, so what came before stays unreadable to it).

mod common;

use common::{Person, fixture};
use medrix_tests::{
    REGISTRATION_TOKEN, TestServer,
    clients::{ScriptedClient, client_env, clients_dir},
    medrix_binary,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_using_matrix_nio_decrypts_the_entries_of_the_granted_class() {
    let server = TestServer::start(&medrix_binary()).await;
    let patient = Person::registered(&server, "patient");
    let created = patient.json(&["record", "create"]);
    let space = created["space"].as_str().unwrap().to_owned();
    let laboratory = created["classes"]["laboratory"][0].as_str().unwrap().to_owned();

    let env = client_env();
    let script = clients_dir().join("nio/chat.py");
    let doctor_id = "@doctor:localhost";
    let mut nio = ScriptedClient::spawn(
        "matrix-nio",
        &env.python,
        &[script.to_str().unwrap(), &server.base, doctor_id],
    );
    let registered = nio
        .request(json!({
            "cmd": "register_with_token", "username": "doctor", "password": "doctor-password",
            "token": REGISTRATION_TOKEN,
        }))
        .await;
    assert_eq!(registered["user_id"], doctor_id, "{registered}");
    nio.request(json!({"cmd": "login", "password": "doctor-password"})).await;

    // The grant: a contract, then invitations, which nio accepts like any.
    let granted = patient
        .json_line(&format!("grant {doctor_id} --classes laboratory --purpose TREAT --until +1d"));
    assert_eq!(granted["classes"], json!(["laboratory"]), "{granted}");
    // The space is not encrypted (it holds the record's structure and contracts); the class
    // room is.
    for (room, encrypted) in [(&space, false), (&laboratory, true)] {
        nio.request(json!({"cmd": "wait_invite", "room_id": room})).await;
        nio.request(json!({"cmd": "join", "room_id": room, "encrypted": encrypted})).await;
    }

    // Entries the patient adds now reach nio's device, and nio decrypts them.
    let added = patient.json(&["record", "add", &fixture("period-2024.ndjson")]);
    assert!(added["added"].as_array().is_some_and(|a| !a.is_empty()), "{added}");
    let read = nio
        .request(json!({"cmd": "wait_entry", "room_id": laboratory, "resource_id": "hba1c-2024"}))
        .await;
    assert_eq!(read["resource"]["resourceType"], "Observation", "{read}");
    assert_eq!(read["resource"]["id"], "hba1c-2024");
}
