use std::sync::Arc;

use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition {
        topic: Arc::from("t"),
        partition: p,
    }
}

fn ready() -> Idempotence {
    let mut s = Idempotence::default();
    s.set_identity(ProducerIdentity { id: 9, epoch: 0 });
    s
}

fn err(code: ResponseError) -> Error {
    Error::from_code(code.code(), "t", Some(0)).unwrap()
}

#[test]
fn sequences_count_records_per_partition() {
    let mut s = ready();
    assert_eq!(s.assign(&tp(0), 10), Some((9, 0, 0)));
    assert_eq!(s.assign(&tp(0), 5), Some((9, 0, 10)));
    assert_eq!(s.assign(&tp(1), 3), Some((9, 0, 0)));
    assert_eq!(s.assign(&tp(0), 1), Some((9, 0, 15)));
}

#[test]
fn nothing_is_sent_before_init_producer_id() {
    let s = Idempotence::default();
    assert!(!s.can_send(&tp(0), None));
}

#[test]
fn sequence_wraps_to_zero_like_kafka() {
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
    assert_eq!(increment_sequence(5, 3), 8);
}

#[test]
fn the_first_batch_of_a_partition_goes_alone() {
    let mut s = ready();
    let a = s.assign(&tp(0), 1).unwrap();
    assert!(
        !s.can_send(&tp(0), None),
        "no pipelining before the broker knows the producer"
    );
    assert!(s.can_send(&tp(1), None), "other partitions are independent");
    s.on_returned(&tp(0), a);
    s.on_success(&tp(0), a, 1);
    assert!(s.can_send(&tp(0), None));
    s.assign(&tp(0), 1);
    assert!(s.can_send(&tp(0), None), "pipelined from then on");
}

#[test]
fn at_most_five_unacked_batches_per_partition() {
    let mut s = ready();
    let first = s.assign(&tp(0), 1).unwrap();
    s.on_success(&tp(0), first, 1);
    for _ in 0..5 {
        assert!(s.can_send(&tp(0), None));
        s.assign(&tp(0), 1);
    }
    assert!(!s.can_send(&tp(0), None));
    assert!(s.can_send(&tp(1), None));
    s.on_success(&tp(0), (9, 0, 1), 1);
    assert!(s.can_send(&tp(0), None));
}

#[test]
fn retries_go_out_in_sequence_order() {
    let mut s = ready();
    let a = s.assign(&tp(0), 2).unwrap();
    let b = s.assign(&tp(0), 2).unwrap();
    let c = s.assign(&tp(0), 2).unwrap();
    // All three failed with NOT_LEADER and came back.
    let e = || err(ResponseError::NotLeaderOrFollower);
    for seq in [c, b, a] {
        s.on_returned(&tp(0), seq);
        let v = s.on_error(&tp(0), seq, ResponseError::NotLeaderOrFollower, -1, e());
        assert_eq!(v, Verdict::Retry);
    }
    assert!(!s.can_send(&tp(0), Some(b)), "b may not overtake a");
    assert!(s.can_send(&tp(0), Some(a)));
    s.on_sent(&tp(0), a);
    // Once `a` is on the wire again, `b` may follow it (in order, pipelined); `c` waits for `b`.
    assert!(s.can_send(&tp(0), Some(b)));
    assert!(!s.can_send(&tp(0), Some(c)));
    s.on_sent(&tp(0), b);
    assert!(s.can_send(&tp(0), Some(c)));
    s.on_returned(&tp(0), a);
    s.on_success(&tp(0), a, 2);
    assert!(s.can_send(&tp(0), Some(c)));
}

#[test]
fn out_of_order_on_a_later_batch_retries_without_bump() {
    let mut s = ready();
    let _a = s.assign(&tp(0), 1).unwrap();
    let b = s.assign(&tp(0), 1).unwrap();
    let v = s.on_error(
        &tp(0),
        b,
        ResponseError::OutOfOrderSequenceNumber,
        0,
        err(ResponseError::OutOfOrderSequenceNumber),
    );
    assert_eq!(v, Verdict::RetryInOrder);
    assert!(!s.bump_requested());
}

#[test]
fn out_of_order_on_the_head_bumps_the_epoch_and_restarts_sequences() {
    let mut s = ready();
    let a = s.assign(&tp(0), 3).unwrap();
    s.on_success(&tp(0), a, 3);
    let b = s.assign(&tp(0), 1).unwrap();
    assert_eq!(b.2, 3);
    let v = s.on_error(
        &tp(0),
        b,
        ResponseError::OutOfOrderSequenceNumber,
        0,
        err(ResponseError::OutOfOrderSequenceNumber),
    );
    assert_eq!(v, Verdict::Retry);
    assert!(s.bump_requested());
    assert!(!s.can_send(&tp(0), None), "no sends until the bump is done");
    assert!(s.bump_epoch());
    assert_eq!(s.identity(), Some(ProducerIdentity { id: 9, epoch: 1 }));
    assert!(s.is_stale(&tp(0)));
    assert!(
        !s.can_send(&tp(0), Some(b)),
        "old-epoch sequence is not resent"
    );
    s.reset_partition(&tp(0));
    assert!(!s.is_stale(&tp(0)));
    assert_eq!(s.assign(&tp(0), 1), Some((9, 1, 0)));
}

#[test]
fn fencing_is_fatal_and_duplicates_are_success() {
    let mut s = ready();
    let a = s.assign(&tp(0), 1).unwrap();
    let v = s.on_error(
        &tp(0),
        a,
        ResponseError::ProducerFenced,
        0,
        err(ResponseError::ProducerFenced),
    );
    assert!(matches!(v, Verdict::Fatal(Error::ProducerFenced(_))));
    let v = s.on_error(
        &tp(0),
        a,
        ResponseError::DuplicateSequenceNumber,
        0,
        err(ResponseError::DuplicateSequenceNumber),
    );
    assert_eq!(v, Verdict::Success);
}

#[test]
fn permanent_failure_leaves_a_gap_and_asks_for_a_bump() {
    let mut s = ready();
    let a = s.assign(&tp(0), 1).unwrap();
    let v = s.on_error(
        &tp(0),
        a,
        ResponseError::InvalidRecord,
        0,
        err(ResponseError::InvalidRecord),
    );
    assert!(matches!(v, Verdict::Fail(_)));
    assert!(s.bump_requested());
}

#[test]
fn unknown_producer_id_without_log_start_just_retries() {
    let mut s = ready();
    let a = s.assign(&tp(0), 1).unwrap();
    let e = err(ResponseError::UnknownProducerId);
    assert_eq!(
        s.on_error(&tp(0), a, ResponseError::UnknownProducerId, -1, e.clone()),
        Verdict::Retry
    );
    assert!(!s.bump_requested());
    assert_eq!(
        s.on_error(&tp(0), a, ResponseError::UnknownProducerId, 0, e),
        Verdict::Retry
    );
    assert!(s.bump_requested());
}

#[test]
fn exhausted_epoch_needs_a_new_producer_id() {
    let mut s = Idempotence::default();
    s.set_identity(ProducerIdentity {
        id: 1,
        epoch: i16::MAX - 1,
    });
    assert!(!s.bump_epoch());
    assert_eq!(s.identity(), None);
}

#[test]
fn out_of_order_behind_the_acked_sequence_bumps() {
    let mut s = ready();
    let a = s.assign(&tp(0), 1).unwrap();
    let b = s.assign(&tp(0), 1).unwrap();
    // The broker (with no state for us) took `b` first; `a` can never be accepted now.
    s.on_success(&tp(0), b, 1);
    let v = s.on_error(
        &tp(0),
        a,
        ResponseError::OutOfOrderSequenceNumber,
        0,
        err(ResponseError::OutOfOrderSequenceNumber),
    );
    assert_eq!(v, Verdict::Retry);
    assert!(s.bump_requested());
}
