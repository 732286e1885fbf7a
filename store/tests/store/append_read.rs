//! Offset assignment, reads (byte limits, mid-batch, bounds), replication appends, epochs.

use crate::common::*;
use rafka_store::batch::BatchHeader;
use rafka_store::{AppendOptions, LogConfig, StoreError, TimestampType};

#[test]
fn offsets_are_assigned_and_headers_rewritten() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(1, 0), LogConfig::default())?;
    let mut expected_base = 0;
    for i in 0..5u64 {
        let n = (i + 1) as usize;
        let a = log.append_blocking(
            simple(n, i),
            AppendOptions {
                leader_epoch: 3,
                now_ms: 1,
            },
        )?;
        assert_eq!(a.base_offset, expected_base);
        assert_eq!(a.last_offset, expected_base + n as i64 - 1);
        assert_eq!(a.log_append_time_ms, -1);
        assert!(!a.duplicate);
        expected_base += n as i64;
    }
    assert_eq!(log.log_end_offset(), 15);
    let batches = log.read(0, usize::MAX, i64::MAX)?;
    assert_eq!(batches.len(), 5);
    let mut next = 0;
    for b in &batches {
        let h = rafka_store::batch::check_batch(b)?;
        assert_eq!(h.base_offset, next);
        assert_eq!(h.partition_leader_epoch, 3);
        next = h.last_offset().unwrap() + 1;
    }
    let decoded = decode(&batches);
    assert_eq!(
        decoded.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..15).collect::<Vec<_>>()
    );
    assert_eq!(decoded[1].2, Some(value_for(1, 0, 100)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 15)));
    Ok(())
}

#[test]
fn reads_respect_byte_limits_bounds_and_mid_batch_offsets() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(2, 0), LogConfig::default())?;
    for i in 0..4 {
        log.append_blocking(simple(10, i), opts())?; // offsets 10*i .. 10*i+9
    }
    let one = log.read(0, 1, i64::MAX)?;
    assert_eq!(
        one.len(),
        1,
        "KIP-74: the first batch even when larger than max_bytes"
    );
    let size = one[0].len();
    assert_eq!(log.read(0, 2 * size, i64::MAX)?.len(), 2);
    assert_eq!(log.read(0, 2 * size - 1, i64::MAX)?.len(), 1);
    // Middle of a batch: the batch containing the offset comes first.
    let mid = log.read(15, usize::MAX, i64::MAX)?;
    assert_eq!(BatchHeader::parse(&mid[0])?.base_offset, 10);
    assert_eq!(mid.len(), 3);
    // Upper bound (e.g. the high watermark) in the middle of a batch includes that batch.
    let bounded = log.read(0, usize::MAX, 25)?;
    assert_eq!(bounded.len(), 3);
    assert_eq!(log.read(0, usize::MAX, 20)?.len(), 2);
    assert!(log.read(20, usize::MAX, 20)?.is_empty());
    // Bounds.
    assert!(log.read(40, usize::MAX, i64::MAX)?.is_empty());
    match log.read(41, usize::MAX, i64::MAX) {
        Err(StoreError::OffsetOutOfRange {
            requested: 41,
            log_start: 0,
            log_end: 40,
            ..
        }) => {}
        other => panic!("expected OffsetOutOfRange, got {other:?}"),
    }
    assert!(matches!(
        log.read(-1, 1, i64::MAX),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    // Below the log start after DeleteRecords.
    assert_eq!(log.delete_records_before(12)?, 12);
    assert!(matches!(
        log.read(11, 1, i64::MAX),
        Err(StoreError::OffsetOutOfRange { log_start: 12, .. })
    ));
    assert_eq!(
        BatchHeader::parse(&log.read(12, 1, i64::MAX)?[0])?.base_offset,
        10
    );
    assert!(matches!(
        log.delete_records_before(41),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    Ok(())
}

#[test]
fn log_append_time_is_stamped() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let log = store.create_partition(tp(3, 0), cfg)?;
    let a = log.append_blocking(
        simple(3, 1),
        AppendOptions {
            leader_epoch: 0,
            now_ms: 777_000,
        },
    )?;
    assert_eq!(a.log_append_time_ms, 777_000);
    let b = &log.read(0, usize::MAX, i64::MAX)?[0];
    let h = rafka_store::batch::check_batch(b)?;
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 777_000);
    let found = log.offset_for_timestamp(777_000)?.expect("found");
    assert_eq!((found.offset, found.timestamp), (0, 777_000));
    Ok(())
}

#[test]
fn async_append_and_subscribe() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(4, 0), LogConfig::default())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut rx = log.subscribe();
    rt.block_on(async {
        let a = log.append(simple(4, 1), opts()).await?;
        assert_eq!(a.last_offset, 3);
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            rx.wait_for(|o| o.log_end == 4),
        )
        .await??;
        anyhow::Ok(())
    })?;
    log.set_high_watermark(100)?;
    assert_eq!(log.high_watermark(), 4, "clamped to the log end");
    log.set_high_watermark(2)?;
    assert_eq!(rx.borrow().high_watermark, 2);
    log.advance_high_watermark(1)?;
    assert_eq!(log.high_watermark(), 2, "advance never moves back");
    log.advance_high_watermark(3)?;
    assert_eq!(log.high_watermark(), 3);
    log.advance_high_watermark(99)?;
    assert_eq!(log.high_watermark(), 4, "advance stops at the log end");
    Ok(())
}

#[test]
fn replicated_appends_keep_offsets_and_epochs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let leader = store.create_partition(tp(5, 0), LogConfig::default())?;
    let follower = store.create_partition(tp(5, 1), LogConfig::default())?;
    for (i, epoch) in [1, 1, 2, 4].into_iter().enumerate() {
        leader.append_blocking(
            simple(5, i as u64),
            AppendOptions {
                leader_epoch: epoch,
                now_ms: 1,
            },
        )?;
    }
    let fetched: Vec<u8> = leader.read(0, usize::MAX, i64::MAX)?.concat();
    let a = follower.append_replicated_blocking(fetched.clone().into())?;
    assert_eq!((a.base_offset, a.last_offset), (0, 19));
    assert_eq!(follower.read(0, usize::MAX, i64::MAX)?.concat(), fetched);
    assert_eq!(follower.end_offset_for_epoch(1), Some((1, 10)));
    assert_eq!(follower.end_offset_for_epoch(3), Some((2, 15)));
    assert_eq!(follower.end_offset_for_epoch(4), Some((4, 20)));
    assert_eq!(follower.latest_epoch(), Some(4));
    // Not contiguous with the log end.
    let err = follower
        .append_replicated_blocking(fetched.into())
        .expect_err("gap");
    assert_eq!(err.kafka_code(), 87);
    Ok(())
}

#[test]
fn unknown_and_deleted_partitions() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    assert!(store.partition(tp(6, 0)).is_none());
    let log = store.create_partition(tp(6, 0), LogConfig::default())?;
    let again = store.create_partition(tp(6, 0), small_segments(4096))?;
    assert_eq!(again.config(), LogConfig::default(), "create is idempotent");
    log.append_blocking(simple(1, 1), opts())?;
    store.delete_partition(tp(6, 0))?;
    let err = log
        .append_blocking(simple(1, 1), opts())
        .expect_err("deleted");
    assert!(matches!(err, StoreError::UnknownPartition { .. }));
    assert_eq!(err.kafka_code(), 3);
    // Recreated: a fresh, empty log, with no trace of the old one.
    let fresh = store.create_partition(tp(6, 0), LogConfig::default())?;
    assert_eq!(fresh.log_end_offset(), 0);
    assert!(matches!(
        log.append_blocking(simple(1, 1), opts()),
        Err(StoreError::UnknownPartition { .. })
    ));
    assert_eq!(fresh.append_blocking(simple(2, 2), opts())?.base_offset, 0);
    assert_eq!(decode(&fresh.read(0, usize::MAX, i64::MAX)?).len(), 2);
    Ok(())
}

#[test]
fn append_is_queued_when_called_not_when_polled() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(7, 0), LogConfig::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Futures created in order, polled in reverse: offsets follow creation order.
    let futures: Vec<_> = (0..5).map(|i| log.append(simple(1, i), opts())).collect();
    let results = rt.block_on(async {
        let mut out = Vec::new();
        for f in futures.into_iter().rev() {
            out.push(f.await?.base_offset);
        }
        anyhow::Ok(out)
    })?;
    assert_eq!(results, vec![4, 3, 2, 1, 0]);
    // A future dropped unpolled still appended.
    drop(log.append(simple(1, 9), opts()));
    let log2 = log.clone();
    assert!(wait_until(std::time::Duration::from_secs(5), move || log2
        .log_end_offset()
        == 6));
    Ok(())
}
