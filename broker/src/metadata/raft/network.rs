//! The transport seam: [`RaftTransport`] carries opaque bytes to a node and back; openraft's
//! `RaftNetworkFactory`/`RaftNetwork` are implemented on top of it here.
//!
//! Error mapping: [`TransportError::Unreachable`] and [`TransportError::Failed`] become
//! `RPCError::Unreachable` (openraft backs off before retrying that peer); no answer within the
//! RPC's soft TTL becomes `RPCError::Timeout`; an answer that does not decode is
//! `RPCError::Network`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RPCTypes};

use super::rpc::{RaftReply, RaftRequest};
use super::{RaftNode, RaftNodeId, TypeConfig};

/// Longest pause between two attempts to reach an unreachable member.
const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Sends one metadata-log RPC to another node. The mesh implements this; the request and the
/// answer are opaque bytes produced and read by this module.
///
/// On the target, the bytes go to [`crate::metadata::Metadata::handle_rpc`], whose answer is
/// what `call` returns. Keep these RPCs on the control-plane connection, not behind bulk data.
pub trait RaftTransport: Send + Sync + 'static {
    /// Sends `request` to `target` and waits at most `timeout` for its answer. `target` carries
    /// the peer id and the control-plane addresses to dial if there is no connection.
    fn call(
        &self,
        target: &RaftNode,
        request: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// Why an RPC got no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The target cannot be reached (no route, dial failed, peer unknown). The request was not
    /// delivered.
    #[error("peer unreachable: {0}")]
    Unreachable(String),
    /// No answer in time. The request may have been delivered.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The exchange failed otherwise (stream reset, oversized frame).
    #[error("transport failure: {0}")]
    Failed(String),
}

/// A transport that reaches nobody: enough for a single-node cluster, which never sends.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoPeers;

impl RaftTransport for NoPeers {
    fn call(
        &self,
        target: &RaftNode,
        _request: Vec<u8>,
        _timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let reason = format!("no transport to reach {}", target.peer_id);
        Box::pin(async move { Err(TransportError::Unreachable(reason)) })
    }
}

/// openraft's network factory over a [`RaftTransport`].
pub(crate) struct Network {
    id: RaftNodeId,
    transport: Arc<dyn RaftTransport>,
}

impl Network {
    pub(crate) fn new(id: RaftNodeId, transport: Arc<dyn RaftTransport>) -> Self {
        Self { id, transport }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: RaftNodeId, node: &RaftNode) -> Connection {
        Connection {
            id: self.id,
            target,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// The RPC client to one target.
pub(crate) struct Connection {
    id: RaftNodeId,
    target: RaftNodeId,
    node: RaftNode,
    transport: Arc<dyn RaftTransport>,
}

/// Encodes, sends, decodes; maps transport failures onto openraft's RPC errors.
async fn exchange<E: std::error::Error>(
    conn: &Connection,
    action: RPCTypes,
    request: &RaftRequest,
    option: &RPCOption,
) -> Result<RaftReply, RPCError<RaftNodeId, RaftNode, E>> {
    let bytes = request.encode().map_err(|e| NetworkError::new(&e))?;
    let ttl = option.soft_ttl();
    let call = conn.transport.call(&conn.node, bytes, ttl);
    let timeout = || {
        RPCError::Timeout(Timeout {
            action,
            id: conn.id,
            target: conn.target,
            timeout: ttl,
        })
    };
    let answer = match tokio::time::timeout(ttl, call).await {
        Err(_) | Ok(Err(TransportError::Timeout(_))) => return Err(timeout()),
        // A peer that stopped answering (no route, or streams cut short) is retried after a
        // backoff, not at once: openraft retries a NetworkError immediately, in a tight loop.
        Ok(Err(TransportError::Unreachable(reason) | TransportError::Failed(reason))) => {
            return Err(Unreachable::new(&AnyError::error(reason)).into());
        }
        Ok(Ok(answer)) => answer,
    };
    match RaftReply::decode(&answer) {
        Ok(RaftReply::Stopped(reason)) => Err(Unreachable::new(&AnyError::error(format!(
            "metadata log stopped on {}: {reason}",
            conn.node.peer_id
        )))
        .into()),
        // Not (or no longer) admitted there: back off as from an unreachable peer.
        Ok(RaftReply::Refused(reason)) => Err(Unreachable::new(&AnyError::error(format!(
            "{} refused: {reason}",
            conn.node.peer_id
        )))
        .into()),
        Ok(reply) => Ok(reply),
        Err(e) => Err(NetworkError::new(&e).into()),
    }
}

fn unexpected<E: std::error::Error>(reply: &RaftReply) -> RPCError<RaftNodeId, RaftNode, E> {
    NetworkError::new(&AnyError::error(format!(
        "unexpected answer: {}",
        reply.kind()
    )))
    .into()
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, RaftNode, RaftError<RaftNodeId>>,
    > {
        let request = RaftRequest::AppendEntries(rpc);
        match exchange(self, RPCTypes::AppendEntries, &request, &option).await? {
            RaftReply::AppendEntries(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, RaftNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        let request = RaftRequest::InstallSnapshot(rpc);
        match exchange(self, RPCTypes::InstallSnapshot, &request, &option).await? {
            RaftReply::InstallSnapshot(response) => Ok(response),
            RaftReply::SnapshotMismatch(mismatch) => Err(RPCError::RemoteError(RemoteError::new(
                self.target,
                RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)),
            ))),
            other => Err(unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, RaftNode, RaftError<RaftNodeId>>>
    {
        let request = RaftRequest::Vote(rpc);
        match exchange(self, RPCTypes::Vote, &request, &option).await? {
            RaftReply::Vote(response) => Ok(response),
            other => Err(unexpected(&other)),
        }
    }

    fn backoff(&self) -> Backoff {
        // A mesh redials on demand: retry an unreachable peer after 250 ms, then less and less
        // often, up to every 4 s (a departed member is removed by the controller meanwhile).
        let doubling = std::iter::successors(Some(Duration::from_millis(250)), |d| Some(*d * 2));
        Backoff::new(
            doubling
                .take_while(|d| *d < MAX_BACKOFF)
                .chain(std::iter::repeat(MAX_BACKOFF)),
        )
    }
}
