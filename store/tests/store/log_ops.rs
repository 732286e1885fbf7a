//! truncate_to, reset_to, delete_records_before, offset_for_timestamp, max_timestamp.

use crate::common::*;
use kafka_protocol::records::Compression;
use rafka_store::batch::BatchHeader;
use rafka_store::{AppendOptions, LogConfig, StoreError, TimestampOffset};

#[test]
fn truncate_to_cuts_whole_batches_across_segments() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(20, 0), small_segments(4096))?;
    for i in 0..20u64 {
        let epoch = if i < 10 { 1 } else { 2 };
        log.append_blocking(
            simple(10, i),
            AppendOptions {
                leader_epoch: epoch,
                now_ms: 1,
            },
        )?;
    }
    assert!(
        store.stats().segments_rolled > 3,
        "several segments: {:?}",
        store.stats()
    );
    let size_before = log.size_bytes();
    log.set_high_watermark(200)?;
    // Mid-batch: the whole batch holding offset 155 goes.
    assert_eq!(log.truncate_to(155)?, 150);
    assert_eq!(log.log_end_offset(), 150);
    assert_eq!(log.high_watermark(), 150);
    assert!(log.size_bytes() < size_before);
    let all = read_all(&log)?;
    assert_eq!(decode(&all).len(), 150);
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 150)));
    // Deep cut into an earlier segment drops the later segments and the epoch.
    assert_eq!(log.truncate_to(30)?, 30);
    assert_eq!(log.end_offset_for_epoch(2), None);
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 30)));
    assert_eq!(decode(&read_all(&log)?).len(), 30);
    // Appends continue from the new end, and new segments roll normally.
    for i in 0..10u64 {
        let a = log.append_blocking(
            simple(10, 100 + i),
            AppendOptions {
                leader_epoch: 3,
                now_ms: 1,
            },
        )?;
        assert_eq!(a.base_offset, 30 + 10 * i as i64);
    }
    let records = decode(&read_all(&log)?);
    assert_eq!(
        records.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..130).collect::<Vec<_>>()
    );
    assert_eq!(records[30].2, Some(value_for(100, 0, 100)));
    // At or past the end: nothing to do.
    assert_eq!(log.truncate_to(500)?, 130);
    Ok(())
}

#[test]
fn reset_and_delete_records() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(21, 0), small_segments(4096))?;
    for i in 0..20u64 {
        log.append_blocking(simple(10, i), opts())?;
    }
    let segments_before = store.stats().segments_deleted;
    assert_eq!(log.delete_records_before(95)?, 95);
    assert!(
        store.stats().segments_deleted > segments_before,
        "whole segments below 95 dropped"
    );
    assert_eq!(log.log_start_offset(), 95);
    assert!(matches!(
        log.read(94, 1, i64::MAX),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        BatchHeader::parse(&log.read(95, 1, i64::MAX)?[0])?.base_offset,
        90
    );
    assert_eq!(log.delete_records_before(50)?, 95, "never moves back");
    // Truncating below the log start empties the log and restarts it there.
    assert_eq!(log.truncate_to(60)?, 60);
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (60, 60));
    assert_eq!(log.append_blocking(simple(2, 1), opts())?.base_offset, 60);
    log.reset_to(1_000)?;
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (1_000, 1_000)
    );
    assert_eq!(
        log.append_blocking(simple(2, 1), opts())?.base_offset,
        1_000
    );
    Ok(())
}

#[test]
fn offset_for_timestamp_finds_the_exact_record() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(22, 0), small_segments(8192))?;
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    // Batch i holds timestamps 10_000 + 100 i + j, j in 0..10, with a decreasing pair inside.
    for i in 0..25i64 {
        let spec = Spec {
            records: 10,
            base_ts: 10_000 + 100 * i,
            compression: codecs[i as usize % codecs.len()],
            tag: i as u64,
            ..Spec::default()
        };
        log.append_blocking(batch(&spec), opts())?;
    }
    for i in 0..25i64 {
        for j in [0i64, 3, 9] {
            let ts = 10_000 + 100 * i + j;
            let got = log.offset_for_timestamp(ts)?;
            assert_eq!(
                got,
                Some(TimestampOffset {
                    timestamp: ts,
                    offset: 10 * i + j
                }),
                "ts {ts}"
            );
        }
        // Between batches: the next batch's first record.
        if i < 24 {
            let got = log.offset_for_timestamp(10_000 + 100 * i + 50)?;
            assert_eq!(got.map(|t| t.offset), Some(10 * (i + 1)));
        }
    }
    assert_eq!(log.offset_for_timestamp(0)?.map(|t| t.offset), Some(0));
    assert_eq!(log.offset_for_timestamp(99_999)?, None);
    let max = log.max_timestamp()?.expect("max");
    assert_eq!(
        max,
        TimestampOffset {
            timestamp: 12_409,
            offset: 249
        }
    );
    // Below the log start is never returned.
    log.delete_records_before(105)?;
    assert_eq!(log.offset_for_timestamp(0)?.map(|t| t.offset), Some(105));
    Ok(())
}

#[test]
fn non_monotonic_timestamps_inside_a_batch() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    let log = store.create_partition(tp(23, 0), LogConfig::default())?;
    // Timestamps 5000, 4990, ..., 4910 (decreasing) in a compressed batch.
    let spec = Spec {
        records: 10,
        base_ts: 5_000,
        ts_step: -10,
        compression: Compression::Lz4,
        ..Spec::default()
    };
    log.append_blocking(batch(&spec), opts())?;
    // First record in offset order with ts >= 4950 is offset 0 (5000).
    assert_eq!(
        log.offset_for_timestamp(4_950)?,
        Some(TimestampOffset {
            timestamp: 5_000,
            offset: 0
        })
    );
    assert_eq!(
        log.max_timestamp()?,
        Some(TimestampOffset {
            timestamp: 5_000,
            offset: 0
        })
    );
    let empty = store.create_partition(tp(23, 1), LogConfig::default())?;
    assert_eq!(empty.max_timestamp()?, None);
    assert_eq!(empty.offset_for_timestamp(0)?, None);
    Ok(())
}
