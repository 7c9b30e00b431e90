//! One keep-alive HTTP/1.1 connection to the server under test, speaking JSON, over plain TCP
//! (the client API) or TLS (the federation API). HTTP/1.1 has one request in flight per
//! connection, so a sender with two in flight holds two of these.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;
use http::{Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::net::TcpStream;
use tokio_rustls::{TlsConnector, rustls::pki_types::ServerName};

/// What can go wrong between the load generator and the server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{0} is not an http:// URL on a loopback address")]
    NotLoopback(String),
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: std::io::Error },
    #[error("TLS with {addr}: {source}")]
    Tls { addr: SocketAddr, source: std::io::Error },
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("building the request: {0}")]
    Request(#[from] http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{what}: unexpected JSON: {source}")]
    Json { what: &'static str, source: serde_json::Error },
    #[error("{what}: HTTP {status} {errcode}")]
    Status { what: &'static str, status: StatusCode, errcode: String },
}

/// The server's loopback address, from a base URL such as `http://127.0.0.1:8008`. Anything
/// but loopback is refused: this tool only ever loads servers on this machine.
pub fn loopback_addr(base_url: &str) -> Result<SocketAddr, HttpError> {
    let refuse = || HttpError::NotLoopback(base_url.to_owned());
    let uri: Uri = base_url.parse().map_err(|_| refuse())?;
    if uri.scheme_str() != Some("http") {
        return Err(refuse());
    }
    let authority = uri.authority().ok_or_else(refuse)?;
    let addr: SocketAddr = authority.as_str().parse().map_err(|_| refuse())?;
    if !addr.ip().is_loopback() {
        return Err(refuse());
    }
    Ok(addr)
}

/// A response: status and the whole body.
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    /// The body as `T` when the status is 200, otherwise the status and Matrix errcode.
    pub fn ok_json<T: DeserializeOwned>(&self, what: &'static str) -> Result<T, HttpError> {
        if self.status != StatusCode::OK {
            return Err(self.status_error(what));
        }
        self.json(what)
    }

    /// The body as `T`, whatever the status.
    pub fn json<T: DeserializeOwned>(&self, what: &'static str) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body).map_err(|source| HttpError::Json { what, source })
    }

    /// The status and the Matrix `errcode`, never the error text or the body.
    pub fn status_error(&self, what: &'static str) -> HttpError {
        #[derive(serde::Deserialize)]
        struct MatrixError {
            errcode: String,
        }
        let errcode = serde_json::from_slice::<MatrixError>(&self.body)
            .map(|e| e.errcode)
            .unwrap_or_else(|_| "(no errcode)".to_owned());
        HttpError::Status { what, status: self.status, errcode }
    }
}

/// A keep-alive connection; reconnects when the server closed it between requests, or when
/// a request was abandoned midway (timed out, or its future dropped).
pub struct Conn {
    addr: SocketAddr,
    /// TLS (checking the server's certificate for its IP address), or plain TCP when `None`.
    tls: Option<TlsConnector>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// Opens the TCP connection now, so that connecting is not part of what is measured.
    pub async fn open(addr: SocketAddr) -> Result<Self, HttpError> {
        let sender = connect(addr, None).await?;
        Ok(Conn { addr, tls: None, sender: Some(sender) })
    }

    /// Opens a TLS connection now (the handshake is not part of what is measured either).
    pub async fn open_tls(addr: SocketAddr, tls: TlsConnector) -> Result<Self, HttpError> {
        let sender = connect(addr, Some(&tls)).await?;
        Ok(Conn { addr, tls: Some(tls), sender: Some(sender) })
    }

    /// Sends one request and reads the whole answer, within `timeout`.
    pub async fn request<B: Serialize>(
        &mut self,
        method: Method,
        path_and_query: &str,
        access_token: Option<&str>,
        body: Option<&B>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let authorization = access_token.map(|token| format!("Bearer {token}"));
        let body = body
            .map(|body| Bytes::from(serde_json::to_vec(body).expect("request bodies serialize")));
        self.request_bytes(method, path_and_query, authorization.as_deref(), body, timeout).await
    }

    /// Sends one request with a ready `Authorization` header (such as X-Matrix) and a JSON
    /// body already encoded (the bytes a signature covers), and reads the whole answer.
    pub async fn request_bytes(
        &mut self,
        method: Method,
        path_and_query: &str,
        authorization: Option<&str>,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Response, HttpError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path_and_query)
            .header(header::HOST, self.addr.to_string());
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request.body(Full::new(body.unwrap_or_default()))?;
        // The sender is out of `self` while the request is in flight: if this future is
        // dropped midway, the half-used connection goes with it.
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => connect(self.addr, self.tls.as_ref()).await?,
        };
        let exchange = async move {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, HttpError>((sender, Response { status, body }))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((sender, response))) => {
                self.sender = Some(sender);
                Ok(response)
            }
            Ok(Err(err)) => Err(err),
            Err(_) => Err(HttpError::Timeout(timeout)),
        }
    }
}

async fn connect(
    addr: SocketAddr,
    tls: Option<&TlsConnector>,
) -> Result<SendRequest<Full<Bytes>>, HttpError> {
    let stream =
        TcpStream::connect(addr).await.map_err(|source| HttpError::Connect { addr, source })?;
    stream.set_nodelay(true).map_err(|source| HttpError::Connect { addr, source })?;
    let Some(tls) = tls else { return handshake(stream).await };
    let stream = tls
        .connect(ServerName::IpAddress(addr.ip().into()), stream)
        .await
        .map_err(|source| HttpError::Tls { addr, source })?;
    handshake(stream).await
}

async fn handshake<S>(stream: S) -> Result<SendRequest<Full<Bytes>>, HttpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the server closes the connection or the sender is dropped.
        let _ = connection.await;
    });
    Ok(sender)
}

/// Percent-encodes a query or path component (everything but RFC 3986's unreserved set).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_urls_are_accepted() {
        assert_eq!(loopback_addr("http://127.0.0.1:8008").unwrap().port(), 8008);
        assert!(loopback_addr("http://[::1]:8008").is_ok());
        assert!(loopback_addr("http://10.0.0.1:8008").is_err());
        assert!(loopback_addr("https://127.0.0.1:8008").is_err());
        assert!(loopback_addr("http://example.org:80").is_err());
    }

    #[test]
    fn components_are_percent_encoded() {
        assert_eq!(encode_component("!room:bench.local"), "%21room%3Abench.local");
        assert_eq!(encode_component("{\"a\":1}"), "%7B%22a%22%3A1%7D");
        assert_eq!(encode_component("s12_3-x.y~"), "s12_3-x.y~");
    }
}
