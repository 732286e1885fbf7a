//! The leader's side of one partition: follower progress, the high watermark, ISR changes
//! (KRaft's AlterPartition) and acks=all waits.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::progress::FollowerProgress;
use super::waiters::{AckWaiters, WaiterId};
use super::{AlterPartition, EpochEndOffset, IsrEntry, LocalLog, PartitionMetadata, ReplicaError};
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch};

/// The leader's settings for one partition (topic config and broker config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// `min.insync.replicas`: acks=all needs a committed ISR at least this large.
    pub min_insync_replicas: usize,
    /// `replica.lag.time.max.ms`: an in-sync follower not caught up for longer leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// How long an AlterPartition may go unanswered (no new partition epoch, no refusal)
    /// before it is sent again; also the pause after a refusal before the next proposal.
    pub alter_partition_retry: Duration,
}

impl Default for LeaderConfig {
    fn default() -> Self {
        Self {
            min_insync_replicas: 1,
            replica_lag_time_max: Duration::from_secs(30),
            alter_partition_retry: Duration::from_secs(5),
        }
    }
}

/// What the leader core asks its shell to do, or tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaderOutput {
    /// The high watermark advanced to this offset: store it (`advance_high_watermark`),
    /// release fetches waiting for it, publish commit notices.
    HighWatermark(Offset),
    /// Propose this ISR change to the metadata log. The outcome comes back as a new partition
    /// epoch in [`LeaderState::on_metadata`], or as a refusal in
    /// [`LeaderState::on_alter_partition_refused`].
    AlterPartition(AlterPartition),
    /// An acks=all wait is over: answer the produce request.
    Acked {
        /// The wait.
        waiter: WaiterId,
        /// Success, or why not.
        result: Result<(), ReplicaError>,
    },
}

/// A follower joins the ISR only on a fetch this recent: a live follower fetches at least every
/// fetch wait (500 ms); one silent for longer may be dead (and the controller fences dead replicas
/// out of ISRs: re-adding them from an old position would undo that, again and again).
pub const JOIN_FETCH_WINDOW: Duration = Duration::from_secs(2);

/// Whether this node still leads after a metadata update.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    /// Same leader and leader epoch: keep using this state.
    Kept,
    /// Another leader or leader epoch: every waiter was failed; drop this state (and create a
    /// new one if this node leads again in the new epoch).
    Lost,
}

/// Why the metadata log refused an AlterPartition, as far as the leader must know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterPartitionRefusal {
    /// The leader or partition epoch it was based on is no longer current (the metadata's
    /// `StalePartition`; Kafka's INVALID_UPDATE_VERSION or FENCED_LEADER_EPOCH). This says
    /// nothing about whether an earlier copy of the same proposal committed (that is one way the
    /// partition epoch moves), so the maximal ISR stays until newer metadata shows the outcome.
    StaleEpoch,
    /// Refused against the current epochs: a member is not a replica or restarted since it was
    /// seen (the metadata's `IneligibleReplica`; Kafka's INELIGIBLE_REPLICA). No copy of it can
    /// ever commit; the leader falls back to the committed ISR.
    Ineligible,
}

#[derive(Clone, Debug)]
struct Pending {
    proposal: AlterPartition,
    sent_at: Duration,
    /// Refused as stale: not sent again; only newer metadata ends it.
    awaiting_metadata: bool,
}

/// The replica state of a partition this node leads, for one leader epoch. Pure: inputs and
/// `now` in, [`LeaderOutput`]s out through [`LeaderState::poll_output`].
#[derive(Debug)]
pub struct LeaderState {
    local: NodeId,
    local_broker_epoch: BrokerEpoch,
    leader_epoch: LeaderEpoch,
    partition_epoch: PartitionEpoch,
    replicas: Vec<NodeId>,
    /// The committed ISR (as the metadata says).
    isr: Vec<NodeId>,
    config: LeaderConfig,
    followers: BTreeMap<NodeId, FollowerProgress>,
    log_end: Offset,
    high_watermark: Offset,
    epoch_start_offset: Offset,
    pending: Option<Pending>,
    next_proposal_at: Duration,
    waiters: AckWaiters,
    outputs: VecDeque<LeaderOutput>,
    resigned: bool,
}

impl LeaderState {
    /// Takes leadership of a partition whose metadata names `local` its leader, with the local
    /// log as it is now. Every in-sync follower counts as caught up now; none has a known log
    /// end until it fetches, so the high watermark waits for them (unless the ISR is this node
    /// alone, when it moves to the log end at once).
    pub fn new(
        local: NodeId,
        metadata: &PartitionMetadata,
        config: LeaderConfig,
        log: &impl LocalLog,
        now: Duration,
    ) -> Result<Self, ReplicaError> {
        if metadata.leader != local {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        let log_end = log.log_end_offset();
        let mut state = Self {
            local,
            local_broker_epoch: metadata.broker_epoch(local).unwrap_or(BrokerEpoch(-1)),
            leader_epoch: metadata.leader_epoch,
            partition_epoch: metadata.partition_epoch,
            replicas: metadata.replicas.clone(),
            isr: metadata.isr.clone(),
            config,
            followers: BTreeMap::new(),
            log_end,
            high_watermark: log.high_watermark().min(log_end),
            epoch_start_offset: epoch_start_offset(metadata.leader_epoch, log),
            pending: None,
            next_proposal_at: Duration::ZERO,
            waiters: AckWaiters::default(),
            outputs: VecDeque::new(),
            resigned: false,
        };
        // Every committed member is new to this leadership: caught up as of now.
        state.sync_followers(metadata, &[], now);
        state.maybe_advance_high_watermark();
        Ok(state)
    }

    /// The next output, if any. Drain after every call.
    pub fn poll_output(&mut self) -> Option<LeaderOutput> {
        self.outputs.pop_front()
    }

    /// This node.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The leader epoch this state is for.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    /// The partition epoch of the committed ISR.
    pub fn partition_epoch(&self) -> PartitionEpoch {
        self.partition_epoch
    }

    /// The committed ISR.
    pub fn isr(&self) -> &[NodeId] {
        &self.isr
    }

    /// The committed ISR and, while an AlterPartition is pending, its proposed members: the
    /// replicas the high watermark waits for.
    pub fn maximal_isr(&self) -> Vec<NodeId> {
        let mut nodes = self.isr.clone();
        if let Some(pending) = &self.pending {
            for entry in &pending.proposal.isr {
                if !nodes.contains(&entry.node) {
                    nodes.push(entry.node);
                }
            }
        }
        nodes
    }

    /// The proposal awaiting the metadata log's decision.
    pub fn pending_alter_partition(&self) -> Option<&AlterPartition> {
        self.pending.as_ref().map(|p| &p.proposal)
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> Offset {
        self.high_watermark
    }

    /// The leader's log end offset.
    pub fn log_end_offset(&self) -> Offset {
        self.log_end
    }

    /// Where this leader epoch starts in the log: a follower joins the ISR only with at least
    /// this much (it then has everything committed by earlier leaders).
    pub fn epoch_start_offset(&self) -> Offset {
        self.epoch_start_offset
    }

    /// What the leader knows of one follower.
    pub fn follower(&self, node: NodeId) -> Option<&FollowerProgress> {
        self.followers.get(&node)
    }

    /// acks=all waits not yet complete.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// True once leadership was given up; every call is then refused or ignored.
    pub fn is_resigned(&self) -> bool {
        self.resigned
    }

    /// Checks a request's leader epoch (follower Fetch, OffsetForLeaderEpoch, a consumer's
    /// `current_leader_epoch`) against this leader's.
    pub fn check_leader_epoch(&self, request: LeaderEpoch) -> Result<(), ReplicaError> {
        let current = self.leader_epoch;
        if self.resigned {
            Err(ReplicaError::NotLeaderOrFollower)
        } else if request < current {
            Err(ReplicaError::FencedLeaderEpoch { request, current })
        } else if request > current {
            Err(ReplicaError::UnknownLeaderEpoch { request, current })
        } else {
            Ok(())
        }
    }

    /// The answer to a follower's OffsetForLeaderEpoch for `requested` (after
    /// [`Self::check_leader_epoch`] on the request's current epoch). See
    /// [`leader_epoch_end_offset`]: it counts this leader's epoch as begun even before its first
    /// append.
    pub fn epoch_end_offset(
        &self,
        requested: LeaderEpoch,
        log: &impl LocalLog,
    ) -> Option<EpochEndOffset> {
        leader_epoch_end_offset(requested, self.leader_epoch, log)
    }

    /// Produce admission: acks=all needs a committed ISR of at least `min.insync.replicas`.
    pub fn can_append(&self, acks_all: bool) -> Result<(), ReplicaError> {
        if self.resigned {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        if acks_all && self.isr.len() < self.config.min_insync_replicas {
            return Err(ReplicaError::NotEnoughReplicas {
                isr: self.isr.len(),
                min_insync: self.config.min_insync_replicas,
            });
        }
        Ok(())
    }

    /// The local log now ends at `log_end` (after an append). With the leader alone in the ISR
    /// the high watermark follows at once.
    pub fn on_local_append(&mut self, log_end: Offset) {
        if self.resigned || log_end <= self.log_end {
            return;
        }
        self.log_end = log_end;
        self.maybe_advance_high_watermark();
    }

    /// A follower fetched at `fetch_offset` (its log end), with its broker epoch and the leader
    /// epoch it believes current. Refused (nothing recorded) for another leader epoch, a node
    /// that is not an assigned replica, a broker epoch older than the replica's newest, or an
    /// offset beyond the log end. Accepted, it may advance the high watermark and propose an
    /// ISR change. Answer with [`Self::high_watermark`] afterwards.
    pub fn on_follower_fetch(
        &mut self,
        replica: NodeId,
        broker_epoch: BrokerEpoch,
        leader_epoch: LeaderEpoch,
        fetch_offset: Offset,
        now: Duration,
    ) -> Result<(), ReplicaError> {
        self.check_leader_epoch(leader_epoch)?;
        if replica == self.local || !self.replicas.contains(&replica) {
            return Err(ReplicaError::UnknownReplica { replica });
        }
        let in_maximal_isr = self.in_maximal_isr(replica);
        let (log_end, high_watermark) = (self.log_end, self.high_watermark);
        let progress = self
            .followers
            .get_mut(&replica)
            .ok_or(ReplicaError::UnknownReplica { replica })?;
        let newest = progress
            .fetch_broker_epoch
            .max(progress.metadata_broker_epoch);
        if let Some(current) = newest
            && broker_epoch < current
        {
            return Err(ReplicaError::StaleBrokerEpoch {
                replica,
                request: broker_epoch,
                current,
            });
        }
        if !(Offset(0)..=log_end).contains(&fetch_offset) {
            return Err(ReplicaError::OffsetOutOfRange {
                offset: fetch_offset,
                log_end,
            });
        }
        // A newer broker epoch than any seen: the replica restarted and may have lost records.
        let restarted = newest.is_some_and(|current| broker_epoch > current);
        if restarted {
            progress.reset();
        }
        progress.fetch_broker_epoch = Some(broker_epoch);
        progress.record_fetch(fetch_offset, log_end, now);
        // An in-sync replica below the high watermark lacks committed records (it restarted, or
        // truncated a corrupt batch): it must not stay electable.
        if in_maximal_isr && (restarted || fetch_offset < high_watermark) {
            progress.must_leave = true;
        }
        self.maybe_advance_high_watermark();
        self.maybe_propose(now);
        Ok(())
    }

    /// Registers an acks=all wait for the records up to `required_offset - 1` (pass the last
    /// appended offset + 1). Completes once the high watermark reaches it: successfully, or with
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND if the committed ISR is then below
    /// `min.insync.replicas`; with REQUEST_TIMED_OUT at `deadline` (see [`Self::tick`]); with
    /// NOT_LEADER_OR_FOLLOWER when leadership is lost. Each waiter completes exactly once.
    pub fn add_waiter(&mut self, waiter: WaiterId, required_offset: Offset, deadline: Duration) {
        if self.resigned {
            self.outputs.push_back(LeaderOutput::Acked {
                waiter,
                result: Err(ReplicaError::NotLeaderOrFollower),
            });
        } else if required_offset <= self.high_watermark {
            let result = self.ack_result();
            self.outputs
                .push_back(LeaderOutput::Acked { waiter, result });
        } else {
            self.waiters.insert(waiter, required_offset, deadline);
        }
    }

    /// Forgets a wait without completing it (its request went away). False if it was not
    /// waiting.
    pub fn cancel_waiter(&mut self, waiter: WaiterId) -> bool {
        self.waiters.remove(waiter)
    }

    /// Advances time: expires waits, re-sends an unanswered AlterPartition, proposes ISR
    /// changes (followers lagging longer than `replica.lag.time.max.ms` leave; caught-up ones
    /// join). Call it regularly (every few hundred milliseconds) and at waiter deadlines.
    pub fn tick(&mut self, now: Duration) {
        if self.resigned {
            return;
        }
        for waiter in self.waiters.take_expired(now) {
            self.outputs.push_back(LeaderOutput::Acked {
                waiter,
                result: Err(ReplicaError::RequestTimedOut),
            });
        }
        let retry = self.config.alter_partition_retry;
        if let Some(pending) = &mut self.pending
            && !pending.awaiting_metadata
            && now.saturating_sub(pending.sent_at) >= retry
        {
            // It may still commit: keep the maximal ISR and send the same proposal again (at
            // most one proposal per partition epoch can commit).
            pending.sent_at = now;
            let proposal = pending.proposal.clone();
            self.outputs
                .push_back(LeaderOutput::AlterPartition(proposal));
        }
        self.maybe_propose(now);
    }

    /// A new metadata image. Another leader or leader epoch resigns (see [`Leadership::Lost`]).
    /// A newer partition epoch replaces the committed ISR and ends the pending proposal
    /// (committed if the ISR is the proposed one, superseded otherwise: it can no longer
    /// commit). A replica whose broker epoch grew restarted: it leaves the ISR.
    pub fn on_metadata(
        &mut self,
        metadata: &PartitionMetadata,
        config: LeaderConfig,
        now: Duration,
    ) -> Leadership {
        if self.resigned {
            return Leadership::Lost;
        }
        if metadata.leader != self.local || metadata.leader_epoch != self.leader_epoch {
            self.resign();
            return Leadership::Lost;
        }
        self.config = config;
        if metadata.partition_epoch < self.partition_epoch {
            return Leadership::Kept;
        }
        self.local_broker_epoch = metadata
            .broker_epoch(self.local)
            .unwrap_or(self.local_broker_epoch);
        let previous_isr = if metadata.partition_epoch > self.partition_epoch {
            self.partition_epoch = metadata.partition_epoch;
            self.replicas.clone_from(&metadata.replicas);
            self.pending = None;
            self.next_proposal_at = Duration::ZERO;
            std::mem::replace(&mut self.isr, metadata.isr.clone())
        } else {
            self.isr.clone()
        };
        self.sync_followers(metadata, &previous_isr, now);
        self.clear_leave_marks();
        self.maybe_advance_high_watermark();
        self.maybe_propose(now);
        Leadership::Kept
    }

    /// The metadata log refused `proposal`, for a reason not told apart: handled as
    /// [`AlterPartitionRefusal::StaleEpoch`], which is safe for every refusal (the proposal stays
    /// pending until newer metadata). Prefer [`Self::on_alter_partition_refused`].
    pub fn on_alter_partition_rejected(&mut self, proposal: &AlterPartition, now: Duration) {
        self.on_alter_partition_refused(proposal, AlterPartitionRefusal::StaleEpoch, now);
    }

    /// The metadata log applied and refused `proposal` (see [`AlterPartitionRefusal`]: the
    /// metadata's `StalePartition` is `StaleEpoch`, `IneligibleReplica` is `Ineligible`). Not
    /// for timeouts or "no metadata leader", after which it may still commit: the core re-sends
    /// it itself.
    pub fn on_alter_partition_refused(
        &mut self,
        proposal: &AlterPartition,
        refusal: AlterPartitionRefusal,
        now: Duration,
    ) {
        let Some(pending) = self.pending.as_mut() else {
            return;
        };
        if &pending.proposal != proposal {
            return;
        }
        if refusal == AlterPartitionRefusal::StaleEpoch {
            pending.awaiting_metadata = true;
            return;
        }
        self.pending = None;
        self.next_proposal_at = now.saturating_add(self.config.alter_partition_retry);
        self.clear_leave_marks();
        self.maybe_advance_high_watermark();
    }

    /// Gives up leadership: fails every waiter with NOT_LEADER_OR_FOLLOWER. Call it before
    /// dropping the state for any reason (partition deleted, shutdown).
    pub fn resign(&mut self) {
        if self.resigned {
            return;
        }
        self.resigned = true;
        self.pending = None;
        for waiter in self.waiters.take_all() {
            self.outputs.push_back(LeaderOutput::Acked {
                waiter,
                result: Err(ReplicaError::NotLeaderOrFollower),
            });
        }
    }

    fn in_maximal_isr(&self, node: NodeId) -> bool {
        self.isr.contains(&node)
            || self
                .pending
                .as_ref()
                .is_some_and(|p| p.proposal.isr.iter().any(|e| e.node == node))
    }

    /// Tracks every replica and ISR member but this node; records broker epochs, resetting a
    /// replica whose epoch grew (it restarted). Members new to the committed ISR count as
    /// caught up now if they never were.
    fn sync_followers(
        &mut self,
        metadata: &PartitionMetadata,
        previous_isr: &[NodeId],
        now: Duration,
    ) {
        let local = self.local;
        let wanted =
            |n: &NodeId| *n != local && (self.replicas.contains(n) || self.isr.contains(n));
        let nodes: Vec<NodeId> = self.replicas.iter().chain(&self.isr).copied().collect();
        self.followers.retain(|n, _| wanted(n));
        for node in nodes.into_iter().filter(|n| wanted(n)) {
            let in_maximal_isr = self.in_maximal_isr(node);
            let joined = self.isr.contains(&node) && !previous_isr.contains(&node);
            let progress = self.followers.entry(node).or_default();
            let epoch = metadata.broker_epoch(node);
            if progress
                .metadata_broker_epoch
                .is_some_and(|old| epoch.is_some_and(|new| new > old))
            {
                progress.reset();
                progress.must_leave |= in_maximal_isr;
            }
            progress.metadata_broker_epoch = epoch;
            if joined && progress.caught_up_at.is_none() {
                progress.caught_up_at = Some(now);
            }
        }
    }

    /// A replica outside the maximal ISR has nothing to leave.
    fn clear_leave_marks(&mut self) {
        let members = self.maximal_isr();
        for (node, progress) in &mut self.followers {
            if !members.contains(node) {
                progress.must_leave = false;
            }
        }
    }

    /// The smallest log end over the maximal ISR; the current high watermark while any member's
    /// log end is unknown.
    fn candidate_high_watermark(&self) -> Offset {
        let mut candidate = self.log_end;
        for node in self.maximal_isr() {
            if node == self.local {
                continue;
            }
            match self.followers.get(&node).and_then(|p| p.log_end) {
                Some(log_end) => candidate = candidate.min(log_end),
                None => return self.high_watermark,
            }
        }
        candidate
    }

    fn maybe_advance_high_watermark(&mut self) {
        if self.resigned {
            return;
        }
        let candidate = self.candidate_high_watermark();
        if candidate <= self.high_watermark {
            return;
        }
        self.high_watermark = candidate;
        self.outputs
            .push_back(LeaderOutput::HighWatermark(candidate));
        let result = self.ack_result();
        for waiter in self.waiters.take_reached(candidate) {
            self.outputs.push_back(LeaderOutput::Acked {
                waiter,
                result: result.clone(),
            });
        }
    }

    fn ack_result(&self) -> Result<(), ReplicaError> {
        if self.isr.len() < self.config.min_insync_replicas {
            Err(ReplicaError::NotEnoughReplicasAfterAppend {
                isr: self.isr.len(),
                min_insync: self.config.min_insync_replicas,
            })
        } else {
            Ok(())
        }
    }

    /// Whether a follower outside the ISR may join: it has everything committed (its log end is
    /// at least the high watermark and the start of this leader epoch), fetched with its
    /// current broker epoch (KIP-903), and fetched within the lag time (a replica that stopped
    /// fetching, perhaps dead, is not proposed from an old position).
    fn may_join(&self, progress: &FollowerProgress, now: Duration) -> bool {
        // (A leave mark means nothing outside the ISR: a replica that had to leave rejoins once
        // it has fetched everything committed again.)
        progress.log_end.is_some_and(|log_end| {
            log_end >= self.high_watermark && log_end >= self.epoch_start_offset
        }) && progress.fetch_broker_epoch.is_some()
            && progress.fetch_broker_epoch == progress.metadata_broker_epoch
            && progress
                .last_fetch
                .is_some_and(|(_, at)| now.saturating_sub(at) <= JOIN_FETCH_WINDOW)
    }

    /// One ISR change at a time: followers out of sync leave, eligible ones join.
    fn maybe_propose(&mut self, now: Duration) {
        if self.resigned || self.pending.is_some() || now < self.next_proposal_at {
            return;
        }
        let (log_end, max_lag) = (self.log_end, self.config.replica_lag_time_max);
        let extra_members = self.isr.iter().filter(|n| !self.replicas.contains(n));
        let mut members = Vec::with_capacity(self.replicas.len());
        let mut changed = false;
        for &node in self.replicas.iter().chain(extra_members) {
            let in_isr = self.isr.contains(&node);
            let keep = if node == self.local {
                true
            } else if let Some(progress) = self.followers.get(&node) {
                if in_isr {
                    !progress.must_leave && progress.is_caught_up(log_end, now, max_lag)
                } else {
                    self.may_join(progress, now)
                }
            } else {
                false
            };
            changed |= keep != in_isr;
            if keep {
                let broker_epoch = if node == self.local {
                    self.local_broker_epoch
                } else {
                    self.followers
                        .get(&node)
                        .and_then(FollowerProgress::broker_epoch)
                        .unwrap_or(BrokerEpoch(-1))
                };
                members.push(IsrEntry { node, broker_epoch });
            }
        }
        if !changed {
            return;
        }
        let proposal = AlterPartition {
            leader: self.local,
            leader_epoch: self.leader_epoch,
            partition_epoch: self.partition_epoch,
            isr: members,
        };
        self.outputs
            .push_back(LeaderOutput::AlterPartition(proposal.clone()));
        self.pending = Some(Pending {
            proposal,
            sent_at: now,
            awaiting_metadata: false,
        });
    }
}

/// Where `leader_epoch` starts in `log`: its first offset if the log holds records of it (a
/// leader that kept its epoch across a restart), else the log end (a fresh election).
fn epoch_start_offset(leader_epoch: LeaderEpoch, log: &impl LocalLog) -> Offset {
    if log.latest_epoch() != Some(leader_epoch) {
        return log.log_end_offset();
    }
    leader_epoch
        .0
        .checked_sub(1)
        .and_then(|previous| log.end_offset_for_epoch(LeaderEpoch(previous)))
        .map_or(log.log_start_offset(), |(_, end)| end)
}

/// The leader's answer to OffsetForLeaderEpoch (KIP-101/KIP-279): the largest epoch at or below
/// `requested` and the offset where it ends in the leader's log (the start of the next epoch,
/// or the log end for the latest). The leader's own epoch counts as begun at its log end even
/// before its first append (Kafka writes it to the epoch cache on election; the store only
/// learns epochs from appended batches), so an epoch the leader never saw ends where the next
/// one began instead of being undefined. `None` (undefined) only for a negative epoch.
pub fn leader_epoch_end_offset(
    requested: LeaderEpoch,
    leader_epoch: LeaderEpoch,
    log: &impl LocalLog,
) -> Option<EpochEndOffset> {
    let log_end = log.log_end_offset();
    let answer = |epoch, end_offset| EpochEndOffset { epoch, end_offset };
    if requested.0 < 0 {
        return None;
    }
    if requested >= leader_epoch {
        return Some(answer(leader_epoch, log_end));
    }
    match log.latest_epoch() {
        Some(latest) if latest > requested => log
            .end_offset_for_epoch(requested)
            .map(|(epoch, end)| answer(epoch, end)),
        // Nothing appended after `requested` but this leader's epoch, which begins at the end.
        Some(latest) => Some(answer(latest, log_end)),
        None => Some(answer(requested, log_end)),
    }
}
