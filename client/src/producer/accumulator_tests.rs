use std::sync::Arc;

use bytes::Bytes;

use super::*;

fn tp(p: i32) -> TopicPartition {
    TopicPartition {
        topic: Arc::from("t"),
        partition: p,
    }
}

fn record(n: usize) -> (OutgoingRecord, usize) {
    let r = OutgoingRecord {
        value: Some(Bytes::from(vec![b'x'; n])),
        ..Default::default()
    };
    let size = r.estimated_size();
    (r, size)
}

#[test]
fn batches_split_by_size() {
    let now = Instant::now();
    let mut acc = Accumulator::new(1000, Duration::from_millis(50));
    let mut new_batches = 0;
    for _ in 0..30 {
        let (r, size) = record(100);
        let a = acc.append(tp(0), r, size, now);
        new_batches += usize::from(a.new_batch);
    }
    // ~140 bytes per record, 61-byte header: 6 records per 1000-byte batch.
    assert_eq!(new_batches, 5);
    assert_eq!(acc.batches(), 5);
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
    assert_eq!(drained.len(), 4);
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
    let (r, size) = record(500);
    assert!(acc.append(tp(0), r, size, now).batch_full);
    let (r, size) = record(1);
    assert!(acc.append(tp(0), r, size, now).new_batch);
}

#[test]
fn linger_zero_is_ready_at_once_but_keeps_filling() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    let (r, size) = record(10);
    assert!(acc.append(tp(1), r, size, now).new_batch);
    assert_eq!(acc.ready(now).ready, vec![tp(1)]);
    // The sender could not take it yet: later records join the same batch.
    for _ in 0..10 {
        let (r, size) = record(10);
        assert!(!acc.append(tp(1), r, size, now).new_batch);
    }
    assert_eq!(acc.drain_front(&tp(1)).unwrap().records.len(), 11);
}

#[test]
fn flushing_makes_lingering_batches_ready() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::from_secs(60));
    let (r, size) = record(10);
    acc.append(tp(0), r, size, now);
    assert!(acc.ready(now).ready.is_empty());
    acc.flushing += 1;
    assert_eq!(acc.ready(now).ready, vec![tp(0)]);
}

#[test]
fn retries_go_back_in_order_and_wait_for_backoff() {
    let now = Instant::now();
    let mut acc = Accumulator::new(150, Duration::ZERO);
    for _ in 0..3 {
        let (r, size) = record(60);
        acc.append(tp(0), r, size, now);
    }
    let b0 = acc.drain_front(&tp(0)).unwrap();
    let mut b1 = acc.drain_front(&tp(0)).unwrap();
    b1.retry_at = Some(now + Duration::from_millis(100));
    acc.reenqueue(b1);
    let mut b0 = b0;
    b0.retry_at = Some(now + Duration::from_millis(100));
    acc.reenqueue(b0);
    let ids: Vec<u64> = acc
        .queue_mut(&tp(0))
        .unwrap()
        .iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(ids, vec![0, 1, 2]);
    // A retried batch is closed to new records.
    let (r, size) = record(1);
    assert!(acc.would_open_batch(&tp(0), size));
    assert!(
        acc.would_open_batch(&tp(5), size),
        "no batch yet: a new one opens"
    );
    acc.append(tp(0), r, size, now);
    assert!(acc.ready(now).ready.is_empty(), "front is backing off");
    assert_eq!(
        acc.ready(now + Duration::from_millis(100)).ready,
        vec![tp(0)]
    );
}

#[test]
fn expire_removes_old_batches() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    let (r, size) = record(1);
    acc.append(tp(0), r, size, now);
    let (r, size) = record(1);
    acc.append(tp(1), r, size, now + Duration::from_secs(10));
    let expired = acc.expire(now + Duration::from_secs(5));
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].tp, tp(0));
    assert_eq!(acc.batches(), 1);
}

#[test]
fn outcome_reaches_every_record() {
    let now = Instant::now();
    let mut acc = Accumulator::new(16384, Duration::ZERO);
    let (r, size) = record(1);
    let a = acc.append(tp(0), r, size, now);
    let (r, size) = record(1);
    let b = acc.append(tp(0), r, size, now);
    assert_eq!((a.index, b.index), (0, 1));
    let batch = acc.drain_front(&tp(0)).unwrap();
    batch.complete(Ok(BatchAck {
        base_offset: 7,
        log_append_time: -1,
    }));
    assert!(matches!(
        *b.outcome.borrow(),
        Some(Ok(BatchAck { base_offset: 7, .. }))
    ));
}
