//! Links between test servers that a test can cut. Each server reaches each other one through
//! a TCP relay of its own (server `i` resolves every peer's host name to `127.0.0.<10+i>`,
//! where relays listen on the peers' federation ports), so a partition is real: connections
//! between the two sides are dropped and refused while every process keeps running, and TLS
//! passes through untouched.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    net::{TcpListener, TcpStream},
    task::AbortHandle,
};

/// The loopback address server number `index` connects to its peers through.
pub(crate) fn source_ip(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + index as u8))
}

/// One direction of traffic between two servers: a relay that can be cut and healed.
#[derive(Clone)]
struct Link {
    cut: Arc<AtomicBool>,
    live: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Link {
    /// Relays connections to `listen` on to `target` until cut.
    async fn start(listen: SocketAddr, target: SocketAddr) -> Self {
        let listener =
            TcpListener::bind(listen).await.unwrap_or_else(|err| panic!("{listen}: {err}"));
        let link = Self { cut: Arc::default(), live: Arc::default() };
        let relay = link.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if relay.cut.load(Ordering::SeqCst) {
                    continue; // dropped: the peer sees the connection reset
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                let mut live = relay.live.lock().unwrap();
                live.retain(|handle| !handle.is_finished());
                live.push(task.abort_handle());
            }
        });
        link
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for handle in self.live.lock().unwrap().drain(..) {
            handle.abort();
        }
    }

    fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Every link between a set of servers, by (from, to) server label.
#[derive(Default)]
pub struct Mesh {
    links: BTreeMap<(String, String), Link>,
}

impl Mesh {
    /// Adds the relay `from` uses to reach `to`.
    pub(crate) async fn link(
        &mut self,
        from: &str,
        to: &str,
        listen: SocketAddr,
        target: SocketAddr,
    ) {
        let link = Link::start(listen, target).await;
        self.links.insert((from.to_owned(), to.to_owned()), link);
    }

    /// Cuts `name` off from every other server, both ways.
    pub fn isolate(&self, name: &str) {
        self.each_link_of(name, Link::cut);
    }

    /// Restores `name`'s links.
    pub fn reconnect(&self, name: &str) {
        self.each_link_of(name, Link::heal);
    }

    /// Cuts the links between `a` and `b` alone, both ways: each still reaches the others.
    pub fn cut_between(&self, a: &str, b: &str) {
        self.each_link_between(a, b, Link::cut);
    }

    /// Restores the links between `a` and `b`.
    pub fn heal_between(&self, a: &str, b: &str) {
        self.each_link_between(a, b, Link::heal);
    }

    fn each_link_between(&self, a: &str, b: &str, act: impl Fn(&Link)) {
        for ((from, to), link) in &self.links {
            if (from == a && to == b) || (from == b && to == a) {
                act(link);
            }
        }
    }

    fn each_link_of(&self, name: &str, act: impl Fn(&Link)) {
        for ((from, to), link) in &self.links {
            if from != to && (from == name || to == name) {
                act(link);
            }
        }
    }
}
