//! What this node knows and concludes about one peer incarnation: its gossiped state, the failure
//! detector fed by its heartbeats, and the status observed from both.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::message::NodeDelta;
use super::state::{KeyChange, NodeState};
use crate::failure_detector::{FailureDetectorConfig, Liveness, PeerDetector};

/// A member's status as observed by this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberStatus {
    /// Heartbeats arrive.
    Alive,
    /// Heartbeats are late (phi above the threshold), not yet for long.
    Suspect,
    /// No heartbeat for long: presumed crashed or cut off. A heartbeat brings it back.
    Dead,
    /// It announced that it left (graceful shutdown). Final for this generation.
    Left,
}

impl MemberStatus {
    /// Alive or suspect: worth talking to.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Alive | Self::Suspect)
    }
}

/// One peer incarnation.
#[derive(Clone, Debug)]
pub(crate) struct Peer {
    pub(crate) state: NodeState,
    pub(crate) detector: PeerDetector,
    pub(crate) status: MemberStatus,
    pub(crate) status_since: Duration,
    /// When it sent its latest heartbeat known, as best known: arrival time less the age the
    /// relaying peer reported (this node's clock).
    pub(crate) last_heard: Duration,
}

/// What merging a node delta into a peer changed.
#[derive(Debug, Default)]
pub(crate) struct Merge {
    pub(crate) status: Option<(MemberStatus, MemberStatus)>,
    pub(crate) keys: Vec<KeyChange>,
}

impl Peer {
    /// A peer first heard of at `now` through `delta` (a whole state: `from_version` 0). Its
    /// detector starts at `now` whatever the age of that first news: a node that just learnt of
    /// a peer gives it the initial interval to be heard from before suspecting it.
    pub(crate) fn new(now: Duration, delta: &NodeDelta, config: &FailureDetectorConfig) -> Self {
        let mut state = NodeState::new(delta.generation);
        state.heartbeat = delta.heartbeat;
        let sent = now.saturating_sub(Duration::from_millis(delta.heartbeat_age_ms));
        Self {
            state,
            detector: PeerDetector::new(now, config),
            status: MemberStatus::Alive,
            status_since: now,
            last_heard: sent,
        }
    }

    /// Merges a delta about the same incarnation.
    pub(crate) fn merge(
        &mut self,
        now: Duration,
        delta: &NodeDelta,
        config: &FailureDetectorConfig,
    ) -> Merge {
        if delta.heartbeat > self.state.heartbeat {
            self.state.heartbeat = delta.heartbeat;
            // A newer heartbeat was sent after the previous one, whatever the ages say.
            let sent = now
                .saturating_sub(Duration::from_millis(delta.heartbeat_age_ms))
                .max(self.last_heard);
            self.last_heard = sent;
            self.detector.heartbeat(sent, now, config);
        }
        let keys = self.state.apply_entries(delta);
        // A departure is final for the generation, whatever else the delta lacks.
        self.state.left |= delta.left;
        Merge {
            status: self.refresh(now),
            keys,
        }
    }

    /// Re-evaluates the failure detector at `now`.
    pub(crate) fn check(
        &mut self,
        now: Duration,
        config: &FailureDetectorConfig,
    ) -> Option<(MemberStatus, MemberStatus)> {
        if !self.state.left {
            self.detector.check(now, config);
        }
        self.refresh(now)
    }

    /// Recomputes the observed status; returns (old, new) if it changed.
    fn refresh(&mut self, now: Duration) -> Option<(MemberStatus, MemberStatus)> {
        let status = if self.state.left {
            MemberStatus::Left
        } else {
            match self.detector.liveness() {
                Liveness::Alive => MemberStatus::Alive,
                Liveness::Suspect => MemberStatus::Suspect,
                Liveness::Dead => MemberStatus::Dead,
            }
        };
        let old = self.status;
        if old == status {
            return None;
        }
        self.status = status;
        self.status_since = now;
        Some((old, status))
    }

    pub(crate) fn phi(&self, now: Duration, config: &FailureDetectorConfig) -> f64 {
        self.detector.window().phi(now, config)
    }
}
