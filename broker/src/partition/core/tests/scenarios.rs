//! The divergence scenarios of KIP-101 and KIP-279, scripted: logs are built as the failures
//! leave them, then a follower reconciles with its leader through the cores (the leader's
//! answers from `leader_epoch_end_offset`, fetches copying records).

use super::MemLog;
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::partition::core::*;

/// Runs a follower with `log` against a leader with `leader_log` in `leader_epoch` until it has
/// fetched everything. Returns the offsets it truncated to.
fn catch_up(log: &mut MemLog, leader_log: &MemLog, leader_epoch: i32) -> Vec<i64> {
    let leader_epoch = LeaderEpoch(leader_epoch);
    let mut follower = FollowerState::new(NodeId(1), leader_epoch, FollowerConfig::default(), log);
    let mut truncations = Vec::new();
    for _ in 0..100 {
        let Some(action) = follower.poll_action() else {
            panic!("the follower stopped: {follower:?}");
        };
        let now = std::time::Duration::ZERO;
        match action {
            FollowerAction::SendOffsetForLeaderEpoch { request, epoch, .. } => {
                let answer = leader_epoch_end_offset(epoch, leader_epoch, leader_log);
                follower.on_epoch_end_offset(request, Ok(answer), log, now);
            }
            FollowerAction::Truncate { request, to } => {
                truncations.push(to.0);
                log.truncate_to(to.0);
                follower.on_truncated(request, log);
            }
            FollowerAction::Fetch {
                request, offset, ..
            } => {
                if offset.0 == leader_log.end() {
                    return truncations;
                }
                assert!(follower.accepts_records(request, log));
                log.append_replicated(&leader_log.read(offset.0, 2));
                let leader_high_watermark = Offset(leader_log.high_watermark);
                follower.on_fetch(request, Ok(leader_high_watermark), log, now);
            }
            FollowerAction::SetHighWatermark(hw) => log.high_watermark = hw.0,
            other => panic!("unexpected {other:?}"),
        }
    }
    panic!("no convergence: {log:?} vs {leader_log:?}");
}

#[test]
fn kip_101_scenario_1_a_restarted_follower_keeps_what_its_high_watermark_does_not_cover() {
    // A leads epoch 0 with m1, m2; B fetched both, but learnt only high watermark 1 before it
    // restarted. Truncating to the high watermark (pre-KIP-101) would drop m2, committed on A,
    // and lose it for good if A then died and B led.
    let mut a = MemLog::from_epochs(&[0, 0]);
    a.high_watermark = 2;
    let mut b = MemLog::from_epochs(&[0, 0]);
    b.high_watermark = 1;
    assert_eq!(catch_up(&mut b, &a, 0), [] as [i64; 0]);
    assert_eq!(b.records, a.records);
    // A dies; B leads epoch 1 and appends m3. A comes back and follows: m2 survives everywhere.
    b.append(1);
    assert_eq!(catch_up(&mut a, &b, 1), [] as [i64; 0]);
    assert_eq!(a.records, [(0, 0), (1, 0), (2, 1)]);
}

#[test]
fn kip_101_scenario_2_logs_diverged_by_two_crashes_converge_on_the_new_leader() {
    // A led epoch 0 with m1, m2 (m2 unreplicated); B had m1. Both crashed; B came back first,
    // led epoch 1 and wrote m3 at offset 1. A returns with m2 at offset 1: by high watermark it
    // would keep it and diverge; by epoch it learns epoch 0 ends at 1 on B.
    let mut a = MemLog::from_epochs(&[0, 0]);
    a.high_watermark = 2;
    let mut b = MemLog::from_epochs(&[0, 1]);
    b.high_watermark = 1;
    assert_eq!(catch_up(&mut a, &b, 1), [1]);
    assert_eq!(a.records, b.records);
}

#[test]
fn kip_279_fast_leader_changes_truncate_to_the_epoch_both_logs_share() {
    // Epoch 1: A wrote offsets 0 and 1, B fetched 0. A died; B led epoch 2 and wrote offset 1.
    // B died; A came back, led epoch 3 without hearing of epoch 2 and wrote offset 2.
    let a = MemLog::from_epochs(&[1, 1, 3]);
    let mut b = MemLog::from_epochs(&[1, 2]);
    // B asks about epoch 2; A's largest epoch at or below it is 1, ending at 2. KIP-101 alone
    // would truncate B to min(2, 2) and keep its epoch-2 record at offset 1: divergence. B
    // sees it lacks nothing of epoch 1 but that it ends at 1 here: truncates to 1.
    assert_eq!(catch_up(&mut b, &a, 3), [1]);
    assert_eq!(b.records, a.records);
}

#[test]
fn kip_279_a_leader_that_has_not_appended_in_its_epoch_still_answers_for_it() {
    // Epoch 1: A and B both have offset 0. B led epoch 2 and wrote offset 1, unreplicated. A
    // leads epoch 3 and has appended nothing yet: its log knows only epoch 1. B asks about
    // epoch 2, which the store alone calls undefined (no epoch above it in A's log).
    let mut a = MemLog::from_epochs(&[1]);
    a.high_watermark = 1;
    let mut b = MemLog::from_epochs(&[1, 2]);
    b.high_watermark = 1;
    assert_eq!(
        a.end_offset_for_epoch(LeaderEpoch(2)),
        None,
        "the store's answer"
    );
    // Answered as if epoch 3 began at A's log end: B drops only its epoch-2 record and keeps
    // the committed offset 0.
    assert_eq!(catch_up(&mut b, &a, 3), [1]);
    assert_eq!(b.records, a.records);
}

#[test]
fn a_tail_spanning_several_epochs_is_found_in_several_rounds() {
    // The follower saw epochs 0, 2, 4; the leader (epoch 5) has 0, 1, 3, 5 at the same offsets.
    let leader = MemLog::from_epochs(&[0, 1, 3, 5]);
    let mut follower = MemLog::from_epochs(&[0, 2, 4, 4]);
    // Epoch 4 -> leader's 3 (lacking): cut to where our 4 starts (2), ask about 2 -> leader's 1
    // (lacking): cut to where our 2 starts (1), ask about 0 -> ends at 1 on both.
    assert_eq!(catch_up(&mut follower, &leader, 5), [2, 1]);
    assert_eq!(follower.records, leader.records);
}

#[test]
fn a_shared_epoch_ending_earlier_on_the_leader_is_cut_in_one_round() {
    let leader = MemLog::from_epochs(&[0, 0, 1, 3, 3, 3]);
    let mut follower = MemLog::from_epochs(&[0, 0, 1, 1, 2, 2, 2]);
    assert_eq!(catch_up(&mut follower, &leader, 4), [3]);
    assert_eq!(follower.records, leader.records);
}

#[test]
fn a_follower_behind_the_leader_truncates_nothing() {
    let leader = MemLog::from_epochs(&[0, 0, 1, 1, 2, 2]);
    let mut follower = MemLog::from_epochs(&[0, 0, 1]);
    assert_eq!(catch_up(&mut follower, &leader, 2), [] as [i64; 0]);
    assert_eq!(follower.records, leader.records);
}
