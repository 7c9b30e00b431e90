//! matrix-nio (Python, E2EE on vodozemac) against a real `medrix serve`, in an encrypted
//! conversation with matrix-sdk. nio runs `tests/clients/nio/chat.py`, driven over its stdio.

mod common;

use common::{Creator, encrypted_conversation};
use medrix_tests::{
    REGISTRATION_TOKEN, TestServer,
    clients::{ScriptedClient, client_env, clients_dir},
    medrix_binary,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_nio_and_matrix_sdk_decrypt_each_other_in_an_encrypted_room() {
    let env = client_env();
    let server = TestServer::start(&medrix_binary()).await;
    let script = clients_dir().join("nio/chat.py");
    let user_id = "@patient:localhost";
    let mut nio = ScriptedClient::spawn(
        "matrix-nio",
        &env.python,
        &[script.to_str().unwrap(), &server.base, user_id],
    );

    // nio's register() offers m.login.dummy as its only stage; registration here needs the
    // token first, so the server answers with its flow instead of an account.
    let refused = nio
        .request(json!({"cmd": "register", "username": "patient", "password": "patient-password"}))
        .await;
    assert_eq!(refused["registered"], false, "registration without the token: {refused}");
    assert_eq!(refused["status"], 401, "{refused}");

    // nio's registration-token flow completes the server's flow (token, then dummy); then
    // nio logs in with its full user ID and password.
    let registered = nio
        .request(json!({
            "cmd": "register_with_token", "username": "patient", "password": "patient-password",
            "token": REGISTRATION_TOKEN,
        }))
        .await;
    assert_eq!(registered["user_id"], user_id, "{registered}");
    let login = nio.request(json!({"cmd": "login", "password": "patient-password"})).await;
    assert_eq!(login["user_id"], user_id);

    encrypted_conversation(&server, &mut nio, user_id, Creator::Script).await;
}
