//! matrix-js-sdk (what Element Web runs; Rust crypto in WebAssembly) against a real
//! `medrix serve`, in an encrypted conversation with matrix-sdk. The SDK runs
//! `tests/clients/js/chat.mjs` on its own Node 22, driven over its stdio.

mod common;

use common::{Creator, encrypted_conversation};
use medrix_tests::{
    REGISTRATION_TOKEN, TestServer,
    clients::{ScriptedClient, client_env, clients_dir},
    medrix_binary,
};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matrix_js_sdk_and_matrix_sdk_decrypt_each_other_in_an_encrypted_room() {
    let env = client_env();
    let server = TestServer::start(&medrix_binary()).await;
    let script = clients_dir().join("js/chat.mjs");
    let mut js = ScriptedClient::spawn(
        "matrix-js-sdk",
        &env.node,
        &[script.to_str().unwrap(), &server.base],
    );

    // Registration as Element does it: the SDK's InteractiveAuth reads the flows from the
    // first 401 and completes the token stage in that session.
    let registered = js
        .request(json!({
            "cmd": "register", "username": "patient", "password": "patient-password",
            "token": REGISTRATION_TOKEN,
        }))
        .await;
    let user_id = "@patient:localhost";
    assert_eq!(registered["user_id"], user_id);

    // This time matrix-sdk creates the room and the SDK accepts the invite.
    encrypted_conversation(&server, &mut js, user_id, Creator::MatrixSdk).await;
}
