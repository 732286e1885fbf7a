//! The invariants, checked as events happen (on the calls the shells make into the simulated log
//! and the answers of the appends) and at the end of a run.

use rafka_store::Appended;

use super::env::lock;
use super::{Mode, NODES, Shared, Sim, TP};
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::partition::AppendError;

impl Shared {
    /// Node `node`'s log was given high watermark `hw`. From the leader shell (this node leads
    /// the partition) it is a commit: check it.
    pub(super) fn on_high_watermark(&self, node: NodeId, hw: Offset) {
        let leader = self
            .partitions(node)
            .and_then(|p| p.leader(&TP))
            .filter(|leader| !leader.is_resigned());
        let Some(leader) = leader else {
            return;
        };
        let maximal_isr = leader.maximal_isr();
        let now = self.now();
        let mut world = lock(&self.world);
        world.stats.commits += 1;
        world.note(now, format!("node {node} commits up to {hw}"));
        if world.mode == Mode::Unclean {
            return;
        }
        let end = usize::try_from(hw.0).unwrap();
        let epochs =
            |id: NodeId| -> Vec<i32> { lock(&self.log(id)).records.iter().map(|r| r.1).collect() };
        let log = epochs(node);
        if log.len() < end {
            return world.fail(format!("node {node} commits {hw} beyond its log"));
        }
        let shared = world.committed.len().min(end);
        if log[..shared] != world.committed[..shared] {
            return world.fail(format!(
                "node {node} commits a log that conflicts with the committed one"
            ));
        }
        if end > world.committed.len() {
            let from = world.committed.len();
            world.committed.extend_from_slice(&log[from..end]);
        }
        // Every member of the maximal ISR that has not crashed since has it.
        for member in maximal_isr {
            let other = world.node(member);
            let crashed =
                world.node(node).crashes_at_leadership.get(&member) != Some(&other.crashes);
            if member == node || !other.alive || crashed {
                continue;
            }
            let has: Vec<i32> = epochs(member).into_iter().take(end).collect();
            if has != log[..end] {
                return world.fail(format!(
                    "node {node} commits {hw} but ISR member {member} lacks it"
                ));
            }
        }
    }

    /// The answer to acks=all append `id`, made in `epoch`.
    pub(super) fn on_acked(
        &self,
        id: u64,
        epoch: LeaderEpoch,
        answer: Result<Appended, AppendError>,
    ) {
        let mut world = lock(&self.world);
        let count = world.completions.entry(id).or_default();
        *count += 1;
        if *count > 1 {
            return world.fail(format!("append {id} answered twice"));
        }
        let appended = match answer {
            Ok(appended) => appended,
            Err(_) => {
                world.stats.ack_errors += 1;
                return;
            }
        };
        world.stats.acked += 1;
        let offset = appended.base_offset;
        world.acknowledged.insert(id, (offset, epoch.0));
        if world.mode == Mode::Clean
            && world.committed.get(usize::try_from(offset).unwrap()) != Some(&epoch.0)
        {
            world.fail(format!("append {id} acknowledged uncommitted {offset}"));
        }
    }

    /// A truncation by the protocol (the follower shell's): it must never remove a committed
    /// record. Returns the new log end.
    pub(super) fn truncate(&self, node: NodeId, to: Offset, reset: bool) -> Offset {
        let now = self.now();
        let committed = {
            let mut world = lock(&self.world);
            world.stats.truncations += 1;
            world.note(
                now,
                format!("node {node} truncates to {to} (reset: {reset})"),
            );
            world.committed.clone()
        };
        let (removed, end, records) = {
            let log = self.log(node);
            let mut log = lock(&log);
            let from = usize::try_from((to.0 - log.start).max(0)).unwrap();
            let removed: Vec<(i64, i32)> = log.records.iter().skip(from).copied().collect();
            if reset {
                log.reset_to(to.0);
            } else {
                log.truncate_to(to.0);
            }
            (removed, log.end(), log.records.len())
        };
        let mut world = lock(&self.world);
        let state = world.node_mut(node);
        state.synced = state.synced.min(records);
        if world.mode == Mode::Clean {
            for (offset, epoch) in removed {
                if committed.get(usize::try_from(offset).unwrap()) == Some(&epoch) {
                    world.fail(format!("node {node} truncated committed offset {offset}"));
                    break;
                }
            }
        }
        Offset(end)
    }
}

impl Sim {
    /// Every alive member of the metadata's ISR holds the whole committed log.
    pub(super) fn check_isr_has_committed(&mut self) {
        let (isr, committed) = {
            let world = self.world();
            let isr: Vec<NodeId> = world
                .image
                .isr
                .iter()
                .copied()
                .filter(|&member| world.node(member).alive)
                .collect();
            (isr, world.committed.clone())
        };
        for member in isr {
            let has: Vec<i32> = lock(&self.shared.log(member))
                .records
                .iter()
                .take(committed.len())
                .map(|r| r.1)
                .collect();
            if has != committed {
                let what = format!("ISR member {member} lacks committed records");
                return self.world().fail(what);
            }
        }
    }

    pub(super) fn converged(&self) -> bool {
        let (leader_id, leader_epoch, full_isr, reachable, current) = {
            let world = self.world();
            let version = world.image.version;
            (
                world.image.leader,
                world.image.leader_epoch,
                world.image.isr == NODES,
                world.nodes.iter().all(|n| n.reachable()),
                world.nodes.iter().all(|n| n.image == Some(version)),
            )
        };
        if leader_id.is_none() || !full_isr || !reachable || !current {
            return false;
        }
        let Some(leader) = self
            .shared
            .partitions(leader_id)
            .and_then(|p| p.leader(&TP))
        else {
            return false;
        };
        let log = lock(&self.shared.log(leader_id)).clone();
        leader.leader_epoch() == leader_epoch
            && log.high_watermark == log.end()
            && leader.waiting() == 0
            && NODES
                .iter()
                .all(|&id| lock(&self.shared.log(id)).records == log.records)
    }

    pub(super) fn check_final(&self) -> Result<(), String> {
        let leader = self.world().image.leader;
        let log = lock(&self.shared.log(leader)).clone();
        let failure = {
            let world = self.world();
            let unanswered = world
                .started
                .iter()
                .find(|id| world.completions.get(id) != Some(&1));
            let epochs: Vec<i32> = log.records.iter().map(|r| r.1).collect();
            let lost = world
                .acknowledged
                .values()
                .find(|&&(offset, epoch)| log.epoch_at(offset) != Some(epoch));
            match (unanswered, world.mode) {
                (Some(id), _) => Some(format!("append {id} never answered")),
                (None, Mode::Clean) if !epochs.starts_with(&world.committed) => {
                    Some("the committed log is not in the final log".to_string())
                }
                (None, Mode::Clean) => {
                    lost.map(|(offset, _)| format!("acknowledged offset {offset} lost"))
                }
                (None, Mode::Unclean) => None,
            }
        };
        match failure {
            Some(what) => Err(self.report(&what)),
            None => Ok(()),
        }
    }
}
