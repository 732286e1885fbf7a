//! Idempotent producer rules, their persistence, and their rebuild after truncation.

use crate::common::*;
use rafka_store::{LogConfig, StoreError};

#[test]
fn duplicates_of_each_of_the_last_five_batches() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(10, 0), LogConfig::default())?;
    let mut offsets = Vec::new();
    for i in 0..7 {
        let a = log.append_blocking(idem(42, 0, i * 3, 3), opts())?;
        offsets.push((a.base_offset, a.last_offset));
    }
    let end = log.log_end_offset();
    for i in 2..7 {
        let a = log.append_blocking(idem(42, 0, i * 3, 3), opts())?;
        assert!(a.duplicate, "batch {i} is a duplicate");
        assert_eq!((a.base_offset, a.last_offset), offsets[i as usize]);
    }
    assert_eq!(log.log_end_offset(), end, "duplicates write nothing");
    assert_eq!(store.stats().duplicates, 5);
    // Older than the last five: not recognisable, so out of order.
    let err = log
        .append_blocking(idem(42, 0, 3, 3), opts())
        .expect_err("too old");
    assert!(matches!(
        err,
        StoreError::OutOfOrderSequence {
            expected: 21,
            received: 3,
            ..
        }
    ));
    assert_eq!(err.kafka_code(), 45);
    let snap = log.producer(42)?.expect("state");
    assert_eq!(snap.epoch, 0);
    assert_eq!(snap.batches.len(), 5);
    assert_eq!(snap.batches[4].last_seq, 20);
    Ok(())
}

#[test]
fn sequence_and_epoch_rules() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(11, 0), LogConfig::default())?;
    // Unknown producer: any sequence is accepted.
    assert!(!log.append_blocking(idem(7, 2, 100, 2), opts())?.duplicate);
    // Gap.
    let err = log
        .append_blocking(idem(7, 2, 103, 1), opts())
        .expect_err("gap");
    assert!(matches!(
        err,
        StoreError::OutOfOrderSequence { expected: 102, .. }
    ));
    log.append_blocking(idem(7, 2, 102, 1), opts())?;
    // Fenced: an older epoch.
    let err = log
        .append_blocking(idem(7, 1, 103, 1), opts())
        .expect_err("fenced");
    assert!(matches!(
        err,
        StoreError::InvalidProducerEpoch {
            current: 2,
            received: 1,
            ..
        }
    ));
    assert_eq!(err.kafka_code(), 47);
    // Epoch bump must restart at sequence 0.
    let err = log
        .append_blocking(idem(7, 3, 103, 1), opts())
        .expect_err("bump needs seq 0");
    assert!(matches!(
        err,
        StoreError::OutOfOrderSequence { expected: 0, .. }
    ));
    log.append_blocking(idem(7, 3, 0, 1), opts())?;
    assert_eq!(log.producer_epoch(7)?, Some(3));
    // Sequences wrap at i32::MAX.
    log.append_blocking(idem(8, 0, i32::MAX - 1, 2), opts())?;
    log.append_blocking(idem(8, 0, 0, 1), opts())?;
    // Non-idempotent batches skip all of it.
    log.append_blocking(simple(1, 1), opts())?;
    log.append_blocking(simple(1, 1), opts())?;
    Ok(())
}

#[test]
fn producer_state_survives_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let store = open(dir.path())?;
        let log = store.create_partition(tp(12, 0), LogConfig::default())?;
        for i in 0..3 {
            log.append_blocking(idem(5, 1, i * 2, 2), opts())?;
        }
    }
    let store = open(dir.path())?;
    let log = store.partition(tp(12, 0)).expect("partition");
    let dup = log.append_blocking(idem(5, 1, 2, 2), opts())?;
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (2, 3));
    assert!(log.append_blocking(idem(5, 1, 9, 1), opts()).is_err());
    assert!(matches!(
        log.append_blocking(idem(5, 0, 6, 1), opts()),
        Err(StoreError::InvalidProducerEpoch { .. })
    ));
    assert_eq!(
        log.append_blocking(idem(5, 1, 6, 1), opts())?.base_offset,
        6
    );
    Ok(())
}

#[test]
fn truncation_rebuilds_producer_state() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(13, 0), small_segments(2048))?;
    for i in 0..8 {
        log.append_blocking(idem(9, 0, i * 2, 2), opts())?; // offsets 2i, 2i+1
    }
    // Cut the last three batches (offsets 10..16): the producer's next sequence is 10 again.
    assert_eq!(log.truncate_to(11)?, 10);
    let snap = log.producer(9)?.expect("state");
    assert_eq!(
        snap.batches.last().map(|b| (b.last_seq, b.last_offset)),
        Some((9, 9))
    );
    assert_eq!(snap.batches.len(), 5);
    assert!(log.append_blocking(idem(9, 0, 10, 2), opts()).is_ok());
    // Cut everything the producer wrote: it is forgotten, any sequence goes.
    log.truncate_to(0)?;
    assert_eq!(log.producer(9)?, None);
    log.append_blocking(idem(9, 0, 77, 1), opts())?;
    Ok(())
}

/// The bytes of every batch of `log` from `from` to its end, as a follower fetches them.
fn fetch(log: &rafka_store::PartitionLog, from: i64) -> anyhow::Result<bytes::Bytes> {
    let end = log.log_end_offset();
    let mut out = bytes::BytesMut::new();
    for b in log.read(from, usize::MAX / 2, end)? {
        out.extend_from_slice(&b);
    }
    Ok(out.freeze())
}

/// A follower that led for a moment after a pause (appending a producer's batch nobody else
/// has), truncated that tail, replicated the new leader's log and then became leader itself
/// recognises a retry of the producer's latest batch as a duplicate.
#[test]
fn a_follower_that_truncated_and_caught_up_deduplicates_as_its_leader_did() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let leader = store.create_partition(tp(15, 0), LogConfig::default())?;
    let follower = store.create_partition(tp(15, 1), LogConfig::default())?;
    let epoch = |leader_epoch| rafka_store::AppendOptions {
        leader_epoch,
        now_ms: 1_000,
    };
    for i in 0..5 {
        leader.append_blocking(idem(9, 0, i * 2, 2), epoch(1))?; // offsets 0..10
    }
    follower.append_replicated_blocking(fetch(&leader, 0)?)?;
    // The follower, a stale leader for a moment, takes seq 10-11 at offset 10 in epoch 1.
    follower.append_blocking(idem(9, 0, 10, 2), epoch(1))?;
    // The real leader (epoch 2) got the producer's retry of seq 10-11, then seq 12-13.
    leader.append_blocking(idem(9, 0, 10, 2), epoch(2))?;
    leader.append_blocking(idem(9, 0, 12, 2), epoch(2))?;
    // The follower truncates its diverged tail and catches up.
    follower.truncate_to(10)?;
    follower.append_replicated_blocking(fetch(&leader, 10)?)?;
    assert_eq!(follower.log_end_offset(), 14);
    // Now the follower leads: retries of the producer's last batches are duplicates.
    for (seq, base) in [(12, 12), (10, 10)] {
        let retry = follower.append_blocking(idem(9, 0, seq, 2), epoch(3))?;
        assert!(retry.duplicate, "seq {seq} written twice");
        assert_eq!(retry.base_offset, base);
    }
    assert_eq!(follower.log_end_offset(), 14);
    Ok(())
}
