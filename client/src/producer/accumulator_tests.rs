use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::records::OutgoingRecord;

fn tp(p: i32) -> TopicPartition {
    TopicPartition {
        topic: Arc::from("t"),
        partition: p,
    }
}

/// A record of an `n`-byte value, and its reserved (estimated) size.
fn record(n: usize) -> (OutgoingRecord, usize) {
    let r = OutgoingRecord {
        value: Some(Bytes::from(vec![b'x'; n])),
        ..Default::default()
    };
    let size = r.estimated_size();
    (r, size)
}

/// Appends `r` at timestamp 0.
fn add(
    acc: &mut Accumulator,
    tp: TopicPartition,
    (r, size): (OutgoingRecord, usize),
    now: Instant,
) -> Appended {
    acc.append(&tp, 0, &r.parts(), size, now).unwrap()
}

#[test]
fn batches_split_by_size() {
    let now = Instant::now();
    let mut acc = Accumulator::new(1000, Duration::from_millis(50));
    let mut new_batches = 0;
    for _ in 0..30 {
        let a = add(&mut acc, tp(0), record(100), now);
        new_batches += usize::from(a.new_batch);
    }
    // 109 bytes per record (exact encoded size), 61-byte header: 8 records per 1000 bytes.
    assert_eq!(new_batches, 4);
    assert_eq!(acc.batches(), 4);
    // Full batches are ready at once; the last (not full) one waits for linger.
    let r = acc.ready(now);
    assert_eq!(r.ready, vec![tp(0)]);
    let mut drained = Vec::new();
    while let Some(b) = acc.drain_front(&tp(0)) {
        drained.push(b);
        if acc.ready(now).ready.is_empty() {
            break;
        }
    }
    assert_eq!(drained.len(), 3);
    assert!(
        drained
            .iter()
            .all(|b| b.record_count() == 8 && b.size == 61 + 8 * 109)
    );
    assert!(drained.windows(2).all(|w| w[0].id < w[1].id));
    let r = acc.ready(now);
    assert!(r.ready.is_empty());
    assert_eq!(r.next_check, Some(now + Duration::from_millis(50)));
    assert_eq!(
        acc.ready(now + Duration::from_millis(50)).ready,
        vec![tp(0)]
    );
}

#[test]
fn oversized_record_gets_its_own_batch() {
    let now = Instant::now();
    let mut acc = Accumulator::new(100, Duration::ZERO);
    assert!(add(&mut acc, tp(0), record(500), now).batch_full);
    assert!(add(&mut acc, tp(0), record(1), now).new_batch);
}

#[test]
fn linger_zero_is_ready_at_once_but_keeps_filling() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    assert!(add(&mut acc, tp(1), record(10), now).new_batch);
    assert_eq!(acc.ready(now).ready, vec![tp(1)]);
    // The sender could not take it yet: later records join the same batch.
    for _ in 0..10 {
        assert!(!add(&mut acc, tp(1), record(10), now).new_batch);
    }
    assert_eq!(acc.drain_front(&tp(1)).unwrap().record_count(), 11);
}

#[test]
fn flushing_makes_lingering_batches_ready() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::from_secs(60));
    add(&mut acc, tp(0), record(10), now);
    assert!(acc.ready(now).ready.is_empty());
    acc.flushing += 1;
    assert_eq!(acc.ready(now).ready, vec![tp(0)]);
}

#[test]
fn retries_go_back_in_order_and_wait_for_backoff() {
    let now = Instant::now();
    let mut acc = Accumulator::new(150, Duration::ZERO);
    for _ in 0..3 {
        add(&mut acc, tp(0), record(60), now);
    }
    let b0 = acc.drain_front(&tp(0)).unwrap();
    let mut b1 = acc.drain_front(&tp(0)).unwrap();
    let _in_flight = acc.drain_front(&tp(0)).unwrap();
    b1.attempts = 1;
    b1.retry_at = Some(now + Duration::from_millis(100));
    acc.reenqueue(b1);
    let mut b0 = b0;
    b0.attempts = 1;
    b0.retry_at = Some(now + Duration::from_millis(100));
    acc.reenqueue(b0);
    let ids: Vec<u64> = acc
        .queue_mut(&tp(0))
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, vec![0, 1]);
    // A retried batch is closed to new records.
    let (r, _) = record(1);
    assert!(acc.would_open_batch(&tp(0), 0, &r.parts()));
    assert!(
        acc.would_open_batch(&tp(5), 0, &r.parts()),
        "no batch yet: a new one opens"
    );
    add(&mut acc, tp(0), record(1), now);
    assert!(acc.ready(now).ready.is_empty(), "front is backing off");
    assert_eq!(
        acc.ready(now + Duration::from_millis(100)).ready,
        vec![tp(0)]
    );
}

#[test]
fn encoded_batches_are_sealed_once_and_restamped_on_a_new_identity() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    for _ in 0..3 {
        add(&mut acc, tp(0), record(5), now);
    }
    let mut batch = acc.drain_front(&tp(0)).unwrap();
    let id = |seq| BatchIdentity {
        producer_id: 1,
        producer_epoch: 0,
        base_sequence: seq,
    };
    let first = batch.encoded(id(0), Compression::None, false).unwrap();
    let again = batch.encoded(id(0), Compression::None, false).unwrap();
    assert_eq!(
        first.as_ptr(),
        again.as_ptr(),
        "same identity: the same bytes"
    );
    let moved = batch.encoded(id(9), Compression::None, false).unwrap();
    let decoded = crate::records::decode_records(&Arc::from("t"), 0, 0, moved).unwrap();
    assert_eq!(decoded.records.len(), 3);
    assert_eq!(&first[53..57], &0i32.to_be_bytes());
}

#[test]
fn a_dropped_batch_fails_its_futures() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    let a = add(&mut acc, tp(0), record(1), now);
    drop(acc);
    assert!(matches!(a.completion.get(), Some(Err(Error::Closed))));
}

#[test]
fn expire_removes_old_batches() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    add(&mut acc, tp(0), record(1), now);
    add(&mut acc, tp(1), record(1), now + Duration::from_secs(10));
    let expired = acc.expire(now + Duration::from_secs(5));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].tp, tp(0));
    assert_eq!(acc.batches(), 1);
}

#[test]
fn outcome_reaches_every_record() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    let a = add(&mut acc, tp(0), record(1), now);
    let b = add(&mut acc, tp(0), record(1), now);
    assert_eq!((a.index, b.index), (0, 1));
    let batch = acc.drain_front(&tp(0)).unwrap();
    batch.complete(Ok(BatchAck {
        base_offset: 7,
        log_append_time: -1,
    }));
    assert!(matches!(
        b.completion.get(),
        Some(Ok(BatchAck { base_offset: 7, .. }))
    ));
    assert!(Arc::ptr_eq(&a.completion, &b.completion));
}
