//! A partition's life on this node: the one owner of every replica the node holds, leading or
//! following, and the operations the request handlers need of a partition.
//!
//! # Layout: cores and shells
//!
//! | file | what | kind |
//! |---|---|---|
//! | `core/` | [`core::LeaderState`], [`core::FollowerState`]: the replication protocol's decisions (high watermark, ISR changes, acks=all waits, divergence by leader epoch) | sans-IO core: no I/O, no clock, no tasks |
//! | [`partitions.rs`](Partitions) | every local replica in its role (leading, following, idle), moved by the metadata; the lookup handlers use; the 100 ms ticker | shell |
//! | [`leader.rs`](Leader) | a led partition in one leader epoch: append with acks, a replica's fetch, an epoch's end offset, the epoch check of a read; carries out the leader core's outputs | shell |
//! | `follower.rs` | a followed partition's task: carries out the follower core's actions | shell |
//! | [`env.rs`](Env) | what the shells need from outside: the log ([`ReplicaLog`]), time and tasks, requests to a leader, ISR proposals | seam |
//! | `txn_turn.rs` | a producer's transactional appends to a partition in arrival order while one waits for verification | shell |
//! | [`node_env.rs`](NodeEnv), [`mesh_link.rs`](MeshLink), `store_log.rs`, `reconcile.rs`, `read.rs` | the node's side of that seam: the store, tokio, Kafka requests over the mesh, the metadata log; reading for consumers and replicas | production I/O |
//! | `sim/` (tests) | the seeded simulation: three nodes' [`Partitions`] over a virtual clock, an in-memory log and a lossy network | the same shells, another [`Env`] |
//!
//! # What the handlers call
//!
//! Each handler decodes, calls the owner, encodes. "Does this node lead the partition?" is
//! asked of one place, [`Partitions::leader`], which answers with a [`Leader`] for one leader
//! epoch (it refuses everything once leadership moves):
//!
//! - Produce: [`Leader::append`] with the request's [`Acks`]: admission, the append (queued
//!   before it returns, so pipelined requests keep their order) and a future for the
//!   acknowledgement. No handler waits before returning its response future.
//! - Fetch: a consumer's [`Leader::check_epoch`] then [`Leader::read`] up to the last stable
//!   offset; a follower's [`Leader::replica_fetch`] (the leader's half of replication) then
//!   [`Leader::read`] up to the log end.
//! - OffsetForLeaderEpoch: [`Leader::epoch_end_offset`], the core's answer.
//! - ListOffsets: [`Leader::check_epoch`], [`Leader::visible_end`] for "latest".
//! - OffsetCommit: the group's offsets partition's [`Leader::append`] with [`Acks::All`].
//!
//! # Hooks for what comes next
//!
//! - **Coordinators** (groups, transactions) are leaders of a partition of `__consumer_offsets`
//!   / `__transaction_state`. After each metadata change, [`Partitions::reconcile`] returns the
//!   [`LeadershipChange`]s (gained, with the [`Leader`] and so its leader epoch; lost), and
//!   [`Partitions::leaders`] lists what this node leads now: a coordinator replays a partition it
//!   gained and detaches one it lost (`group/offsets.rs` does this for committed offsets). Its
//!   writes are [`Leader::append`] with [`Acks::All`]: appends are queued in call order and each
//!   future resolves with its own acknowledgement, so a coordinator can pipeline commits to one
//!   partition instead of holding a lock across the wait.
//! - **Transactions**: [`Leader::last_stable_offset`] (the store's) is where read_committed
//!   reads and ListOffsets stop ([`Leader::visible_end`], [`Reader::Consumer`]), and
//!   [`Leader::read`] returns the aborted transactions of what it read; a producer's
//!   transactional appends take turns ([`Leader::txn_turn`], `txn_turn.rs`) while the first of
//!   a transaction waits for the coordinator's verification (KIP-890).
//! - **Log compaction**: a cleaner rewrites a led partition's log below
//!   min([`Leader::last_stable_offset`], [`Leader::high_watermark`]), through the [`Leader`]
//!   so that a leadership change stops it.
//! - **Push subscription** publishes each commit: [`Leader::subscribe_commits`] yields every
//!   move of the high watermark with the leader epoch it was committed under.
//!
//! The protocol is described in `docs/replication.md`; the path of a produce and a follower's
//! fetch through these files in `docs/architecture.md`.

pub mod core;
mod env;
mod follower;
mod leader;
mod mesh_link;
mod node_env;
mod partitions;
mod read;
mod reconcile;
#[cfg(test)]
mod sim;
mod store_log;
mod txn_turn;

pub use env::{Env, Fetched, LinkError, ProposalError, Refused, ReplicaLog};
pub use leader::{Acks, AppendError, Commit, Leader};
pub use mesh_link::MeshLink;
pub use node_env::NodeEnv;
pub use partitions::{LeadershipChange, Partitions, ReplicationConfig, TICK};
pub use read::{PartitionRead, Reader};
pub use txn_turn::{PreviousTurn, TxnTurn};

/// The node's partitions, in production.
pub type NodePartitions = Partitions<NodeEnv>;
/// A partition this node leads, in production.
pub type NodeLeader = Leader<NodeEnv>;
