//! The follower's rules, one test each, asserted on the actions it emits.

use std::time::Duration;

use super::MemLog;
use crate::ids::{LeaderEpoch, NodeId, Offset};
use crate::partition::core::*;

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

const BACKOFF: Duration = Duration::from_millis(100);

fn config() -> FollowerConfig {
    FollowerConfig {
        retry_backoff: BACKOFF,
    }
}

fn drain(state: &mut FollowerState) -> Vec<FollowerAction> {
    std::iter::from_fn(|| state.poll_action()).collect()
}

/// Follows node 1 in leader epoch 5 with a log of these epochs.
fn follower(epochs: &[i32]) -> (FollowerState, MemLog) {
    let log = MemLog::from_epochs(epochs);
    (
        FollowerState::new(NodeId(1), LeaderEpoch(5), config(), &log),
        log,
    )
}

fn only(actions: Vec<FollowerAction>) -> FollowerAction {
    assert_eq!(actions.len(), 1, "{actions:?}");
    actions.into_iter().next().unwrap()
}

/// The request of the single action `actions` holds, checking it is a fetch at `offset`.
fn expect_fetch(actions: Vec<FollowerAction>, offset: i64) -> RequestId {
    match only(actions) {
        FollowerAction::Fetch {
            request,
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(5),
            offset: o,
        } if o == Offset(offset) => request,
        other => panic!("expected a fetch at {offset}, got {other:?}"),
    }
}

fn expect_ask(actions: Vec<FollowerAction>, epoch: i32) -> RequestId {
    match only(actions) {
        FollowerAction::SendOffsetForLeaderEpoch {
            request,
            leader: NodeId(1),
            leader_epoch: LeaderEpoch(5),
            epoch: e,
        } if e == LeaderEpoch(epoch) => request,
        other => panic!("expected OffsetForLeaderEpoch({epoch}), got {other:?}"),
    }
}

fn expect_truncate(actions: Vec<FollowerAction>, to: i64) -> RequestId {
    match only(actions) {
        FollowerAction::Truncate { request, to: t } if t == Offset(to) => request,
        other => panic!("expected a truncation to {to}, got {other:?}"),
    }
}

fn answer(epoch: i32, end_offset: i64) -> Result<Option<EpochEndOffset>, FetchError> {
    Ok(Some(EpochEndOffset {
        epoch: LeaderEpoch(epoch),
        end_offset: Offset(end_offset),
    }))
}

#[test]
fn a_log_without_epochs_fetches_at_its_end() {
    let (mut f, _) = follower(&[]);
    expect_fetch(drain(&mut f), 0);
    assert!(f.is_fetching());
}

#[test]
fn a_log_with_epochs_asks_the_leader_first_and_never_truncates_to_its_high_watermark() {
    let (mut f, mut log) = follower(&[0, 0, 0]);
    log.high_watermark = 1;
    let request = expect_ask(drain(&mut f), 0);
    // KIP-101 scenario 1: the leader has epoch 0 up to 3 (or more); nothing goes.
    f.on_epoch_end_offset(request, answer(0, 5), &log, ms(0));
    expect_fetch(drain(&mut f), 3);
}

#[test]
fn the_same_epoch_ending_earlier_on_the_leader_is_truncated_to_its_end() {
    let (mut f, mut log) = follower(&[0, 0, 1, 1]);
    let request = expect_ask(drain(&mut f), 1);
    f.on_epoch_end_offset(request, answer(1, 3), &log, ms(0));
    let request = expect_truncate(drain(&mut f), 3);
    log.truncate_to(3);
    f.on_truncated(request, &log);
    expect_fetch(drain(&mut f), 3);
}

#[test]
fn a_leader_without_our_epoch_makes_us_truncate_to_our_earlier_epoch_and_ask_again() {
    // Epoch 2 never reached the leader; it answers with its epoch 1, which we never had.
    let (mut f, mut log) = follower(&[0, 0, 2, 2]);
    let request = expect_ask(drain(&mut f), 2);
    f.on_epoch_end_offset(request, answer(1, 3), &log, ms(0));
    let request = expect_truncate(drain(&mut f), 2);
    log.truncate_to(2);
    f.on_truncated(request, &log);
    let request = expect_ask(drain(&mut f), 0);
    f.on_epoch_end_offset(request, answer(0, 1), &log, ms(0));
    let request = expect_truncate(drain(&mut f), 1);
    log.truncate_to(1);
    f.on_truncated(request, &log);
    expect_fetch(drain(&mut f), 1);
}

#[test]
fn a_leader_epoch_between_two_of_ours_cuts_where_our_next_epoch_starts() {
    // We have epochs 1 and 3; the leader's largest epoch at or below 3 is 2, which we lack:
    // our epoch 3 (from offset 2) is not on the leader.
    let (mut f, mut log) = follower(&[1, 1, 3]);
    let request = expect_ask(drain(&mut f), 3);
    f.on_epoch_end_offset(request, answer(2, 10), &log, ms(0));
    let request = expect_truncate(drain(&mut f), 2);
    log.truncate_to(2);
    f.on_truncated(request, &log);
    // Epoch 1 ends at 2 on the leader too: nothing more goes.
    let request = expect_ask(drain(&mut f), 1);
    f.on_epoch_end_offset(request, answer(1, 2), &log, ms(0));
    expect_fetch(drain(&mut f), 2);
}

#[test]
fn replies_to_other_requests_are_ignored() {
    let (mut f, log) = follower(&[0, 0]);
    let request = expect_ask(drain(&mut f), 0);
    let stale = RequestId(request.0 + 100);
    f.on_epoch_end_offset(stale, answer(0, 0), &log, ms(0));
    f.on_fetch(request, Ok(Offset(10)), &log, ms(0));
    f.on_truncated(request, &log);
    f.on_leader_offsets(
        request,
        Ok(LeaderOffsets {
            log_start: Offset(0),
            log_end: Offset(0),
        }),
        &log,
        ms(0),
    );
    assert_eq!(drain(&mut f), []);
    // A newer leader epoch makes the reply stale too.
    f.on_metadata(NodeId(2), LeaderEpoch(6), &log);
    let next = match only(drain(&mut f)) {
        FollowerAction::SendOffsetForLeaderEpoch {
            request,
            leader: NodeId(2),
            leader_epoch: LeaderEpoch(6),
            epoch: LeaderEpoch(0),
        } => request,
        other => panic!("{other:?}"),
    };
    f.on_epoch_end_offset(request, answer(0, 0), &log, ms(0));
    assert_eq!(drain(&mut f), []);
    f.on_epoch_end_offset(next, answer(0, 2), &log, ms(0));
    assert!(matches!(
        only(drain(&mut f)),
        FollowerAction::Fetch {
            leader: NodeId(2),
            leader_epoch: LeaderEpoch(6),
            offset: Offset(2),
            ..
        }
    ));
}

#[test]
fn older_or_equal_metadata_changes_nothing() {
    let (mut f, log) = follower(&[]);
    drain(&mut f);
    f.on_metadata(NodeId(1), LeaderEpoch(5), &log);
    f.on_metadata(NodeId(2), LeaderEpoch(4), &log);
    assert_eq!(drain(&mut f), []);
    assert_eq!((f.leader(), f.leader_epoch()), (NodeId(1), LeaderEpoch(5)));
}

#[test]
fn a_fenced_epoch_waits_for_newer_metadata() {
    let (mut f, log) = follower(&[]);
    let request = expect_fetch(drain(&mut f), 0);
    f.on_fetch(request, Err(FetchError::FencedLeaderEpoch), &log, ms(0));
    assert!(f.is_fenced());
    f.tick(ms(10_000), &log);
    f.on_metadata(NodeId(1), LeaderEpoch(5), &log);
    assert_eq!(drain(&mut f), []);
    f.on_metadata(NodeId(3), LeaderEpoch(7), &log);
    assert!(matches!(
        only(drain(&mut f)),
        FollowerAction::Fetch {
            leader: NodeId(3),
            leader_epoch: LeaderEpoch(7),
            offset: Offset(0),
            ..
        }
    ));
}

#[test]
fn unknown_epoch_not_leader_and_transient_errors_back_off_then_retry_the_step() {
    for error in [
        FetchError::UnknownLeaderEpoch,
        FetchError::NotLeaderOrFollower,
        FetchError::Transient,
    ] {
        let (mut f, mut log) = follower(&[0, 0]);
        let request = expect_ask(drain(&mut f), 0);
        f.on_epoch_end_offset(request, Err(error), &log, ms(10));
        assert_eq!(
            drain(&mut f),
            [FollowerAction::Backoff {
                until: ms(10) + BACKOFF
            }]
        );
        f.tick(ms(10) + BACKOFF - ms(1), &log);
        assert_eq!(drain(&mut f), []);
        f.tick(ms(10) + BACKOFF, &log);
        let request = expect_ask(drain(&mut f), 0);
        f.on_epoch_end_offset(request, answer(0, 2), &log, ms(200));
        let request = expect_fetch(drain(&mut f), 2);
        log.append(5);
        f.on_fetch(request, Err(error), &log, ms(300));
        assert_eq!(
            drain(&mut f),
            [FollowerAction::Backoff {
                until: ms(300) + BACKOFF
            }]
        );
        f.tick(ms(300) + BACKOFF, &log);
        expect_fetch(drain(&mut f), 3);
    }
}

#[test]
fn out_of_range_follows_the_leaders_offsets() {
    let out_of_range = |epochs: &[i32], leader: LeaderOffsets| {
        let (mut f, log) = follower(epochs);
        let request = expect_ask(drain(&mut f), 0);
        f.on_epoch_end_offset(request, answer(0, 100), &log, ms(0));
        let request = expect_fetch(drain(&mut f), log.end());
        f.on_fetch(request, Err(FetchError::OffsetOutOfRange), &log, ms(0));
        let request = match only(drain(&mut f)) {
            FollowerAction::ListLeaderOffsets {
                request,
                leader: NodeId(1),
                leader_epoch: LeaderEpoch(5),
            } => request,
            other => panic!("{other:?}"),
        };
        f.on_leader_offsets(request, Ok(leader), &log, ms(0));
        (f, log)
    };
    // Beyond the leader's end: truncate to it.
    let (mut f, mut log) = out_of_range(
        &[0; 8],
        LeaderOffsets {
            log_start: Offset(0),
            log_end: Offset(5),
        },
    );
    let request = expect_truncate(drain(&mut f), 5);
    log.truncate_to(5);
    f.on_truncated(request, &log);
    expect_fetch(drain(&mut f), 5);
    // Behind the leader's start: start over there.
    let (mut f, mut log) = out_of_range(
        &[0; 3],
        LeaderOffsets {
            log_start: Offset(50),
            log_end: Offset(60),
        },
    );
    let request = match only(drain(&mut f)) {
        FollowerAction::Reset {
            request,
            offset: Offset(50),
        } => request,
        other => panic!("{other:?}"),
    };
    log.reset_to(50);
    f.on_truncated(request, &log);
    expect_fetch(drain(&mut f), 50);
    // In range after all (the leader moved meanwhile): fetch again.
    let (mut f, _) = out_of_range(
        &[0; 3],
        LeaderOffsets {
            log_start: Offset(0),
            log_end: Offset(10),
        },
    );
    expect_fetch(drain(&mut f), 3);
}

#[test]
fn an_undefined_epoch_truncates_to_the_leaders_log_start() {
    let (mut f, mut log) = follower(&[0, 0, 0, 0, 0]);
    let request = expect_ask(drain(&mut f), 0);
    f.on_epoch_end_offset(request, Ok(None), &log, ms(0));
    let request = match only(drain(&mut f)) {
        FollowerAction::ListLeaderOffsets { request, .. } => request,
        other => panic!("{other:?}"),
    };
    let offsets = LeaderOffsets {
        log_start: Offset(2),
        log_end: Offset(9),
    };
    f.on_leader_offsets(request, Ok(offsets), &log, ms(0));
    let request = expect_truncate(drain(&mut f), 2);
    log.truncate_to(2);
    f.on_truncated(request, &log);
    expect_fetch(drain(&mut f), 2);
}

#[test]
fn an_answer_about_a_newer_epoch_than_asked_is_not_trusted() {
    let (mut f, log) = follower(&[0, 0]);
    let request = expect_ask(drain(&mut f), 0);
    f.on_epoch_end_offset(request, answer(3, 0), &log, ms(0));
    assert_eq!(drain(&mut f), [FollowerAction::Backoff { until: BACKOFF }]);
}

#[test]
fn a_log_changed_since_the_question_is_asked_about_again() {
    let (mut f, mut log) = follower(&[0, 0, 3]);
    let request = expect_ask(drain(&mut f), 3);
    log.truncate_to(2); // e.g. a truncation from before, carried out late
    f.on_epoch_end_offset(request, answer(1, 5), &log, ms(0));
    expect_ask(drain(&mut f), 0);
}

#[test]
fn a_corrupt_batch_is_truncated_if_local_and_fetched_again() {
    // In a response (nothing of it appended): back off and fetch again.
    let (mut f, log) = follower(&[]);
    let request = expect_fetch(drain(&mut f), 0);
    f.on_fetch(
        request,
        Err(FetchError::CorruptBatch { offset: Offset(0) }),
        &log,
        ms(0),
    );
    assert_eq!(drain(&mut f), [FollowerAction::Backoff { until: BACKOFF }]);
    f.tick(BACKOFF, &log);
    let request = expect_fetch(drain(&mut f), 0);
    // In the local log, below its end: drop it and what follows, fetch again.
    let mut log = MemLog::from_epochs(&[5, 5, 5, 5]);
    f.on_fetch(
        request,
        Err(FetchError::CorruptBatch { offset: Offset(2) }),
        &log,
        ms(0),
    );
    let request = expect_truncate(drain(&mut f), 2);
    log.truncate_to(2);
    f.on_truncated(request, &log);
    expect_fetch(drain(&mut f), 2);
}

#[test]
fn the_high_watermark_is_the_leaders_bounded_by_our_log_end_and_only_advances() {
    let (mut f, mut log) = follower(&[]);
    let request = expect_fetch(drain(&mut f), 0);
    assert!(f.accepts_records(request, &log));
    log.append_replicated(&[(0, 5), (1, 5), (2, 5)]);
    assert!(!f.accepts_records(request, &log), "the log moved");
    f.on_fetch(request, Ok(Offset(10)), &log, ms(0));
    let actions = drain(&mut f);
    assert_eq!(actions[0], FollowerAction::SetHighWatermark(Offset(3)));
    log.high_watermark = 3;
    let request = expect_fetch(actions[1..].to_vec(), 3);
    assert!(!f.accepts_records(RequestId(request.0 + 1), &log));
    f.on_fetch(request, Ok(Offset(2)), &log, ms(0));
    expect_fetch(drain(&mut f), 3);
}
