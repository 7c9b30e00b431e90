//! `medrix serve`: open the database, start the listeners, stop cleanly on SIGTERM.

use std::{net::SocketAddr, path::PathBuf};

use clap::Args;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    connections::{self, ConnectionLimits},
    http,
    service::Services,
    storage::Storage,
};

/// Flags of `medrix serve`; each overrides the same setting of the config file.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// A TOML configuration file (see server/medrix.example.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The server name (the part after ':' in user IDs).
    #[arg(long)]
    server_name: Option<String>,
    /// Address of the client-server API.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Address of the Prometheus metrics listener (loopback only); none without it.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// The RocksDB data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Opens registration to clients that present this token.
    #[arg(long)]
    registration_token: Option<String>,
    /// Turns rate limits off (benchmarks and tests only).
    #[arg(long)]
    no_rate_limits: bool,
    /// Address of the federation (server-server) API, served over TLS.
    #[arg(long)]
    federation_listen: Option<SocketAddr>,
    /// PEM certificate chain for the server name, for the federation listener.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// A PEM CA certificate trusted for outbound federation beside the system roots.
    #[arg(long)]
    federation_ca: Option<PathBuf>,
    /// A server to federate with (repeatable); none means any.
    #[arg(long = "federation-allow")]
    federation_allow: Vec<String>,
    /// Lets server discovery yield internal (loopback, private) addresses.
    #[arg(long)]
    federation_allow_internal_addresses: bool,
    /// NAME=IP: reach host NAME at IP without DNS (repeatable).
    #[arg(long = "federation-resolve", value_parser = parse_resolve)]
    federation_resolve: Vec<(String, std::net::IpAddr)>,
    /// Seconds between read-log checkpoints (`[audit] checkpoint_every_secs`).
    #[arg(long)]
    audit_checkpoint_every_secs: Option<u64>,
}

fn parse_resolve(text: &str) -> Result<(String, std::net::IpAddr), String> {
    let (name, ip) = text.split_once('=').ok_or("expected NAME=IP")?;
    Ok((name.to_owned(), ip.parse().map_err(|err| format!("{ip}: {err}"))?))
}

impl ServeArgs {
    /// The configuration: defaults, then the file, then the flags.
    pub fn config(&self) -> Result<Config, String> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path).map_err(|err| err.to_string())?,
            None => Config::default(),
        };
        if let Some(name) = &self.server_name {
            config.server_name = name.clone();
        }
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(listen) = self.metrics_listen {
            config.metrics_listen = Some(listen);
        }
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(token) = &self.registration_token {
            config.registration_token = Some(token.clone());
        }
        if self.no_rate_limits {
            config.rate_limits.enabled = false;
        }
        let federation = &mut config.federation;
        if let Some(listen) = self.federation_listen {
            federation.listen = Some(listen);
        }
        if let Some(cert) = &self.tls_cert {
            federation.tls_cert = Some(cert.clone());
        }
        if let Some(key) = &self.tls_key {
            federation.tls_key = Some(key.clone());
        }
        if let Some(ca) = &self.federation_ca {
            federation.ca = Some(ca.clone());
        }
        federation.allow.extend(self.federation_allow.iter().cloned());
        if self.federation_allow_internal_addresses {
            federation.allow_internal_addresses = true;
        }
        federation.resolve.extend(self.federation_resolve.iter().cloned());
        if let Some(secs) = self.audit_checkpoint_every_secs {
            config.audit.checkpoint_every_secs = secs;
        }
        config.validate().map_err(|err| err.to_string())?;
        Ok(config)
    }
}

pub fn run(args: ServeArgs) -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("starting the runtime: {err}"))?;
    let writer = runtime.block_on(serve(config))?;
    // Every task (and with it every database handle) goes with the runtime; then the writer
    // thread closes the database. Exiting before it finishes aborted the process now and then.
    drop(runtime);
    writer.join();
    tracing::info!("stopped cleanly");
    Ok(())
}

/// Serves until SIGTERM; returns the writer thread to wait for.
async fn serve(config: Config) -> Result<crate::storage::WriterThread, String> {
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|err| format!("{}: {err}", config.data_dir.display()))?;
    let storage = Storage::open(&config.data_dir.join("db"))
        .map_err(|err| format!("opening the database: {err}"))?;
    let writer = storage.writer_thread();
    let (listen, metrics_listen) = (config.listen, config.metrics_listen);
    let server_name = config.server_name.clone();
    let federation = config.federation.clone();
    let keys = crate::signing_keys::load_or_create(&config.data_dir, &config.server_name)?;
    let services = Services::new(config, storage, keys.current, keys.old)
        .map_err(|err| format!("loading rooms: {err}"))?;
    services.typing.start_sweeper();
    services.contracts.ensure_account(&services.accounts).await?;
    // Contracts that ended while the server was down are acted on now.
    services.contracts.start();
    services.contracts.start_checkpoints(
        services.access.clone(),
        services.federation.as_ref().map(|federation| federation.client.clone()),
        std::time::Duration::from_secs(services.config.audit.checkpoint_every_secs.max(1)),
    );
    if let Some(federation) = &services.federation {
        federation.sender.start();
        // Key changes committed before a crash but never queued for other servers.
        let (edus_out, e2ee) = (federation.edus_out.clone(), services.e2ee.clone());
        tokio::spawn(async move { edus_out.announce_unannounced(&e2ee).await });
    }

    let client_listener =
        TcpListener::bind(listen).await.map_err(|err| format!("listening on {listen}: {err}"))?;
    // Metrics are served only where the operator asked; a port they named that cannot be
    // had stops the start, as the client port does.
    let metrics_listener = match metrics_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .map_err(|err| format!("listening on {address}: {err}"))?,
        ),
        None => None,
    };
    tracing::info!(%server_name, client_api = %client_listener.local_addr().map_err(|e| e.to_string())?, metrics = ?metrics_listen, "medrix is serving");

    let federation_listener = match (&federation.listen, &federation.tls_cert, &federation.tls_key)
    {
        (Some(listen), Some(cert), Some(key)) => {
            let acceptor = crate::tls::acceptor(cert, key)?;
            let listener = TcpListener::bind(listen)
                .await
                .map_err(|err| format!("listening on {listen}: {err}"))?;
            tracing::info!(federation = %listen, "federation API over TLS");
            Some((listener, acceptor))
        }
        _ => None,
    };
    let federation_router = http::federation::router(services.clone());
    let metrics_router = http::metrics_router(services.clone());
    let metrics = async {
        match metrics_listener {
            Some(listener) => {
                axum::serve(listener, metrics_router)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
            }
            None => Ok(()),
        }
    };
    let limits = ConnectionLimits::from(&services.config.limits);
    let client = connections::serve(
        client_listener,
        connections::PlainTcp,
        http::router(services),
        limits,
        shutdown_signal(),
    );
    let federation = async {
        if let Some((listener, acceptor)) = federation_listener {
            let tls = crate::tls::TlsHandshake(acceptor);
            connections::serve(listener, tls, federation_router, limits, shutdown_signal()).await;
        }
    };
    let ((), metrics, ()) = tokio::join!(client, metrics, federation);
    metrics.map_err(|err| format!("serving: {err}"))?;
    Ok(writer)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
