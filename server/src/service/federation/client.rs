//! Outbound federation requests: discovery, TLS (system roots plus an optional federation
//! CA), X-Matrix signing by ruma with this server's key, typed responses.

use std::{sync::Arc, time::Duration};

use ruma::{
    OwnedServerName, ServerName,
    api::{
        IncomingResponse, OutgoingRequest, auth_scheme::AuthScheme,
        federation::authentication::ServerSignaturesInput, path_builder::PathBuilder,
    },
    signatures::Ed25519KeyPair,
};

use super::{
    FederationError, Policy,
    resolve::{AddressLookup, DnsHook, Resolver},
};
use crate::config::Federation as FederationConfig;

/// The HTTP client for federation requests: names resolved by discovery, no redirects (a
/// peer must not steer this server's signed requests elsewhere), bounded in time. Idle
/// connections are dropped before a peer's own idle timeout would close them under a
/// request.
fn federation_http(
    roots: Vec<reqwest::Certificate>,
    resolver: Arc<Resolver>,
) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .tls_certs_merge(roots)
        .dns_resolver(Arc::new(DnsHook(resolver)))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(20))
        .build()
        .map_err(|err| format!("federation HTTP client: {err}"))
}

/// The longest a request to another server may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response body read from another server.
const MAX_RESPONSE_BYTES: usize = 32 << 20;

pub struct FederationClient {
    http: reqwest::Client,
    pub resolver: Arc<Resolver>,
    origin: OwnedServerName,
    key_pair: Ed25519KeyPair,
    pub policy: Policy,
}

impl FederationClient {
    pub fn new(
        config: &FederationConfig,
        origin: OwnedServerName,
        key_pair: Ed25519KeyPair,
    ) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let mut extra_roots = Vec::new();
        if let Some(ca) = &config.ca {
            let pem = std::fs::read(ca).map_err(|err| format!("{}: {err}", ca.display()))?;
            extra_roots.push(
                reqwest::Certificate::from_pem(&pem)
                    .map_err(|err| format!("{}: {err}", ca.display()))?,
            );
        }
        let lookup =
            Arc::new(AddressLookup::new(config.resolve.clone(), config.allow_internal_addresses));
        let well_known = lookup.well_known_client(extra_roots.clone())?;
        let resolver = Arc::new(Resolver::new(lookup, well_known));
        let http = federation_http(extra_roots, resolver.clone())?;
        Ok(Self { http, resolver, origin, key_pair, policy: Policy::new(&config.allow) })
    }

    pub fn origin(&self) -> &ServerName {
        &self.origin
    }

    /// Sends a signed request to `destination` and parses the typed answer.
    pub async fn send<T>(
        &self,
        destination: &ServerName,
        request: T,
    ) -> Result<T::IncomingResponse, FederationError>
    where
        T: OutgoingRequest + Send,
        for<'a> T::Authentication: AuthScheme<Input<'a> = ServerSignaturesInput<'a>>,
        for<'a> T::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        self.send_with_body(destination, request, None).await
    }

    /// [`Self::send`], with `body` sent in place of ruma's encoding of the request's body.
    /// `body` must be the same JSON (the signature covers its canonical form); given in
    /// canonical form, the destination can check the signature on the bytes as sent,
    /// without encoding them again.
    pub async fn send_with_body<T>(
        &self,
        destination: &ServerName,
        request: T,
        body: Option<Vec<u8>>,
    ) -> Result<T::IncomingResponse, FederationError>
    where
        T: OutgoingRequest + Send,
        for<'a> T::Authentication: AuthScheme<Input<'a> = ServerSignaturesInput<'a>>,
        for<'a> T::PathBuilder: PathBuilder<Input<'a> = ()>,
    {
        self.policy.check(destination)?;
        let base = self.resolver.resolve(destination).await?.base_url();
        let signing =
            ServerSignaturesInput::new(self.origin.clone(), destination.to_owned(), &self.key_pair);
        let mut request: http::Request<Vec<u8>> = request
            .try_into_http_request(&base, signing, ())
            .map_err(|err| FederationError::BadResponse {
                server: destination.to_owned(),
                why: format!("building the request: {err}"),
            })?;
        if let Some(body) = body {
            *request.body_mut() = body;
        }
        let response = self.execute(destination, request).await?;
        T::IncomingResponse::try_from_http_response(response).map_err(|err| {
            FederationError::BadResponse { server: destination.to_owned(), why: err.to_string() }
        })
    }

    /// An unauthenticated GET (key documents), answering the body of a 200.
    pub async fn get_unsigned(
        &self,
        destination: &ServerName,
        path: &str,
    ) -> Result<Vec<u8>, FederationError> {
        self.policy.check(destination)?;
        let base = self.resolver.resolve(destination).await?.base_url();
        let request =
            http::Request::get(format!("{base}{path}")).body(Vec::new()).map_err(|err| {
                FederationError::Unreachable {
                    server: destination.to_owned(),
                    why: err.to_string(),
                }
            })?;
        Ok(self.execute(destination, request).await?.into_body())
    }

    async fn execute(
        &self,
        destination: &ServerName,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, FederationError> {
        let request =
            reqwest::Request::try_from(request).map_err(|err| FederationError::BadResponse {
                server: destination.to_owned(),
                why: format!("building the request: {err}"),
            })?;
        let unreachable = |err: reqwest::Error| FederationError::Unreachable {
            server: destination.to_owned(),
            why: err.to_string(),
        };
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(err) => {
                self.resolver.forget(destination);
                return Err(unreachable(err));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(FederationError::BadResponse {
                    server: destination.to_owned(),
                    why: format!("answer over {MAX_RESPONSE_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            return Err(FederationError::Refused {
                server: destination.to_owned(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        let mut out = http::Response::builder().status(status);
        for (name, value) in &headers {
            out = out.header(name, value);
        }
        out.body(body).map_err(|err| FederationError::BadResponse {
            server: destination.to_owned(),
            why: err.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::service::federation::test_http::{canned_server, ok_json};

    #[tokio::test]
    async fn federation_requests_do_not_follow_redirects() {
        let (target, target_hits) = canned_server(ok_json(b"{}"), false).await;
        let redirect = format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: http://{target}/\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let (redirecting, _) = canned_server(redirect.into_bytes(), false).await;
        let lookup = Arc::new(AddressLookup::new(Default::default(), false));
        let resolver = Arc::new(Resolver::new(lookup, reqwest::Client::new()));
        let http = federation_http(vec![], resolver).unwrap();
        let url = format!("http://{redirecting}/_matrix/key/v2/server");
        let response = http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 307);
        assert_eq!(target_hits.load(Ordering::SeqCst), 0, "the redirect was followed");
    }
}
