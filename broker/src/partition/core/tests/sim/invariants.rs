//! The invariants, checked as events happen and at the end of a run.

use super::*;

impl Sim {
    /// Node `id` leads and its high watermark reached `hw`.
    pub(super) fn on_commit(&mut self, id: NodeId, hw: i64) {
        self.stats.commits += 1;
        self.note(format!("node {id} commits up to {hw}"));
        if self.mode == Mode::Unclean {
            return;
        }
        let end = usize::try_from(hw).unwrap();
        let log: Vec<i32> = self.node_ref(id).log.records.iter().map(|r| r.1).collect();
        if log.len() < end {
            return self.fail(format!("node {id} commits {hw} beyond its log"));
        }
        let shared = self.committed.len().min(end);
        if log[..shared] != self.committed[..shared] {
            return self.fail(format!(
                "node {id} commits a log that conflicts with the committed one"
            ));
        }
        if end > self.committed.len() {
            self.committed
                .extend_from_slice(&log[self.committed.len()..end]);
        }
        // Every member of the maximal ISR that has not crashed since has it.
        let node = self.node_ref(id);
        let Some(leader) = node.leader.as_ref() else {
            return;
        };
        for member in leader.maximal_isr() {
            let other = self.node_ref(member);
            let crashed = node.crashes_at_leadership.get(&member) != Some(&other.crashes);
            if member == id || !other.alive || crashed {
                continue;
            }
            let has: Vec<i32> = other.log.records.iter().take(end).map(|r| r.1).collect();
            if has != log[..end] {
                return self.fail(format!(
                    "node {id} commits {hw} but ISR member {member} lacks it"
                ));
            }
        }
    }

    pub(super) fn on_acked(&mut self, waiter: u64, result: Result<(), ReplicaError>) {
        let count = self.completions.entry(waiter).or_default();
        *count += 1;
        if *count > 1 {
            return self.fail(format!("waiter {waiter} completed twice"));
        }
        let Ok(()) = result else {
            self.stats.ack_errors += 1;
            return;
        };
        self.stats.acked += 1;
        self.acknowledged.push(waiter);
        let (offset, epoch) = self.produced[&waiter];
        if self.mode == Mode::Clean
            && self.committed.get(usize::try_from(offset).unwrap()) != Some(&epoch)
        {
            self.fail(format!("waiter {waiter} acknowledged uncommitted {offset}"));
        }
    }

    /// A truncation by the protocol: it must never remove a committed record.
    pub(super) fn truncate(&mut self, id: NodeId, to: i64, reset: bool) {
        self.stats.truncations += 1;
        self.note(format!("node {id} truncates to {to} (reset: {reset})"));
        let committed = self.committed.clone();
        let node = self.node(id);
        let from = usize::try_from((to - node.log.start).max(0)).unwrap();
        let removed: Vec<(i64, i32)> = node.log.records.iter().skip(from).copied().collect();
        if reset {
            node.log.reset_to(to);
        } else {
            node.log.truncate_to(to);
        }
        node.synced = node.synced.min(node.log.records.len());
        if self.mode == Mode::Clean {
            for (offset, epoch) in removed {
                if committed.get(usize::try_from(offset).unwrap()) == Some(&epoch) {
                    return self.fail(format!("node {id} truncated committed offset {offset}"));
                }
            }
        }
    }

    /// Every alive member of the metadata's ISR holds the whole committed log.
    pub(super) fn check_isr_has_committed(&mut self) {
        for &member in &self.image.isr {
            let node = self.node_ref(member);
            if !node.alive {
                continue;
            }
            let has: Vec<i32> = node
                .log
                .records
                .iter()
                .take(self.committed.len())
                .map(|r| r.1)
                .collect();
            if has != self.committed {
                let what = format!("ISR member {member} lacks committed records");
                return self.fail(what);
            }
        }
    }

    pub(super) fn converged(&self) -> bool {
        let Some(leader) = self.nodes.iter().find(|n| n.id == self.image.leader) else {
            return false;
        };
        let Some(state) = leader.leader.as_ref() else {
            return false;
        };
        self.image.isr == NODES
            && state.leader_epoch() == self.image.leader_epoch
            && state.high_watermark().0 == leader.log.end()
            && state.waiting() == 0
            && self.nodes.iter().all(|n| {
                n.reachable()
                    && n.log.records == leader.log.records
                    && n.image
                        .as_ref()
                        .is_some_and(|i| i.version == self.image.version)
            })
    }

    pub(super) fn check_final(&mut self) -> Result<(), String> {
        let log = self.node_ref(self.image.leader).log.clone();
        for waiter in self.produced.keys() {
            if self.completions.get(waiter) != Some(&1) {
                return Err(self.report(&format!("waiter {waiter} never completed")));
            }
        }
        if self.mode == Mode::Clean {
            let epochs: Vec<i32> = log.records.iter().map(|r| r.1).collect();
            if !epochs.starts_with(&self.committed) {
                return Err(self.report("the committed log is not in the final log"));
            }
            for waiter in &self.acknowledged {
                let (offset, epoch) = self.produced[waiter];
                if log.epoch_at(offset) != Some(epoch) {
                    return Err(self.report(&format!("acknowledged offset {offset} lost")));
                }
            }
        }
        Ok(())
    }
}
