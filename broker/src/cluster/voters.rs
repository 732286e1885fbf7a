//! Which nodes vote in the metadata log: a pure decision over what the controller knows of each
//! member, so every rule is a unit test.
//!
//! - The voters are always an odd number: the largest odd number not above `--voters` and not
//!   above the members still present (1 voter for 1 or 2 nodes, 3 for 3 or 4, 5 for 5 or more
//!   with `--voters 5`). Even sets are never proposed: with 2 or 4 voters one more loss stops the
//!   log, exactly as with 1 or 3.
//! - A change goes from the current set to the new one in one joint-consensus change (openraft
//!   commits a joint configuration, then the new one), so 1 -> 3 or {a,b,c} -> {a,b,d} is one step.
//! - A member that left cleanly (or is leaving), or has been dead longer than the replacement
//!   time, is gone: its seat goes to a live learner that has everything committed, or the set
//!   shrinks to the next odd size. A member dead for less keeps its seat.
//! - The leader keeps its seat unless it is leaving.
//! - Nothing is proposed that could not commit: the old voters need a responsive majority, and
//!   the new set an alive majority (a joint configuration that cannot commit would stop the log).

use std::collections::BTreeSet;

use crate::config::odd_floor;
use crate::metadata::raft::RaftNodeId;

/// How the controller sees a member of the metadata log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Alive (or only suspected).
    Alive,
    /// Dead for less than the replacement time: keeps its seat, not counted for a majority.
    Down,
    /// Announced that it leaves and is handing its seat over: still answers, but gets no seat.
    Leaving,
    /// Left, or dead for longer than the replacement time.
    Gone,
}

/// One member of the metadata log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seat {
    /// Its Raft id.
    pub id: RaftNodeId,
    /// It votes now.
    pub voter: bool,
    /// Its health.
    pub health: Health,
    /// It has every entry committed in this term (a learner may only be promoted then).
    pub caught_up: bool,
}

impl Seat {
    fn stays(&self) -> bool {
        matches!(self.health, Health::Alive | Health::Down)
    }
}

/// The voters the metadata log should have instead of the current ones, if they differ and the
/// change can commit. `leader` is the node deciding (it keeps its seat unless leaving); `wanted`
/// is `--voters`.
pub fn next_voters(
    members: &[Seat],
    leader: RaftNodeId,
    wanted: usize,
) -> Option<BTreeSet<RaftNodeId>> {
    let current: BTreeSet<RaftNodeId> = members.iter().filter(|s| s.voter).map(|s| s.id).collect();
    let present = members.iter().filter(|s| s.stays()).count();
    let target = odd_floor(wanted.min(present));
    let mut new: BTreeSet<RaftNodeId> = members
        .iter()
        .filter(|s| s.voter && s.stays())
        .map(|s| s.id)
        .collect();
    let mut candidates = members
        .iter()
        .filter(|s| !s.voter && s.health == Health::Alive && s.caught_up)
        .map(|s| s.id);
    while new.len() < target {
        let Some(id) = candidates.next() else { break };
        new.insert(id);
    }
    while new.len() > target {
        let Some(id) = least_needed(members, &new, leader) else {
            break;
        };
        new.remove(&id);
    }
    if new.len().is_multiple_of(2) {
        match candidates.next() {
            Some(id) => {
                new.insert(id);
            }
            None => {
                let id = least_needed(members, &new, leader)?;
                new.remove(&id);
            }
        }
    }
    let health = |id: &RaftNodeId| members.iter().find(|s| s.id == *id).map(|s| s.health);
    let responsive = current
        .iter()
        .filter(|id| matches!(health(id), Some(Health::Alive | Health::Leaving)))
        .count();
    let alive = new
        .iter()
        .filter(|id| health(id) == Some(Health::Alive))
        .count();
    let can_commit = responsive * 2 > current.len() && alive * 2 > new.len();
    (new != current && !new.is_empty() && can_commit).then_some(new)
}

/// The voter of `set` to drop first when the set shrinks: a down one, else the alive one with
/// the highest id; never the leader.
fn least_needed(
    members: &[Seat],
    set: &BTreeSet<RaftNodeId>,
    leader: RaftNodeId,
) -> Option<RaftNodeId> {
    let in_set = |health: Health| {
        members
            .iter()
            .filter(move |s| set.contains(&s.id) && s.id != leader && s.health == health)
            .map(|s| s.id)
            .max()
    };
    in_set(Health::Down).or_else(|| in_set(Health::Alive))
}

/// Members to remove from the metadata log altogether: learners that are gone (left, or dead
/// longer than the replacement time). They rejoin as learners if they come back.
pub fn departed_learners(members: &[Seat]) -> Vec<RaftNodeId> {
    members
        .iter()
        .filter(|s| !s.voter && s.health == Health::Gone)
        .map(|s| s.id)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use Health::{Alive, Down, Gone, Leaving};

    fn voter(id: RaftNodeId, health: Health) -> Seat {
        Seat {
            id,
            voter: true,
            health,
            caught_up: true,
        }
    }

    fn learner(id: RaftNodeId, health: Health, caught_up: bool) -> Seat {
        Seat {
            id,
            voter: false,
            health,
            caught_up,
        }
    }

    fn set(ids: &[RaftNodeId]) -> Option<BTreeSet<RaftNodeId>> {
        Some(ids.iter().copied().collect())
    }

    #[test]
    fn voters_grow_odd_to_odd_with_the_nodes() {
        // 1 node, then a second: it stays a learner (two voters would stop at one loss).
        assert_eq!(next_voters(&[voter(1, Alive)], 1, 3), None);
        let two = [voter(1, Alive), learner(2, Alive, true)];
        assert_eq!(next_voters(&two, 1, 3), None);
        // A third: 1 -> 3 in one change.
        let three = [
            voter(1, Alive),
            learner(2, Alive, true),
            learner(3, Alive, true),
        ];
        assert_eq!(next_voters(&three, 1, 3), set(&[1, 2, 3]));
        // A fourth stays a learner; with --voters 5 the fifth makes 5.
        let four = [
            voter(1, Alive),
            voter(2, Alive),
            voter(3, Alive),
            learner(4, Alive, true),
        ];
        assert_eq!(next_voters(&four, 1, 5), None);
        let mut five = four.to_vec();
        five.push(learner(5, Alive, true));
        assert_eq!(next_voters(&five, 1, 5), set(&[1, 2, 3, 4, 5]));
        assert_eq!(next_voters(&five, 1, 3), None, "--voters 3 keeps 3");
    }

    #[test]
    fn only_caught_up_live_learners_are_promoted() {
        let behind = [
            voter(1, Alive),
            learner(2, Alive, true),
            learner(3, Alive, false),
        ];
        assert_eq!(next_voters(&behind, 1, 3), None);
        let dead = [
            voter(1, Alive),
            learner(2, Alive, true),
            learner(3, Down, true),
        ];
        assert_eq!(next_voters(&dead, 1, 3), None);
    }

    #[test]
    fn a_leaving_voter_hands_its_seat_to_a_learner_or_the_set_shrinks() {
        let with_learner = [
            voter(1, Alive),
            voter(2, Alive),
            voter(3, Leaving),
            learner(4, Alive, true),
        ];
        assert_eq!(next_voters(&with_learner, 1, 3), set(&[1, 2, 4]));
        // No learner: 3 -> 1, keeping the leader.
        let alone = [voter(1, Alive), voter(2, Alive), voter(3, Leaving)];
        assert_eq!(next_voters(&alone, 1, 3), set(&[1]));
        // The leader itself leaving: the others take over.
        assert_eq!(next_voters(&alone, 3, 3), set(&[1]));
        let leader_leaves = [
            voter(1, Alive),
            voter(2, Alive),
            voter(3, Leaving),
            learner(4, Alive, true),
        ];
        assert_eq!(next_voters(&leader_leaves, 3, 3), set(&[1, 2, 4]));
        // The last node leaving has nobody to hand over to.
        assert_eq!(next_voters(&[voter(1, Leaving)], 1, 3), None);
    }

    #[test]
    fn a_dead_voter_keeps_its_seat_until_it_is_gone_then_is_replaced() {
        let down = [
            voter(1, Alive),
            voter(2, Alive),
            voter(3, Down),
            learner(4, Alive, true),
        ];
        assert_eq!(next_voters(&down, 1, 3), None);
        let gone = [
            voter(1, Alive),
            voter(2, Alive),
            voter(3, Gone),
            learner(4, Alive, true),
        ];
        assert_eq!(next_voters(&gone, 1, 3), set(&[1, 2, 4]));
        // Without a learner the set shrinks to one.
        let gone = [voter(1, Alive), voter(2, Alive), voter(3, Gone)];
        assert_eq!(next_voters(&gone, 1, 3), set(&[1]));
    }

    #[test]
    fn nothing_is_proposed_without_majorities() {
        // Two of three voters down: the old set cannot commit anything.
        let minority = [
            voter(1, Alive),
            voter(2, Down),
            voter(3, Gone),
            learner(4, Alive, true),
        ];
        assert_eq!(next_voters(&minority, 1, 3), None);
        // 5 voters, two gone, one down: shrinking to 3 keeps the down one only if it must.
        let five = [
            voter(1, Alive),
            voter(2, Alive),
            voter(3, Alive),
            voter(4, Down),
            voter(5, Gone),
        ];
        assert_eq!(next_voters(&five, 1, 5), set(&[1, 2, 3]));
    }

    #[test]
    fn even_sets_become_odd() {
        // A set left even (an older version grew 1 -> 2): back to odd.
        let two = [voter(1, Alive), voter(2, Alive)];
        assert_eq!(next_voters(&two, 1, 3), set(&[1]));
        let two_and_learner = [voter(1, Alive), voter(2, Alive), learner(3, Alive, true)];
        assert_eq!(next_voters(&two_and_learner, 1, 3), set(&[1, 2, 3]));
    }

    #[test]
    fn gone_learners_leave_the_log() {
        let members = [
            voter(1, Alive),
            learner(2, Gone, true),
            learner(3, Down, true),
            learner(4, Leaving, true),
        ];
        assert_eq!(departed_learners(&members), vec![2]);
    }
}
