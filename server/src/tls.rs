//! TLS for the federation listener: the certificate chain and key from PEM files, and the
//! handshake [`crate::connections::serve`] runs on each connection before HTTP.

use std::{path::Path, sync::Arc};

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpStream;
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

/// The federation listener's handshake: TLS with the server's certificate. Connection
/// limits and timeouts are [`crate::connections::serve`]'s; a failed handshake ends only its
/// own connection.
#[derive(Clone)]
pub struct TlsHandshake(pub TlsAcceptor);

impl crate::connections::Handshake for TlsHandshake {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;

    async fn handshake(&self, stream: TcpStream) -> Option<Self::Io> {
        let peer = stream.peer_addr().ok();
        match self.0.accept(stream).await {
            Ok(stream) => Some(stream),
            Err(err) => {
                tracing::debug!(?peer, %err, "TLS handshake failed");
                None
            }
        }
    }
}

/// rustls needs one process-wide crypto provider; with several compiled in (the dependency
/// graph enables both aws-lc and ring) it cannot pick on its own. aws-lc, as reqwest uses.
pub fn install_crypto_provider() {
    // An error only means it is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
