//! Server discovery, in the spec's order: an IP literal; a host with an explicit port; the
//! host's `/.well-known/matrix/server` delegation; an SRV record `_matrix-fed._tcp`; else
//! the host on port 8448. Host names go through the configured overrides before DNS, so
//! tests and closed networks need no DNS at all.
//!
//! The result names the host to put in the URL (and so in TLS SNI and `Host`) and, where
//! discovery found them, the addresses to connect to for it.
//!
//! Whatever discovery finds (an IP literal, DNS answers for a name, a `.well-known`
//! delegation or an SRV target) must be a public address ([`is_public`]) unless the
//! configuration allows internal ones; the overrides, written by the operator, are trusted as
//! they are. `.well-known` lookups follow no redirects and read at most
//! [`MAX_WELL_KNOWN_BYTES`].

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hickory_resolver::TokioResolver;
use ruma::{OwnedServerName, ServerName};

use super::{FederationError, public_address::is_public};
use crate::locks::LockExt;

const DEFAULT_PORT: u16 = 8448;
/// How long a discovery result is reused.
const CACHE_FOR: Duration = Duration::from_secs(10 * 60);
/// The most destinations remembered.
const MAX_CACHED: usize = 10_000;
/// The largest `.well-known` document read; reading stops past it.
pub const MAX_WELL_KNOWN_BYTES: usize = 64 * 1024;
/// The longest a `.well-known` lookup may take, answer included.
const WELL_KNOWN_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Host name to addresses: the operator's overrides as they are, else DNS with internal
/// addresses removed (unless allowed). Every outbound connection's addresses come from here.
pub struct AddressLookup {
    overrides: BTreeMap<String, IpAddr>,
    dns: Option<TokioResolver>,
    /// Internal addresses are allowed too (a closed network on private addresses).
    allow_internal: bool,
}

impl AddressLookup {
    pub fn new(overrides: BTreeMap<String, IpAddr>, allow_internal: bool) -> Self {
        let dns = TokioResolver::builder_tokio().ok().map(|builder| builder.build());
        Self { overrides, dns, allow_internal }
    }

    /// Whether discovery may hand out `ip`, an address not from the overrides.
    fn permits(&self, ip: IpAddr) -> bool {
        self.allow_internal || is_public(ip)
    }

    /// The addresses to connect to for `host`; an error when there are none allowed.
    async fn lookup(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(ip) = self.overrides.get(host) {
            return Ok(vec![*ip]);
        }
        let dns = self.dns.as_ref().ok_or("no DNS resolver configured")?;
        let found = dns.lookup_ip(host).await.map_err(|err| err.to_string())?;
        self.allowed(host, found.iter().collect())
    }

    /// The addresses DNS gave for `host` that connections may go to.
    fn allowed(&self, host: &str, found: Vec<IpAddr>) -> Result<Vec<IpAddr>, String> {
        if found.is_empty() {
            return Err(format!("{host} has no address"));
        }
        let allowed: Vec<IpAddr> = found.into_iter().filter(|ip| self.permits(*ip)).collect();
        if allowed.is_empty() {
            return Err(format!("{host} has only internal addresses"));
        }
        Ok(allowed)
    }

    /// The client for `.well-known` lookups: HTTPS with `roots` beside the system's, names
    /// resolved here, no redirects (one could point anywhere), a timeout.
    pub fn well_known_client(
        self: &Arc<Self>,
        roots: Vec<reqwest::Certificate>,
    ) -> Result<reqwest::Client, String> {
        reqwest::Client::builder()
            .tls_certs_merge(roots)
            .dns_resolver(Arc::new(LookupHook(self.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(WELL_KNOWN_TIMEOUT)
            .build()
            .map_err(|err| format!("HTTP client: {err}"))
    }
}

pub struct Resolver {
    lookup: Arc<AddressLookup>,
    /// For `.well-known` lookups (HTTPS on port 443, certificate checked).
    http: reqwest::Client,
    cache: Mutex<HashMap<OwnedServerName, (Instant, Destination)>>,
    /// Addresses discovery chose per URL host, which the HTTP client's DNS hook serves.
    pinned: Mutex<HashMap<String, Vec<IpAddr>>>,
}

impl Resolver {
    pub fn new(lookup: Arc<AddressLookup>, http: reqwest::Client) -> Self {
        Self { lookup, http, cache: Mutex::new(HashMap::new()), pinned: Mutex::new(HashMap::new()) }
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

    /// An IP literal's address, if discovery may use it.
    fn literal(&self, server: &ServerName, ip: IpAddr) -> Result<Vec<IpAddr>, FederationError> {
        match self.lookup.permits(ip) {
            true => Ok(vec![ip]),
            false => Err(FederationError::Unresolvable {
                server: server.to_owned(),
                why: format!("{ip} is an internal address"),
            }),
        }
    }

    async fn discover(&self, server: &ServerName) -> Result<Destination, FederationError> {
        let (host, port) = split_server_name(server);
        if let Some(ip) = ip_literal(&host) {
            let addresses = self.literal(server, ip)?;
            return Ok(Destination { host, port: port.unwrap_or(DEFAULT_PORT), addresses });
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
                let addresses = self.literal(server, ip)?;
                return Ok(Destination {
                    host: delegated_host,
                    port: delegated_port.unwrap_or(DEFAULT_PORT),
                    addresses,
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
        if !self.lookup.overrides.contains_key(host)
            && let Some(dns) = &self.lookup.dns
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
        self.lookup
            .lookup(host)
            .await
            .map_err(|why| FederationError::Unresolvable { server: server.to_owned(), why })
    }

    /// The `m.server` a host delegates to, if it serves a usable `.well-known` document.
    async fn well_known(&self, host: &str) -> Option<String> {
        fetch_well_known(&self.http, &format!("https://{host}/.well-known/matrix/server")).await
    }

    /// Addresses for a URL host: what discovery chose, else the lookup's.
    async fn lookup_for_connection(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        if let Some(addresses) = self.pinned.locked().get(host) {
            return Ok(addresses.clone());
        }
        self.lookup.lookup(host).await
    }
}

/// The `m.server` of the `.well-known` document at `url`, if it answers one in time and
/// within [`MAX_WELL_KNOWN_BYTES`]; the body is read chunk by chunk, never past the cap.
async fn fetch_well_known(http: &reqwest::Client, url: &str) -> Option<String> {
    let mut response = http.get(url).send().await.ok()?;
    if !response.status().is_success()
        || response.content_length().is_some_and(|len| len > MAX_WELL_KNOWN_BYTES as u64)
    {
        return None;
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.ok()? {
        if body.len() + chunk.len() > MAX_WELL_KNOWN_BYTES {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    let document: serde_json::Value = serde_json::from_slice(&body).ok()?;
    document["m.server"].as_str().map(ToOwned::to_owned)
}

fn socket_addresses(addresses: Vec<IpAddr>) -> reqwest::dns::Addrs {
    // The port is replaced by the URL's.
    Box::new(
        addresses
            .into_iter()
            .map(|ip| std::net::SocketAddr::new(ip, 0))
            .collect::<Vec<_>>()
            .into_iter(),
    )
}

/// The federation client's name resolution, answered by discovery's choices (see
/// [`Resolver`]).
pub struct DnsHook(pub Arc<Resolver>);

impl reqwest::dns::Resolve for DnsHook {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.0.clone();
        Box::pin(async move {
            Ok(socket_addresses(resolver.lookup_for_connection(name.as_str()).await?))
        })
    }
}

/// The `.well-known` client's name resolution: the lookup's, internal addresses removed.
struct LookupHook(Arc<AddressLookup>);

impl reqwest::dns::Resolve for LookupHook {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let lookup = self.0.clone();
        Box::pin(async move { Ok(socket_addresses(lookup.lookup(name.as_str()).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::federation::test_http::{canned_server, ok_json};

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

    fn lookup(allow_internal: bool) -> Arc<AddressLookup> {
        let overrides = [("clinic.test".to_owned(), IpAddr::from([127, 0, 0, 2]))].into();
        Arc::new(AddressLookup::new(overrides, allow_internal))
    }

    async fn resolve(resolver: &Resolver, name: &str) -> Result<Destination, FederationError> {
        resolver.resolve(&ServerName::parse(name).unwrap()).await
    }

    #[tokio::test]
    async fn literals_and_explicit_ports_skip_delegation() {
        let resolver = Resolver::new(lookup(true), reqwest::Client::new());
        let ip = resolve(&resolver, "127.0.0.1:9000").await.unwrap();
        assert_eq!(
            (ip.base_url(), ip.addresses),
            ("https://127.0.0.1:9000".into(), vec![IpAddr::from([127, 0, 0, 1])])
        );
        let named = resolve(&resolver, "clinic.test:9001").await.unwrap();
        assert_eq!(
            (named.base_url(), named.addresses),
            ("https://clinic.test:9001".into(), vec![IpAddr::from([127, 0, 0, 2])])
        );
    }

    #[tokio::test]
    async fn internal_ip_literals_are_refused_but_overrides_are_trusted() {
        let resolver = Resolver::new(lookup(false), reqwest::Client::new());
        for name in ["127.0.0.1:9000", "10.0.0.7:8448", "169.254.169.254", "[::1]:8448"] {
            let refused = resolve(&resolver, name).await;
            assert!(
                matches!(refused, Err(FederationError::Unresolvable { .. })),
                "{name}: {refused:?}"
            );
        }
        for name in ["[::ffff:127.0.0.1]:8448", "0.0.0.0:8448", "[fe80::1]:8448"] {
            assert!(resolve(&resolver, name).await.is_err(), "{name} resolved");
        }
        // The operator's override points at loopback on purpose (tests, closed networks).
        let named = resolve(&resolver, "clinic.test:9001").await.unwrap();
        assert_eq!(named.addresses, vec![IpAddr::from([127, 0, 0, 2])]);
    }

    #[tokio::test]
    async fn dns_answers_lose_their_internal_addresses() {
        let strict = lookup(false);
        let mixed = vec![IpAddr::from([10, 0, 0, 1]), IpAddr::from([93, 184, 216, 34])];
        assert_eq!(strict.allowed("h", mixed.clone()), Ok(vec![IpAddr::from([93, 184, 216, 34])]));
        let internal: Vec<IpAddr> =
            vec![IpAddr::from([127, 0, 0, 1]), "::ffff:192.168.0.1".parse().unwrap()];
        assert!(strict.allowed("h", internal.clone()).is_err());
        assert!(strict.allowed("h", vec![]).is_err());
        assert_eq!(lookup(true).allowed("h", internal.clone()), Ok(internal));
    }

    #[tokio::test]
    async fn well_known_redirects_are_not_followed() {
        let (target, target_hits) =
            canned_server(ok_json(br#"{"m.server": "elsewhere.test:443"}"#), false).await;
        let redirect = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://{target}/.well-known/matrix/server\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let (redirecting, _) = canned_server(redirect.into_bytes(), false).await;
        let client = lookup(false).well_known_client(vec![]).unwrap();
        let url = format!("http://{redirecting}/.well-known/matrix/server");
        assert_eq!(fetch_well_known(&client, &url).await, None);
        assert_eq!(target_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // The target itself answers: the test would see a followed redirect.
        let direct = format!("http://{target}/.well-known/matrix/server");
        assert_eq!(fetch_well_known(&client, &direct).await.as_deref(), Some("elsewhere.test:443"));
    }

    #[tokio::test]
    async fn an_oversized_well_known_body_is_dropped_as_soon_as_it_passes_the_cap() {
        // No length announced; more than the cap sent; then the connection stays open.
        let mut huge = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b' ', MAX_WELL_KNOWN_BYTES + 1));
        let (server, _) = canned_server(huge, true).await;
        let client = lookup(false).well_known_client(vec![]).unwrap();
        let started = Instant::now();
        let url = format!("http://{server}/.well-known/matrix/server");
        assert_eq!(fetch_well_known(&client, &url).await, None);
        assert!(started.elapsed() < WELL_KNOWN_TIMEOUT / 2, "read on: {:?}", started.elapsed());
    }
}
