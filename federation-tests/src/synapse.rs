//! Synapse, the reference homeserver, as a peer on the test net: a real `synapse.app.homeserver`
//! process (pinned and installed by `federation-tests/synapse/setup`) with SQLite in its own
//! directory, federating over TLS with a certificate from the net's CA.
//!
//! Its server name is `127.0.0.1:<port>`: Synapse resolves names with its own resolver, and an
//! IP literal with a port is the one form that needs no DNS, `.well-known` or SRV on either
//! side. Medrix peers it talks to are started with [`TestNet::start_ip`] for the same reason.
//! Its client API is plain HTTP on loopback; its log stays in its directory and its tail is
//! printed when a test fails.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use base64::Engine;
use hmac::{Hmac, Mac};
use medrix_tests::clients::run_setup;
use serde_json::{Value, json};
use sha1::Sha1;

use medrix_tests::free_port;

use crate::TestNet;

/// How long Synapse may take to answer `/health` after spawning (a debug CI machine with two
/// busy cores is slow to import it).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// The venv's interpreter, installed on first use (`federation-tests/synapse/setup`,
/// idempotent and quick once done).
fn synapse_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("synapse/setup");
        let [python] = run_setup(&setup, ["python"]);
        python
    })
}

/// A user registered on Synapse.
#[derive(Debug, Clone)]
pub struct SynapseUser {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
}

/// A running Synapse, killed when dropped.
pub struct SynapseServer {
    child: Child,
    dir: PathBuf,
    /// `127.0.0.1:<federation port>`.
    pub server_name: String,
    pub federation_port: u16,
    /// The plain-HTTP client API, `http://127.0.0.1:<port>`.
    pub client_base: String,
    /// From spawning the process to the first 200 from `/health`.
    pub started_in: Duration,
    registration_secret: String,
    pub http: reqwest::Client,
}

impl SynapseServer {
    /// Starts Synapse on the net with the harness's configuration.
    pub async fn start(net: &TestNet) -> Self {
        Self::start_with(net, "").await
    }

    /// Starts Synapse with `extra_yaml` appended to its configuration (top-level keys the
    /// harness does not set itself).
    pub async fn start_with(net: &TestNet, extra_yaml: &str) -> Self {
        Self::start_configured(net, extra_yaml, "").await
    }

    /// Starts Synapse with `settings` (YAML lines) added to its `federation:` section.
    pub async fn start_with_federation_settings(net: &TestNet, settings: &str) -> Self {
        Self::start_configured(net, "", settings).await
    }

    async fn start_configured(net: &TestNet, extra_yaml: &str, federation_settings: &str) -> Self {
        let (federation_port, client_port) = (free_port(), free_port());
        let server_name = format!("127.0.0.1:{federation_port}");
        let dir = medrix_tests::unique_temp_dir("medrix-synapse");
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = net.issue_certificate(&format!("synapse-{federation_port}"), "127.0.0.1");
        let registration_secret = random_hex(24);
        let config = homeserver_yaml(&Config {
            dir: &dir,
            server_name: &server_name,
            federation_port,
            client_port,
            cert: &cert,
            key: &key,
            ca: &net.ca_path(),
            registration_secret: &registration_secret,
            federation_settings,
        });
        std::fs::write(dir.join("homeserver.yaml"), format!("{config}{extra_yaml}\n")).unwrap();
        std::fs::write(dir.join("log.yaml"), LOG_YAML).unwrap();
        // Synapse's key file format; written here rather than by a second Python start
        // (`--generate-keys`), which would cost seconds.
        let seed = base64::engine::general_purpose::STANDARD_NO_PAD.encode(random_bytes(32));
        std::fs::write(dir.join("signing.key"), format!("ed25519 a_test {seed}\n")).unwrap();

        let python = synapse_python();
        let log = std::fs::File::create(dir.join("synapse.log")).unwrap();
        let spawned = Instant::now();
        let child = Command::new(python)
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(dir.join("homeserver.yaml"))
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("start {}: {err}", python.display()));
        let mut server = Self {
            child,
            dir,
            server_name,
            federation_port,
            client_base: format!("http://127.0.0.1:{client_port}"),
            started_in: Duration::ZERO,
            registration_secret,
            http: reqwest::Client::new(),
        };
        server.wait_ready(spawned).await;
        eprintln!(
            "synapse {}: ready in {} ms ({})",
            server.server_name,
            server.started_in.as_millis(),
            server.dir.display()
        );
        server
    }

    async fn wait_ready(&mut self, spawned: Instant) {
        let health = self.client_url("/health");
        loop {
            if let Ok(response) = self.http.get(&health).send().await
                && response.status().is_success()
            {
                self.started_in = spawned.elapsed();
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("synapse exited while starting ({status}); its log:\n{}", self.log_tail(40));
            }
            assert!(
                spawned.elapsed() < START_TIMEOUT,
                "synapse did not answer /health within {START_TIMEOUT:?}; its log:\n{}",
                self.log_tail(40)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A URL on the client API.
    pub fn client_url(&self, path: &str) -> String {
        format!("{}{path}", self.client_base)
    }

    /// The federation API's base URL (for raw requests in tests; TLS with the net's CA).
    pub fn federation_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.server_name)
    }

    /// The full user ID of `localpart` on this server.
    pub fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server_name)
    }

    /// Sends a client API request; returns the status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        medrix_tests::call_json(&self.http, method, &self.client_url(path), token, body).await
    }

    /// Registers `localpart` through Synapse's shared-secret admin registration (registration
    /// is otherwise closed), logged in on a new device.
    pub async fn register(&self, localpart: &str, password: &str) -> SynapseUser {
        let path = "/_synapse/admin/v1/register";
        let (status, body) = self.call("GET", path, None, None).await;
        assert_eq!(status, 200, "{body}");
        let nonce = body["nonce"].as_str().expect("a nonce").to_owned();
        let mut mac = Hmac::<Sha1>::new_from_slice(self.registration_secret.as_bytes()).unwrap();
        for (i, part) in [nonce.as_str(), localpart, password, "notadmin"].iter().enumerate() {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let mac = hex(&mac.finalize().into_bytes());
        let request = json!({
            "nonce": nonce, "username": localpart, "password": password, "admin": false, "mac": mac,
        });
        let (status, body) = self.call("POST", path, None, Some(request)).await;
        assert_eq!(status, 200, "{body}");
        let field = |name: &str| body[name].as_str().unwrap_or_else(|| panic!("{name}: {body}"));
        SynapseUser {
            user_id: field("user_id").to_owned(),
            access_token: field("access_token").to_owned(),
            device_id: field("device_id").to_owned(),
        }
    }

    /// The last `lines` lines of Synapse's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.dir.join("synapse.log")).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for SynapseServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // MEDRIX_KEEP_SYNAPSE_LOG keeps it after a passing test too, for Synapse's view of
        // an exchange that worked (warnings it logged without failing a request).
        if std::thread::panicking() || std::env::var_os("MEDRIX_KEEP_SYNAPSE_LOG").is_some() {
            eprintln!(
                "synapse {} log (kept in {}), last lines:\n{}",
                self.server_name,
                self.dir.display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

struct Config<'a> {
    dir: &'a Path,
    server_name: &'a str,
    federation_port: u16,
    client_port: u16,
    cert: &'a Path,
    key: &'a Path,
    ca: &'a Path,
    registration_secret: &'a str,
    /// More lines for the `federation:` section.
    federation_settings: &'a str,
}

/// Synapse's configuration for the net. Option names are checked against 1.163's
/// `synapse/config/` (`ip_range_blacklist` there, not `…blocklist`).
fn homeserver_yaml(config: &Config) -> String {
    let Config {
        dir,
        server_name,
        federation_port,
        client_port,
        cert,
        key,
        ca,
        registration_secret,
        federation_settings,
    } = config;
    let federation_settings: String =
        federation_settings.lines().map(|line| format!("  {}\n", line.trim())).collect();
    let dir = dir.display();
    // Synapse has no switch for "no rate limits": every limit far above any test.
    let unlimited = "{per_second: 1000000, burst_count: 1000000}";
    let (macaroon, form) = (random_hex(24), random_hex(24));
    format!(
        r#"server_name: "{server_name}"
pid_file: {dir}/homeserver.pid
report_stats: false
public_baseurl: http://127.0.0.1:{client_port}/
listeners:
  - port: {federation_port}
    type: http
    tls: true
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [federation]
        compress: false
  - port: {client_port}
    type: http
    tls: false
    bind_addresses: ['127.0.0.1']
    resources:
      - names: [client]
        compress: false
tls_certificate_path: {cert}
tls_private_key_path: {key}
federation_verify_certificates: true
federation_custom_ca_list: [{ca}]
# Outbound requests to loopback are blocked by default, and the whole net lives there. For a
# server named by an IP literal Synapse checks the blocklist alone (`ip_range_whitelist` is
# not consulted), so loopback must leave the blocklist itself.
ip_range_blacklist: []
# Reach a peer again within seconds after a failure, not the default ten minutes.
federation:
  client_timeout: 20s
  max_short_retry_delay: 1s
  destination_min_retry_interval: 1s
  destination_retry_multiplier: 1
  destination_max_retry_interval: 2s
{federation_settings}trusted_key_servers: []
suppress_key_server_warning: true
database:
  name: sqlite3
  args:
    database: {dir}/homeserver.db
log_config: {dir}/log.yaml
media_store_path: {dir}/media_store
signing_key_path: {dir}/signing.key
macaroon_secret_key: "{macaroon}"
form_secret: "{form}"
registration_shared_secret: "{registration_secret}"
enable_metrics: false
url_preview_enabled: false
presence:
  enabled: false
rc_message: {unlimited}
rc_registration: {unlimited}
rc_registration_token_validity: {unlimited}
rc_login:
  address: {unlimited}
  account: {unlimited}
  failed_attempts: {unlimited}
rc_joins:
  local: {unlimited}
  remote: {unlimited}
rc_joins_per_room: {unlimited}
rc_invites:
  per_room: {unlimited}
  per_user: {unlimited}
  per_issuer: {unlimited}
rc_third_party_invite: {unlimited}
rc_key_requests: {unlimited}
rc_media_create: {unlimited}
rc_presence:
  per_user: {unlimited}
rc_delayed_event_mgmt: {unlimited}
rc_room_creation: {unlimited}
rc_user_directory: {unlimited}
rc_profile: {unlimited}
rc_federation:
  window_size: 1000
  sleep_limit: 1000000
  sleep_delay: 0
  reject_limit: 1000000
  concurrent: 1000000
"#,
        cert = cert.display(),
        key = key.display(),
        ca = ca.display(),
    )
}

/// INFO to stderr, which the harness sends to `synapse.log`: each request and each
/// federation call is one line, which is what a failing interop test needs.
const LOG_YAML: &str = "version: 1
formatters:
  plain: {format: '%(asctime)s %(levelname)s %(name)s %(request)s %(message)s'}
filters:
  context: {(): synapse.logging.context.LoggingContextFilter, request: ''}
handlers:
  console: {class: logging.StreamHandler, formatter: plain, filters: [context]}
loggers:
  synapse.storage.SQL: {level: WARNING}
  twisted: {level: WARNING}
root: {level: INFO, handlers: [console]}
disable_existing_loggers: false
";

fn random_bytes(count: usize) -> Vec<u8> {
    let mut buffer = vec![0u8; count];
    std::fs::File::open("/dev/urandom").unwrap().read_exact(&mut buffer).unwrap();
    buffer
}

fn random_hex(bytes: usize) -> String {
    hex(&random_bytes(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
