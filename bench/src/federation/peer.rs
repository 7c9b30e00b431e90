//! The remote homeserver loadgen plays: an ed25519 server key of its own, its self-signed key
//! document served over TLS on loopback (the server under test fetches it to check every
//! request and event this peer signs), X-Matrix-signed requests, and the join of its user
//! `@bot` to a room on the server under test.

use std::{convert::Infallible, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use medrix_protocol::{
    RoomVersion,
    build::hash_and_sign,
    canonical::{encode, object_from_value},
    incoming::event_id,
    keys::ServerSigningKey,
    ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId},
    server_keys::own_key_document,
};
use serde::Deserialize;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::http::{Conn, encode_component};

/// How long a setup request (make_join, send_join) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the key document stays valid: far beyond any run.
const KEY_VALIDITY_MS: u64 = 24 * 3600 * 1000;

/// The peer: its name, key and the server it talks to.
pub struct Peer {
    /// `127.0.0.1:<port>` of its TLS listener.
    pub server_name: String,
    pub key: Arc<ServerSigningKey>,
    /// The server under test, `127.0.0.1:<federation port>`.
    pub destination: String,
}

/// What the join established: where the peer's events go in the room.
pub struct Joined {
    pub room_id: String,
    pub version: RoomVersion,
    /// `None` in room version 12, where the room ID names the create event.
    pub create_id: Option<OwnedEventId>,
    pub power_levels_id: OwnedEventId,
    pub join_id: OwnedEventId,
    pub join_depth: u64,
}

impl Peer {
    /// Binds a loopback port, takes `127.0.0.1:<port>` as the server name, makes a key from a
    /// random seed and serves the key document (and `/send` answers, for what the server
    /// under test sends back) until the process ends.
    pub async fn start(acceptor: TlsAcceptor, destination: &str) -> Result<Self, String> {
        let listener =
            TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("peer listener: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let server_name = format!("127.0.0.1:{port}");
        let key = ServerSigningKey::from_seed(&server_name, "fedload", &random_seed()?)
            .map_err(|e| e.to_string())?;
        let document =
            own_key_document(&key, &[], now_ms() + KEY_VALIDITY_MS).map_err(|e| e.to_string())?;
        let document = Bytes::from(encode(&document));
        tokio::spawn(serve(listener, acceptor, document));
        Ok(Self { server_name, key: Arc::new(key), destination: destination.to_owned() })
    }

    /// The peer's user that joins and sends.
    pub fn user_id(&self) -> String {
        format!("@bot:{}", self.server_name)
    }

    /// The `Authorization` header of a request from this peer to the server under test.
    pub fn x_matrix(
        &self,
        method: &Method,
        uri: &str,
        content: Option<&CanonicalJsonObject>,
    ) -> Result<String, String> {
        let text = |s: &str| CanonicalJsonValue::String(s.to_owned());
        let mut request = CanonicalJsonObject::new();
        request.insert("method".into(), text(method.as_str()));
        request.insert("uri".into(), text(uri));
        request.insert("origin".into(), text(&self.server_name));
        request.insert("destination".into(), text(&self.destination));
        if let Some(content) = content {
            request.insert("content".into(), CanonicalJsonValue::Object(content.clone()));
        }
        self.key.sign_json(&mut request).map_err(|e| e.to_string())?;
        let key_id = self.key.key_id();
        let signature = match &request["signatures"] {
            CanonicalJsonValue::Object(by_server) => match by_server.get(&self.server_name) {
                Some(CanonicalJsonValue::Object(by_key)) => match by_key.get(&key_id) {
                    Some(CanonicalJsonValue::String(signature)) => signature.clone(),
                    _ => return Err("sign_json made no signature".to_owned()),
                },
                _ => return Err("sign_json made no signature".to_owned()),
            },
            _ => return Err("sign_json made no signatures".to_owned()),
        };
        Ok(format!(
            "X-Matrix origin=\"{}\",destination=\"{}\",key=\"{key_id}\",sig=\"{signature}\"",
            self.server_name, self.destination
        ))
    }

    /// One signed request during setup; the JSON answer of a 200.
    async fn call(
        &self,
        conn: &mut Conn,
        method: Method,
        uri: &str,
        content: Option<&CanonicalJsonObject>,
    ) -> Result<Value, String> {
        let authorization = self.x_matrix(&method, uri, content)?;
        let body = content.map(|content| Bytes::from(encode(content)));
        let what = format!("{method} {}", uri.split('?').next().unwrap_or(uri));
        let response = conn
            .request_bytes(method, uri, Some(&authorization), body, SETUP_TIMEOUT)
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        if response.status != StatusCode::OK {
            return Err(format!(
                "{what}: HTTP {}: {}",
                response.status.as_u16(),
                String::from_utf8_lossy(&response.body).chars().take(300).collect::<String>()
            ));
        }
        serde_json::from_slice(&response.body).map_err(|e| format!("{what}: {e}"))
    }

    /// Joins `@bot` to `room_id` on the server under test: `make_join`, sign, `send_join` v2.
    pub async fn join(&self, conn: &mut Conn, room_id: &str) -> Result<Joined, String> {
        #[derive(Deserialize)]
        struct Template {
            room_version: String,
            event: Value,
        }
        #[derive(Deserialize)]
        struct JoinAnswer {
            state: Vec<Value>,
        }
        let room = encode_component(room_id);
        let uri = format!(
            "/_matrix/federation/v1/make_join/{room}/{}?ver=10&ver=11&ver=12",
            encode_component(&self.user_id())
        );
        let template: Template =
            serde_json::from_value(self.call(conn, Method::GET, &uri, None).await?)
                .map_err(|e| format!("make_join answer: {e}"))?;
        let version = RoomVersion::parse(&template.room_version).map_err(|e| e.to_string())?;
        let mut join = object_from_value(template.event).map_err(|e| e.to_string())?;
        hash_and_sign(&mut join, version, &self.key).map_err(|e| e.to_string())?;
        let join_id = event_id(&join, version).map_err(|e| e.to_string())?;
        let join_depth = match join.get("depth") {
            Some(CanonicalJsonValue::Integer(depth)) => {
                u64::try_from(i64::from(*depth)).unwrap_or(0)
            }
            _ => return Err("the join template has no depth".to_owned()),
        };
        let uri = format!(
            "/_matrix/federation/v2/send_join/{room}/{}",
            encode_component(join_id.as_str())
        );
        let answer: JoinAnswer =
            serde_json::from_value(self.call(conn, Method::PUT, &uri, Some(&join)).await?)
                .map_err(|e| format!("send_join answer: {e}"))?;

        let (mut create_id, mut power_levels_id) = (None, None);
        for state in answer.state {
            let kind = state.get("type").and_then(Value::as_str).unwrap_or_default().to_owned();
            let object = object_from_value(state).map_err(|e| e.to_string())?;
            match kind.as_str() {
                "m.room.create" => {
                    create_id = Some(event_id(&object, version).map_err(|e| e.to_string())?)
                }
                "m.room.power_levels" => {
                    power_levels_id = Some(event_id(&object, version).map_err(|e| e.to_string())?)
                }
                _ => {}
            }
        }
        Ok(Joined {
            room_id: room_id.to_owned(),
            version,
            // From room version 12 on, auth_events never list the create event.
            create_id: create_id.filter(|_| !version.room_id_is_create_event_hash()),
            power_levels_id: power_levels_id.ok_or("send_join answered no power levels")?,
            join_id,
            join_depth,
        })
    }
}

/// The peer's federation listener: answers the key document, `/send` (the server under test
/// may send the room's events back to its members' servers) and `/version`; anything else
/// is 404 `M_UNRECOGNIZED`.
async fn serve(listener: TcpListener, acceptor: TlsAcceptor, key_document: Bytes) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let (acceptor, key_document) = (acceptor.clone(), key_document.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            let service =
                hyper::service::service_fn(move |request| answer(request, key_document.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    key_document: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    // Read the body whole, so the connection stays usable.
    let _ = request.into_body().collect().await;
    let (status, body) = if method == Method::GET
        && (path == "/_matrix/key/v2/server" || path.starts_with("/_matrix/key/v2/server/"))
    {
        (StatusCode::OK, key_document)
    } else if method == Method::PUT && path.starts_with("/_matrix/federation/v1/send/") {
        (StatusCode::OK, Bytes::from_static(br#"{"pdus":{}}"#))
    } else if path == "/_matrix/federation/v1/version" {
        (StatusCode::OK, Bytes::from_static(br#"{"server":{"name":"medrix-bench fedload"}}"#))
    } else {
        (
            StatusCode::NOT_FOUND,
            Bytes::from_static(br#"{"errcode":"M_UNRECOGNIZED","error":"not served by loadgen"}"#),
        )
    };
    let response = Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("a static response is valid");
    Ok(response)
}

fn random_seed() -> Result<[u8; 32], String> {
    use std::io::Read as _;
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut seed))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(seed)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

/// The address of a server named `127.0.0.1:<port>` (only loopback IP literals are loaded).
pub fn loopback_server_addr(server_name: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = server_name
        .parse()
        .map_err(|_| format!("{server_name} is not an IP literal with a port"))?;
    if !addr.ip().is_loopback() {
        return Err(format!("{server_name} is not on loopback"));
    }
    Ok(addr)
}
