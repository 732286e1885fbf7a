//! The metadata log's RPCs on the wire, and the receiving side.
//!
//! A request is `codec` bytes of [`RaftRequest`]; its answer is `codec` bytes of [`RaftReply`].
//! Whatever arrives, [`handle_rpc`] answers with bytes (a bad request gets `BadRequest`), so the
//! mesh only moves bytes both ways.

use std::time::Duration;

use openraft::error::{InstallSnapshotError, RaftError, SnapshotMismatch};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use super::codec::{self, CodecError};
use super::leader::{self, ForwardReply, LeaderOp};
use super::{Raft, RaftNode, RaftNodeId, TypeConfig};
use crate::metadata::LevelRange;

/// A request from another node.
#[derive(Serialize, Deserialize)]
pub(crate) enum RaftRequest {
    /// Replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// An election.
    Vote(VoteRequest<RaftNodeId>),
    /// One chunk of a snapshot (at most `snapshot_max_chunk_size` bytes of data).
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A proposal or membership change from a follower, for the leader to run if it arrives
    /// before `expires_unix_ms` (wall clock): a request held up by a network split must not
    /// apply after its sender answered its client with a timeout.
    Forward {
        /// The operation.
        op: LeaderOp,
        /// When the sender gives up on it (ms since the Unix epoch).
        expires_unix_ms: u64,
    },
    /// A fresh node asks to be added to the metadata log as a learner. The only request served
    /// to a peer that is not a registered node of the cluster.
    Join {
        /// The node: its peer id must be the sender's, its addresses its control plane's.
        node: RaftNode,
        /// The feature levels it supports: it is refused below the cluster's finalized one.
        supported: LevelRange,
    },
}

/// The answer to a [`RaftRequest`].
#[derive(Serialize, Deserialize)]
pub(crate) enum RaftReply {
    AppendEntries(AppendEntriesResponse<RaftNodeId>),
    Vote(VoteResponse<RaftNodeId>),
    InstallSnapshot(InstallSnapshotResponse<RaftNodeId>),
    /// A chunk arrived for a snapshot whose earlier chunks this node does not have.
    SnapshotMismatch(SnapshotMismatch),
    Forwarded(ForwardReply),
    /// The metadata log on this node is stopped (shutting down, or failed).
    Stopped(String),
    /// The request did not decode.
    BadRequest(String),
    /// The sender is now a member of the metadata log (a learner, or more).
    Joined,
    /// Refused: the sender is not a registered node of this cluster, or cannot join it.
    Refused(String),
}

impl RaftRequest {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("raft request", self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode("raft request", bytes)
    }
}

impl RaftReply {
    pub(crate) fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode("raft reply", self)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode("raft reply", bytes)
    }

    /// The variant's name, for errors.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::AppendEntries(_) => "AppendEntries",
            Self::Vote(_) => "Vote",
            Self::InstallSnapshot(_) => "InstallSnapshot",
            Self::SnapshotMismatch(_) => "SnapshotMismatch",
            Self::Forwarded(_) => "Forwarded",
            Self::Stopped(_) => "Stopped",
            Self::BadRequest(_) => "BadRequest",
            Self::Joined => "Joined",
            Self::Refused(_) => "Refused",
        }
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Serves one inbound RPC (a [`RaftRequest::Join`] is the caller's to serve): hands it to the
/// local Raft node and returns the answer. A forwarded proposal is run here if this node leads,
/// within `forward_timeout`.
pub(crate) async fn handle_rpc(
    raft: &Raft,
    forward_timeout: Duration,
    request: RaftRequest,
) -> RaftReply {
    match request {
        RaftRequest::Join { .. } => RaftReply::Refused("joins are served elsewhere".into()),
        RaftRequest::AppendEntries(rpc) => match raft.append_entries(rpc).await {
            Ok(response) => RaftReply::AppendEntries(response),
            Err(e) => RaftReply::Stopped(e.to_string()),
        },
        RaftRequest::Vote(rpc) => match raft.vote(rpc).await {
            Ok(response) => RaftReply::Vote(response),
            Err(e) => RaftReply::Stopped(e.to_string()),
        },
        RaftRequest::InstallSnapshot(rpc) => match raft.install_snapshot(rpc).await {
            Ok(response) => RaftReply::InstallSnapshot(response),
            Err(RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch))) => {
                RaftReply::SnapshotMismatch(mismatch)
            }
            Err(RaftError::Fatal(e)) => RaftReply::Stopped(e.to_string()),
        },
        RaftRequest::Forward {
            op,
            expires_unix_ms,
        } => {
            let left = Duration::from_millis(expires_unix_ms.saturating_sub(unix_ms()));
            if left.is_zero() {
                RaftReply::Forwarded(ForwardReply::Failed(
                    crate::metadata::MetadataError::Timeout(0),
                ))
            } else {
                RaftReply::Forwarded(leader::run_local(raft, op, forward_timeout.min(left)).await)
            }
        }
    }
}

/// The bytes of an answer (a `Stopped` if it cannot be encoded).
pub(crate) fn encode_reply(reply: &RaftReply) -> Vec<u8> {
    reply.encode().unwrap_or_else(|e| {
        tracing::warn!(error = %e, reply = reply.kind(), "cannot encode a metadata RPC answer");
        RaftReply::Stopped(format!("cannot encode the answer: {e}"))
            .encode()
            .unwrap_or_default()
    })
}
