//! The server's configuration: one typed struct with defaults, read from one TOML file, with
//! the most common settings also as command-line flags (flags win over the file).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Everything `medrix serve` can be told. Every field has a default, so an empty file (or no
/// file) gives a working server for `localhost`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The server name: the part after `:` in user IDs. Cannot change once users exist.
    pub server_name: String,
    /// Where the client-server API listens.
    pub listen: SocketAddr,
    /// Where Prometheus metrics are served, if anywhere; must be a loopback address. Off by
    /// default: a fixed default port would keep a second server on the same machine from
    /// starting, and an operator who scrapes metrics names the port anyway.
    pub metrics_listen: Option<SocketAddr>,
    /// The RocksDB data directory (created if missing).
    pub data_dir: PathBuf,
    /// Registration is closed unless this token is set; clients then register with the
    /// `m.login.registration_token` stage. Never logged.
    pub registration_token: Option<String>,
    /// Per-user request rate limits. Only benchmarks and tests turn them off.
    pub rate_limits: RateLimits,
    /// Size limits on request bodies.
    pub limits: Limits,
    /// The server-server API. Off unless `listen` is set.
    pub federation: Federation,
    /// The audit trail (`spec/audit.md`).
    pub audit: Audit,
}

/// The audit trail's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Audit {
    /// How often the contract executor anchors the read logs that grew in a checkpoint event
    /// (`org.medrix.audit.checkpoint`) in their rooms. Shorter anchors sooner (a rewritten log
    /// contradicts more checkpoints) at the cost of an event per room per period.
    pub checkpoint_every_secs: u64,
}

impl Default for Audit {
    fn default() -> Self {
        Self { checkpoint_every_secs: 600 }
    }
}

/// Federation: the TLS listener other servers reach, what this server trusts when it
/// connects out, and which servers it talks to at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Federation {
    /// Where the federation API listens (TLS). The port in `server_name`, if any, is this one.
    pub listen: Option<SocketAddr>,
    /// PEM certificate chain for `server_name`, served on the federation listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    pub tls_key: Option<PathBuf>,
    /// A PEM CA certificate trusted for outbound federation, beside the system roots.
    pub ca: Option<PathBuf>,
    /// Server names this server federates with; empty means any. Healthcare networks usually
    /// run closed federations.
    pub allow: Vec<String>,
    /// Host name → IP address, consulted before DNS (tests, closed networks). Trusted as
    /// written, internal addresses included.
    pub resolve: std::collections::BTreeMap<String, std::net::IpAddr>,
    /// Whether server discovery (IP literals, DNS, `.well-known`, SRV) may yield loopback,
    /// private, link-local and other internal addresses. Off: a server name chosen by a
    /// stranger must not make this server connect into its own network. Turn on only for a
    /// closed federation on a private network whose names DNS resolves.
    pub allow_internal_addresses: bool,
    /// Key fetches one server name may cause in a burst (any request can name any origin).
    pub key_fetch_burst: u32,
    /// Past the burst, one more key fetch per server name every this many seconds.
    pub key_fetch_every_secs: u64,
}

/// Token-bucket rate limits, per user (or per client IP before login).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub enabled: bool,
    /// Requests a client may make in a burst.
    pub burst: u32,
    /// Requests per second a client may sustain.
    pub per_second: u32,
}

/// Request size limits, in bytes, and connection limits, applied to each listener (client
/// API and federation) on its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest JSON request body.
    pub max_json_body_bytes: usize,
    /// The largest media upload (encrypted attachments count at their encrypted size).
    pub max_upload_bytes: usize,
    /// Bytes of media one user may upload in all.
    pub max_media_bytes_per_user: u64,
    /// Open connections a listener accepts at once; past it, new ones are closed.
    pub max_connections: usize,
    /// Open connections from one IP address (raise it behind a reverse proxy).
    pub max_connections_per_ip: usize,
    /// Seconds a client has to send a request's headers (and an idle kept-alive
    /// connection stays open, and a TLS handshake may take).
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request's body once its headers are in.
    pub body_read_timeout_secs: u64,
    /// To-device messages waiting for one device; past it, senders are refused.
    pub max_pending_to_device_messages: usize,
    /// Bytes of to-device messages waiting for one device; past it, senders are refused.
    pub max_pending_to_device_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server_name: "localhost".to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8008)),
            metrics_listen: None,
            data_dir: PathBuf::from("medrix-data"),
            registration_token: None,
            rate_limits: RateLimits::default(),
            limits: Limits::default(),
            federation: Federation::default(),
            audit: Audit::default(),
        }
    }
}

impl Default for Federation {
    fn default() -> Self {
        Self {
            listen: None,
            tls_cert: None,
            tls_key: None,
            ca: None,
            allow: Vec::new(),
            resolve: Default::default(),
            allow_internal_addresses: false,
            key_fetch_burst: 5,
            key_fetch_every_secs: 10,
        }
    }
}

impl Default for RateLimits {
    fn default() -> Self {
        Self { enabled: true, burst: 50, per_second: 10 }
    }
}

impl Default for Limits {
    fn default() -> Self {
        // The spec's event limit is 64 KiB; a request also carries its envelope.
        Self {
            max_json_body_bytes: 1 << 20,
            max_upload_bytes: 50 << 20,
            max_media_bytes_per_user: 1 << 30,
            max_connections: 4096,
            max_connections_per_ip: 256,
            header_read_timeout_secs: 30,
            // A full-size upload at about 3.5 Mbit/s.
            body_read_timeout_secs: 120,
            max_pending_to_device_messages: 10_000,
            max_pending_to_device_bytes: 16 << 20,
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Parse { path: PathBuf, source: Box<toml::de::Error> },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file; unknown keys are errors, missing keys take their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks what the types cannot: a valid server name, metrics only on loopback.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ruma::ServerName::parse(&self.server_name).map_err(|err| {
            ConfigError::Invalid(format!("server_name {:?}: {err}", self.server_name))
        })?;
        if let Some(metrics) = self.metrics_listen
            && !metrics.ip().is_loopback()
        {
            return Err(ConfigError::Invalid(format!(
                "metrics_listen {metrics} must be a loopback address"
            )));
        }
        let federation = &self.federation;
        if federation.listen.is_some()
            && (federation.tls_cert.is_none() || federation.tls_key.is_none())
        {
            return Err(ConfigError::Invalid(
                "federation.listen needs federation.tls_cert and federation.tls_key".to_owned(),
            ));
        }
        for name in &federation.allow {
            ruma::ServerName::parse(name)
                .map_err(|err| ConfigError::Invalid(format!("federation.allow {name:?}: {err}")))?;
        }
        let limits = &self.limits;
        if limits.max_connections == 0
            || limits.max_connections_per_ip == 0
            || limits.header_read_timeout_secs == 0
            || limits.body_read_timeout_secs == 0
        {
            return Err(ConfigError::Invalid(
                "limits: connection counts and timeouts must be above 0".to_owned(),
            ));
        }
        if self.registration_token.as_deref().is_some_and(str::is_empty) {
            return Err(ConfigError::Invalid("registration_token must not be empty".to_owned()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../medrix.example.toml");

    #[test]
    fn the_example_config_parses_and_documents_the_defaults() {
        let example = Config::from_toml(EXAMPLE).expect("example config parses");
        // The example shows how to open registration; everything else is the default.
        let expected = Config {
            registration_token: Some("change-me-to-a-long-random-secret".to_owned()),
            ..Config::default()
        };
        // The federation table is commented out in the example: off by default.
        assert_eq!(example, expected);
    }

    /// `key = value` with a bare or quoted key, as opposed to a prose comment.
    fn is_setting(line: &str) -> bool {
        let Some((key, _)) = line.split_once(" = ") else { return false };
        let bare = !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        let quoted = key.len() > 2 && key.starts_with('"') && key.ends_with('"');
        bare || quoted
    }

    #[test]
    fn the_example_config_names_every_setting() {
        fn keys(value: &toml::Value, prefix: &str, out: &mut Vec<String>) {
            if let toml::Value::Table(table) = value {
                for (key, value) in table {
                    let path = format!("{prefix}{key}");
                    keys(value, &format!("{path}."), out);
                    out.push(path);
                }
            }
        }
        let full = Config {
            registration_token: Some("x".into()),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9108))),
            federation: Federation {
                listen: Some(SocketAddr::from(([0, 0, 0, 0], 8448))),
                tls_cert: Some("c".into()),
                tls_key: Some("k".into()),
                ca: Some("ca".into()),
                allow: vec!["a".into()],
                resolve: [("clinic.example".to_owned(), std::net::IpAddr::from([10, 0, 0, 7]))]
                    .into(),
                allow_internal_addresses: true,
                ..Federation::default()
            },
            ..Config::default()
        };
        // Settings off by default are documented as commented-out examples: count those too.
        let uncommented: String = EXAMPLE
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if is_setting(rest) => rest,
                _ => line,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let (mut documented, mut all) = (Vec::new(), Vec::new());
        keys(&toml::from_str(&uncommented).unwrap(), "", &mut documented);
        keys(&toml::Value::try_from(&full).unwrap(), "", &mut all);
        documented.sort();
        all.sort();
        assert_eq!(documented, all);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::from_toml("server_nmae = \"x\"").is_err());
        assert!(Config::from_toml("listen = \"not an address\"").is_err());
        let remote_metrics = Config::from_toml("metrics_listen = \"0.0.0.0:9108\"").unwrap();
        assert!(remote_metrics.validate().is_err());
        let bad_name = Config::from_toml("server_name = \"bad name\"").unwrap();
        assert!(bad_name.validate().is_err());
        assert!(Config::default().validate().is_ok());
    }
}
