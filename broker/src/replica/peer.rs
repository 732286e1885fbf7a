//! Kafka requests from this node to another over the mesh's data plane: what followers send their
//! leaders (Fetch, OffsetForLeaderEpoch, ListOffsets), as standard Kafka frames.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rafka_mesh::{Mesh, PeerId};

use crate::metadata::{MetadataImage, NodeId};

/// Why a request to a peer failed (all retriable: the core backs off and tries again).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The node is not registered, or its peer id does not parse.
    #[error("node {0} has no known peer id")]
    UnknownNode(NodeId),
    /// The mesh could not deliver the request or its answer.
    #[error("mesh: {0}")]
    Mesh(String),
    /// No answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The answer did not decode.
    #[error("undecodable answer: {0}")]
    Decode(String),
}

/// Sends Kafka requests to nodes by node id.
#[derive(Clone)]
pub struct Peers {
    mesh: Mesh,
    client_id: StrBytes,
}

impl Peers {
    /// Requests from node `local`.
    pub fn new(mesh: Mesh, local: NodeId) -> Self {
        Self {
            mesh,
            client_id: StrBytes::from_string(format!("rafka-replica-{local}")),
        }
    }

    /// Sends `request` (API `key`, `version`) to `node` and decodes its answer.
    pub async fn call<Req, Resp>(
        &self,
        image: &MetadataImage,
        node: NodeId,
        key: ApiKey,
        version: i16,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, PeerError>
    where
        Req: Encodable + HeaderVersion,
        Resp: Decodable + HeaderVersion,
    {
        let peer: PeerId = image
            .nodes
            .get(&node)
            .and_then(|n| n.peer_id.parse().ok())
            .ok_or(PeerError::UnknownNode(node))?;
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(0)
            .with_client_id(Some(self.client_id.clone()));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .and_then(|()| request.encode(&mut buf, version))
            .map_err(|e| PeerError::Decode(format!("cannot encode {key:?} v{version}: {e}")))?;
        let answer = tokio::time::timeout(timeout, self.mesh.kafka_request(peer, buf.freeze()))
            .await
            .map_err(|_| PeerError::Timeout(timeout))?
            .map_err(|e| PeerError::Mesh(e.to_string()))?;
        decode(key, version, answer)
    }
}

fn decode<Resp: Decodable>(
    key: ApiKey,
    version: i16,
    mut answer: Bytes,
) -> Result<Resp, PeerError> {
    if answer.is_empty() {
        return Err(PeerError::Mesh(
            "the peer closed the request without an answer".into(),
        ));
    }
    // A malformed answer must not take the node down (the decoder can panic on absurd counts).
    let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        ResponseHeader::decode(&mut answer, key.response_header_version(version))?;
        Resp::decode(&mut answer, version)
    }));
    match decoded {
        Ok(Ok(response)) => Ok(response),
        Ok(Err(e)) => Err(PeerError::Decode(format!("{key:?} v{version}: {e}"))),
        Err(_) => Err(PeerError::Decode(format!(
            "{key:?} v{version}: decoder panicked"
        ))),
    }
}
