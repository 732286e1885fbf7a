//! The sans-IO cores of a partition's replication (Kafka's replication with KRaft's
//! AlterPartition): the replica state of one partition on one node, with no I/O, no clock and no
//! tasks. The shells beside this folder (`partition/leader.rs`, `partition/follower.rs`) feed
//! them metadata, local log positions, replies from peers and the time, and carry out what they
//! ask. The protocol as built is described in `docs/replication.md`.
//!
//! # What the core decides
//!
//! - [`LeaderState`], for a partition this node leads in one leader epoch: each follower's log
//!   end offset and catch-up time (from its fetches), the high watermark (the smallest log end
//!   over the *maximal* ISR: the committed ISR plus the members of a pending proposal, so a
//!   shrink never lets it pass what a leaving replica lacks and it never goes back), ISR
//!   changes (a member lagging longer than `replica.lag.time.max.ms`, restarted, or below the
//!   high watermark leaves; a follower with everything committed and its current broker epoch
//!   joins; one AlterPartition in flight at a time, based on the leader and partition epochs),
//!   produce admission (`min.insync.replicas` for acks=all) and acks=all waits.
//! - [`FollowerState`], for a partition this node follows: reconcile the local log with the
//!   leader's by leader epoch (OffsetForLeaderEpoch, KIP-101/KIP-279; never by high watermark),
//!   then fetch; what each error means (fenced: wait for metadata; out of range: ask the
//!   leader's offsets; corrupt: truncate and fetch again; anything else: back off).
//!
//! # What the shells do
//!
//! - [`crate::partition::Partitions`] builds a [`PartitionMetadata`] from each applied metadata
//!   image
//!   ([`PartitionMetadata::from_image`]) and keeps one state per local partition: a
//!   [`LeaderState`] when the image names this node leader (a new one per leader epoch; on
//!   [`Leadership::Lost`] drop it), a [`FollowerState`] when another node leads (fed newer
//!   epochs through [`FollowerState::on_metadata`]), none when there is no leader.
//! - Leader ([`crate::partition::Leader`]): calls [`LeaderState::on_local_append`] after each append and
//!   [`LeaderState::on_follower_fetch`] for each follower fetch (answering with the high
//!   watermark, or the error's Kafka code); answers OffsetForLeaderEpoch with
//!   [`LeaderState::epoch_end_offset`]; checks [`LeaderState::can_append`] before an append and
//!   registers acks=all waits with [`LeaderState::add_waiter`]; proposes each
//!   [`LeaderOutput::AlterPartition`] to the metadata log and reports its refusals; stores
//!   each [`LeaderOutput::HighWatermark`] and answers each [`LeaderOutput::Acked`].
//! - Follower (the task in `partition/follower.rs`): performs each [`FollowerAction`] in order (requests to the leader over the mesh
//!   with this node's broker epoch, truncations and high watermark updates on the store) and
//!   feeds every reply back with its [`RequestId`].
//! - Reads the local log for the core through [`LocalLog`] (implemented for the store's
//!   [`rafka_store::PartitionLog`]).
//!
//! # Time and inputs
//!
//! `now` is a [`Duration`](std::time::Duration) since any fixed epoch, never going back (the
//! shell passes `Instant` differences, tests a virtual clock). Nothing happens by itself: call
//! `tick(now)` regularly (a few times per second, and at the deadlines the core gave:
//! [`FollowerAction::Backoff`], waiter deadlines). Outputs queue inside each state; drain them
//! (`poll_output` / `poll_action`) after every call. Node ids, leader epochs, partition epochs,
//! broker epochs and offsets are the types of [`crate::ids`], so two of them cannot be swapped.
//!
//! ```
//! use std::time::Duration;
//! use rafka_broker::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch};
//! use rafka_broker::partition::core::{
//!     LeaderConfig, LeaderOutput, LeaderState, LocalLog, PartitionMetadata, WaiterId,
//! };
//!
//! struct Empty;
//! impl LocalLog for Empty {
//!     fn log_start_offset(&self) -> Offset { Offset(0) }
//!     fn log_end_offset(&self) -> Offset { Offset(0) }
//!     fn high_watermark(&self) -> Offset { Offset(0) }
//!     fn latest_epoch(&self) -> Option<LeaderEpoch> { None }
//!     fn end_offset_for_epoch(&self, _: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> { None }
//! }
//!
//! let (one, two) = (NodeId(1), NodeId(2));
//! let metadata = PartitionMetadata {
//!     leader: one,
//!     leader_epoch: LeaderEpoch(0),
//!     partition_epoch: PartitionEpoch(0),
//!     replicas: vec![one, two],
//!     isr: vec![one, two],
//!     broker_epochs: vec![(one, BrokerEpoch(1)), (two, BrokerEpoch(1))],
//! };
//! let now = Duration::ZERO;
//! let mut leader = LeaderState::new(one, &metadata, LeaderConfig::default(), &Empty, now).unwrap();
//! leader.can_append(true).unwrap();
//! leader.on_local_append(Offset(3)); // records 0..=2 appended
//! leader.add_waiter(WaiterId(7), Offset(3), now + Duration::from_secs(30));
//! // Node 2 (broker epoch 1) fetches in leader epoch 0 at offset 3: it has them.
//! leader.on_follower_fetch(two, BrokerEpoch(1), LeaderEpoch(0), Offset(3), now).unwrap();
//! assert_eq!(leader.poll_output(), Some(LeaderOutput::HighWatermark(Offset(3))));
//! assert_eq!(
//!     leader.poll_output(),
//!     Some(LeaderOutput::Acked { waiter: WaiterId(7), result: Ok(()) })
//! );
//! ```

mod error;
mod follower;
mod leader;
mod progress;
mod waiters;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::BTreeMap;

pub use error::{FetchError, ReplicaError};
pub use follower::{FollowerAction, FollowerConfig, FollowerState, LeaderOffsets, RequestId};
pub use leader::{
    AlterPartitionRefusal, LeaderConfig, LeaderOutput, LeaderState, Leadership,
    leader_epoch_end_offset,
};
pub use progress::FollowerProgress;
pub use waiters::WaiterId;

use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch};
use crate::metadata::{NodeImage, PartitionImage};

/// What the core reads of the local log. No I/O: the store keeps these in memory.
pub trait LocalLog {
    /// The first offset in the log.
    fn log_start_offset(&self) -> Offset;
    /// The offset the next record gets.
    fn log_end_offset(&self) -> Offset;
    /// The local high watermark.
    fn high_watermark(&self) -> Offset;
    /// The last stable offset: the high watermark, or the first offset of the oldest
    /// transaction not decided on every in-sync replica if lower. A log without transactions
    /// (the simulation's) has it at the high watermark.
    fn last_stable_offset(&self) -> Offset {
        self.high_watermark()
    }
    /// The latest leader epoch in the log, if any.
    fn latest_epoch(&self) -> Option<LeaderEpoch>;
    /// Kafka's leader-epoch cache lookup: the largest epoch at or below `epoch` and where it
    /// ends (the start of the next epoch, or the log end for the latest).
    fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)>;
}

/// One partition as a metadata image describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionMetadata {
    /// The leader (-1: none).
    pub leader: NodeId,
    /// Grows with every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Grows with every change of the partition (ISR changes included).
    pub partition_epoch: PartitionEpoch,
    /// Assigned replicas.
    pub replicas: Vec<NodeId>,
    /// The committed in-sync replicas.
    pub isr: Vec<NodeId>,
    /// The current broker epoch of each registered replica.
    pub broker_epochs: Vec<(NodeId, BrokerEpoch)>,
}

impl PartitionMetadata {
    /// From an applied image's partition and node registrations.
    pub fn from_image(partition: &PartitionImage, nodes: &BTreeMap<NodeId, NodeImage>) -> Self {
        let broker_epochs = partition
            .replicas
            .iter()
            .filter_map(|id| {
                nodes
                    .get(id)
                    .map(|node| (*id, BrokerEpoch(node.broker_epoch)))
            })
            .collect();
        Self {
            leader: partition.leader,
            leader_epoch: LeaderEpoch(partition.leader_epoch),
            partition_epoch: PartitionEpoch(partition.partition_epoch),
            replicas: partition.replicas.clone(),
            isr: partition.isr.clone(),
            broker_epochs,
        }
    }

    /// A replica's current broker epoch.
    pub fn broker_epoch(&self, node: NodeId) -> Option<BrokerEpoch> {
        self.broker_epochs
            .iter()
            .find(|(id, _)| *id == node)
            .map(|(_, epoch)| *epoch)
    }
}

/// An in-sync replica as proposed: with the broker epoch it was seen fetching with (KIP-903), so
/// the metadata log refuses a member that restarted since.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsrEntry {
    /// The node.
    pub node: NodeId,
    /// Its broker epoch.
    pub broker_epoch: BrokerEpoch,
}

/// An ISR change for the metadata log (KRaft's AlterPartition). It applies only if the
/// partition is still at `leader_epoch` and `partition_epoch`, so at most one proposal based on
/// a given partition epoch ever commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlterPartition {
    /// The proposing leader.
    pub leader: NodeId,
    /// The leader epoch it is based on.
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch it is based on.
    pub partition_epoch: PartitionEpoch,
    /// The new ISR, in replica order, the leader included.
    pub isr: Vec<IsrEntry>,
}

/// One epoch's end in a log: the answer to OffsetForLeaderEpoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EpochEndOffset {
    /// The largest epoch at or below the one asked about.
    pub epoch: LeaderEpoch,
    /// Where it ends: the first offset of the next epoch, or the log end.
    pub end_offset: Offset,
}
