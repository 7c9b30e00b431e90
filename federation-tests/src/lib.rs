//! The federation test net: a fresh CA, a certificate per server, and `medrix serve`
//! processes (each with its own RocksDB) federating over TLS on loopback. Server names are
//! `<name>.test:<port>`: an explicit port means no `.well-known` or SRV lookup, and each
//! server resolves the others' host names to 127.0.0.1 through `--federation-resolve`.
//! Servers that must be reached by other implementations (`synapse`) are named by an IP
//! literal instead, `127.0.0.1:<port>`, which needs no resolution at all.

use std::{net::SocketAddr, path::PathBuf};

use medrix_protocol::{canonical::object_from_value, keys::ServerSigningKey};
use medrix_tests::{REGISTRATION_TOKEN, TestServer, free_port, medrix_binary};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use serde_json::{Value, json};

pub mod impostor;
pub mod mesh;
pub mod room_calls;
pub mod room_reads;
pub mod synapse;

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
    /// How many federation requests this server refused for a bad X-Matrix signature (its
    /// metrics): servers that sign correctly should never be refused.
    pub async fn bad_signatures_refused(&self) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.server.metrics))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("medrix_federation_bad_signatures_total "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the counter is exported")
    }

    /// The federation API's base URL (for raw requests in tests).
    pub fn federation_url(&self, path: &str) -> String {
        format!("https://{}:{}{path}", self.host, self.federation_port)
    }

    /// The full user ID of `localpart` on this server.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }
}

impl FederatingServer {
    /// An `Authorization: X-Matrix ...` header for a request from this server to
    /// `destination`, signed with this server's own key (read from its data directory): lets
    /// a test speak as this server, e.g. to repeat a transaction.
    /// This server's current signing key, read from its data directory: lets a test sign
    /// events and requests as this server.
    pub fn signing_key(&self) -> ServerSigningKey {
        let stored = std::fs::read_to_string(self.server.data_dir.join("signing.key")).unwrap();
        let (version, seed) = stored.trim().split_once(' ').unwrap();
        ServerSigningKey::from_base64_seed(&self.server_name, version, seed).unwrap()
    }

    pub fn x_matrix(
        &self,
        destination: &FederatingServer,
        method: &str,
        uri: &str,
        content: Option<&Value>,
    ) -> String {
        let key = self.signing_key();
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

fn distinguished_name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

impl TestNet {
    pub fn new() -> Self {
        let dir = medrix_tests::unique_temp_dir("medrix-fed");
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // OpenSSL (Synapse's TLS) takes a certificate whose issuer name equals its subject for
        // self-signed, so the CA and each server need names of their own (rcgen gives every
        // certificate the same one), and it wants the CA's uses declared.
        ca_params.distinguished_name = distinguished_name("Medrix test net CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        Self { dir, ca_params, ca_key, ca_pem }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// This run's directory (certificates; servers' data lives in their own directories).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Issues a server certificate from this CA for `host` (a DNS name, or an IP address that
    /// becomes an IP SAN); returns the PEM certificate and key paths, `<file_stem>.crt|.key`.
    pub fn issue_certificate(&self, file_stem: &str, host: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::new(self.ca_params.clone(), &self.ca_key);
        let mut params = CertificateParams::new(vec![host.to_owned()]).unwrap();
        params.distinguished_name = distinguished_name(host);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) =
            (self.dir.join(format!("{file_stem}.crt")), self.dir.join(format!("{file_stem}.key")));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// Starts `<name>.test` with a certificate from this CA; `allow` limits whom it federates
    /// with (empty: anyone); `peers` are the other host names it must reach.
    pub async fn start(&self, name: &str, allow: &[&str], peers: &[&str]) -> FederatingServer {
        let resolve: Vec<String> =
            peers.iter().chain([&name]).map(|peer| format!("{peer}.test=127.0.0.1")).collect();
        self.start_medrix_with(name, &format!("{name}.test"), allow, &resolve, &[]).await
    }

    /// Starts a server named `127.0.0.1:<port>`: an IP literal with a port, which every
    /// implementation reaches without DNS, `.well-known` or SRV (Synapse among them), with a
    /// certificate for that IP. `name` labels its files; `allow` as for `start`. Its peers
    /// are named by loopback literals too, which it may reach only with internal addresses
    /// allowed.
    pub async fn start_ip(&self, name: &str, allow: &[&str]) -> FederatingServer {
        let internal = ["--federation-allow-internal-addresses"];
        self.start_medrix_with(name, "127.0.0.1", allow, &[], &internal).await
    }

    /// Starts `<name>.test` for each of `names`, each reaching the others through relays a
    /// test can cut ([`mesh::Mesh`]): a real network partition with every process running.
    pub async fn start_mesh(&self, names: &[&str]) -> (Vec<FederatingServer>, mesh::Mesh) {
        let ports: Vec<(u16, u16)> = names.iter().map(|_| (free_port(), free_port())).collect();
        let mut mesh = mesh::Mesh::default();
        for (to, (name_port, listen_port)) in names.iter().zip(&ports) {
            let target = SocketAddr::from(([127, 0, 0, 1], *listen_port));
            // The test's own link, never cut.
            mesh.link("test", to, SocketAddr::from(([127, 0, 0, 1], *name_port)), target).await;
            for (index, from) in names.iter().enumerate() {
                let listen = SocketAddr::new(mesh::source_ip(index), *name_port);
                mesh.link(from, to, listen, target).await;
            }
        }
        let mut servers = Vec::new();
        for (index, (name, (name_port, listen_port))) in names.iter().zip(&ports).enumerate() {
            let resolve: Vec<String> = names
                .iter()
                .map(|peer| format!("{peer}.test={}", mesh::source_ip(index)))
                .collect();
            let host = format!("{name}.test");
            servers.push(
                self.start_medrix_on(name, &host, (*name_port, *listen_port), &[], &resolve, &[])
                    .await,
            );
        }
        (servers, mesh)
    }

    /// Starts a server named `host:<a free port>`, with `extra` flags.
    pub async fn start_medrix_with(
        &self,
        name: &str,
        host: &str,
        allow: &[&str],
        resolve: &[String],
        extra: &[&str],
    ) -> FederatingServer {
        let port = free_port();
        self.start_medrix_on(name, host, (port, port), allow, resolve, extra).await
    }

    /// Starts a server named `host:name_port`, its federation API listening on
    /// `listen_port` (the same port unless a relay sits in between); `extra` flags last.
    async fn start_medrix_on(
        &self,
        name: &str,
        host: &str,
        (name_port, listen_port): (u16, u16),
        allow: &[&str],
        resolve: &[String],
        extra: &[&str],
    ) -> FederatingServer {
        let federation_port = name_port;
        let server_name = format!("{host}:{federation_port}");
        let (cert_path, key_path) = self.issue_certificate(name, host);

        let mut args: Vec<String> = [
            "--registration-token",
            REGISTRATION_TOKEN,
            "--no-rate-limits",
            "--server-name",
            &server_name,
            "--federation-listen",
            &format!("127.0.0.1:{listen_port}"),
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
        for entry in resolve {
            args.push("--federation-resolve".into());
            args.push(entry.clone());
        }
        for allowed in allow {
            args.push("--federation-allow".into());
            args.push((*allowed).to_owned());
        }
        args.extend(extra.iter().map(|arg| (*arg).to_owned()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = TestServer::start_with(&medrix_binary(), &args).await;
        FederatingServer { server, server_name, host: host.to_owned(), federation_port }
    }

    /// `PUT /send/{txn_id}` to `to`, signed as `from`: answers the status and JSON body.
    pub async fn put_transaction(
        &self,
        from: &FederatingServer,
        to: &FederatingServer,
        txn_id: &str,
        body: &Value,
    ) -> (u16, Value) {
        let uri = format!("/_matrix/federation/v1/send/{txn_id}");
        self.signed_request(from, to, "PUT", &uri, Some(body)).await
    }

    /// A federation request to `to`, signed as `from` (X-Matrix): answers the status and
    /// JSON body (null if the body is not JSON).
    pub async fn signed_request(
        &self,
        from: &FederatingServer,
        to: &FederatingServer,
        method: &str,
        uri: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .https_client(&[to])
            .request(method.clone(), to.federation_url(uri))
            .header("authorization", from.x_matrix(to, method.as_str(), uri, body));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
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
