//! A raw Kafka client over the libp2p mesh (`/rafka/kafka/1`), as the mesh client library is: a
//! client-role peer that dials a node's p2p address and sends Kafka frames, every message encoded
//! and decoded by the kafka-protocol crate, versions chosen by the test.

use std::time::Duration;

use bytes::Buf;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Request};
use rafka_mesh::{Inbound, Keypair, Mesh, MeshConfig, PeerId};

use crate::support::wire;

/// One mesh peer talking to one node.
pub struct MeshClient {
    mesh: Mesh,
    /// Kept so the mesh task never sees its inbound queue closed.
    _inbound: Inbound,
    peer: PeerId,
}

impl MeshClient {
    /// Starts a client peer with a fresh identity and dials `addr` (a node's p2p multiaddr).
    pub async fn connect(addr: &str) -> MeshClient {
        let config = MeshConfig {
            mdns: false,
            ..MeshConfig::client()
        };
        let (mesh, inbound) = Mesh::start(Keypair::generate_ed25519(), config)
            .await
            .unwrap();
        let peer = mesh.dial(addr.parse().unwrap()).await.unwrap();
        MeshClient {
            mesh,
            _inbound: inbound,
            peer,
        }
    }

    /// Sends `request` at `version` and decodes the response; `Err` if the mesh request failed
    /// (or was not answered within `timeout`, its deadline).
    pub async fn send<R: Request>(
        &self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, String> {
        let api_key = ApiKey::try_from(R::KEY).unwrap();
        let frame = wire::request_body(request, version, 7, "mesh-test");
        let call = self.mesh.kafka_request(self.peer, frame, timeout);
        let mut response = call
            .await
            .map_err(|e| format!("{api_key:?} over the mesh failed: {e}"))?;
        let header =
            ResponseHeader::decode(&mut response, api_key.response_header_version(version))
                .unwrap();
        assert_eq!(header.correlation_id, 7);
        let decoded = R::Response::decode(&mut response, version).unwrap();
        assert_eq!(response.remaining(), 0, "trailing bytes in {api_key:?}");
        Ok(decoded)
    }

    /// Stops the peer.
    pub async fn shutdown(&self) {
        self.mesh.shutdown().await;
    }
}
