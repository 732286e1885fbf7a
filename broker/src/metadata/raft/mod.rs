//! The Raft-replicated metadata log: openraft 0.9 over fjall, with a byte-level transport seam.
//!
//! ```text
//!  Metadata::propose ──► leader? ── yes ─► Raft::client_write ─► log (fjall, fsync) ─► commit
//!        │                  └── no ──► RaftTransport ─► leader's handle_rpc (Forward)     │
//!        ▼                                                                                ▼
//!  watch<Arc<MetadataImage>> ◄──────────────── StateMachine::apply (MetadataImage::apply)
//! ```
//!
//! - [`TypeConfig`]: app data [`MetadataCommand`], response [`ApplyResult`], [`RaftNodeId`]
//!   (`u64`, hashed from the libp2p peer id), [`RaftNode`] (peer id + control-plane addresses).
//! - `disk`, `log_store`, `state_machine`: one fjall Database in `<data_dir>/raft`. Every append
//!   and vote is fsynced before openraft is told; snapshots (the encoded image) are persisted
//!   there too, and the state machine is rebuilt from the last one on open.
//! - `network`: [`RaftTransport`], the one trait the mesh implements (bytes to a node, bytes
//!   back); openraft's `RaftNetworkFactory`/`RaftNetwork` sit on top of it.
//! - `rpc`: the wire messages and the inbound side (`Metadata::handle_rpc`).
//! - [`memory`]: an in-memory transport with cuttable links, for tests.

pub(crate) mod codec;
mod disk;
#[cfg(test)]
mod fixtures;
mod leader;
mod log_store;
pub mod memory;
mod network;
mod rpc;
mod snapshot;
mod state_machine;
#[cfg(test)]
mod tests;

use std::io::Cursor;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use codec::CodecError;
pub(crate) use disk::{Closed, Disk};
pub(crate) use leader::{LeaderOp, Router, wait_metrics};
pub(crate) use log_store::LogStore;
pub(crate) use network::Network;
pub use network::{NoPeers, RaftTransport, TransportError};
pub(crate) use rpc::{RaftReply, RaftRequest, encode_reply, handle_rpc};
pub(crate) use state_machine::StateMachine;

use super::{MetadataCommand, MetadataError, Outcome};

/// What applying one log entry answers: the state machine's outcome or its refusal.
pub type ApplyResult = Result<Outcome, MetadataError>;

/// Raft node id: a hash of the libp2p peer id ([`raft_node_id`]). Kafka node ids are separate:
/// int32s allocated by the state machine.
pub type RaftNodeId = u64;

openraft::declare_raft_types!(
    /// openraft's type configuration for the metadata log.
    pub TypeConfig:
        D = MetadataCommand,
        R = ApplyResult,
        NodeId = RaftNodeId,
        Node = RaftNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The openraft handle of this type configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// A member of the metadata log, as the mesh reaches it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftNode {
    /// libp2p peer id (base58 string form).
    pub peer_id: String,
    /// Control-plane multiaddrs (string form) the node listens on.
    pub addrs: Vec<String>,
}

impl RaftNode {
    /// A node with this peer id and control-plane addresses.
    pub fn new(peer_id: &libp2p::PeerId, addrs: Vec<String>) -> Self {
        Self {
            peer_id: peer_id.to_string(),
            addrs,
        }
    }

    /// The node's Raft id, derived from its peer id.
    pub fn id(&self) -> Result<RaftNodeId, MetadataError> {
        let peer: libp2p::PeerId = self.peer_id.parse().map_err(|e| {
            MetadataError::Membership(format!("invalid peer id {:?}: {e}", self.peer_id))
        })?;
        Ok(raft_node_id(&peer))
    }
}

/// The Raft node id of a peer: 64-bit FNV-1a of the peer id's bytes (stable across versions and
/// platforms, unlike `std`'s hasher). Two distinct peers colliding is refused at membership time.
pub fn raft_node_id(peer: &libp2p::PeerId) -> RaftNodeId {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    peer.to_bytes().iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
}

/// Timing and sizing of the metadata log. The defaults suit a libp2p mesh with bulk traffic
/// beside it (see the research notes): openraft's own defaults (50 ms heartbeats, 150-300 ms
/// elections, 3 MiB snapshot chunks, 200 ms snapshot timeout) do not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RaftConfig {
    /// Leader heartbeat interval; also openraft's timeout for one AppendEntries.
    pub heartbeat_interval: Duration,
    /// Election timeout, lower bound (randomised between min and max).
    pub election_timeout_min: Duration,
    /// Election timeout, upper bound.
    pub election_timeout_max: Duration,
    /// Timeout of one snapshot chunk.
    pub install_snapshot_timeout: Duration,
    /// Largest snapshot chunk on the wire (kept under libp2p request-response's 1 MiB cap).
    pub snapshot_max_chunk_size: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log behind the last snapshot (for followers slightly behind).
    pub keep_entries_after_snapshot: u64,
    /// Most entries in one AppendEntries.
    pub max_payload_entries: u64,
    /// How long `propose` (and membership changes) wait for a leader and a commit.
    pub propose_timeout: Duration,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(300),
            election_timeout_min: Duration::from_millis(1500),
            election_timeout_max: Duration::from_millis(3000),
            install_snapshot_timeout: Duration::from_secs(10),
            snapshot_max_chunk_size: 512 * 1024,
            snapshot_after_entries: 1000,
            keep_entries_after_snapshot: 100,
            max_payload_entries: 300,
            propose_timeout: Duration::from_secs(10),
        }
    }
}

/// Largest snapshot chunk accepted: libp2p request-response codecs cap a request at 1 MiB, and
/// a chunk travels with its snapshot meta and framing.
pub const MAX_SNAPSHOT_CHUNK: u64 = 768 * 1024;

impl RaftConfig {
    /// Checks the timings and sizes fit together.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let invalid = |reason: String| Err(MetadataError::RaftConfig(reason));
        if self.snapshot_max_chunk_size == 0 || self.snapshot_max_chunk_size > MAX_SNAPSHOT_CHUNK {
            return invalid(format!(
                "snapshot_max_chunk_size {} must be between 1 and {MAX_SNAPSHOT_CHUNK}",
                self.snapshot_max_chunk_size
            ));
        }
        if self.propose_timeout <= self.election_timeout_max {
            return invalid(format!(
                "propose_timeout {:?} must exceed election_timeout_max {:?} (a proposal should outlive an election)",
                self.propose_timeout, self.election_timeout_max
            ));
        }
        if self.snapshot_after_entries == 0 {
            return invalid("snapshot_after_entries must be at least 1".into());
        }
        self.to_openraft().map(|_| ())
    }

    /// openraft's config, validated.
    pub fn to_openraft(&self) -> Result<openraft::Config, MetadataError> {
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let config = openraft::Config {
            cluster_name: "rafka-metadata".into(),
            heartbeat_interval: millis(self.heartbeat_interval),
            election_timeout_min: millis(self.election_timeout_min),
            election_timeout_max: millis(self.election_timeout_max),
            install_snapshot_timeout: millis(self.install_snapshot_timeout),
            snapshot_max_chunk_size: self.snapshot_max_chunk_size,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.keep_entries_after_snapshot,
            max_payload_entries: self.max_payload_entries,
            ..openraft::Config::default()
        };
        config
            .validate()
            .map_err(|e| MetadataError::RaftConfig(e.to_string()))
    }
}
