//! Everything survives a close and reopen.

use crate::common::*;
use rafka_store::{AppendOptions, FsyncPolicy, LogConfig, TimestampType};
use std::time::{Duration, Instant};

#[test]
fn state_survives_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = LogConfig {
        fsync: Some(FsyncPolicy::Always),
        timestamp_type: TimestampType::LogAppendTime,
        ..small_segments(4096)
    };
    let expected;
    {
        let store = open(dir.path())?;
        let log = store.create_partition(tp(30, 0), cfg.clone())?;
        for i in 0..30u64 {
            let epoch = (i / 10) as i32 + 1;
            log.append_blocking(
                simple(5, i),
                AppendOptions {
                    leader_epoch: epoch,
                    now_ms: 1_000 + i as i64,
                },
            )?;
        }
        log.truncate_to(142)?; // cuts batch 28 (140..144) and 29
        log.delete_records_before(33)?;
        log.set_high_watermark(120)?;
        let gone = store.create_partition(tp(30, 1), LogConfig::default())?;
        gone.append_blocking(simple(5, 1), opts())?;
        store.delete_partition(tp(30, 1))?;
        expected = (read_all(&log)?, log.offsets(), log.size_bytes());
    }
    let store = open(dir.path())?;
    assert!(
        store.partition(tp(30, 1)).is_none(),
        "deleted stays deleted"
    );
    assert_eq!(store.partitions().len(), 1);
    let log = store.partition(tp(30, 0)).expect("partition");
    assert_eq!(log.config(), cfg);
    assert_eq!(log.offsets(), expected.1);
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (33, 140, 120)
    );
    assert_eq!(log.size_bytes(), expected.2);
    assert_eq!(read_all(&log)?, expected.0);
    assert_eq!(log.end_offset_for_epoch(2), Some((2, 100)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 140)));
    assert_eq!(
        log.offset_for_timestamp(1_020)?.map(|t| t.offset),
        Some(100)
    );
    // Appends continue where they left off.
    assert_eq!(log.append_blocking(simple(1, 1), opts())?.base_offset, 140);
    Ok(())
}

#[test]
fn high_watermark_checkpoint_is_periodic() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?; // checkpoint interval 50 ms in tests
    let log = store.create_partition(tp(31, 0), LogConfig::default())?;
    log.append_blocking(simple(10, 1), opts())?;
    let commits = store.stats().commits;
    log.set_high_watermark(7)?;
    assert!(wait_until(Duration::from_secs(5), || store.stats().commits > commits));
    drop(log);
    drop(store);
    let store = open(dir.path())?;
    assert_eq!(store.partition(tp(31, 0)).expect("p").high_watermark(), 7);
    Ok(())
}

#[test]
fn open_is_fast_with_many_batches() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let store = open(dir.path())?;
        let log = store.create_partition(tp(32, 0), small_segments(256 * 1024))?;
        for i in 0..2_000u64 {
            log.append_blocking(simple(20, i), opts())?;
        }
    }
    let started = Instant::now();
    let store = open(dir.path())?;
    let elapsed = started.elapsed();
    assert_eq!(
        store.partition(tp(32, 0)).expect("p").log_end_offset(),
        40_000
    );
    assert!(elapsed < Duration::from_secs(2), "open took {elapsed:?}");
    Ok(())
}
