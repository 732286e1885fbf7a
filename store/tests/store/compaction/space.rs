//! Cleaning gives the disk back: 120 MiB of superseded values cleaned away shrink the data
//! directory (measured on disk, not only what a reader sees).

use super::*;
use rafka_store::{Store, StoreConfig};
use std::time::{Duration, Instant};

const MB: u64 = 1024 * 1024;
const KEYS: u64 = 1_000;

#[test]
fn cleaning_superseded_values_reclaims_disk() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig {
        memtable_bytes: MB,
        max_journal_bytes: Some(64 * MB),
        ..config(dir.path())
    })?;
    let log =
        store.create_partition(tp(87, 0), compacted(4 * MB, CompactionStrategy::KeepLatest))?;
    // 120 MiB: 1_000 keys, each written 120 times with 1 000-byte incompressible values, in
    // batches of 100 records.
    let started = Instant::now();
    for round in 0..1_200u64 {
        let recs: Vec<Rec> = (0..100u64)
            .map(|i| {
                let n = round * 100 + i;
                Rec {
                    key: Some(format!("key{}", n % KEYS).into_bytes()),
                    value: Some(value_for(n, 0, 1_000).to_vec()),
                    ts: 1_000,
                }
            })
            .collect();
        log.append_blocking(plain(&recs), opts())?;
    }
    log.set_high_watermark(log.log_end_offset())?;
    store.flush()?;
    let written = started.elapsed();
    let before = dir_size(dir.path());
    let log_before = log.size_bytes();
    let started = Instant::now();
    let report = log.clean(10_000)?.expect("cleaned");
    let cleaned = started.elapsed();
    eprintln!(
        "wrote {} MiB in {written:?}; cleaned {} MiB to {} KiB in {cleaned:?} ({} ms CPU)",
        log_before / MB,
        report.bytes_read / MB,
        report.bytes_written / 1024,
        report.cpu_ns / 1_000_000
    );
    assert!(report.bytes_read > 110 * MB, "{report:?}");
    // What is left: one record per key below the active segment, plus the active segment.
    assert!(
        log.size_bytes() < 8 * MB,
        "{} bytes of log left",
        log.size_bytes()
    );
    let mut after = before;
    wait_until(Duration::from_secs(60), || {
        after = dir_size(dir.path());
        after < before / 2
    });
    eprintln!("data directory: {} MiB -> {} MiB", before / MB, after / MB);
    assert!(after < before / 2, "disk {before} -> {after}");
    // Every key still reads back with its latest value.
    let got = records_of(&log)?;
    let mut keys: Vec<&[u8]> = got.iter().filter_map(|g| g.key.as_deref()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len() as u64, KEYS);
    Ok(())
}
