//! The federation test net: a fresh CA, a certificate per server, and `medrix serve`
//! processes (each with its own RocksDB) federating over TLS on loopback. Server names are
//! `<name>.test:<port>`: an explicit port means no `.well-known` or SRV lookup, and each
//! server resolves the others' host names to 127.0.0.1 through `--federation-resolve`.

use std::{net::TcpListener, path::PathBuf};

use medrix_protocol::{canonical::object_from_value, keys::ServerSigningKey};
use medrix_tests::{REGISTRATION_TOKEN, TestServer, medrix_binary};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use serde_json::{Value, json};

/// The CA and the directory its files live in.
pub struct TestNet {
    dir: PathBuf,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    pub ca_pem: String,
}

/// One federating server: the harness around its process, and its server name.
pub struct FederatingServer {
    pub server: TestServer,
    pub server_name: String,
    pub host: String,
    pub federation_port: u16,
}

impl FederatingServer {
    /// The federation API's base URL (for raw requests in tests).
    pub fn federation_url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.federation_port)
    }
}

impl FederatingServer {
    /// An `Authorization: X-Matrix ...` header for a request from this server to
    /// `destination`, signed with this server's own key (read from its data directory): lets
    /// a test speak as this server, e.g. to repeat a transaction.
    pub fn x_matrix(
        &self,
        destination: &FederatingServer,
        method: &str,
        uri: &str,
        content: Option<&Value>,
    ) -> String {
        let stored = std::fs::read_to_string(self.server.data_dir.join("signing.key")).unwrap();
        let (version, seed) = stored.trim().split_once(' ').unwrap();
        let key = ServerSigningKey::from_base64_seed(&self.server_name, version, seed).unwrap();
        let mut request = json!({
            "method": method, "uri": uri,
            "origin": self.server_name, "destination": destination.server_name,
        });
        if let Some(content) = content {
            request["content"] = content.clone();
        }
        let mut object = object_from_value(request).unwrap();
        key.sign_json(&mut object).unwrap();
        let signature = serde_json::to_value(&object["signatures"]).unwrap()[&self.server_name]
            [key.key_id()]
        .as_str()
        .unwrap()
        .to_owned();
        format!(
            "X-Matrix origin=\"{}\",destination=\"{}\",key=\"{}\",sig=\"{signature}\"",
            self.server_name,
            destination.server_name,
            key.key_id()
        )
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestNet {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("medrix-fed-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        Self { dir, ca_params, ca_key, ca_pem }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Starts `<name>.test` with a certificate from this CA; `allow` limits whom it federates
    /// with (empty: anyone); `peers` are the other host names it must reach.
    pub async fn start(&self, name: &str, allow: &[&str], peers: &[&str]) -> FederatingServer {
        let host = format!("{name}.test");
        let federation_port = free_port();
        let server_name = format!("{host}:{federation_port}");
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        let cert =
            CertificateParams::new(vec![host.clone()]).unwrap().signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) =
            (self.dir.join(format!("{name}.crt")), self.dir.join(format!("{name}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();

        let mut args: Vec<String> = [
            "--registration-token",
            REGISTRATION_TOKEN,
            "--no-rate-limits",
            "--server-name",
            &server_name,
            "--federation-listen",
            &format!("127.0.0.1:{federation_port}"),
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
            "--federation-ca",
            self.ca_path().to_str().unwrap(),
        ]
        .iter()
        .map(|arg| arg.to_string())
        .collect();
        for peer in peers.iter().chain([&name]) {
            args.push("--federation-resolve".into());
            args.push(format!("{peer}.test=127.0.0.1"));
        }
        for allowed in allow {
            args.push("--federation-allow".into());
            args.push((*allowed).to_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = TestServer::start_with(&medrix_binary(), &args).await;
        FederatingServer { server, server_name, host, federation_port }
    }

    /// An HTTPS client trusting this net's CA, reaching the given servers on loopback.
    pub fn https_client(&self, servers: &[&FederatingServer]) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_certs_merge([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap()]);
        for server in servers {
            builder =
                builder.resolve(&server.host, ([127, 0, 0, 1], server.federation_port).into());
        }
        builder.build().unwrap()
    }
}

impl Default for TestNet {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
