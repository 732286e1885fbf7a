//! [`Leader`]: a partition this node leads, in one leader epoch. The shell of the
//! [`LeaderState`] core: every operation a handler needs of a led partition goes through here
//! (admission, append and acknowledgement, a replica's fetch, an epoch's end offset, the epoch
//! check of a consumer's read), and what the core asks is carried out here (high watermarks on
//! the log, acknowledgements, ISR proposals to the metadata log).
//!
//! Locks: the core behind a std `Mutex`, held for a few lines, never across an `.await` or while
//! carrying out its outputs (collected first, then done).

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rafka_store::{Appended, StoreError, TopicPartition};
use tokio::sync::{oneshot, watch};

use super::core::{
    AlterPartition, EpochEndOffset, LeaderConfig, LeaderOutput, LeaderState, Leadership, LocalLog,
    PartitionMetadata, ReplicaError, WaiterId,
};
use super::env::{Env, ProposalError, ReplicaLog};
use super::read::Reader;
use super::txn_turn::{TxnTurn, TxnTurns};
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset};

/// A produce request's `acks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Acks {
    /// 0: no answer at all.
    None,
    /// 1: answered once the leader has appended (lost if it fails before followers have it).
    Leader,
    /// -1 (all): answered once every in-sync replica has the records.
    All,
}

impl Acks {
    /// From Kafka's `acks` field; `None` for a value Kafka refuses (INVALID_REQUIRED_ACKS).
    pub fn from_kafka(acks: i16) -> Option<Acks> {
        match acks {
            0 => Some(Acks::None),
            1 => Some(Acks::Leader),
            -1 => Some(Acks::All),
            _ => None,
        }
    }
}

/// Why an append was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The log refused the batch or failed to write it.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Appended, but not acknowledged: the in-sync replicas did not all get it in time, the ISR
    /// shrank below `min.insync.replicas`, or leadership was lost.
    #[error(transparent)]
    Replica(#[from] ReplicaError),
}

/// The high watermark as this leader published it: push subscribers and anything else that acts
/// on commits watch this ([`Leader::subscribe_commits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// The leadership it was committed under.
    pub leader_epoch: LeaderEpoch,
    /// Every record below this offset is on every in-sync replica.
    pub high_watermark: Offset,
}

type AckSender = oneshot::Sender<Result<(), ReplicaError>>;

/// A partition this node leads in one leader epoch (see the module documentation). Handlers get
/// one from [`super::Partitions::leader`]; once leadership moves it refuses everything with
/// NOT_LEADER_OR_FOLLOWER, so a handle held across a leader change is harmless.
pub struct Leader<E: Env> {
    tp: TopicPartition,
    log: E::Log,
    env: E,
    leader_epoch: LeaderEpoch,
    state: Mutex<LeaderState>,
    waiters: Mutex<HashMap<WaiterId, AckSender>>,
    next_waiter: AtomicU64,
    commits: watch::Sender<Commit>,
    /// Per producer, its latest transactional append's turn ([`Leader::txn_turn`]).
    txn_turns: TxnTurns,
}

impl<E: Env> std::fmt::Debug for Leader<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leader")
            .field("tp", &self.tp)
            .field("leader_epoch", &self.leader_epoch)
            .finish()
    }
}

impl<E: Env> Leader<E> {
    /// Takes leadership of `tp` as `metadata` describes it, over `log` as it is now.
    pub(super) fn new(
        env: E,
        local: NodeId,
        tp: TopicPartition,
        log: E::Log,
        (metadata, config): (&PartitionMetadata, LeaderConfig),
    ) -> Result<Arc<Self>, ReplicaError> {
        let state = LeaderState::new(local, metadata, config, &log, env.now())?;
        let commit = Commit {
            leader_epoch: metadata.leader_epoch,
            high_watermark: state.high_watermark(),
        };
        let leader = Arc::new(Self {
            tp,
            log,
            env,
            leader_epoch: metadata.leader_epoch,
            state: Mutex::new(state),
            waiters: Mutex::new(HashMap::new()),
            next_waiter: AtomicU64::new(1),
            commits: watch::Sender::new(commit),
            txn_turns: TxnTurns::default(),
        });
        leader.drain();
        Ok(leader)
    }

    fn state(&self) -> MutexGuard<'_, LeaderState> {
        // The core never panics half-way through a change; a poisoned lock holds a whole state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn waiters(&self) -> MutexGuard<'_, HashMap<WaiterId, AckSender>> {
        self.waiters
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The partition.
    pub fn topic_partition(&self) -> TopicPartition {
        self.tp
    }

    /// The leadership this handle is for.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    /// The local log (reads; writes go through this handle).
    pub fn log(&self) -> &E::Log {
        &self.log
    }

    /// The high watermark, as stored: what consumers may read.
    pub fn high_watermark(&self) -> Offset {
        self.log.high_watermark()
    }

    /// The last stable offset: read_committed consumers stop here. The high watermark, or the
    /// first offset of the oldest transaction not decided on every in-sync replica if lower
    /// (the store's transactions, beside its aborted-transactions index).
    pub fn last_stable_offset(&self) -> Offset {
        self.log.last_stable_offset()
    }

    /// The end of what `reader` may see (ListOffsets' "latest"): the last stable offset for a
    /// read_committed consumer, the high watermark for a read_uncommitted one, the log end for
    /// a replica.
    pub fn visible_end(&self, reader: Reader) -> Offset {
        match reader {
            Reader::Consumer => self.last_stable_offset(),
            Reader::Uncommitted => self.high_watermark(),
            Reader::Replica => self.log.log_end_offset(),
        }
    }

    /// The next turn of a producer's transactional appends to this partition. Turns are taken
    /// in the order the appends arrive (synchronously, when a request starts), so an append
    /// that must first wait for the coordinator's verification (KIP-890) keeps the producer's
    /// later appends behind it, in order, even when their requests' futures run on different
    /// tasks (`api/produce.rs`).
    pub fn txn_turn(&self, producer_id: i64) -> TxnTurn {
        self.txn_turns.take(producer_id)
    }

    /// The committed ISR.
    pub fn isr(&self) -> Vec<NodeId> {
        self.state().isr().to_vec()
    }

    /// The committed ISR plus the members of a pending proposal: the replicas the high
    /// watermark waits for.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        self.state().maximal_isr()
    }

    /// True once leadership has moved (or the node stops): every call is refused.
    pub fn is_resigned(&self) -> bool {
        self.state().is_resigned()
    }

    /// acks=all waits not yet answered.
    pub fn waiting(&self) -> usize {
        self.state().waiting()
    }

    /// Every move of the high watermark, with this leader epoch (push subscription publishes
    /// from here; a coordinator could apply its own records as they commit).
    pub fn subscribe_commits(&self) -> watch::Receiver<Commit> {
        self.commits.subscribe()
    }

    /// Checks the leader epoch a request carries (a consumer's fetch, ListOffsets,
    /// OffsetForLeaderEpoch): older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH; a
    /// negative one means "none given" and passes.
    pub fn check_epoch(&self, current: LeaderEpoch) -> Result<(), ReplicaError> {
        let state = self.state();
        match current.given() {
            Some(epoch) => state.check_leader_epoch(epoch),
            None if state.is_resigned() => Err(ReplicaError::NotLeaderOrFollower),
            None => Ok(()),
        }
    }

    /// Appends a producer's `batch` with `acks`. The append is queued before this returns (call
    /// order is append order, so pipelined requests keep their order and share group commits);
    /// the future answers once the append is acknowledged as `acks` says: at once for 0 and 1,
    /// when every in-sync replica has it for all (failing with REQUEST_TIMED_OUT after
    /// `timeout`). Refused at once (nothing appended) when this node no longer leads, or for
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`.
    ///
    /// Nothing is held while the future waits: appends of one partition pipeline, each waiting
    /// for its own acknowledgement.
    pub fn append(
        self: &Arc<Self>,
        batch: <E::Log as ReplicaLog>::Batch,
        now_ms: i64,
        acks: Acks,
        timeout: Duration,
    ) -> Result<impl Future<Output = Result<Appended, AppendError>> + Send + 'static, ReplicaError>
    {
        let acks_all = acks == Acks::All;
        self.state().can_append(acks_all)?;
        let appending = self.log.append(batch, self.leader_epoch, now_ms);
        let this = self.clone();
        Ok(async move {
            let appended = appending.await?;
            let last = Offset(appended.last_offset);
            if let Some(wait) = this.appended(last, acks_all, timeout) {
                wait.await
                    .unwrap_or(Err(ReplicaError::NotLeaderOrFollower))?;
            }
            Ok(appended)
        })
    }

    /// Records an append ending at `last_offset`; with `acks_all`, returns the wait for the
    /// in-sync replicas (failing after `timeout`).
    fn appended(
        self: &Arc<Self>,
        last_offset: Offset,
        acks_all: bool,
        timeout: Duration,
    ) -> Option<oneshot::Receiver<Result<(), ReplicaError>>> {
        let now = self.env.now();
        let wait = {
            let mut state = self.state();
            state.on_local_append(self.log.log_end_offset().max(last_offset.next()));
            acks_all.then(|| {
                let id = WaiterId(self.next_waiter.fetch_add(1, Ordering::Relaxed));
                let (tx, rx) = oneshot::channel();
                self.waiters().insert(id, tx);
                state.add_waiter(id, last_offset.next(), now + timeout);
                rx
            })
        };
        self.drain();
        wait
    }

    /// A follower's fetch at `fetch_offset`, with its broker epoch and the leader epoch it
    /// believes current: refused, or recorded (its position, perhaps a new high watermark or an
    /// ISR change). Answer with the records up to the log end and [`Self::high_watermark`].
    pub fn replica_fetch(
        self: &Arc<Self>,
        replica: NodeId,
        broker_epoch: BrokerEpoch,
        leader_epoch: LeaderEpoch,
        fetch_offset: Offset,
    ) -> Result<(), ReplicaError> {
        let now = self.env.now();
        let result = {
            let mut state = self.state();
            // Appends whose futures have not run yet count too.
            state.on_local_append(self.log.log_end_offset());
            state.on_follower_fetch(replica, broker_epoch, leader_epoch, fetch_offset, now)
        };
        self.drain();
        result
    }

    /// OffsetForLeaderEpoch: after [`Self::check_epoch`] of the request's `current` epoch, the
    /// largest epoch at or below `requested` and where it ends in this log, counting this
    /// leader's epoch as begun at the log end even before its first append (the core's
    /// `leader_epoch_end_offset`). `None`: undefined.
    pub fn epoch_end_offset(
        &self,
        current: LeaderEpoch,
        requested: LeaderEpoch,
    ) -> Result<Option<EpochEndOffset>, ReplicaError> {
        self.check_epoch(current)?;
        Ok(self.state().epoch_end_offset(requested, &self.log))
    }

    /// Advances time: waiter deadlines, ISR changes, proposals sent again.
    pub(super) fn tick(self: &Arc<Self>) {
        let now = self.env.now();
        {
            let mut state = self.state();
            state.on_local_append(self.log.log_end_offset());
            state.tick(now);
        }
        self.drain();
    }

    /// New metadata for the partition.
    pub(super) fn on_metadata(
        self: &Arc<Self>,
        metadata: &PartitionMetadata,
        config: LeaderConfig,
    ) -> Leadership {
        let now = self.env.now();
        let leadership = self.state().on_metadata(metadata, config, now);
        self.drain();
        leadership
    }

    /// Gives leadership up (moved, partition gone, shutdown): every acks=all wait fails with
    /// NOT_LEADER_OR_FOLLOWER and every later call is refused.
    pub(super) fn resign(self: &Arc<Self>) {
        self.state().resign();
        self.drain();
    }

    /// Carries out what the core asked for.
    fn drain(self: &Arc<Self>) {
        let outputs: Vec<LeaderOutput> = {
            let mut state = self.state();
            std::iter::from_fn(|| state.poll_output()).collect()
        };
        for output in outputs {
            match output {
                LeaderOutput::HighWatermark(high_watermark) => {
                    if let Err(e) = self.log.advance_high_watermark(high_watermark) {
                        tracing::warn!(topic_id = %self.tp.topic_id, partition = self.tp.partition, error = %e, "cannot advance the high watermark");
                    }
                    self.commits.send_replace(Commit {
                        leader_epoch: self.leader_epoch,
                        high_watermark,
                    });
                }
                LeaderOutput::Acked { waiter, result } => {
                    let sender = self.waiters().remove(&waiter);
                    // The core answers each wait exactly once.
                    debug_assert!(sender.is_some(), "{waiter:?} answered twice");
                    if let Some(tx) = sender {
                        let _ = tx.send(result);
                    }
                }
                LeaderOutput::AlterPartition(proposal) => self.propose(proposal),
            }
        }
    }

    fn propose(self: &Arc<Self>, proposal: AlterPartition) {
        tracing::info!(topic_id = %self.tp.topic_id, partition = self.tp.partition, isr = ?proposal.isr, "proposing an ISR change");
        let proposing = self.env.propose(self.tp, proposal.clone());
        let this = self.clone();
        self.env.spawn(async move {
            match proposing.await {
                Ok(()) => {}
                Err(ProposalError::Refused(refusal)) => {
                    tracing::info!(topic_id = %this.tp.topic_id, partition = this.tp.partition, ?refusal, "ISR change refused");
                    let now = this.env.now();
                    this.state()
                        .on_alter_partition_refused(&proposal, refusal, now);
                    this.drain();
                }
                // Not committed (yet): the core proposes again when no answer comes.
                Err(e) => tracing::debug!(error = %e, "ISR change not committed"),
            }
        });
    }
}
