//! Kafka requests from this node to another node, named by node id, as standard Kafka frames:
//! over the mesh's data plane to a peer ([`Peers`], what followers and coordinators send), and
//! [`request_node`] to any node including this one, where the frame goes through this node's own
//! dispatcher: the same handler and the same checks as a peer's request (it arrives as a mesh
//! request from a registered node, this one), without a network round trip.
//!
//! Node-to-node requests of the transaction protocol use it: WriteTxnMarkers from a transaction
//! coordinator to partition leaders, AddPartitionsToTxn (`verify_only`) from a partition leader
//! to a transaction coordinator. Each request runs on its own (the mesh listener starts every
//! request on a task of its own), so one that waits holds up nothing but its own answer.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use rafka_mesh::{Mesh, PeerId};

use crate::Broker;
use crate::api::{ConnectionInfo, Handled, handle_frame};
use crate::ids::NodeId;
use crate::metadata::MetadataImage;

/// Why a request to a node failed (all retriable from the caller's point of view).
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
    /// The answer did not decode (or the request did not encode).
    #[error("undecodable answer: {0}")]
    Decode(String),
}

/// Sends Kafka requests to other nodes by node id, over the mesh.
#[derive(Clone)]
pub struct Peers {
    mesh: Mesh,
    client_id: StrBytes,
}

impl Peers {
    /// Requests that carry `client_id` in their header.
    pub fn new(mesh: Mesh, client_id: String) -> Self {
        Self {
            mesh,
            client_id: StrBytes::from_string(client_id),
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
        let frame = encode(&self.client_id, key, version, request)?;
        let request = self.mesh.kafka_request(peer, frame, timeout);
        let answer = tokio::time::timeout(timeout, request)
            .await
            .map_err(|_| PeerError::Timeout(timeout))?
            .map_err(|e| PeerError::Mesh(e.to_string()))?;
        decode(key, version, answer)
    }
}

/// Sends `request` to `node`: over the mesh to another node, through this node's dispatcher
/// when `node` is this one. Either way the handler sees a mesh request from a registered node.
pub async fn request_node<Req, Resp>(
    broker: &Broker,
    node: NodeId,
    (key, version): (ApiKey, i16),
    request: &Req,
    timeout: Duration,
) -> Result<Resp, PeerError>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let local = broker.local().node_id;
    let mesh = broker.cluster().mesh();
    if node != local {
        let peers = Peers::new(mesh.clone(), format!("rafka-node-{local}"));
        return peers
            .call(&broker.image(), node, key, version, request, timeout)
            .await;
    }
    let client_id = StrBytes::from_string(format!("rafka-node-{local}"));
    let frame = encode(&client_id, key, version, request)?;
    let info = ConnectionInfo::Mesh(mesh.local_peer_id());
    let answer = match handle_frame(broker, &info, frame).handled {
        Handled::Respond(answer) => tokio::time::timeout(timeout, answer)
            .await
            .map_err(|_| PeerError::Timeout(timeout))?
            .map_err(PeerError::Mesh)?,
        Handled::Silent(_) => return Err(PeerError::Mesh("no answer to a silent request".into())),
        Handled::Close(reason) => return Err(PeerError::Mesh(reason)),
    };
    decode(key, version, answer)
}

/// A request frame: header and body, without the size prefix.
fn encode<Req: Encodable + HeaderVersion>(
    client_id: &StrBytes,
    key: ApiKey,
    version: i16,
    request: &Req,
) -> Result<Bytes, PeerError> {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(0)
        .with_client_id(Some(client_id.clone()));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .and_then(|()| request.encode(&mut buf, version))
        .map_err(|e| PeerError::Decode(format!("cannot encode {key:?} v{version}: {e}")))?;
    Ok(buf.freeze())
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
