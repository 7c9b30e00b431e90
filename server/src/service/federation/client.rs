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
    resolve::{DnsHook, Resolver},
};
use crate::config::Federation as FederationConfig;

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
        let plain = reqwest::Client::builder()
            .tls_certs_merge(extra_roots.clone())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| format!("HTTP client: {err}"))?;
        let resolver = Arc::new(Resolver::new(config.resolve.clone(), plain));
        let http = reqwest::Client::builder()
            .tls_certs_merge(extra_roots)
            .dns_resolver(Arc::new(DnsHook(resolver.clone())))
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|err| format!("federation HTTP client: {err}"))?;
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
