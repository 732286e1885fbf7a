//! Retention and partition deletion actually give the disk back.

use crate::common::*;
use rafka_store::{LogConfig, PartitionLog, Store, StoreConfig, StoreError};
use std::path::Path;
use std::time::Duration;

const MB: u64 = 1024 * 1024;

fn store(dir: &Path) -> anyhow::Result<Store> {
    Ok(Store::open(StoreConfig {
        memtable_bytes: MB,
        max_journal_bytes: Some(64 * MB),
        ..config(dir)
    })?)
}

/// Appends `mb` MiB in ~100 KiB batches of incompressible values.
fn fill(log: &PartitionLog, mb: u64, base_ts: i64) -> anyhow::Result<()> {
    let batches = mb * 10;
    for i in 0..batches {
        let spec = Spec {
            records: 100,
            value_len: 1000,
            base_ts,
            tag: i,
            ..Spec::default()
        };
        log.append_blocking(batch(&spec), opts())?;
    }
    Ok(())
}

fn wait_for_disk(dir: &Path, below: u64) -> u64 {
    let mut last = 0;
    wait_until(Duration::from_secs(60), || {
        last = dir_size(dir);
        last < below
    });
    last
}

#[test]
fn retention_by_size_reclaims_disk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = store(dir.path())?;
    let log = store.create_partition(
        tp(40, 0),
        LogConfig {
            segment_bytes: 2 * MB,
            ..small_segments(0)
        },
    )?;
    fill(&log, 160, 1_000)?;
    store.flush()?;
    let before = dir_size(dir.path());
    eprintln!(
        "before retention: {} MiB on disk, {} MiB of log",
        before / MB,
        log.size_bytes() / MB
    );
    store.set_log_config(
        tp(40, 0),
        LogConfig {
            retention_bytes: Some(10 * MB),
            ..log.config()
        },
    )?;
    let report = store.enforce_retention(0)?;
    assert!(report.segments_deleted >= 70, "{report:?}");
    let start = log.log_start_offset();
    assert!(start > 0 && report.log_starts == vec![(tp(40, 0), start)]);
    assert!(
        log.size_bytes() >= 10 * MB && log.size_bytes() < 13 * MB,
        "{}",
        log.size_bytes()
    );
    assert!(matches!(
        log.read(start - 1, 1, i64::MAX),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    assert_eq!(
        rafka_store::batch::BatchHeader::parse(&log.read(start, 1, i64::MAX)?[0])?.base_offset,
        start
    );
    let after = wait_for_disk(dir.path(), before / 2);
    eprintln!("after retention: {} MiB on disk", after / MB);
    assert!(after < before / 2, "disk {before} -> {after}");
    Ok(())
}

#[test]
fn retention_by_time_reclaims_disk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = store(dir.path())?;
    let cfg = LogConfig {
        segment_bytes: 2 * MB,
        retention_ms: Some(60_000),
        ..small_segments(0)
    };
    let log = store.create_partition(tp(41, 0), cfg)?;
    fill(&log, 100, 1_000)?; // old
    let old_end = log.log_end_offset();
    fill(&log, 30, 10_000_000)?; // recent
    store.flush()?;
    let before = dir_size(dir.path());
    // now = 10_030_000: the first 100 MiB is older than a minute, the rest is not.
    let report = store.enforce_retention(10_030_000)?;
    assert!(report.segments_deleted >= 45, "{report:?}");
    let start = log.log_start_offset();
    assert!(
        start > old_end - 2_000 && start <= old_end,
        "start {start}, old end {old_end}"
    );
    assert!(matches!(
        log.read(0, 1, i64::MAX),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    // Nothing recent goes, even much later for the active segment.
    let again = store.enforce_retention(10_030_000)?;
    assert_eq!(again.segments_deleted, 0);
    let after = wait_for_disk(dir.path(), before * 2 / 3);
    eprintln!(
        "time retention: {} MiB -> {} MiB on disk",
        before / MB,
        after / MB
    );
    assert!(after < before * 2 / 3, "disk {before} -> {after}");
    Ok(())
}

#[test]
fn delete_partition_reclaims_disk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = store(dir.path())?;
    let big = store.create_partition(
        tp(42, 0),
        LogConfig {
            segment_bytes: 4 * MB,
            ..small_segments(0)
        },
    )?;
    let small = store.create_partition(
        tp(42, 1),
        LogConfig {
            segment_bytes: 4 * MB,
            ..small_segments(0)
        },
    )?;
    fill(&big, 150, 1_000)?;
    store.flush()?;
    let before = dir_size(dir.path());
    drop(big);
    store.delete_partition(tp(42, 0))?;
    assert!(store.partition(tp(42, 0)).is_none());
    fill(&small, 1, 1_000)?;
    let after = wait_for_disk(dir.path(), before / 2);
    eprintln!(
        "delete partition: {} MiB -> {} MiB on disk",
        before / MB,
        after / MB
    );
    assert!(after < before / 2, "disk {before} -> {after}");
    Ok(())
}
