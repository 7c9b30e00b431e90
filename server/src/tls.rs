//! TLS for the federation listener: the certificate chain and key from PEM files, and an
//! accept loop serving an axum router over rustls (axum's own `serve` speaks plain TCP only).

use std::{path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// A TLS acceptor for the certificate chain in `cert` and the private key in `key`.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect())
        .map_err(|err| format!("{}: {err}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|err| format!("{}: {err}", key.display()))?;
    install_crypto_provider();
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|err| format!("TLS certificate: {err}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS on `listener` until `shutdown` resolves. A failed handshake ends
/// only that connection.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: axum::Router,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(%err, "federation accept failed");
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(
                std::time::Duration::from_secs(10),
                acceptor.accept(stream),
            )
            .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(err)) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper_util::service::TowerToHyperService::new(
                router.layer(axum::Extension(axum::extract::ConnectInfo(peer))),
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(err) = connection.await {
                tracing::debug!(%peer, %err, "federation connection ended with an error");
            }
        });
    }
}

/// rustls needs one process-wide crypto provider; with several compiled in (the dependency
/// graph enables both aws-lc and ring) it cannot pick on its own. aws-lc, as reqwest uses.
pub fn install_crypto_provider() {
    // An error only means it is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
