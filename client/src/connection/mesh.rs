//! The libp2p transport: Kafka frames over `rafka_mesh::Mesh::kafka_request`.
//!
//! The client runs a light mesh peer (role `Client`: it dials, never listens). A frame is the
//! request header + body without size prefix; the answer is the response header + body, or an
//! empty frame for "no response" (acks=0).
//!
//! Ordering: each request travels on its own libp2p substream, so two requests in flight to the
//! same peer may be processed out of order. The producer copes (idempotent sequence numbers make
//! the broker refuse a batch that overtook its predecessor, and it is retried in order), but
//! this transport does not give the per-connection ordering a Kafka TCP socket gives.
//!
//! Without the `mesh` cargo feature, this module only reports that the transport is missing.

#[cfg(feature = "mesh")]
mod imp {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use bytes::Bytes;
    use futures::FutureExt;
    use futures::future::BoxFuture;
    use rafka_mesh::{Keypair, Mesh, MeshConfig, Multiaddr, PeerId, Role};
    use tokio::sync::mpsc;
    use tracing::debug;

    use crate::connection::FrameTransport;
    use crate::error::{Error, Result};

    /// The client's own mesh peer (started once per [`crate::Client`]).
    #[derive(Debug)]
    pub struct MeshNode {
        mesh: Mesh,
        // Kept so the mesh task never sees its inbound queue closed (a client gets no requests).
        _inbound: mpsc::Receiver<rafka_mesh::InboundKafka>,
    }

    impl MeshNode {
        /// Starts a client-role mesh peer with a fresh identity.
        pub async fn start(max_frame_bytes: usize) -> Result<MeshNode> {
            let config = MeshConfig {
                listen: vec![],
                role: Role::Client,
                max_frame_bytes: max_frame_bytes.max(1024),
                ..MeshConfig::default()
            };
            let (mesh, inbound) = Mesh::start(Keypair::generate_ed25519(), config)
                .await
                .map_err(|e| Error::Mesh(e.to_string()))?;
            debug!(peer = %mesh.local_peer_id(), "mesh client started");
            Ok(MeshNode {
                mesh,
                _inbound: inbound,
            })
        }

        /// Dials `addr` (the `/p2p/<peer id>` suffix optional) and returns the peer id (base58).
        pub async fn dial(&self, addr: &str) -> Result<String> {
            let addr: Multiaddr = addr
                .parse()
                .map_err(|e| Error::Mesh(format!("bad multiaddr {addr:?}: {e}")))?;
            let peer = self
                .mesh
                .dial(addr.clone())
                .await
                .map_err(|e| Error::Connect {
                    endpoint: addr.to_string(),
                    reason: e.to_string(),
                })?;
            Ok(peer.to_base58())
        }

        /// A transport to `peer` (already dialled, or reachable through the mesh).
        pub fn transport(&self, peer: &str) -> Result<MeshTransport> {
            let peer: PeerId = peer
                .parse()
                .map_err(|e| Error::Mesh(format!("bad peer id {peer:?}: {e}")))?;
            Ok(MeshTransport {
                mesh: self.mesh.clone(),
                peer,
                closed: Arc::new(AtomicBool::new(false)),
            })
        }

        /// Stops the mesh peer.
        pub async fn shutdown(&self) {
            self.mesh.shutdown().await;
        }
    }

    /// Frames to one peer over the mesh.
    pub struct MeshTransport {
        mesh: Mesh,
        peer: PeerId,
        closed: Arc<AtomicBool>,
    }

    impl FrameTransport for MeshTransport {
        fn call(&self, frame: Bytes, expect: bool) -> BoxFuture<'static, Result<Option<Bytes>>> {
            let mesh = self.mesh.clone();
            let peer = self.peer;
            let closed = self.closed.clone();
            async move {
                if closed.load(Ordering::Acquire) {
                    return Err(Error::Disconnected {
                        endpoint: peer.to_string(),
                        reason: "closed".into(),
                    });
                }
                let response = mesh.kafka_request(peer, frame).await.map_err(|e| {
                    if matches!(e, rafka_mesh::MeshError::Closed) {
                        closed.store(true, Ordering::Release);
                    }
                    Error::Disconnected {
                        endpoint: peer.to_string(),
                        reason: e.to_string(),
                    }
                })?;
                match (expect, response.is_empty()) {
                    (false, _) => Ok(None),
                    (true, false) => Ok(Some(response)),
                    (true, true) => Err(Error::protocol("empty response frame over the mesh")),
                }
            }
            .boxed()
        }

        fn is_closed(&self) -> bool {
            self.closed.load(Ordering::Acquire)
        }

        fn close(&self) {
            self.closed.store(true, Ordering::Release);
        }
    }
}

#[cfg(not(feature = "mesh"))]
mod imp {
    use bytes::Bytes;
    use futures::future::BoxFuture;

    use crate::connection::FrameTransport;
    use crate::error::{Error, Result};

    const MISSING: &str = "this build has no mesh transport (cargo feature `mesh`); use --kafka";

    /// Stand-in for the mesh peer in builds without the `mesh` feature.
    #[derive(Debug)]
    pub struct MeshNode(());

    impl MeshNode {
        /// Always fails: the transport is not compiled in.
        pub async fn start(_max_frame_bytes: usize) -> Result<MeshNode> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub async fn dial(&self, _addr: &str) -> Result<String> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Unreachable in practice (no `MeshNode` can exist).
        pub fn transport(&self, _peer: &str) -> Result<MeshTransport> {
            Err(Error::Mesh(MISSING.into()))
        }
        /// Nothing to stop.
        pub async fn shutdown(&self) {}
    }

    /// Stand-in transport.
    pub struct MeshTransport(());

    impl FrameTransport for MeshTransport {
        fn call(&self, _: Bytes, _: bool) -> BoxFuture<'static, Result<Option<Bytes>>> {
            Box::pin(futures::future::ready(Err(Error::Mesh(MISSING.into()))))
        }
        fn is_closed(&self) -> bool {
            true
        }
        fn close(&self) {}
    }
}

pub use imp::{MeshNode, MeshTransport};
