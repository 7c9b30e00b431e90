//! Server discovery, in the spec's order: an IP literal; a host with an explicit port; the
//! host's `/.well-known/matrix/server` delegation; an SRV record `_matrix-fed._tcp`; else
//! the host on port 8448. Host names go through the configured overrides before DNS, so
//! tests and closed networks need no DNS at all.
//!
//! The result names the host to put in the URL (and so in TLS SNI and `Host`) and, where
//! discovery found them, the addresses to connect to for it.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use ruma::{OwnedServerName, ServerName};

use super::FederationError;
use crate::locks::LockExt;

const DEFAULT_PORT: u16 = 8448;
/// How long a discovery result is reused.
const CACHE_FOR: Duration = Duration::from_secs(10 * 60);
/// The most destinations remembered.
const MAX_CACHED: usize = 10_000;
/// The largest `.well-known` document read.
const MAX_WELL_KNOWN_BYTES: usize = 16 * 1024;

/// Where to send requests for a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Host for the URL, TLS SNI and `Host` header (an IP literal in brackets for IPv6).
    pub host: String,
    pub port: u16,
    /// Addresses for `host`, when discovery decided them (SRV targets, overrides).
    pub addresses: Vec<IpAddr>,
}

impl Destination {
    pub fn base_url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

/// A server name split into host and optional port.
pub fn split_server_name(server: &ServerName) -> (String, Option<u16>) {
    let text = server.as_str();
    if let Some(rest) = text.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let (address, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (format!("[{address}]"), port);
    }
    match text.rsplit_once(':') {
        Some((host, port)) => match port.parse() {
            Ok(port) => (host.to_owned(), Some(port)),
            Err(_) => (text.to_owned(), None),
        },
        None => (text.to_owned(), None),
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

pub struct Resolver {
    overrides: BTreeMap<String, IpAddr>,
    dns: Option<TokioResolver>,
    /// For `.well-known` lookups (HTTPS on port 443, certificate checked).
    http: reqwest::Client,
    cache: Mutex<HashMap<OwnedServerName, (Instant, Destination)>>,
    /// Addresses discovery chose per URL host, which the HTTP client's DNS hook serves.
    pinned: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl Resolver {
    pub fn new(overrides: BTreeMap<String, IpAddr>, http: reqwest::Client) -> Self {
        let dns = TokioResolver::builder_tokio().ok().map(|builder| builder.build());
        Self {
            overrides,
            dns,
            http,
            cache: Mutex::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
        }
    }

    /// Where `server` is reached.
    pub async fn resolve(&self, server: &ServerName) -> Result<Destination, FederationError> {
        if let Some((at, destination)) = self.cache.locked().get(server)
            && at.elapsed() < CACHE_FOR
        {
            return Ok(destination.clone());
        }
        let destination = self.discover(server).await?;
        let mut cache = self.cache.locked();
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_FOR);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(server.to_owned(), (Instant::now(), destination.clone()));
        drop(cache);
        if !destination.addresses.is_empty() {
            let mut pinned = self.pinned.locked();
            if pinned.len() >= MAX_CACHED {
                pinned.clear();
            }
            pinned.insert(destination.host.clone(), destination.addresses.clone());
        }
        Ok(destination)
    }

    /// Forgets a destination (after a connection failure, discovery runs again).
    pub fn forget(&self, server: &ServerName) {
        self.cache.locked().remove(server);
    }

    async fn discover(&self, server: &ServerName) -> Result<Destination, FederationError> {
        let (host, port) = split_server_name(server);
        if let Some(ip) = ip_literal(&host) {
            return Ok(Destination {
                host,
                port: port.unwrap_or(DEFAULT_PORT),
                addresses: vec![ip],
            });
        }
        if let Some(port) = port {
            return self.direct(server, &host, port).await;
        }
        if let Some(delegated) = self.well_known(&host).await {
            let delegated_name =
                ServerName::parse(&delegated).map_err(|err| FederationError::Unresolvable {
                    server: server.to_owned(),
                    why: format!("well-known names {delegated:?}: {err}"),
                })?;
            let (delegated_host, delegated_port) = split_server_name(&delegated_name);
            if let Some(ip) = ip_literal(&delegated_host) {
                return Ok(Destination {
                    host: delegated_host,
                    port: delegated_port.unwrap_or(DEFAULT_PORT),
                    addresses: vec![ip],
                });
            }
            if let Some(port) = delegated_port {
                return self.direct(server, &delegated_host, port).await;
            }
            return self.srv_or_default(server, &delegated_host).await;
        }
        self.srv_or_default(server, &host).await
    }

    async fn direct(
        &self,
        server: &ServerName,
        host: &str,
        port: u16,
    ) -> Result<Destination, FederationError> {
        let addresses = self.addresses(server, host).await?;
        Ok(Destination { host: host.to_owned(), port, addresses })
    }

    /// SRV `_matrix-fed._tcp.<host>`, else `<host>:8448`. The URL keeps `host` (the
    /// certificate is for it); the connection goes to the SRV target's addresses.
    async fn srv_or_default(
        &self,
        server: &ServerName,
        host: &str,
    ) -> Result<Destination, FederationError> {
        if !self.overrides.contains_key(host)
            && let Some(dns) = &self.dns
            && let Ok(records) = dns.srv_lookup(format!("_matrix-fed._tcp.{host}.")).await
            && let Some(record) =
                records.iter().min_by_key(|r| (r.priority(), u16::MAX - r.weight()))
        {
            let target = record.target().to_utf8();
            let target = target.trim_end_matches('.');
            let addresses = self.addresses(server, target).await?;
            return Ok(Destination { host: host.to_owned(), port: record.port(), addresses });
        }
        self.direct(server, host, DEFAULT_PORT).await
    }

    async fn addresses(
        &self,
        server: &ServerName,
        host: &str,
    ) -> Result<Vec<IpAddr>, FederationError> {
        if let Some(ip) = self.overrides.get(host) {
            return Ok(vec![*ip]);
        }
        let unresolvable =
            |why: String| FederationError::Unresolvable { server: server.to_owned(), why };
        let dns =
            self.dns.as_ref().ok_or_else(|| unresolvable("no DNS resolver configured".into()))?;
        let found = dns.lookup_ip(host).await.map_err(|err| unresolvable(err.to_string()))?;
        let addresses: Vec<IpAddr> = found.iter().collect();
        if addresses.is_empty() {
            return Err(unresolvable(format!("{host} has no address")));
        }
        Ok(addresses)
    }

    /// The `m.server` a host delegates to, if it serves a usable `.well-known` document.
    async fn well_known(&self, host: &str) -> Option<String> {
        let url = format!("https://{host}/.well-known/matrix/server");
        let response = self.http.get(url).timeout(Duration::from_secs(5)).send().await.ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.bytes().await.ok()?;
        if body.len() > MAX_WELL_KNOWN_BYTES {
            return None;
        }
        let document: serde_json::Value = serde_json::from_slice(&body).ok()?;
        document["m.server"].as_str().map(ToOwned::to_owned)
    }

    /// Addresses for a URL host: what discovery chose, an override, or DNS.
    async fn lookup_for_connection(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(addresses) = self.pinned.locked().get(host) {
            return Ok(addresses.clone());
        }
        if let Some(ip) = self.overrides.get(host) {
            return Ok(vec![*ip]);
        }
        let dns = self.dns.as_ref().ok_or("no DNS resolver configured")?;
        let found = dns.lookup_ip(host).await.map_err(|err| err.to_string())?;
        Ok(found.iter().collect())
    }
}

/// The HTTP client's name resolution, answered by discovery's choices (see [`Resolver`]).
pub struct DnsHook(pub Arc<Resolver>);

impl reqwest::dns::Resolve for DnsHook {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            let addresses = resolver.lookup_for_connection(name.as_str()).await?;
            // The port is replaced by the URL's.
            let addrs: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| std::net::SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(name: &str) -> (String, Option<u16>) {
        split_server_name(&ServerName::parse(name).unwrap())
    }

    #[test]
    fn server_names_split_into_host_and_port() {
        assert_eq!(split("hospital.example"), ("hospital.example".into(), None));
        assert_eq!(split("hospital.example:8449"), ("hospital.example".into(), Some(8449)));
        assert_eq!(split("127.0.0.1:8448"), ("127.0.0.1".into(), Some(8448)));
        assert_eq!(split("[::1]:8448"), ("[::1]".into(), Some(8448)));
        assert_eq!(split("[::1]"), ("[::1]".into(), None));
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("hospital.example"), None);
    }

    #[tokio::test]
    async fn literals_and_explicit_ports_skip_delegation() {
        let overrides = [("clinic.test".to_owned(), IpAddr::from([127, 0, 0, 2]))].into();
        let resolver = Resolver::new(overrides, reqwest::Client::new());
        let ip = resolver.resolve(&ServerName::parse("127.0.0.1:9000").unwrap()).await.unwrap();
        assert_eq!(
            (ip.base_url(), ip.addresses),
            ("https://127.0.0.1:9000".into(), vec![IpAddr::from([127, 0, 0, 1])])
        );
        let named =
            resolver.resolve(&ServerName::parse("clinic.test:9001").unwrap()).await.unwrap();
        assert_eq!(
            (named.base_url(), named.addresses),
            ("https://clinic.test:9001".into(), vec![IpAddr::from([127, 0, 0, 2])])
        );
    }
}
