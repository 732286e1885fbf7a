//! One logical connection to one broker: typed Kafka requests in, typed responses out.
//!
//! [`Connection`] encodes the request header and body with `kafka-protocol`, stamps a
//! correlation id, hands the frame to a [`FrameTransport`] (plain TCP or the libp2p mesh),
//! checks the correlation id of the answer and decodes it. Several requests may be in flight
//! at once (pipelining); each has its own timeout, after which the connection is closed (as the
//! Java client does: a late answer would otherwise be matched to nothing useful).

pub mod mesh;
pub mod tcp;
pub mod versions;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use tracing::{debug, trace};

use crate::error::{Error, Result};
pub use versions::{CLIENT_VERSIONS, NegotiatedVersions, api_name};

/// Where a broker is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// Kafka protocol over TCP at `host:port`.
    Kafka(String),
    /// The libp2p mesh: the peer id (base58) and the addresses to dial it at.
    Mesh { peer: String, addr: Option<String> },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Kafka(a) => write!(f, "{a}"),
            Endpoint::Mesh {
                peer,
                addr: Some(a),
            } => write!(f, "{a}/p2p/{peer}"),
            Endpoint::Mesh { peer, addr: None } => write!(f, "/p2p/{peer}"),
        }
    }
}

/// Moves whole frames (request header + body, no size prefix) to a broker and back.
///
/// Implementations must deliver requests in the order `call` is invoked, and resolve each call
/// with its own response frame. `expect_response == false` (acks=0 produce) resolves with `None`
/// once the frame is handed to the network.
pub trait FrameTransport: Send + Sync + 'static {
    /// Sends one frame.
    fn call(
        &self,
        frame: Bytes,
        expect_response: bool,
    ) -> BoxFuture<'static, Result<Option<Bytes>>>;
    /// Sends one frame that must be answered within `timeout` (the transport may end the
    /// request then; by default it leaves that to the caller).
    fn call_within(
        &self,
        frame: Bytes,
        expect_response: bool,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Option<Bytes>>> {
        let _ = timeout;
        self.call(frame, expect_response)
    }
    /// Whether the transport is known to be unusable (the pool then reconnects).
    fn is_closed(&self) -> bool;
    /// Closes the transport; pending calls fail.
    fn close(&self);
}

/// Settings shared by every connection of a client.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` in every request header.
    pub client_id: String,
    /// Per-request timeout (`request.timeout.ms`, default 30 s).
    pub request_timeout: Duration,
    /// Largest response frame accepted (default 100 MiB).
    pub max_frame_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: "rafka".to_owned(),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: 100 * 1024 * 1024,
        }
    }
}

/// A negotiated connection to one broker. Cheap to share (`Arc<Connection>`).
pub struct Connection {
    transport: Arc<dyn FrameTransport>,
    endpoint: Endpoint,
    versions: NegotiatedVersions,
    next_correlation: AtomicI32,
    client_id: StrBytes,
    timeout: Duration,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Opens a transport to `endpoint` and negotiates versions with ApiVersions.
    ///
    /// Mesh endpoints need the client's mesh node (`mesh`).
    pub async fn open(
        endpoint: Endpoint,
        config: &ConnectionConfig,
        mesh: Option<&mesh::MeshNode>,
    ) -> Result<Connection> {
        let transport: Arc<dyn FrameTransport> = match &endpoint {
            Endpoint::Kafka(addr) => Arc::new(tcp::TcpTransport::connect(addr, config).await?),
            Endpoint::Mesh { peer, .. } => {
                let mesh = mesh.ok_or_else(|| Error::Mesh("no mesh node started".into()))?;
                Arc::new(mesh.transport(peer)?)
            }
        };
        Connection::negotiate(transport, endpoint, config).await
    }

    /// Wraps a transport and runs the ApiVersions handshake over it.
    pub async fn negotiate(
        transport: Arc<dyn FrameTransport>,
        endpoint: Endpoint,
        config: &ConnectionConfig,
    ) -> Result<Connection> {
        let mut conn = Connection::with_versions(
            transport,
            endpoint,
            NegotiatedVersions::client_max(),
            config,
        );
        let response = conn.api_versions(versions::API_VERSIONS_MAX).await?;
        let response = match response.error_code {
            0 => response,
            35 => {
                // KIP-511: the broker answered v0 with its own range for ApiVersions.
                let theirs = response
                    .api_keys
                    .iter()
                    .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                    .map(|k| k.max_version)
                    .unwrap_or(0);
                conn.api_versions(theirs.clamp(0, versions::API_VERSIONS_MAX))
                    .await?
            }
            code => {
                return Err(Error::broker("ApiVersions", code, None)
                    .unwrap_or_else(|| Error::protocol("ApiVersions failed")));
            }
        };
        conn.versions = NegotiatedVersions::from_response(&response);
        debug!(endpoint = %conn.endpoint, ?conn.versions, "negotiated api versions");
        Ok(conn)
    }

    /// A connection with fixed versions and no handshake (fake transports in tests).
    pub fn with_versions(
        transport: Arc<dyn FrameTransport>,
        endpoint: Endpoint,
        versions: NegotiatedVersions,
        config: &ConnectionConfig,
    ) -> Connection {
        Connection {
            transport,
            endpoint,
            versions,
            next_correlation: AtomicI32::new(1),
            client_id: StrBytes::from_string(config.client_id.clone()),
            timeout: config.request_timeout,
        }
    }

    async fn api_versions(&self, version: i16) -> Result<ApiVersionsResponse> {
        let mut request = ApiVersionsRequest::default();
        if version >= 3 {
            request.client_software_name = StrBytes::from_static_str("rafka-client");
            request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        }
        let frame = self.encode(version, &request)?;
        let correlation_id = frame.1;
        let response = self
            .round_trip::<ApiVersionsRequest>(frame.0, true, self.timeout)
            .await?;
        let mut body = check_header::<ApiVersionsRequest>(response, version, correlation_id)
            .inspect_err(|_| self.transport.close())?;
        let copy = body.clone();
        // An UNSUPPORTED_VERSION answer is a v0 body whatever version was asked (KIP-511).
        ApiVersionsResponse::decode(&mut body, version)
            .or_else(|_| ApiVersionsResponse::decode(&mut copy.clone(), 0))
            .map_err(|e| Error::protocol(format!("ApiVersions response: {e}")))
    }

    /// The endpoint this connection talks to.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The negotiated version for request type `R`.
    pub fn version<R: Request>(&self) -> Result<i16> {
        self.versions
            .get(R::KEY)
            .ok_or_else(|| Error::UnsupportedVersion {
                api: api_name(R::KEY),
                endpoint: self.endpoint.to_string(),
            })
    }

    /// Whether the underlying transport is closed.
    pub fn is_closed(&self) -> bool {
        self.transport.is_closed()
    }

    /// Closes the underlying transport.
    pub fn close(&self) {
        self.transport.close();
    }

    /// Sends `request` at `version` and waits for its response.
    pub async fn send<R: Request>(&self, version: i16, request: &R) -> Result<R::Response> {
        self.send_within(version, request, self.timeout).await
    }

    /// As [`Connection::send`], waiting up to `timeout` instead of the request timeout (a
    /// JoinGroup is held by the coordinator for up to the rebalance timeout).
    pub async fn send_within<R: Request>(
        &self,
        version: i16,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response> {
        let (frame, correlation_id) = self.encode(version, request)?;
        let response = self.round_trip::<R>(frame, true, timeout).await?;
        // A bad header means the byte stream is out of step: the connection is unusable.
        let mut body = check_header::<R>(response, version, correlation_id)
            .inspect_err(|_| self.transport.close())?;
        // Decoders return errors on bad bytes; catch_unwind also turns a decoder panic into one.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            R::Response::decode(&mut body, version)
        }));
        let api = api_name(R::KEY);
        match decoded {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => {
                self.transport.close();
                Err(Error::protocol(format!("{api} v{version} response: {e}")))
            }
            Err(_) => {
                self.transport.close();
                Err(Error::protocol(format!(
                    "{api} v{version} response: decoder panicked"
                )))
            }
        }
    }

    /// Sends `request` without waiting for a response (acks=0 produce).
    pub async fn send_no_response<R: Request>(&self, version: i16, request: &R) -> Result<()> {
        let (frame, _) = self.encode(version, request)?;
        self.round_trip::<R>(frame, false, self.timeout)
            .await
            .map(|_| ())
    }

    async fn round_trip<R: Request>(
        &self,
        frame: Bytes,
        expect: bool,
        timeout: Duration,
    ) -> Result<Option<Bytes>> {
        let call = self.transport.call_within(frame, expect, timeout);
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => {
                self.transport.close();
                Err(Error::Timeout {
                    api: api_name(R::KEY),
                    endpoint: self.endpoint.to_string(),
                    timeout,
                })
            }
        }
    }

    fn encode<R: Request>(&self, version: i16, request: &R) -> Result<(Bytes, i32)> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let header_version = R::header_version(version);
        let size = header
            .compute_size(header_version)
            .and_then(|h| request.compute_size(version).map(|b| h + b))
            .map_err(|e| Error::protocol(format!("{} v{version}: {e}", api_name(R::KEY))))?;
        let mut buf = BytesMut::with_capacity(size);
        header
            .encode(&mut buf, header_version)
            .and_then(|_| request.encode(&mut buf, version))
            .map_err(|e| Error::protocol(format!("{} v{version}: {e}", api_name(R::KEY))))?;
        trace!(
            api = api_name(R::KEY),
            version,
            correlation_id,
            bytes = buf.len(),
            "request"
        );
        Ok((buf.freeze(), correlation_id))
    }
}

/// Decodes and checks the response header; returns the body.
fn check_header<R: Request>(frame: Option<Bytes>, version: i16, expected: i32) -> Result<Bytes> {
    let mut frame = frame.ok_or_else(|| {
        Error::protocol(format!("{}: the broker sent no response", api_name(R::KEY)))
    })?;
    let header = ResponseHeader::decode(&mut frame, R::Response::header_version(version))
        .map_err(|e| Error::protocol(format!("{} response header: {e}", api_name(R::KEY))))?;
    if header.correlation_id != expected {
        return Err(Error::protocol(format!(
            "{}: correlation id {} does not match request {expected}",
            api_name(R::KEY),
            header.correlation_id
        )));
    }
    Ok(frame)
}

/// Encodes a response frame the way a broker would (used by fake transports in tests).
pub fn encode_response<R: Request>(
    correlation_id: i32,
    version: i16,
    response: &R::Response,
) -> Result<Bytes> {
    let mut buf = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut buf, R::Response::header_version(version))
        .and_then(|_| response.encode(&mut buf, version))
        .map_err(|e| Error::protocol(format!("encode response: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes a request frame the way a broker would (used by fake transports in tests).
pub fn decode_request(mut frame: Bytes) -> Result<(RequestHeader, Bytes)> {
    let header = kafka_protocol::protocol::decode_request_header_from_buffer(&mut frame)
        .map_err(|e| Error::protocol(format!("request header: {e}")))?;
    Ok((header, frame))
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
