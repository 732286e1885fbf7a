//! Running a write on the leader: locally when this node leads, otherwise forwarded to the
//! leader over the transport, retried while no leader is reachable, within one deadline.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::network::{RaftTransport, TransportError};
use super::rpc::{RaftReply, RaftRequest};
use super::{ApplyResult, Raft, RaftNode, RaftNodeId};
use crate::metadata::{MetadataCommand, MetadataError, Outcome, StatusWatch};

/// Longest pause between two attempts while no leader answers.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A write only the leader can make.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum LeaderOp {
    /// Append a command to the log.
    Propose(MetadataCommand),
    /// Add a non-voting member.
    AddLearner(RaftNodeId, RaftNode),
    /// Replace the voters (an odd number of them, in one joint-consensus change).
    ChangeVoters(BTreeSet<RaftNodeId>),
    /// Remove a member (voter or learner) entirely.
    RemoveNode(RaftNodeId),
}

/// What the leader answers to a forwarded [`LeaderOp`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum ForwardReply {
    /// Committed and applied at `log_index`.
    Done {
        /// Log index of the entry.
        log_index: u64,
        /// The state machine's answer.
        result: ApplyResult,
    },
    /// This node does not lead (any more); `leader` is who it believes does.
    NotLeader {
        /// The leader it knows of.
        leader: Option<RaftNodeId>,
    },
    /// Refused or not committed in time.
    Failed(MetadataError),
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn write_error(e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, RaftNode>>) -> ForwardReply {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(forward)) => {
            ForwardReply::NotLeader {
                leader: forward.leader_id,
            }
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ForwardReply::Failed(MetadataError::Membership(e.to_string()))
        }
        RaftError::Fatal(e) => {
            ForwardReply::Failed(MetadataError::Storage(format!("metadata log stopped: {e}")))
        }
    }
}

/// The current voters of `metrics`' membership (all configs when a change is in progress).
pub(crate) fn voters(metrics: &RaftMetrics<RaftNodeId, RaftNode>) -> BTreeSet<RaftNodeId> {
    metrics.membership_config.membership().voter_ids().collect()
}

/// Refuses voter sets that are empty or even: with 2 or 4 voters one more loss stops the log, as
/// with 1 or 3, so an even set only adds a way to lose the majority.
fn check_odd(wanted: &BTreeSet<RaftNodeId>) -> Result<(), MetadataError> {
    if wanted.len().is_multiple_of(2) {
        return Err(MetadataError::Membership(format!(
            "the voters must be an odd number of nodes, not {}",
            wanted.len()
        )));
    }
    Ok(())
}

/// Runs `op` on this node as the leader, within `timeout`.
pub(crate) async fn run_local(raft: &Raft, op: LeaderOp, timeout: Duration) -> ForwardReply {
    let work = async {
        let written = match op {
            LeaderOp::Propose(command) => raft.client_write(command).await,
            LeaderOp::AddLearner(id, node) => raft.add_learner(id, node, false).await,
            LeaderOp::ChangeVoters(wanted) => {
                if let Err(e) = check_odd(&wanted) {
                    return ForwardReply::Failed(e);
                }
                raft.change_membership(ChangeMembers::ReplaceAllVoters(wanted), true)
                    .await
            }
            LeaderOp::RemoveNode(id) => {
                let metrics = raft.metrics().borrow().clone();
                let membership = metrics.membership_config.membership();
                let change = if voters(&metrics).contains(&id) {
                    ChangeMembers::RemoveVoters(BTreeSet::from([id]))
                } else if membership.get_node(&id).is_some() {
                    ChangeMembers::RemoveNodes(BTreeSet::from([id]))
                } else {
                    return ForwardReply::Done {
                        log_index: metrics.last_applied.map_or(0, |id| id.index),
                        result: Ok(Outcome::Done),
                    };
                };
                raft.change_membership(change, false).await
            }
        };
        match written {
            Ok(response) => ForwardReply::Done {
                log_index: response.log_id.index,
                result: response.data,
            },
            Err(e) => write_error(e),
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(reply) => reply,
        Err(_) => ForwardReply::Failed(MetadataError::Timeout(millis(timeout))),
    }
}

/// Routes leader-only writes from this node.
pub(crate) struct Router {
    pub(crate) raft: Raft,
    pub(crate) id: RaftNodeId,
    pub(crate) transport: Arc<dyn RaftTransport>,
    pub(crate) timeout: Duration,
}

impl Router {
    /// Runs `op` on the leader, wherever it is; returns the entry's log index and the state
    /// machine's answer, once this node has applied it too. Retriable errors: `NoLeader` when no
    /// leader answered before the deadline, `Timeout` when the leader did not commit in time.
    pub(crate) async fn run(&self, op: LeaderOp) -> Result<(u64, ApplyResult), MetadataError> {
        let deadline = Instant::now() + self.timeout;
        let mut hint = None;
        let mut problem = "no leader elected".to_string();
        loop {
            let Some(leader) = hint.take().or(self.wait_for_leader(deadline).await) else {
                return Err(MetadataError::NoLeader(format!(
                    "{problem} (waited {} ms)",
                    millis(self.timeout)
                )));
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let reply = if leader == self.id {
                run_local(&self.raft, op.clone(), remaining).await
            } else {
                match self.forward(leader, &op, remaining).await {
                    Ok(reply) => reply,
                    Err(e) => {
                        problem = format!("leader {leader} not reachable: {e}");
                        self.pause(deadline).await;
                        continue;
                    }
                }
            };
            match reply {
                ForwardReply::Done { log_index, result } => {
                    if leader != self.id {
                        self.wait_applied(log_index, deadline).await;
                    }
                    return Ok((log_index, result));
                }
                ForwardReply::Failed(e) => return Err(e),
                ForwardReply::NotLeader { leader: next } => {
                    problem = format!("node {leader} no longer leads");
                    hint = next.filter(|next| *next != leader);
                    if hint.is_none() {
                        self.pause(deadline).await;
                    }
                }
            }
        }
    }

    /// Sends `op` to `leader`. `Err` only when it was certainly not delivered (retry).
    async fn forward(
        &self,
        leader: RaftNodeId,
        op: &LeaderOp,
        remaining: Duration,
    ) -> Result<ForwardReply, String> {
        let node = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&leader)
            .cloned()
            .ok_or_else(|| format!("leader {leader} is not in the membership"))?;
        let expires_unix_ms = super::rpc::unix_ms()
            .saturating_add(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX));
        let request = RaftRequest::Forward {
            op: op.clone(),
            expires_unix_ms,
        }
        .encode()
        .map_err(|e| e.to_string())?;
        let answer = match self.transport.call(&node, request, remaining).await {
            Ok(answer) => answer,
            Err(TransportError::Unreachable(reason)) => return Err(reason),
            Err(TransportError::Timeout(_)) => {
                return Ok(ForwardReply::Failed(MetadataError::Timeout(millis(
                    self.timeout,
                ))));
            }
            Err(e) => {
                return Ok(ForwardReply::Failed(MetadataError::NoLeader(format!(
                    "forwarding to leader {leader} failed: {e}"
                ))));
            }
        };
        match RaftReply::decode(&answer) {
            Ok(RaftReply::Forwarded(reply)) => Ok(reply),
            Ok(RaftReply::Stopped(reason)) => Err(format!("metadata log stopped there: {reason}")),
            Ok(other) => Ok(ForwardReply::Failed(MetadataError::NoLeader(format!(
                "leader {leader} answered {}",
                other.kind()
            )))),
            Err(e) => Ok(ForwardReply::Failed(MetadataError::NoLeader(format!(
                "undecodable answer from leader {leader}: {e}"
            )))),
        }
    }

    /// The current leader, waiting for one until `deadline`.
    async fn wait_for_leader(&self, deadline: Instant) -> Option<RaftNodeId> {
        self.wait_metrics(deadline, |m| m.current_leader).await
    }

    /// Waits until this node applied `index` (read-your-writes after a forwarded write).
    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let applied = self
            .wait_metrics(deadline, |m| m.last_applied.filter(|id| id.index >= index))
            .await;
        if applied.is_none() {
            tracing::debug!(index, "metadata write committed but not applied here yet");
        }
    }

    /// Waits for a metrics change (a new leader, say), at most [`RETRY_PAUSE`].
    async fn pause(&self, deadline: Instant) {
        let until = deadline.min(Instant::now() + RETRY_PAUSE);
        let mut changes = StatusWatch::new(self.raft.metrics());
        let _ = tokio::time::timeout_at(until, changes.changed()).await;
    }

    async fn wait_metrics<T>(
        &self,
        deadline: Instant,
        probe: impl Fn(&RaftMetrics<RaftNodeId, RaftNode>) -> Option<T>,
    ) -> Option<T> {
        wait_metrics(&self.raft, deadline, probe).await
    }
}

/// Waits until `probe` finds something in `raft`'s metrics, or `deadline`.
pub(crate) async fn wait_metrics<T>(
    raft: &Raft,
    deadline: Instant,
    probe: impl Fn(&RaftMetrics<RaftNodeId, RaftNode>) -> Option<T>,
) -> Option<T> {
    let mut metrics = raft.metrics();
    loop {
        if let Some(found) = probe(&metrics.borrow_and_update()) {
            return Some(found);
        }
        match tokio::time::timeout_at(deadline, metrics.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return None,
        }
    }
}
