//! The follower shell: one task per partition this node follows, driving a [`FollowerState`]
//! core. It sends what the core asks to the leader (through [`Env`]: OffsetForLeaderEpoch,
//! ListOffsets and Fetch as a replica), appends, truncates and moves the high watermark on the
//! local log, sleeps out backoffs, and starts over when the metadata names a newer leader epoch.

use rafka_store::TopicPartition;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::core::{FetchError, FollowerAction, FollowerConfig, FollowerState, RequestId};
use super::env::{Env, LinkError, ReplicaLog};
use crate::ids::{LeaderEpoch, NodeId, Offset};

/// The leader a follower task follows, as the metadata names it.
pub(super) type Followed = (NodeId, LeaderEpoch);

/// A running follower task.
pub(super) struct FollowerTask {
    leader: watch::Sender<Followed>,
    stop: CancellationToken,
}

impl FollowerTask {
    /// Starts following `followed` on `log` (stopped by `stop` or when the handle is stopped).
    pub(super) fn start<E: Env>(
        env: &E,
        tp: TopicPartition,
        log: E::Log,
        followed: Followed,
        config: FollowerConfig,
        stop: CancellationToken,
    ) -> Self {
        let (leader, leaders) = watch::channel(followed);
        tracing::debug!(topic_id = %tp.topic_id, partition = tp.partition, leader = followed.0.0, leader_epoch = followed.1.0, "following partition");
        let task = Follower {
            env: env.clone(),
            tp,
            log,
            leaders,
            stop: stop.clone(),
        };
        env.spawn(task.run(config));
        Self { leader, stop }
    }

    /// The metadata names `followed`: a newer leader epoch restarts reconciliation.
    pub(super) fn retarget(&self, followed: Followed) {
        self.leader.send_if_modified(|current| {
            let newer = *current != followed;
            *current = followed;
            newer
        });
    }

    /// Ends the task.
    pub(super) fn stop(&self) {
        self.stop.cancel();
    }
}

/// One partition's follower task.
struct Follower<E: Env> {
    env: E,
    tp: TopicPartition,
    log: E::Log,
    leaders: watch::Receiver<Followed>,
    stop: CancellationToken,
}

impl<E: Env> Follower<E> {
    /// Drives the core until stopped.
    async fn run(mut self, config: FollowerConfig) {
        let (leader, epoch) = *self.leaders.borrow_and_update();
        let mut state = FollowerState::new(leader, epoch, config, &self.log);
        loop {
            // Compared with what the core follows (not `has_changed`: a wait below may have seen
            // the change already).
            let (leader, epoch) = *self.leaders.borrow_and_update();
            if (leader, epoch) != (state.leader(), state.leader_epoch()) {
                state.on_metadata(leader, epoch, &self.log);
            }
            if self.stop.is_cancelled() {
                return;
            }
            let Some(action) = state.poll_action() else {
                // Fenced: nothing to do until newer metadata.
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return,
                    changed = self.leaders.changed() => if changed.is_err() { return },
                }
                continue;
            };
            if !self.perform(&mut state, action).await {
                return;
            }
        }
    }

    /// Carries out one action and feeds its outcome back; false once stopped.
    async fn perform(&mut self, state: &mut FollowerState, action: FollowerAction) -> bool {
        let (env, tp, log) = (&self.env, self.tp, &self.log);
        match action {
            FollowerAction::SendOffsetForLeaderEpoch {
                request,
                leader,
                leader_epoch,
                epoch,
            } => {
                let asking = env.epoch_end(leader, tp, leader_epoch, epoch);
                let Some(reply) = self.unless_stopped(asking).await else {
                    return false;
                };
                let (env, log) = (&self.env, &self.log);
                state.on_epoch_end_offset(request, reply.map_err(leader_answer), log, env.now());
            }
            FollowerAction::ListLeaderOffsets {
                request,
                leader,
                leader_epoch,
            } => {
                let asking = env.leader_offsets(leader, tp, leader_epoch);
                let Some(reply) = self.unless_stopped(asking).await else {
                    return false;
                };
                let (env, log) = (&self.env, &self.log);
                state.on_leader_offsets(request, reply.map_err(leader_answer), log, env.now());
            }
            FollowerAction::Truncate { request, to } => {
                match log.truncate_to(to).await {
                    Ok(end) => {
                        tracing::info!(topic_id = %tp.topic_id, partition = tp.partition, to = to.0, end = end.0, "truncated to the leader's log");
                    }
                    Err(e) => tracing::warn!(error = %e, "truncation failed"),
                }
                state.on_truncated(request, log);
            }
            FollowerAction::Reset { request, offset } => {
                if let Err(e) = log.reset_to(offset).await {
                    tracing::warn!(error = %e, "log reset failed");
                }
                state.on_truncated(request, log);
            }
            FollowerAction::Fetch {
                request,
                leader,
                leader_epoch,
                offset,
            } => {
                // A new leader ends a fetch to the old one at once (it may be dead).
                let fetching = env.fetch(leader, tp, leader_epoch, offset);
                let fetched = tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return false,
                    _ = self.leaders.changed() => return true,
                    fetched = fetching => fetched,
                };
                let reply = self.fetched(state, request, offset, fetched).await;
                state.on_fetch(request, reply, &self.log, self.env.now());
            }
            FollowerAction::SetHighWatermark(high_watermark) => {
                if let Err(e) = log.advance_high_watermark(high_watermark) {
                    tracing::debug!(error = %e, "cannot advance the follower's high watermark");
                }
            }
            FollowerAction::Backoff { until } => {
                tokio::select! {
                    biased;
                    () = self.stop.cancelled() => return false,
                    _ = self.leaders.changed() => {}
                    () = env.sleep_until(until) => {}
                }
                state.tick(self.env.now(), &self.log);
            }
        }
        true
    }

    /// The outcome of `request`, or `None` if the task is stopped first (a reply must not be
    /// acted on once another role owns the log).
    async fn unless_stopped<T>(&self, request: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            () = self.stop.cancelled() => None,
            outcome = request => Some(outcome),
        }
    }

    /// Appends a fetch's records if the core still wants them; the reply for the core.
    async fn fetched(
        &self,
        state: &FollowerState,
        request: RequestId,
        offset: Offset,
        fetched: Result<super::env::Fetched<<E::Log as ReplicaLog>::Records>, LinkError>,
    ) -> Result<Offset, FetchError> {
        let fetched = fetched.map_err(leader_answer)?;
        if E::Log::is_empty(&fetched.records) || !state.accepts_records(request, &self.log) {
            return Ok(fetched.high_watermark);
        }
        match self.log.append_replicated(fetched.records).await {
            Ok(()) => Ok(fetched.high_watermark),
            Err(refused) => {
                let tp = self.tp;
                tracing::warn!(topic_id = %tp.topic_id, partition = tp.partition, reason = refused.reason, "refused fetched records");
                Err(FetchError::CorruptBatch {
                    offset: refused.at.unwrap_or(offset),
                })
            }
        }
    }
}

/// The leader's answer as the core sees it. NOT_LEADER_OR_FOLLOWER and UNKNOWN_LEADER_EPOCH
/// while this node's metadata names that leader at that epoch mean the leader has not applied
/// it yet (or restarted): retried after the backoff, as Kafka's fetcher does, rather than
/// waiting for metadata that may never change again. FENCED_LEADER_EPOCH (ours is older) waits
/// for it; no answer at all is transient.
fn leader_answer(error: LinkError) -> FetchError {
    match error {
        LinkError::Refused(code) => match FetchError::from_kafka_code(code) {
            None | Some(FetchError::NotLeaderOrFollower | FetchError::UnknownLeaderEpoch) => {
                FetchError::Transient
            }
            Some(other) => other,
        },
        LinkError::Unreachable(_) => FetchError::Transient,
    }
}
