//! The follower's side of one partition: reconcile the local log with the leader's by leader
//! epoch (KIP-101, KIP-279), then fetch.

use std::collections::VecDeque;
use std::time::Duration;

use super::{EpochEndOffset, FetchError, LocalLog};
use crate::ids::{LeaderEpoch, NodeId, Offset};

/// The follower's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FollowerConfig {
    /// Pause after a failed request before trying again (`replica.fetch.backoff.ms`).
    pub retry_backoff: Duration,
}

impl Default for FollowerConfig {
    fn default() -> Self {
        Self {
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// Names one request the core asked for; its reply is fed back with it. Replies to any other
/// request than the one in flight are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// The leader's log start and end (Kafka's ListOffsets earliest/latest, sent as a replica).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaderOffsets {
    /// The leader's log start offset.
    pub log_start: Offset,
    /// The leader's log end offset.
    pub log_end: Offset,
}

/// What the follower core asks its shell to do. Carry them out in order; each one with a
/// `request` expects exactly one reply through the matching `on_*` call (an error reply for a
/// request that could not be sent or timed out).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FollowerAction {
    /// Ask the leader where `epoch` ends in its log (OffsetForLeaderEpoch, with
    /// `current_leader_epoch = leader_epoch` for fencing). Reply:
    /// [`FollowerState::on_epoch_end_offset`].
    SendOffsetForLeaderEpoch {
        /// The request.
        request: RequestId,
        /// The leader.
        leader: NodeId,
        /// The leader epoch this node knows (for fencing).
        leader_epoch: LeaderEpoch,
        /// The epoch to look up.
        epoch: LeaderEpoch,
    },
    /// Ask the leader for its log start and end (ListOffsets earliest and latest). Reply:
    /// [`FollowerState::on_leader_offsets`].
    ListLeaderOffsets {
        /// The request.
        request: RequestId,
        /// The leader.
        leader: NodeId,
        /// The leader epoch this node knows (for fencing).
        leader_epoch: LeaderEpoch,
    },
    /// Truncate the local log to `to` (`truncate_to`: whole batches go, so it may end lower).
    /// Reply: [`FollowerState::on_truncated`].
    Truncate {
        /// The request.
        request: RequestId,
        /// The offset to truncate to.
        to: Offset,
    },
    /// Empty the local log and restart it at `offset` (`reset_to`): the leader's log starts
    /// beyond everything this node has. Reply: [`FollowerState::on_truncated`].
    Reset {
        /// The request.
        request: RequestId,
        /// The new log start and end.
        offset: Offset,
    },
    /// Fetch from the leader at `offset` (with this node's broker epoch); append the records if
    /// [`FollowerState::accepts_records`], then reply with [`FollowerState::on_fetch`].
    Fetch {
        /// The request.
        request: RequestId,
        /// The leader.
        leader: NodeId,
        /// The leader epoch this node knows.
        leader_epoch: LeaderEpoch,
        /// The fetch offset (this node's log end).
        offset: Offset,
    },
    /// Advance the local high watermark to this offset (`advance_high_watermark`).
    SetHighWatermark(Offset),
    /// Nothing is in flight until `until`: call [`FollowerState::tick`] then (a newer leader
    /// epoch through [`FollowerState::on_metadata`] starts over at once).
    Backoff {
        /// When to retry.
        until: Duration,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AfterTruncation {
    Fetch,
    /// Ask again about the latest epoch left, which is at most this one.
    AskAtMost(LeaderEpoch),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OffsetsNeeded {
    /// A fetch was out of the leader's range.
    OutOfRange,
    /// The leader has no epoch at or below ours.
    UndefinedEpoch,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    Reconcile,
    Fetch,
    LeaderOffsets(OffsetsNeeded),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    EpochEnd {
        request: RequestId,
        asked: LeaderEpoch,
    },
    LeaderOffsets {
        request: RequestId,
        needed: OffsetsNeeded,
    },
    Truncating {
        request: RequestId,
        then: AfterTruncation,
    },
    Fetching {
        request: RequestId,
        offset: Offset,
    },
    BackingOff {
        until: Duration,
        retry: Retry,
    },
    /// The leader said our leader epoch is old: nothing until newer metadata.
    Fenced,
}

/// The replica state of a partition this node follows. Pure: metadata, replies and `now` in,
/// [`FollowerAction`]s out through [`FollowerState::poll_action`]. The local log is read through
/// [`LocalLog`], never written: writes are actions.
#[derive(Debug)]
pub struct FollowerState {
    leader: NodeId,
    leader_epoch: LeaderEpoch,
    config: FollowerConfig,
    phase: Phase,
    next_request: u64,
    actions: VecDeque<FollowerAction>,
}

impl FollowerState {
    /// Starts following `leader` in `leader_epoch`: asks where the local log's latest epoch
    /// ends on the leader, or fetches at once if the log holds no epoch.
    pub fn new(
        leader: NodeId,
        leader_epoch: LeaderEpoch,
        config: FollowerConfig,
        log: &impl LocalLog,
    ) -> Self {
        let mut state = Self {
            leader,
            leader_epoch,
            config,
            phase: Phase::Fenced,
            next_request: 0,
            actions: VecDeque::new(),
        };
        state.begin(log);
        state
    }

    /// The next action, if any. Drain after every call.
    pub fn poll_action(&mut self) -> Option<FollowerAction> {
        self.actions.pop_front()
    }

    /// The leader followed.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The leader epoch followed.
    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    /// True while waiting for newer metadata (the leader fenced our epoch).
    pub fn is_fenced(&self) -> bool {
        self.phase == Phase::Fenced
    }

    /// True while fetching (reconciliation with this leader is done).
    pub fn is_fetching(&self) -> bool {
        matches!(self.phase, Phase::Fetching { .. })
    }

    /// Whether the records of a reply to `request` may be appended: it is the fetch in flight
    /// and the local log still ends at its offset.
    pub fn accepts_records(&self, request: RequestId, log: &impl LocalLog) -> bool {
        matches!(self.phase, Phase::Fetching { request: r, offset }
            if r == request && log.log_end_offset() == offset)
    }

    /// New metadata for the partition: a newer leader epoch (another leader, or the same one
    /// elected again) starts reconciliation over. Older or equal epochs change nothing. (If
    /// this node is now the leader, or there is none, drop this state instead.)
    pub fn on_metadata(&mut self, leader: NodeId, leader_epoch: LeaderEpoch, log: &impl LocalLog) {
        if leader_epoch <= self.leader_epoch {
            return;
        }
        self.leader = leader;
        self.leader_epoch = leader_epoch;
        self.begin(log);
    }

    /// The reply to [`FollowerAction::SendOffsetForLeaderEpoch`]: `Ok(None)` when the leader
    /// answered with an undefined epoch or offset.
    pub fn on_epoch_end_offset(
        &mut self,
        request: RequestId,
        reply: Result<Option<EpochEndOffset>, FetchError>,
        log: &impl LocalLog,
        now: Duration,
    ) {
        let Phase::EpochEnd { request: r, asked } = self.phase else {
            return;
        };
        if r != request {
            return;
        }
        match reply {
            Err(error) => self.on_error(error, Retry::Reconcile, log, now),
            Ok(Some(answer)) if answer.epoch > asked => {
                // Not an answer to what was asked: ask again later.
                self.back_off(now, Retry::Reconcile);
            }
            Ok(Some(answer)) if answer.epoch.0 >= 0 && answer.end_offset.0 >= 0 => {
                self.reconcile(asked, answer, log);
            }
            Ok(_) => self.list_leader_offsets(OffsetsNeeded::UndefinedEpoch),
        }
    }

    /// The reply to [`FollowerAction::ListLeaderOffsets`].
    pub fn on_leader_offsets(
        &mut self,
        request: RequestId,
        reply: Result<LeaderOffsets, FetchError>,
        log: &impl LocalLog,
        now: Duration,
    ) {
        let Phase::LeaderOffsets { request: r, needed } = self.phase else {
            return;
        };
        if r != request {
            return;
        }
        let offsets = match reply {
            Ok(offsets) => offsets,
            Err(error) => return self.on_error(error, Retry::LeaderOffsets(needed), log, now),
        };
        let log_end = log.log_end_offset();
        if offsets.log_start > log_end {
            // Everything here is below the leader's log start (retention moved it past us).
            self.reset(offsets.log_start);
            return;
        }
        let truncate_to = match needed {
            // Kafka: a follower beyond the leader's end drops what the leader lacks.
            OffsetsNeeded::OutOfRange => offsets.log_end,
            // The leader holds no epoch at or below ours: none of our records at or after its
            // log start are on it.
            OffsetsNeeded::UndefinedEpoch => offsets.log_start,
        };
        self.truncate_then(truncate_to, AfterTruncation::Fetch, log);
    }

    /// The shell carried out [`FollowerAction::Truncate`] or [`FollowerAction::Reset`].
    pub fn on_truncated(&mut self, request: RequestId, log: &impl LocalLog) {
        if let Phase::Truncating { request: r, then } = self.phase
            && r == request
        {
            self.after_truncation(then, log);
        }
    }

    /// The reply to [`FollowerAction::Fetch`]: the leader's high watermark (records, if any,
    /// already appended), or the failure. A batch that failed verification is reported as
    /// [`FetchError::CorruptBatch`] after appending the good ones before it.
    pub fn on_fetch(
        &mut self,
        request: RequestId,
        reply: Result<Offset, FetchError>,
        log: &impl LocalLog,
        now: Duration,
    ) {
        let Phase::Fetching { request: r, .. } = self.phase else {
            return;
        };
        if r != request {
            return;
        }
        match reply {
            Ok(leader_high_watermark) => {
                let log_end = log.log_end_offset();
                let high_watermark = leader_high_watermark.min(log_end);
                if high_watermark > log.high_watermark() {
                    self.actions
                        .push_back(FollowerAction::SetHighWatermark(high_watermark));
                }
                self.fetch(log_end);
            }
            Err(error) => self.on_error(error, Retry::Fetch, log, now),
        }
    }

    /// Advances time: retries after a backoff.
    pub fn tick(&mut self, now: Duration, log: &impl LocalLog) {
        let Phase::BackingOff { until, retry } = self.phase else {
            return;
        };
        if now < until {
            return;
        }
        match retry {
            Retry::Reconcile => self.begin(log),
            Retry::Fetch => self.fetch(log.log_end_offset()),
            Retry::LeaderOffsets(needed) => self.list_leader_offsets(needed),
        }
    }

    fn next_request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    /// Reconciliation starts from the latest epoch in the log.
    fn begin(&mut self, log: &impl LocalLog) {
        match log.latest_epoch() {
            Some(epoch) => self.ask(epoch),
            None => self.fetch(log.log_end_offset()),
        }
    }

    fn ask(&mut self, epoch: LeaderEpoch) {
        let request = self.next_request();
        self.phase = Phase::EpochEnd {
            request,
            asked: epoch,
        };
        self.actions
            .push_back(FollowerAction::SendOffsetForLeaderEpoch {
                request,
                leader: self.leader,
                leader_epoch: self.leader_epoch,
                epoch,
            });
    }

    fn list_leader_offsets(&mut self, needed: OffsetsNeeded) {
        let request = self.next_request();
        self.phase = Phase::LeaderOffsets { request, needed };
        self.actions.push_back(FollowerAction::ListLeaderOffsets {
            request,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
        });
    }

    fn fetch(&mut self, offset: Offset) {
        let request = self.next_request();
        self.phase = Phase::Fetching { request, offset };
        self.actions.push_back(FollowerAction::Fetch {
            request,
            leader: self.leader,
            leader_epoch: self.leader_epoch,
            offset,
        });
    }

    fn reset(&mut self, offset: Offset) {
        let request = self.next_request();
        self.phase = Phase::Truncating {
            request,
            then: AfterTruncation::Fetch,
        };
        self.actions
            .push_back(FollowerAction::Reset { request, offset });
    }

    fn back_off(&mut self, now: Duration, retry: Retry) {
        let until = now.saturating_add(self.config.retry_backoff);
        self.phase = Phase::BackingOff { until, retry };
        self.actions.push_back(FollowerAction::Backoff { until });
    }

    /// KIP-279: the leader's largest epoch at or below `asked` ends at `answer.end_offset`.
    /// If this log has that epoch too, the logs agree up to where the shorter of the two ends
    /// it: truncate there and fetch. If it lacks it, everything after its own largest epoch
    /// below the leader's diverges: truncate to that epoch's end and ask again about it.
    /// Never the high watermark.
    fn reconcile(&mut self, asked: LeaderEpoch, answer: EpochEndOffset, log: &impl LocalLog) {
        if log.latest_epoch() != Some(asked) {
            // The log changed since the question: ask about what it holds now.
            return self.begin(log);
        }
        match log.end_offset_for_epoch(answer.epoch) {
            Some((epoch, end)) if epoch == answer.epoch => {
                let to = end.min(answer.end_offset);
                self.truncate_then(to, AfterTruncation::Fetch, log);
            }
            Some((epoch, end)) if epoch < answer.epoch => {
                self.truncate_then(end, AfterTruncation::AskAtMost(epoch), log);
            }
            // Not expected from a log whose latest epoch is `asked` >= the answer's: Kafka's
            // fallback, trust the leader's offset.
            _ => self.truncate_then(answer.end_offset, AfterTruncation::Fetch, log),
        }
    }

    fn truncate_then(&mut self, to: Offset, then: AfterTruncation, log: &impl LocalLog) {
        if to < log.log_end_offset() {
            let request = self.next_request();
            self.phase = Phase::Truncating { request, then };
            self.actions
                .push_back(FollowerAction::Truncate { request, to });
        } else {
            self.after_truncation(then, log);
        }
    }

    fn after_truncation(&mut self, then: AfterTruncation, log: &impl LocalLog) {
        match (then, log.latest_epoch()) {
            (AfterTruncation::AskAtMost(bound), Some(latest)) => self.ask(latest.min(bound)),
            _ => self.fetch(log.log_end_offset()),
        }
    }

    fn on_error(&mut self, error: FetchError, retry: Retry, log: &impl LocalLog, now: Duration) {
        match error {
            FetchError::FencedLeaderEpoch => self.phase = Phase::Fenced,
            FetchError::OffsetOutOfRange if retry == Retry::Fetch => {
                self.list_leader_offsets(OffsetsNeeded::OutOfRange);
            }
            FetchError::CorruptBatch { offset } if offset < log.log_end_offset() => {
                // The bad batch is in the local log: drop it and what follows, fetch again.
                self.truncate_then(offset.max(Offset(0)), AfterTruncation::Fetch, log);
            }
            _ => self.back_off(now, retry),
        }
    }
}
