//! Taking in what peers say: merging deltas, failure detection, cluster isolation, forgetting.

use std::time::Duration;

use super::message::{Delta, MessageBody, NodeDelta};
use super::peer::Peer;
use super::{CLUSTER_ID_KEY, MemberEvent, MemberId, MemberStatus, Membership, Output, Tombstone};

impl Membership {
    pub(super) fn is_foreign(&self, theirs: &str) -> bool {
        match self.config.cluster_id.as_deref() {
            Some(ours) => !ours.is_empty() && !theirs.is_empty() && ours != theirs,
            None => false,
        }
    }

    pub(super) fn report_foreign(&mut self, id: MemberId, cluster_id: String) {
        let interval = self.config.foreign_report_interval();
        if let Some(at) = self.foreign_reported.get(&id)
            && self.now.saturating_sub(*at) < interval
        {
            return;
        }
        self.foreign_reported.insert(id, self.now);
        self.event(MemberEvent::ForeignCluster { id, cluster_id });
    }

    /// Failure detection: re-evaluates every peer. A peer turning suspect is probed at once with
    /// a `Syn` (SWIM's direct probe): if it is alive, its `Ack` carries a fresh heartbeat and ends
    /// the suspicion long before it could be declared dead.
    pub(super) fn detect(&mut self, now: Duration) {
        let mut changes = Vec::new();
        for (id, peer) in &mut self.peers {
            if let Some((old, new)) = peer.check(now, &self.config.failure_detector) {
                changes.push((*id, peer.state.generation, old, new));
            }
        }
        for (id, generation, old, new) in changes {
            if new == MemberStatus::Suspect {
                let digest = self.digest(self.digest_budget());
                let message = self.message(MessageBody::Syn(digest));
                self.outputs.push_back(Output::Send { to: id, message });
            }
            self.event(MemberEvent::StatusChanged {
                id,
                generation,
                old,
                new,
            });
        }
    }

    /// Merges a delta (from anti-entropy or a broadcast).
    pub(super) fn apply(&mut self, now: Duration, delta: Delta) {
        for node in delta.nodes {
            self.apply_node(now, node);
        }
    }

    pub(super) fn apply_node(&mut self, now: Duration, delta: NodeDelta) {
        let id = delta.id;
        // This node is the only source of its own state.
        if id == self.id {
            return;
        }
        if self
            .tombstones
            .get(&id)
            .is_some_and(|t| delta.generation <= t.generation)
        {
            return;
        }
        let theirs = delta
            .entries
            .iter()
            .find(|e| e.key == CLUSTER_ID_KEY)
            .and_then(|e| e.value.as_deref())
            .or_else(|| {
                self.peers
                    .get(&id)
                    .and_then(|p| p.state.get(CLUSTER_ID_KEY))
            });
        if let Some(theirs) = theirs.filter(|t| self.is_foreign(t)) {
            let theirs = theirs.to_string();
            self.report_foreign(id, theirs);
            return;
        }
        let previous = match self.peers.get(&id) {
            Some(peer) if delta.generation < peer.state.generation => return,
            Some(peer) if delta.generation == peer.state.generation => None,
            // A new incarnation (or node) needs its whole state; a departure of a node never
            // known is no news.
            Some(_) | None if delta.from_version != 0 => return,
            None if delta.left => return,
            Some(peer) => Some(peer.state.generation),
            None => None,
        };
        if previous.is_some() || !self.peers.contains_key(&id) {
            let peer = Peer::new(now, &delta, &self.config.failure_detector);
            self.peers.insert(id, peer);
            self.event(MemberEvent::Joined {
                id,
                generation: delta.generation,
                previous,
            });
        }
        let Some(peer) = self.peers.get_mut(&id) else {
            return;
        };
        let merge = peer.merge(now, &delta, &self.config.failure_detector);
        let generation = peer.state.generation;
        if let Some((old, new)) = merge.status {
            self.event(MemberEvent::StatusChanged {
                id,
                generation,
                old,
                new,
            });
        }
        for (key, value) in merge.keys {
            self.event(MemberEvent::KeyChanged { id, key, value });
        }
    }

    /// Forgets nodes dead or left for `gc_after`, keeping a tombstone of their generation for as
    /// long again; drops expired tombstones and foreign-cluster reports.
    pub(super) fn collect_garbage(&mut self, now: Duration) {
        let gc_after = self.config.gc_after();
        let expired: Vec<MemberId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                matches!(p.status, MemberStatus::Dead | MemberStatus::Left)
                    && now.saturating_sub(p.status_since) >= gc_after
            })
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some(peer) = self.peers.remove(&id) {
                let generation = peer.state.generation;
                self.tombstones.insert(
                    id,
                    Tombstone {
                        generation,
                        removed_at: now,
                    },
                );
                self.event(MemberEvent::Removed { id, generation });
            }
        }
        self.tombstones
            .retain(|_, t| now.saturating_sub(t.removed_at) < gc_after);
        let interval = self.config.foreign_report_interval();
        self.foreign_reported
            .retain(|_, at| now.saturating_sub(*at) < interval);
    }
}
