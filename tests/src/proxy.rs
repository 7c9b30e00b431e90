//! A TCP relay on loopback in front of a server, which a test can cut: while cut, every open
//! connection is dropped and new ones are closed at once, as a network outage looks to a
//! client (connections reset, connects failing). Restored, it relays again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct CuttableProxy {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    cut: Arc<AtomicBool>,
    /// Bumped at each cut: connections opened before it end.
    generation: watch::Sender<u64>,
    /// Connections relayed so far.
    relayed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    /// Relays `127.0.0.1:<new port>` to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> CuttableProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let base = format!("http://{}", listener.local_addr().expect("proxy address"));
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let relayed = Arc::new(AtomicU64::new(0));
        let upstream = upstream.to_owned();
        let task = {
            let (cut, generation, relayed) = (cut.clone(), generation.clone(), relayed.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    relayed.fetch_add(1, Ordering::SeqCst);
                    let mut ended = generation.subscribe();
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = ended.changed() => {}
                        }
                    });
                }
            })
        };
        CuttableProxy { base, cut, generation, relayed, task }
    }

    /// Drops every open connection and refuses new ones until [`CuttableProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|generation| *generation += 1);
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// How many connections were relayed.
    pub fn relayed(&self) -> u64 {
        self.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
