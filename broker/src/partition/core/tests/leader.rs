//! The leader's rules, one test each, asserted on the outputs they emit.

use std::time::Duration;

use super::MemLog;
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, Offset, PartitionEpoch};
use crate::partition::core::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

const LAG: Duration = Duration::from_millis(10_000);
const RETRY: Duration = Duration::from_millis(2_000);
const INELIGIBLE: AlterPartitionRefusal = AlterPartitionRefusal::Ineligible;

fn config(min_insync: usize) -> LeaderConfig {
    LeaderConfig {
        min_insync_replicas: min_insync,
        replica_lag_time_max: LAG,
        alter_partition_retry: RETRY,
    }
}

/// Partition led by node 1 in leader epoch 5, partition epoch 10, replicas 1, 2, 3; every broker
/// epoch 1.
fn meta(isr: &[i32]) -> PartitionMetadata {
    PartitionMetadata {
        leader: NodeId(1),
        leader_epoch: LeaderEpoch(5),
        partition_epoch: PartitionEpoch(10),
        replicas: ids(&[1, 2, 3]),
        isr: ids(isr),
        broker_epochs: broker_epochs(&[(1, 1), (2, 1), (3, 1)]),
    }
}

fn ids(nodes: &[i32]) -> Vec<NodeId> {
    nodes.iter().copied().map(NodeId).collect()
}

/// Node ids as plain numbers, to compare with literals.
fn nums(nodes: &[NodeId]) -> Vec<i32> {
    nodes.iter().map(|n| n.0).collect()
}

fn broker_epochs(epochs: &[(i32, i64)]) -> Vec<(NodeId, BrokerEpoch)> {
    epochs
        .iter()
        .map(|&(node, epoch)| (NodeId(node), BrokerEpoch(epoch)))
        .collect()
}

fn hw(offset: i64) -> LeaderOutput {
    LeaderOutput::HighWatermark(Offset(offset))
}

/// A leader whose log holds `log_end` records of epoch 4 with the high watermark at `hw`.
fn leader(isr: &[i32], log_end: i64, hw: i64, min_insync: usize) -> LeaderState {
    let mut log = MemLog::from_epochs(&vec![4; usize::try_from(log_end).unwrap()]);
    log.high_watermark = hw;
    let mut state =
        LeaderState::new(NodeId(1), &meta(isr), config(min_insync), &log, ms(0)).unwrap();
    drain(&mut state);
    state
}

fn drain(state: &mut LeaderState) -> Vec<LeaderOutput> {
    std::iter::from_fn(|| state.poll_output()).collect()
}

fn proposals(outputs: &[LeaderOutput]) -> Vec<AlterPartition> {
    outputs
        .iter()
        .filter_map(|o| match o {
            LeaderOutput::AlterPartition(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}

fn isr_nodes(proposal: &AlterPartition) -> Vec<i32> {
    proposal.isr.iter().map(|e| e.node.0).collect()
}

/// Node `node` (broker epoch 1) fetches at `offset` in leader epoch 5.
fn fetch(state: &mut LeaderState, node: i32, offset: i64, now: u64) {
    follower_fetch(state, node, 1, offset, now).unwrap();
}

/// Node `node` fetches with `broker_epoch` at `offset` in leader epoch 5.
fn follower_fetch(
    state: &mut LeaderState,
    node: i32,
    broker_epoch: i64,
    offset: i64,
    now: u64,
) -> Result<(), ReplicaError> {
    let (node, broker_epoch, offset) = (NodeId(node), BrokerEpoch(broker_epoch), Offset(offset));
    state.on_follower_fetch(node, broker_epoch, LeaderEpoch(5), offset, ms(now))
}

fn acked(outputs: &[LeaderOutput]) -> Vec<(WaiterId, Result<(), ReplicaError>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            LeaderOutput::Acked { waiter, result } => Some((*waiter, result.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn only_the_named_leader_takes_leadership() {
    let err = LeaderState::new(
        NodeId(2),
        &meta(&[1, 2]),
        config(1),
        &MemLog::default(),
        ms(0),
    );
    assert_eq!(err.unwrap_err(), ReplicaError::NotLeaderOrFollower);
}

#[test]
fn alone_in_the_isr_the_high_watermark_follows_the_log_end() {
    let log = MemLog::from_epochs(&[4, 4, 4]);
    let mut state = LeaderState::new(NodeId(1), &meta(&[1]), config(1), &log, ms(0)).unwrap();
    assert_eq!(drain(&mut state), [hw(3)]);
    state.on_local_append(Offset(5));
    assert_eq!(drain(&mut state), [hw(5)]);
    state.on_local_append(Offset(4)); // never backwards
    assert_eq!(drain(&mut state), []);
}

#[test]
fn the_high_watermark_waits_until_every_isr_member_has_fetched_in_this_epoch() {
    let mut state = leader(&[1, 2, 3], 10, 4, 1);
    fetch(&mut state, 2, 10, 1);
    assert_eq!(drain(&mut state), [], "node 3's log end is unknown");
    fetch(&mut state, 3, 7, 2);
    assert_eq!(drain(&mut state), [hw(7)]);
    assert_eq!(state.high_watermark().0, 7);
}

#[test]
fn the_high_watermark_is_the_smallest_isr_log_end_and_never_goes_back() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 5, 1);
    fetch(&mut state, 3, 3, 1);
    assert_eq!(drain(&mut state), [hw(3)]);
    fetch(&mut state, 3, 9, 2);
    assert_eq!(drain(&mut state), [hw(5)]);
    // Node 2 comes back below the high watermark: it lost committed records. The high
    // watermark stays and node 2 is proposed out at once.
    fetch(&mut state, 2, 4, 3);
    let outputs = drain(&mut state);
    assert_eq!(state.high_watermark().0, 5);
    assert_eq!(isr_nodes(&proposals(&outputs)[0]), [1, 3]);
    assert!(state.follower(NodeId(2)).unwrap().must_leave);
}

#[test]
fn followers_outside_the_isr_do_not_hold_the_high_watermark() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 3, 0, 1);
    fetch(&mut state, 2, 10, 1);
    assert!(drain(&mut state).contains(&hw(10)));
}

#[test]
fn fetches_are_refused_with_kafka_codes() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    let refuse = |state: &mut LeaderState, node, broker_epoch, epoch, offset| {
        let (node, broker_epoch) = (NodeId(node), BrokerEpoch(broker_epoch));
        state
            .on_follower_fetch(
                node,
                broker_epoch,
                LeaderEpoch(epoch),
                Offset(offset),
                ms(1),
            )
            .unwrap_err()
    };
    let e = refuse(&mut state, 2, 1, 4, 0);
    assert_eq!((e.kafka_code(), e.is_retriable()), (74, true), "{e}");
    assert_eq!(refuse(&mut state, 2, 1, 6, 0).kafka_code(), 75);
    let e = refuse(&mut state, 9, 1, 5, 0);
    assert_eq!(e, ReplicaError::UnknownReplica { replica: NodeId(9) });
    assert_eq!(e.kafka_code(), 6);
    assert_eq!(refuse(&mut state, 1, 1, 5, 0).kafka_code(), 6, "itself");
    let e = refuse(&mut state, 2, 0, 5, 0);
    assert_eq!(
        e,
        ReplicaError::StaleBrokerEpoch {
            replica: NodeId(2),
            request: BrokerEpoch(0),
            current: BrokerEpoch(1)
        }
    );
    assert_eq!(e.kafka_code(), 6);
    let e = refuse(&mut state, 2, 1, 5, 11);
    assert_eq!(e.kafka_code(), 1);
    assert_eq!(
        state.follower(NodeId(2)).unwrap().log_end,
        None,
        "nothing recorded"
    );
    // A broker epoch seen in a fetch fences older ones even before the metadata knows it.
    follower_fetch(&mut state, 2, 3, 10, 2).unwrap();
    assert_eq!(refuse(&mut state, 2, 2, 5, 10).kafka_code(), 6);
}

#[test]
fn a_member_lagging_longer_than_the_lag_time_is_proposed_out() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    fetch(&mut state, 3, 4, 0);
    drain(&mut state);
    state.tick(LAG);
    assert_eq!(
        proposals(&drain(&mut state)),
        [],
        "not longer than the lag yet"
    );
    state.tick(LAG + ms(1));
    let proposal = proposals(&drain(&mut state)).pop().unwrap();
    assert_eq!(
        proposal,
        AlterPartition {
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(5),
            partition_epoch: PartitionEpoch(10),
            isr: vec![
                IsrEntry {
                    node: NodeId(1),
                    broker_epoch: BrokerEpoch(1)
                },
                IsrEntry {
                    node: NodeId(2),
                    broker_epoch: BrokerEpoch(1)
                },
            ],
        }
    );
    assert_eq!(state.pending_alter_partition(), Some(&proposal));
}

#[test]
fn a_member_at_the_log_end_is_caught_up_however_long_ago_it_fetched() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    state.tick(LAG * 10);
    assert_eq!(proposals(&drain(&mut state)), []);
    // Once the leader appends, the last catch-up time counts.
    state.on_local_append(Offset(11));
    state.tick(LAG * 10);
    assert_eq!(isr_nodes(&proposals(&drain(&mut state))[0]), [1]);
}

#[test]
fn a_follower_keeping_up_with_the_previous_fetch_stays_in_sync_under_load() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    let mut now = 0;
    let (mut log_end, mut previous) = (10, 10);
    for _ in 0..100 {
        // The leader appends between fetches; the follower, one fetch behind, always has
        // what the leader had at its previous fetch, never the current log end.
        log_end += 5;
        state.on_local_append(Offset(log_end));
        fetch(&mut state, 2, previous, now);
        previous = log_end;
        now += 1_000;
        state.tick(ms(now));
    }
    assert_eq!(proposals(&drain(&mut state)), []);
    assert_eq!(nums(state.isr()), [1, 2]);
}

#[test]
fn a_pending_shrink_holds_the_high_watermark_until_it_commits() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 3, 2, 0);
    fetch(&mut state, 2, 10, 0);
    state.tick(LAG + ms(1));
    assert!(drain(&mut state).contains(&hw(2)));
    fetch(&mut state, 2, 10, LAG.as_millis() as u64 + 2);
    assert_eq!(
        state.high_watermark().0,
        2,
        "node 3 is still in the maximal ISR"
    );
    assert_eq!(nums(&state.maximal_isr()), [1, 2, 3]);
    let mut committed = meta(&[1, 2]);
    committed.partition_epoch = PartitionEpoch(11);
    assert_eq!(
        state.on_metadata(&committed, config(1), LAG + ms(3)),
        Leadership::Kept
    );
    assert_eq!(drain(&mut state), [hw(10)]);
    assert_eq!(state.pending_alter_partition(), None);
    assert_eq!(
        (nums(state.isr()), state.partition_epoch().0),
        (vec![1, 2], 11)
    );
}

#[test]
fn a_follower_joins_once_it_has_the_high_watermark_with_its_current_broker_epoch() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    assert_eq!(state.high_watermark().0, 10);
    drain(&mut state);
    fetch(&mut state, 3, 9, 1);
    assert_eq!(
        proposals(&drain(&mut state)),
        [],
        "below the high watermark"
    );
    // Restarted (broker epoch 2) before this leader's metadata knows it: not yet eligible.
    follower_fetch(&mut state, 3, 2, 10, 2).unwrap();
    assert_eq!(proposals(&drain(&mut state)), []);
    let mut registered = meta(&[1, 2]);
    registered.broker_epochs = broker_epochs(&[(1, 1), (2, 1), (3, 2)]);
    let _ = state.on_metadata(&registered, config(1), ms(3));
    assert_eq!(proposals(&drain(&mut state)), [], "its position was reset");
    follower_fetch(&mut state, 3, 2, 10, 4).unwrap();
    let proposal = proposals(&drain(&mut state)).pop().unwrap();
    assert_eq!(
        proposal.isr.last(),
        Some(&IsrEntry {
            node: NodeId(3),
            broker_epoch: BrokerEpoch(2)
        })
    );
    assert_eq!(isr_nodes(&proposal), [1, 2, 3]);
}

#[test]
fn a_follower_joins_only_with_everything_before_this_leader_epoch() {
    // New leader: its log ends at 10 (the epoch starts there), its checkpointed high watermark
    // is 5. A follower at 7 has the high watermark but may lack records 7..10, which earlier
    // leaders may have committed.
    let mut state = leader(&[1, 2], 10, 5, 1);
    assert_eq!(state.epoch_start_offset().0, 10);
    fetch(&mut state, 3, 7, 1);
    assert_eq!(proposals(&drain(&mut state)), []);
    fetch(&mut state, 3, 10, 2);
    assert_eq!(isr_nodes(&proposals(&drain(&mut state))[0]), [1, 2, 3]);
}

#[test]
fn a_pending_joiner_counts_for_the_high_watermark() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    fetch(&mut state, 3, 10, 0);
    drain(&mut state);
    assert_eq!(nums(&state.maximal_isr()), [1, 2, 3]);
    state.on_local_append(Offset(20));
    fetch(&mut state, 2, 20, 1);
    assert_eq!(drain(&mut state), [], "node 3 (joining) is at 10");
    fetch(&mut state, 3, 15, 2);
    assert_eq!(drain(&mut state), [hw(15)]);
}

#[test]
fn one_proposal_at_a_time_sent_again_until_answered() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    state.tick(LAG + ms(1));
    let first = proposals(&drain(&mut state)).pop().unwrap();
    assert_eq!(isr_nodes(&first), [1, 2]);
    // Node 2 now lags too, but one change is in flight.
    state.on_local_append(Offset(11));
    state.tick(LAG * 3);
    let again = proposals(&drain(&mut state));
    assert_eq!(
        again,
        std::slice::from_ref(&first),
        "re-sent unchanged after the retry time"
    );
    state.tick(LAG * 3 + ms(1));
    assert_eq!(proposals(&drain(&mut state)), []);
}

#[test]
fn an_ineligible_proposal_ends_and_the_next_waits_for_the_retry_time() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    state.tick(LAG + ms(1));
    let proposal = proposals(&drain(&mut state)).pop().unwrap();
    let mut other = proposal.clone();
    other.partition_epoch = PartitionEpoch(3);
    state.on_alter_partition_refused(&other, INELIGIBLE, LAG + ms(2));
    assert!(state.pending_alter_partition().is_some(), "not ours");
    state.on_alter_partition_refused(&proposal, INELIGIBLE, LAG + ms(2));
    assert_eq!(state.pending_alter_partition(), None);
    state.tick(LAG + ms(3));
    assert_eq!(proposals(&drain(&mut state)), []);
    state.tick(LAG + RETRY + ms(2));
    assert_eq!(proposals(&drain(&mut state)), [proposal]);
}

#[test]
fn an_ineligible_expansion_releases_the_high_watermark() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    fetch(&mut state, 3, 10, 0);
    let proposal = proposals(&drain(&mut state)).pop().unwrap();
    state.on_local_append(Offset(20));
    fetch(&mut state, 2, 20, 1);
    assert_eq!(state.high_watermark().0, 10);
    state.on_alter_partition_refused(&proposal, INELIGIBLE, ms(2));
    assert_eq!(drain(&mut state), [hw(20)]);
}

#[test]
fn a_newer_partition_epoch_supersedes_the_pending_proposal() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    state.tick(LAG + ms(1));
    fetch(&mut state, 2, 10, LAG.as_millis() as u64 + 1);
    drain(&mut state);
    // The controller removed node 2 instead (fenced), based on the same partition epoch.
    let mut fenced = meta(&[1, 3]);
    fenced.partition_epoch = PartitionEpoch(11);
    let _ = state.on_metadata(&fenced, config(1), LAG + ms(2));
    let outputs = drain(&mut state);
    // Based on epoch 11: node 3 still lags, node 2 (caught up) may come back.
    let proposal = proposals(&outputs).pop().unwrap();
    assert_eq!(
        (proposal.partition_epoch.0, isr_nodes(&proposal)),
        (11, vec![1, 2])
    );
}

#[test]
fn an_older_image_changes_nothing() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    let mut old = meta(&[1, 2, 3]);
    old.partition_epoch = PartitionEpoch(9);
    assert_eq!(state.on_metadata(&old, config(1), ms(1)), Leadership::Kept);
    assert_eq!(nums(state.isr()), [1, 2]);
}

#[test]
fn a_restart_seen_in_a_fetch_sends_the_member_out_at_once() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    fetch(&mut state, 3, 10, 0);
    drain(&mut state);
    // Node 3 restarted: broker epoch 2, and it is even at the log end.
    follower_fetch(&mut state, 3, 2, 10, 1).unwrap();
    let proposal = proposals(&drain(&mut state)).pop().unwrap();
    assert_eq!(isr_nodes(&proposal), [1, 2]);
}

#[test]
fn a_restart_seen_in_the_metadata_sends_the_member_out_and_forgets_its_position() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    fetch(&mut state, 3, 10, 0);
    drain(&mut state);
    let mut restarted = meta(&[1, 2, 3]);
    restarted.broker_epochs = broker_epochs(&[(1, 1), (2, 1), (3, 2)]);
    let _ = state.on_metadata(&restarted, config(1), ms(1));
    assert_eq!(isr_nodes(&proposals(&drain(&mut state))[0]), [1, 2]);
    assert_eq!(state.follower(NodeId(3)).unwrap().log_end, None);
    state.on_local_append(Offset(12));
    fetch(&mut state, 2, 12, 2);
    assert_eq!(
        state.high_watermark().0,
        10,
        "node 3 is still in the maximal ISR"
    );
    // Its fetch from before the restart is refused.
    assert!(follower_fetch(&mut state, 3, 1, 12, 3).is_err());
}

#[test]
fn produce_admission_checks_the_committed_isr_for_acks_all() {
    let state = leader(&[1], 10, 10, 2);
    let e = state.can_append(true).unwrap_err();
    assert_eq!(
        e,
        ReplicaError::NotEnoughReplicas {
            isr: 1,
            min_insync: 2
        }
    );
    assert_eq!(e.kafka_code(), 19);
    assert_eq!(state.can_append(false), Ok(()));
    assert_eq!(leader(&[1, 2], 10, 10, 2).can_append(true), Ok(()));
}

#[test]
fn waiters_complete_when_the_high_watermark_reaches_them() {
    let mut state = leader(&[1, 2], 10, 0, 2);
    fetch(&mut state, 2, 10, 0);
    drain(&mut state);
    state.on_local_append(Offset(15));
    state.add_waiter(WaiterId(1), Offset(12), ms(100));
    state.add_waiter(WaiterId(2), Offset(15), ms(100));
    state.add_waiter(WaiterId(3), Offset(9), ms(100));
    assert_eq!(acked(&drain(&mut state)), [(WaiterId(3), Ok(()))]);
    fetch(&mut state, 2, 12, 1);
    assert_eq!(acked(&drain(&mut state)), [(WaiterId(1), Ok(()))]);
    fetch(&mut state, 2, 15, 2);
    assert_eq!(acked(&drain(&mut state)), [(WaiterId(2), Ok(()))]);
    assert_eq!(state.waiting(), 0);
}

#[test]
fn a_waiter_completing_after_the_isr_shrank_gets_not_enough_replicas_after_append() {
    let mut state = leader(&[1, 2], 10, 10, 2);
    state.can_append(true).unwrap();
    state.on_local_append(Offset(11));
    state.add_waiter(WaiterId(1), Offset(11), LAG * 10);
    state.tick(LAG + ms(1));
    assert_eq!(isr_nodes(&proposals(&drain(&mut state))[0]), [1]);
    let mut shrunk = meta(&[1]);
    shrunk.partition_epoch = PartitionEpoch(11);
    let _ = state.on_metadata(&shrunk, config(2), LAG + ms(2));
    let outputs = drain(&mut state);
    let e = ReplicaError::NotEnoughReplicasAfterAppend {
        isr: 1,
        min_insync: 2,
    };
    assert_eq!(e.kafka_code(), 20);
    assert_eq!(acked(&outputs), [(WaiterId(1), Err(e))]);
    assert!(outputs.contains(&hw(11)));
}

#[test]
fn waiters_time_out_or_are_cancelled_once() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    state.add_waiter(WaiterId(1), Offset(11), ms(100));
    state.add_waiter(WaiterId(2), Offset(11), ms(200));
    state.add_waiter(WaiterId(3), Offset(11), ms(300));
    assert!(state.cancel_waiter(WaiterId(3)));
    assert!(!state.cancel_waiter(WaiterId(3)));
    state.tick(ms(150));
    let e = ReplicaError::RequestTimedOut;
    assert_eq!(e.kafka_code(), 7);
    assert_eq!(acked(&drain(&mut state)), [(WaiterId(1), Err(e.clone()))]);
    state.tick(ms(1_000));
    assert_eq!(acked(&drain(&mut state)), [(WaiterId(2), Err(e))]);
    state.tick(ms(2_000));
    assert_eq!(acked(&drain(&mut state)), []);
}

#[test]
fn losing_leadership_fails_every_waiter_once_and_refuses_everything() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    state.add_waiter(WaiterId(1), Offset(11), ms(100));
    state.add_waiter(WaiterId(2), Offset(12), ms(100));
    let mut moved = meta(&[1, 2]);
    moved.leader = NodeId(2);
    moved.leader_epoch = LeaderEpoch(6);
    assert_eq!(
        state.on_metadata(&moved, config(1), ms(1)),
        Leadership::Lost
    );
    let not_leader = Err(ReplicaError::NotLeaderOrFollower);
    assert_eq!(
        acked(&drain(&mut state)),
        [
            (WaiterId(1), not_leader.clone()),
            (WaiterId(2), not_leader.clone())
        ]
    );
    assert!(state.is_resigned());
    assert_eq!(
        state.on_metadata(&moved, config(1), ms(2)),
        Leadership::Lost
    );
    state.resign();
    state.tick(ms(1_000));
    assert_eq!(drain(&mut state), []);
    assert_eq!(state.can_append(false), not_leader);
    assert_eq!(state.check_leader_epoch(LeaderEpoch(5)), not_leader);
    state.add_waiter(WaiterId(3), Offset(1), ms(100));
    assert_eq!(acked(&drain(&mut state)), [(WaiterId(3), not_leader)]);
}

#[test]
fn the_same_leader_in_a_new_epoch_is_a_new_leadership() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    let mut again = meta(&[1, 2]);
    again.leader_epoch = LeaderEpoch(6);
    assert_eq!(
        state.on_metadata(&again, config(1), ms(1)),
        Leadership::Lost
    );
}

#[test]
fn offset_for_leader_epoch_answers_count_the_leaders_epoch_as_begun() {
    // Epochs 1, 1, 3, 3, 3 at offsets 0..5; this leader leads epoch 5, nothing appended yet.
    let log = MemLog::from_epochs(&[1, 1, 3, 3, 3]);
    let answer = |requested| leader_epoch_end_offset(LeaderEpoch(requested), LeaderEpoch(5), &log);
    let at = |epoch, end_offset| {
        Some(EpochEndOffset {
            epoch: LeaderEpoch(epoch),
            end_offset: Offset(end_offset),
        })
    };
    assert_eq!(
        answer(0),
        at(0, 0),
        "before the first epoch: where it starts"
    );
    assert_eq!(answer(1), at(1, 2));
    assert_eq!(answer(2), at(1, 2));
    assert_eq!(answer(3), at(3, 5));
    assert_eq!(answer(4), at(3, 5), "the store alone would say undefined");
    assert_eq!(answer(5), at(5, 5));
    assert_eq!(answer(-1), None);
    assert_eq!(
        leader_epoch_end_offset(LeaderEpoch(2), LeaderEpoch(5), &MemLog::default()),
        at(2, 0),
        "an empty log"
    );
    // After appends in epoch 5.
    let log = MemLog::from_epochs(&[1, 1, 3, 3, 3, 5, 5]);
    let answer = |requested| leader_epoch_end_offset(LeaderEpoch(requested), LeaderEpoch(5), &log);
    assert_eq!(answer(4), at(3, 5));
    assert_eq!(answer(5), at(5, 7));
}

#[test]
fn a_leader_keeping_its_epoch_across_a_restart_starts_the_epoch_where_its_records_do() {
    let log = MemLog::from_epochs(&[4, 4, 5, 5, 5]);
    let state = LeaderState::new(NodeId(1), &meta(&[1, 2]), config(1), &log, ms(0)).unwrap();
    assert_eq!(state.epoch_start_offset().0, 2);
    let log = MemLog::from_epochs(&[4, 4]);
    let state = LeaderState::new(NodeId(1), &meta(&[1, 2]), config(1), &log, ms(0)).unwrap();
    assert_eq!(state.epoch_start_offset().0, 2);
}

#[test]
fn a_replica_removed_from_the_assignment_is_forgotten() {
    let mut state = leader(&[1, 2, 3], 10, 0, 1);
    let mut reassigned = meta(&[1, 2]);
    reassigned.replicas = ids(&[1, 2]);
    reassigned.partition_epoch = PartitionEpoch(11);
    let _ = state.on_metadata(&reassigned, config(1), ms(1));
    assert!(state.follower(NodeId(3)).is_none());
    assert_eq!(
        follower_fetch(&mut state, 3, 1, 0, 2),
        Err(ReplicaError::UnknownReplica { replica: NodeId(3) })
    );
    fetch(&mut state, 2, 10, 3);
    assert!(drain(&mut state).contains(&hw(10)));
}

#[test]
fn a_follower_that_stopped_fetching_is_not_proposed_from_its_old_position() {
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    state.on_local_append(Offset(11));
    state.tick(LAG + ms(1)); // node 2 out: pending
    let pending = proposals(&drain(&mut state)).pop().unwrap();
    assert_eq!(isr_nodes(&pending), [1]);
    fetch(&mut state, 3, 10, LAG.as_millis() as u64 + 2); // eligible, but one change at a time
    assert_eq!(proposals(&drain(&mut state)), []);
    state.on_alter_partition_refused(&pending, INELIGIBLE, LAG + ms(3));
    // Node 3 fell silent (it may be dead): by the next chance its fetch is too old.
    state.tick(LAG * 3);
    let next = proposals(&drain(&mut state)).pop().unwrap();
    assert_eq!(
        isr_nodes(&next),
        [1],
        "node 2 still lags; node 3 is not added"
    );
}

#[test]
fn a_stale_refusal_keeps_the_maximal_isr_until_newer_metadata() {
    // A copy of the proposal may have committed (which is what made a re-sent copy stale): the
    // joiner may be in the ISR already, so the high watermark keeps waiting for it.
    let mut state = leader(&[1, 2], 10, 0, 1);
    fetch(&mut state, 2, 10, 0);
    fetch(&mut state, 3, 10, 0);
    let proposal = proposals(&drain(&mut state)).pop().unwrap();
    state.on_local_append(Offset(20));
    fetch(&mut state, 2, 20, 1);
    state.on_alter_partition_refused(&proposal, AlterPartitionRefusal::StaleEpoch, ms(2));
    assert_eq!(drain(&mut state), []);
    assert_eq!(state.high_watermark().0, 10);
    assert_eq!(state.pending_alter_partition(), Some(&proposal));
    state.tick(RETRY + ms(3));
    assert_eq!(proposals(&drain(&mut state)), [], "not sent again");
    let mut committed = meta(&[1, 2, 3]);
    committed.partition_epoch = PartitionEpoch(12); // it committed (11), then something else changed
    let _ = state.on_metadata(&committed, config(1), RETRY + ms(4));
    assert_eq!(state.pending_alter_partition(), None);
    assert_eq!(state.high_watermark().0, 10, "node 3 is in the ISR at 10");
}
