//! Other servers' read logs of a record's rooms, fetched for the record's patient: each
//! Medrix server in a room logs the reads its own users make there (`spec/audit.md` §4), and
//! answers the patient's server with them
//! (`GET /_medrix/federation/v1/rooms/{roomId}/read_log`).

use ruma::{OwnedRoomId, ServerName};
use serde_json::Value;

use super::{FederationError, client::FederationClient};

/// A page of `server`'s read log of `room_id`, as it answered (`entries`, `next`, `head`).
pub async fn fetch(
    client: &FederationClient,
    server: &ServerName,
    room_id: OwnedRoomId,
    from: u64,
    limit: u64,
) -> Result<Value, FederationError> {
    let page = client.send(server, request::Request { room_id, from, limit }).await?;
    Ok(page.body)
}

mod request {
    use ruma::{
        OwnedRoomId,
        api::{
            EndpointError, IncomingResponse, Metadata, OutgoingRequest,
            auth_scheme::AuthScheme,
            error::{Error, FromHttpResponseError, IntoHttpError},
            federation::authentication::{ServerSignatures, ServerSignaturesInput},
            metadata,
        },
    };
    use serde_json::Value;

    metadata! {
        method: GET,
        rate_limited: false,
        authentication: ServerSignatures,
        path: "/_medrix/federation/v1/rooms/{room_id}/read_log",
    }

    #[derive(Clone)]
    pub struct Request {
        pub room_id: OwnedRoomId,
        pub from: u64,
        pub limit: u64,
    }

    pub struct Response {
        pub body: Value,
    }

    impl OutgoingRequest for Request {
        type EndpointError = Error;
        type IncomingResponse = Response;

        fn try_into_http_request<T: Default + bytes::BufMut + AsRef<[u8]>>(
            self,
            base_url: &str,
            authentication_input: ServerSignaturesInput<'_>,
            path_builder_input: (),
        ) -> Result<http::Request<T>, IntoHttpError> {
            let query = format!("from={}&limit={}", self.from, self.limit);
            let url =
                Self::make_endpoint_url(path_builder_input, base_url, &[&self.room_id], &query)?;
            let mut request =
                http::Request::builder().method(Self::METHOD).uri(url).body(T::default())?;
            ServerSignatures::add_authentication(&mut request, authentication_input)
                .map_err(|error| IntoHttpError::Authentication(error.into()))?;
            Ok(request)
        }
    }

    impl IncomingResponse for Response {
        type EndpointError = Error;

        fn try_from_http_response<T: AsRef<[u8]>>(
            response: http::Response<T>,
        ) -> Result<Self, FromHttpResponseError<Error>> {
            if !response.status().is_success() {
                return Err(FromHttpResponseError::Server(Error::from_http_response(response)));
            }
            Ok(Self { body: serde_json::from_slice(response.body().as_ref())? })
        }
    }
}
