//! The controller: the metadata log's decisions, applied at once, and the faults it reacts to.

use super::*;

impl Sim {
    pub(super) fn changed(&mut self) {
        self.image.partition_epoch.0 += 1;
        self.image.version += 1;
    }

    pub(super) fn apply_alter(&mut self, proposal: AlterPartition) {
        // The checks of the metadata image, in its order.
        let image = &self.image;
        let current = proposal.leader == image.leader
            && proposal.leader_epoch == image.leader_epoch
            && proposal.partition_epoch == image.partition_epoch;
        let eligible = proposal.isr.iter().any(|e| e.node == proposal.leader)
            && proposal
                .isr
                .iter()
                .all(|e| image.broker_epochs.get(&e.node) == Some(&e.broker_epoch));
        let refusal = match (current, eligible) {
            (true, true) => None,
            (false, _) => Some(AlterPartitionRefusal::StaleEpoch),
            (true, false) => Some(AlterPartitionRefusal::Ineligible),
        };
        if let Some(refusal) = refusal {
            self.note(format!("controller refuses ({refusal:?}) {proposal:?}"));
            let body = Body::AlterRejected(proposal.clone(), refusal);
            self.send(CONTROLLER, proposal.leader, 0, RequestId(0), body);
            return;
        }
        let mut isr: Vec<NodeId> = proposal.isr.iter().map(|e| e.node).collect();
        isr.sort_unstable();
        isr.dedup();
        self.note(format!("controller: ISR {isr:?}"));
        self.stats.isr_changes += 1;
        self.image.isr = isr;
        self.changed();
    }

    /// Alive, reachable members of the ISR other than `except`.
    pub(super) fn live_isr(&self, except: NodeId) -> Vec<NodeId> {
        self.image
            .isr
            .iter()
            .copied()
            .filter(|&n| n != except && self.node_ref(n).reachable())
            .collect()
    }

    /// A new leader (none if no one can lead), in a new leader epoch.
    pub(super) fn elect(&mut self, except: NodeId) {
        let mut candidates = self.live_isr(except);
        if candidates.is_empty() && self.mode == Mode::Unclean {
            candidates = NODES
                .iter()
                .copied()
                .filter(|&n| n != except && self.node_ref(n).reachable())
                .collect();
            if let Some(&leader) = candidates.first() {
                self.note(format!("controller: unclean election of {leader}"));
                self.image.isr = vec![leader];
            }
        }
        self.image.leader = self.rng.pick(&candidates).unwrap_or(NodeId::NONE);
        self.image.leader_epoch.0 += 1;
        self.stats.elections += 1;
        self.note(format!(
            "controller: leader {} in epoch {}",
            self.image.leader, self.image.leader_epoch
        ));
    }

    /// Node `id` is dead or cut off: out of the ISR (unless it is the last member), and a new
    /// leader if it led.
    pub(super) fn fence(&mut self, id: NodeId) {
        if self.image.isr.len() > 1 {
            self.image.isr.retain(|&n| n != id);
        }
        if self.image.leader == id {
            self.elect(id);
        }
        self.changed();
    }

    pub(super) fn fault(&mut self) {
        let id = NODES[usize::try_from(self.rng.below(3)).unwrap()];
        let node = self.node_ref(id);
        let (alive, isolated) = (node.alive, node.isolated);
        // Clean elections need one in-sync replica left to lead.
        let may_fail = match self.mode {
            Mode::Clean => !self.live_isr(id).is_empty(),
            Mode::Unclean => NODES
                .iter()
                .any(|&n| n != id && self.node_ref(n).reachable()),
        };
        let kind = if self.fast_leader_changes && self.rng.chance(600) {
            4
        } else {
            self.rng.below(5)
        };
        match kind {
            0 if alive && may_fail => self.crash(id),
            1 if !alive => self.restart(id),
            2 if alive && !isolated && may_fail => {
                self.stats.isolations += 1;
                self.note(format!("node {id} is cut off"));
                self.node(id).isolated = true;
                self.fence(id);
            }
            3 if isolated => self.heal(id),
            4 => {
                let candidates = self.live_isr(self.image.leader);
                if let Some(leader) = self.rng.pick(&candidates) {
                    self.image.leader = leader;
                    self.image.leader_epoch.0 += 1;
                    self.stats.elections += 1;
                    self.note(format!("controller moves the leader to {leader}"));
                    self.changed();
                }
            }
            _ => {}
        }
    }

    pub(super) fn crash(&mut self, id: NodeId) {
        self.stats.crashes += 1;
        self.note(format!("node {id} crashes"));
        let node = self.node(id);
        node.alive = false;
        node.isolated = false;
        node.crashes += 1;
        node.incarnation += 1;
        let synced = node.synced;
        node.log.records.truncate(synced);
        node.log.high_watermark = node.log.high_watermark.min(node.log.end());
        node.follower = None;
        node.image = None;
        // Its clients see their connections drop: every wait ends.
        if let Some(leader) = node.leader.as_mut() {
            leader.resign();
        }
        self.run_leader(id);
        self.node(id).leader = None;
        self.fence(id);
    }

    pub(super) fn restart(&mut self, id: NodeId) {
        self.note(format!("node {id} restarts"));
        let node = self.node(id);
        node.alive = true;
        node.broker_epoch.0 += 1;
        node.incarnation += 1;
        let broker_epoch = node.broker_epoch;
        // It registers again: a new broker epoch, and out of the ISR until it has caught up.
        self.image.broker_epochs.insert(id, broker_epoch);
        if self.image.isr.contains(&id) && self.image.isr.len() > 1 {
            self.image.isr.retain(|&n| n != id);
        }
        if self.image.leader.is_none() {
            self.elect(CONTROLLER);
        }
        self.changed();
        self.deliver_image(id);
    }

    pub(super) fn heal(&mut self, id: NodeId) {
        self.note(format!("node {id} is reachable again"));
        self.node(id).isolated = false;
        if self.image.leader.is_none() {
            self.elect(CONTROLLER);
            self.changed();
        }
    }
}
