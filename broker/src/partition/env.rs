//! What the partition shells need from outside the process's memory: the local log, time and
//! tasks, requests to a partition's leader, and ISR proposals to the metadata log. Production is
//! [`super::NodeEnv`] (the store, tokio, Kafka requests over the mesh, openraft); the seeded
//! simulation (`partition/sim/`) is another [`Env`] with a virtual clock, an in-memory log and a
//! lossy network, so it drives the very shells the node runs.

use std::future::Future;
use std::time::Duration;

use rafka_store::{Appended, StoreError, TopicPartition};

use super::core::{AlterPartition, AlterPartitionRefusal, EpochEndOffset, LeaderOffsets, LocalLog};
use crate::ids::{LeaderEpoch, NodeId, Offset};

/// A partition's local log as the shells use it. Reads are [`LocalLog`]'s (in memory, no I/O);
/// writes return futures that are queued when the method is called, so call order is write
/// order.
pub trait ReplicaLog: LocalLog + Clone + Send + Sync + 'static {
    /// What a leader appends: a producer's batch with its header read once.
    type Batch: Send + 'static;
    /// What a follower's fetch brings back: whole record batches carrying their offsets.
    type Records: Send + 'static;

    /// Appends `batch` as the leader in `leader_epoch` (the log assigns its offsets; `now_ms` is
    /// the leader's clock, for LogAppendTime topics).
    fn append(
        &self,
        batch: Self::Batch,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> impl Future<Output = Result<Appended, StoreError>> + Send + 'static;

    /// Appends fetched records, which must continue the log. A batch that fails verification
    /// refuses the append from its offset on ([`Refused::at`]).
    fn append_replicated(
        &self,
        records: Self::Records,
    ) -> impl Future<Output = Result<(), Refused>> + Send + 'static;

    /// True when a fetch brought nothing.
    fn is_empty(records: &Self::Records) -> bool;

    /// Truncates to the batch holding `offset` (whole batches go); returns the new log end.
    fn truncate_to(
        &self,
        offset: Offset,
    ) -> impl Future<Output = Result<Offset, StoreError>> + Send + 'static;

    /// Empties the log and restarts it at `offset`.
    fn reset_to(
        &self,
        offset: Offset,
    ) -> impl Future<Output = Result<(), StoreError>> + Send + 'static;

    /// Moves the local high watermark forward to `offset` (never back, never past the end).
    fn advance_high_watermark(&self, offset: Offset) -> Result<(), StoreError>;
}

/// Fetched records the log refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The first offset not appended (records before it were), when known.
    pub at: Option<Offset>,
    /// Why.
    pub reason: String,
}

/// One fetch's answer from the leader.
#[derive(Clone, Debug)]
pub struct Fetched<R> {
    /// The leader's high watermark.
    pub high_watermark: Offset,
    /// The records from the fetch offset on (possibly none).
    pub records: R,
}

/// Why a request to a leader brought no answer to use.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The leader answered with this Kafka error code.
    #[error("the leader answered error {0}")]
    Refused(i16),
    /// No answer: the leader is unknown or unreachable, timed out, or answered garbage.
    #[error("no answer: {0}")]
    Unreachable(String),
}

/// Why an ISR proposal did not commit.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    /// The metadata log applied it and refused it.
    #[error("refused: {0:?}")]
    Refused(AlterPartitionRefusal),
    /// Not committed yet (no metadata leader, a timeout): it may still commit. The leader's core
    /// proposes again when nothing comes back.
    #[error("not committed: {0}")]
    NotCommitted(String),
}

/// Everything the shells do outside memory. Cheap to clone; one per node.
pub trait Env: Clone + Send + Sync + 'static {
    /// The local partition logs.
    type Log: ReplicaLog;

    /// Time since a fixed start; never goes back.
    fn now(&self) -> Duration;

    /// Resolves once [`Env::now`] reaches `deadline`.
    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> + Send + 'static;

    /// Runs `task` in the background (it ends itself: on completion or cancellation).
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static);

    /// Proposes an ISR change for `tp` to the metadata log; resolves with its outcome.
    fn propose(
        &self,
        tp: TopicPartition,
        proposal: AlterPartition,
    ) -> impl Future<Output = Result<(), ProposalError>> + Send + 'static;

    /// Asks `leader` where `epoch` ends in its log of `tp` (OffsetForLeaderEpoch, fenced by
    /// `current`, this node's view of the leader epoch). `None`: undefined.
    fn epoch_end(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
        epoch: LeaderEpoch,
    ) -> impl Future<Output = Result<Option<EpochEndOffset>, LinkError>> + Send + 'static;

    /// Asks `leader` for its log start and end of `tp` (ListOffsets as a replica).
    fn leader_offsets(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
    ) -> impl Future<Output = Result<LeaderOffsets, LinkError>> + Send + 'static;

    /// Fetches `tp` from `leader` at `offset` as a replica (with this node's broker epoch); may
    /// wait at the leader for records to arrive.
    fn fetch(
        &self,
        leader: NodeId,
        tp: TopicPartition,
        current: LeaderEpoch,
        offset: Offset,
    ) -> impl Future<Output = Result<Fetched<<Self::Log as ReplicaLog>::Records>, LinkError>>
    + Send
    + 'static;
}
