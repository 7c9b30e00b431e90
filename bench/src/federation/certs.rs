//! TLS for the federation benchmark: a CA made for the run and one certificate for the IP
//! address 127.0.0.1, which every server of the run uses (they are all named
//! `127.0.0.1:<port>`, so one certificate fits them all), and the rustls configurations
//! that serve it and trust the CA.

use std::{path::Path, sync::Arc};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio_rustls::{TlsAcceptor, TlsConnector, rustls};

/// The files [`write`] makes in its directory.
pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "server.crt";
pub const KEY_FILE: &str = "server.key";

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

/// Writes a fresh CA (`ca.pem`) and a server certificate for 127.0.0.1 (`server.crt`,
/// `server.key`) into `dir`.
pub fn write(dir: &Path) -> Result<(), String> {
    let err = |e: rcgen::Error| format!("certificates: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // OpenSSL (Synapse) wants the CA's uses declared, and a CA name distinct from the
    // server's (equal names read as self-signed).
    ca.distinguished_name = named("medrix bench CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(err)?;
    let ca_pem = ca.self_signed(&ca_key).map_err(err)?.pem();

    let server_key = KeyPair::generate().map_err(err)?;
    // A string that parses as an IP address becomes an IP SAN.
    let mut server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).map_err(err)?;
    server.distinguished_name = named("127.0.0.1");
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    server.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    server.use_authority_key_identifier_extension = true;
    let cert = server.signed_by(&server_key, &Issuer::new(ca, &ca_key)).map_err(err)?;

    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (file, text) in
        [(CA_FILE, ca_pem), (CERT_FILE, cert.pem()), (KEY_FILE, server_key.serialize_pem())]
    {
        let path = dir.join(file);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// rustls needs one process-wide crypto provider; the workspace compiles in two.
fn install_crypto_provider() {
    // An error only means it is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Serves the certificate in `dir`.
pub fn acceptor(dir: &Path) -> Result<TlsAcceptor, String> {
    install_crypto_provider();
    let cert_path = dir.join(CERT_FILE);
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .and_then(|certs| certs.collect())
        .map_err(|e| format!("{}: {e}", cert_path.display()))?;
    let key_path = dir.join(KEY_FILE);
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Connects trusting only the CA in `dir`.
pub fn connector(dir: &Path) -> Result<TlsConnector, String> {
    install_crypto_provider();
    let ca_path = dir.join(CA_FILE);
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca_path)
        .map_err(|e| format!("{}: {e}", ca_path.display()))?
    {
        let cert = cert.map_err(|e| format!("{}: {e}", ca_path.display()))?;
        roots.add(cert).map_err(|e| format!("{}: {e}", ca_path.display()))?;
    }
    let mut config =
        rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
