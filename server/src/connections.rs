//! Serving HTTP/1.1 connections under limits, for both listeners: how many connections are
//! open at once (in all and per peer address), how long a client may take to send a
//! request's headers (also how long a kept-alive connection may sit idle), and how long
//! to send its body. Without them, a client trickling bytes (slow loris) holds a task and a
//! file descriptor per connection for as long as it likes, and enough of them stop the
//! server accepting anyone.

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::ConnectInfo};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
    sync::watch,
};

use crate::{config::Limits, locks::LockExt};

/// The limits one listener applies.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_read_timeout: Duration,
    pub body_read_timeout: Duration,
}

impl From<&Limits> for ConnectionLimits {
    fn from(limits: &Limits) -> Self {
        Self {
            max_connections: limits.max_connections,
            max_connections_per_ip: limits.max_connections_per_ip,
            header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(limits.body_read_timeout_secs),
        }
    }
}

/// The open connections, in all and per peer address.
struct Gate {
    limits: ConnectionLimits,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One admitted connection; dropping it frees its place.
struct Admitted {
    gate: Arc<Gate>,
    ip: IpAddr,
}

impl Gate {
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut open = self.open.locked();
        let (total, per_ip) = &mut *open;
        let from_ip = per_ip.get(&ip).copied().unwrap_or(0);
        if *total >= self.limits.max_connections || from_ip >= self.limits.max_connections_per_ip {
            return None;
        }
        *total += 1;
        per_ip.insert(ip, from_ip + 1);
        Some(Admitted { gate: self.clone(), ip })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.gate.open.locked();
        let (total, per_ip) = &mut *open;
        *total -= 1;
        if let Some(count) = per_ip.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Turns an accepted TCP stream into the stream HTTP is spoken on (a TLS handshake for the
/// federation listener); `None` ends the connection.
pub trait Handshake: Clone + Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn handshake(&self, stream: TcpStream) -> impl Future<Output = Option<Self::Io>> + Send;
}

/// Plain TCP: no handshake.
#[derive(Clone)]
pub struct PlainTcp;

impl Handshake for PlainTcp {
    type Io = TcpStream;
    async fn handshake(&self, stream: TcpStream) -> Option<TcpStream> {
        Some(stream)
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` resolves; then stops
/// accepting, lets requests in progress finish (for at most [`DRAIN_FOR`]) and returns.
/// Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let gate = Arc::new(Gate { limits, open: Mutex::new((0, HashMap::new())) });
    let router = router.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            body_deadline(request, next, limits.body_read_timeout)
        },
    ));
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Over the cap, the connection is closed at once: the kernel's backlog would
        // otherwise fill with connections nobody serves.
        let Some(admitted) = gate.admit(peer.ip()) else {
            tracing::debug!(%peer, "connection refused: too many open");
            continue;
        };
        let (handshake, router, stopped) = (handshake.clone(), router.clone(), stopped.clone());
        tokio::spawn(async move {
            let _admitted = admitted;
            // The handshake is bounded like the headers that follow it.
            let Ok(Some(io)) =
                tokio::time::timeout(limits.header_read_timeout, handshake.handshake(stream)).await
            else {
                return;
            };
            serve_connection(io, peer, router, limits, stopped).await;
        });
    }
    drop(stopped);
    let _ = stop.send(true);
    // Every connection task holds a receiver; all gone means all finished.
    let _ = tokio::time::timeout(DRAIN_FOR, stop.closed()).await;
}

/// How long shutdown waits for requests in progress.
pub const DRAIN_FOR: Duration = Duration::from_secs(10);

async fn serve_connection<Io: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: Io,
    peer: SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(
        router.layer(axum::Extension(ConnectInfo(peer))),
    );
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper applies this only with a timer; axum's own `serve` sets none, which is why
    // this loop exists. It runs whenever hyper waits for a request head, so an idle
    // kept-alive connection is closed after it too.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        // The borrow `wait_for` answers is dropped at once: it must not live across an await.
        () = async { drop(stopped.wait_for(|stop| *stop).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%peer, %err, "connection ended with an error");
    }
}

/// Gives the request's body a deadline, counted from when its headers were read: a body
/// still arriving then fails with [`BodyTimedOut`] where the handler reads it.
async fn body_deadline(
    request: axum::extract::Request,
    next: axum::middleware::Next,
    timeout: Duration,
) -> axum::response::Response {
    let request = request.map(|body| Body::new(DeadlineBody::new(body, timeout)));
    next.run(request).await
}

/// The error a body past its deadline fails with.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimedOut;

/// Whether reading a body failed because of its deadline (as opposed to its size).
pub fn is_body_timeout(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = source {
        if err.is::<BodyTimedOut>() {
            return true;
        }
        source = err.source();
    }
    false
}

struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Body, timeout: Duration) -> Self {
        Self { inner, deadline: Box::pin(tokio::time::sleep(timeout)) }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_connections: usize, max_connections_per_ip: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections,
            max_connections_per_ip,
            header_read_timeout: Duration::from_secs(1),
            body_read_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_gate_caps_connections_in_all_and_per_address_and_frees_them() {
        let gate = Arc::new(Gate { limits: limits(3, 2), open: Mutex::new(Default::default()) });
        let (a, b) = (IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2]));
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert!(gate.admit(a).is_none(), "a third from one address");
        let _third = gate.admit(b).unwrap();
        assert!(gate.admit(b).is_none(), "a fourth in all");
        drop(first);
        assert!(gate.admit(a).is_some(), "a place freed is reused");
    }

    /// One byte, then nothing more, ever.
    struct Trickle(bool);

    impl http_body::Body for Trickle {
        type Data = axum::body::Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
            if self.0 {
                return Poll::Pending;
            }
            self.0 = true;
            Poll::Ready(Some(Ok(http_body::Frame::data(axum::body::Bytes::from_static(b"{")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_trickles_fails_at_its_deadline() {
        let body =
            Body::new(DeadlineBody::new(Body::new(Trickle(false)), Duration::from_millis(100)));
        let err = axum::body::to_bytes(body, 1 << 20).await.unwrap_err();
        assert!(is_body_timeout(&err), "{err}");
        // A size error is told apart.
        let small = Body::new(DeadlineBody::new(Body::from("{}{}"), Duration::from_secs(5)));
        assert!(!is_body_timeout(&axum::body::to_bytes(small, 2).await.unwrap_err()));
    }
}
