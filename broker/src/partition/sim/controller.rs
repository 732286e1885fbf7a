//! The controller: the metadata log's decisions, applied at once, and the faults it reacts to.

use std::time::Duration;

use super::env::lock;
use super::{Mode, NODES, Sim, World};
use crate::ids::{BrokerEpoch, NodeId};
use crate::partition::core::{AlterPartition, AlterPartitionRefusal};

impl World {
    fn changed(&mut self) {
        self.image.partition_epoch.0 += 1;
        self.image.version += 1;
    }

    /// The metadata log decides on `proposal`: applied (`None`) or refused.
    pub(super) fn apply_alter(
        &mut self,
        proposal: &AlterPartition,
        now: Duration,
    ) -> Option<AlterPartitionRefusal> {
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
            self.note(
                now,
                format!("controller refuses ({refusal:?}) {proposal:?}"),
            );
            return Some(refusal);
        }
        let mut isr: Vec<NodeId> = proposal.isr.iter().map(|e| e.node).collect();
        isr.sort_unstable();
        isr.dedup();
        self.note(now, format!("controller: ISR {isr:?}"));
        self.stats.isr_changes += 1;
        self.image.isr = isr;
        self.changed();
        None
    }

    /// Alive, reachable members of the ISR other than `except`.
    fn live_isr(&self, except: NodeId) -> Vec<NodeId> {
        self.image
            .isr
            .iter()
            .copied()
            .filter(|&n| n != except && self.node(n).reachable())
            .collect()
    }

    /// A new leader (none if no one can lead), in a new leader epoch.
    fn elect(&mut self, except: NodeId, now: Duration) {
        let mut candidates = self.live_isr(except);
        if candidates.is_empty() && self.mode == Mode::Unclean {
            candidates = NODES
                .iter()
                .copied()
                .filter(|&n| n != except && self.node(n).reachable())
                .collect();
            if let Some(&leader) = candidates.first() {
                self.note(now, format!("controller: unclean election of {leader}"));
                self.image.isr = vec![leader];
            }
        }
        self.image.leader = self.rng.pick(&candidates).unwrap_or(NodeId::NONE);
        self.image.leader_epoch.0 += 1;
        self.stats.elections += 1;
        let (leader, epoch) = (self.image.leader, self.image.leader_epoch);
        self.note(now, format!("controller: leader {leader} in epoch {epoch}"));
    }

    /// Node `id` is dead or cut off: out of the ISR (unless it is the last member), and a new
    /// leader if it led.
    fn fence(&mut self, id: NodeId, now: Duration) {
        if self.image.isr.len() > 1 {
            self.image.isr.retain(|&n| n != id);
        }
        if self.image.leader == id {
            self.elect(id, now);
        }
        self.changed();
    }
}

impl Sim {
    pub(super) fn fault(&mut self) {
        let now = self.shared.now();
        let (id, kind, alive, isolated, may_fail) = {
            let mut world = self.world();
            let id = NODES[usize::try_from(world.rng.below(3)).unwrap()];
            let node = world.node(id);
            let (alive, isolated) = (node.alive, node.isolated);
            // Clean elections need one in-sync replica left to lead.
            let may_fail = match world.mode {
                Mode::Clean => !world.live_isr(id).is_empty(),
                Mode::Unclean => NODES.iter().any(|&n| n != id && world.node(n).reachable()),
            };
            let kind = if self.fast_leader_changes && world.rng.chance(600) {
                4
            } else {
                world.rng.below(5)
            };
            (id, kind, alive, isolated, may_fail)
        };
        match kind {
            0 if alive && may_fail => self.crash(id),
            1 if !alive => self.restart(id),
            2 if alive && !isolated && may_fail => {
                let mut world = self.world();
                world.stats.isolations += 1;
                world.note(now, format!("node {id} is cut off"));
                world.node_mut(id).isolated = true;
                world.fence(id, now);
            }
            3 if isolated => self.heal(id),
            4 => {
                let mut world = self.world();
                let leader = world.image.leader;
                let candidates = world.live_isr(leader);
                if let Some(leader) = world.rng.pick(&candidates) {
                    world.image.leader = leader;
                    world.image.leader_epoch.0 += 1;
                    world.stats.elections += 1;
                    world.note(now, format!("controller moves the leader to {leader}"));
                    world.changed();
                }
            }
            _ => {}
        }
    }

    /// Node `id` crashes: its process is gone (the owner of its partitions shuts down: waits
    /// answered, tasks ended) and its log keeps only what was synced.
    pub(super) fn crash(&mut self, id: NodeId) {
        let now = self.shared.now();
        {
            let mut world = self.world();
            world.stats.crashes += 1;
            world.note(now, format!("node {id} crashes"));
            let node = world.node_mut(id);
            node.alive = false;
            node.isolated = false;
            node.crashes += 1;
            node.image = None;
        }
        let partitions = lock(&self.shared.partitions).remove(&id);
        if let Some(partitions) = partitions {
            partitions.shutdown();
        }
        let synced = self.world().node(id).synced;
        {
            let log = self.shared.log(id);
            let mut log = lock(&log);
            log.records.truncate(synced);
            log.high_watermark = log.high_watermark.min(log.end());
        }
        self.world().fence(id, now);
        self.run_tasks();
    }

    /// Node `id` starts again: it registers with a new broker epoch (out of the ISR until it
    /// has caught up) and owns its partitions anew.
    pub(super) fn restart(&mut self, id: NodeId) {
        let now = self.shared.now();
        let broker_epoch = {
            let mut world = self.world();
            world.note(now, format!("node {id} restarts"));
            let node = world.node_mut(id);
            node.alive = true;
            node.broker_epoch.0 += 1;
            let broker_epoch = node.broker_epoch;
            world.image.broker_epochs.insert(id, broker_epoch);
            if world.image.isr.contains(&id) && world.image.isr.len() > 1 {
                world.image.isr.retain(|&n| n != id);
            }
            if world.image.leader.is_none() {
                world.elect(NodeId::NONE, now);
            }
            world.changed();
            broker_epoch
        };
        self.start_node(id, BrokerEpoch(broker_epoch.0));
        self.deliver_image(id);
    }

    pub(super) fn heal(&mut self, id: NodeId) {
        let now = self.shared.now();
        let mut world = self.world();
        world.note(now, format!("node {id} is reachable again"));
        world.node_mut(id).isolated = false;
        if world.image.leader.is_none() {
            world.elect(NodeId::NONE, now);
            world.changed();
        }
    }
}
