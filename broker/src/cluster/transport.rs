//! The metadata log's RPCs over the mesh's control plane (`/rafka/raft/1`), and the loop that
//! hands inbound ones to the local log.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use rafka_mesh::{InboundRaft, Mesh, MeshError, PeerId};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::metadata::Metadata;
use crate::metadata::raft::{RaftNode, RaftTransport, TransportError};

/// [`RaftTransport`] over the mesh.
#[derive(Clone, Debug)]
pub struct MeshRaftTransport {
    mesh: Mesh,
}

impl MeshRaftTransport {
    /// RPCs through `mesh`.
    pub fn new(mesh: Mesh) -> Self {
        Self { mesh }
    }
}

impl RaftTransport for MeshRaftTransport {
    fn call(
        &self,
        target: &RaftNode,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let mesh = self.mesh.clone();
        let peer = target.peer_id.parse::<PeerId>();
        Box::pin(async move {
            let peer =
                peer.map_err(|e| TransportError::Unreachable(format!("bad peer id: {e}")))?;
            match tokio::time::timeout(timeout, mesh.raft_request(peer, Bytes::from(request))).await
            {
                Err(_) => Err(TransportError::Timeout(timeout)),
                Ok(Ok(answer)) => Ok(answer.to_vec()),
                Ok(Err(MeshError::Request { reason, .. })) if is_undelivered(&reason) => {
                    Err(TransportError::Unreachable(reason))
                }
                Ok(Err(e)) => Err(TransportError::Failed(e.to_string())),
            }
        })
    }
}

/// Request-response failures that mean the request never left: a failed dial or no protocol.
fn is_undelivered(reason: &str) -> bool {
    let reason = reason.to_ascii_lowercase();
    reason.contains("dial") || reason.contains("unsupported protocol")
}

/// Hands inbound RPCs to the metadata log until `shutdown`.
pub async fn serve(
    mut inbound: mpsc::Receiver<InboundRaft>,
    metadata: Metadata,
    shutdown: CancellationToken,
) {
    loop {
        let rpc = tokio::select! {
            rpc = inbound.recv() => match rpc {
                Some(rpc) => rpc,
                None => break,
            },
            () = shutdown.cancelled() => break,
        };
        let metadata = metadata.clone();
        tokio::spawn(async move {
            let answer = metadata
                .handle_rpc(&rpc.peer.to_string(), &rpc.payload)
                .await;
            let _ = rpc.reply.send(Bytes::from(answer));
        });
    }
}
