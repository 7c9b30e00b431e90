//! A federation listener that answers as a net server whose process was stopped: the same
//! server name, certificate and signing key, with answers the test scripts. It lets a test
//! play a misbehaving homeserver the server under test reaches out to (for example one that
//! drags out gap filling with one event per answer), which a real `medrix serve` would
//! never be.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use medrix_protocol::{canonical::encode, server_keys::own_key_document};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{FederatingServer, TestNet};

/// One request the impostor received: method, path and JSON body (null if none).
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub body: Value,
}

/// What the test answers to a request: status and JSON body. The key document is served
/// by the impostor itself.
pub type Script = dyn Fn(&Received) -> (u16, Value) + Send + Sync;

/// The running impostor: what it was asked, in order. It stops with the test's runtime.
pub struct Impostor {
    received: Arc<Mutex<Vec<Received>>>,
}

impl Impostor {
    /// Listens on `server`'s federation port (its process must be stopped) with its
    /// certificate and key document, answering everything else by `script`.
    pub async fn start(
        net: &TestNet,
        server: &FederatingServer,
        file_stem: &str,
        script: impl Fn(&Received) -> (u16, Value) + Send + Sync + 'static,
    ) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let cert = net.dir().join(format!("{file_stem}.crt"));
        let key = net.dir().join(format!("{file_stem}.key"));
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(&cert).unwrap().collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(&key).unwrap();
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let signing_key = server.signing_key();
        let now_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
                as u64;
        let document = own_key_document(&signing_key, &[], now_ms + 24 * 3600 * 1000).unwrap();
        let key_document: Value = serde_json::from_str(&encode(&document)).unwrap();
        let listener = TcpListener::bind(("127.0.0.1", server.federation_port)).await.unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let state =
            Arc::new(State { key_document, script: Box::new(script), received: received.clone() });
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (acceptor, state) = (acceptor.clone(), state.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else { return };
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { state.answer(request).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { received }
    }

    /// The requests received so far whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Received> {
        let received = self.received.lock().unwrap();
        received.iter().filter(|r| r.path.starts_with(prefix)).cloned().collect()
    }
}

struct State {
    key_document: Value,
    script: Box<Script>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl State {
    async fn answer(
        &self,
        request: Request<Incoming>,
    ) -> Result<Response<Full<bytes::Bytes>>, Infallible> {
        let (method, path) = (request.method().to_string(), request.uri().path().to_owned());
        let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let (status, answer) = if path.starts_with("/_matrix/key/v2/server") {
            (200, self.key_document.clone())
        } else {
            let received = Received { method, path, body };
            self.received.lock().unwrap().push(received.clone());
            (self.script)(&received)
        };
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(answer.to_string().into()))
            .unwrap();
        Ok(response)
    }
}
