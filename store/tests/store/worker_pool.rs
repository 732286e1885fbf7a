//! fjall's worker pool under sustained writes: the store must keep writing, never hang.
//!
//! fjall 3.1 queues memtable rotations, flushes and compactions on one bounded queue (1,000
//! messages) drained only by its workers (the store runs one). A worker that rotates a memtable
//! sends the flush with a blocking send into that queue; every write to a memtable over its
//! keyspace's limit queued a rotation request, so while the worker was busy (a compaction, a
//! journal rotation) writers filled the queue, and the worker then blocked on a queue only it
//! drains, with the store's writer behind it (its own rotations send into the same queue). Before
//! the store took memtable rotation into its own threads this test hung within a few journals
//! (64 MB each), every run.

use crate::common::*;
use anyhow::Result;
use rafka_store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Appends of 100 records of 100 bytes (about 13 KB): about 12 journals of 64 MB.
const APPENDS: u64 = 60_000;
/// The appender stops after this long even if it has not written them all.
const WRITE_FOR: Duration = Duration::from_secs(90);
/// The test fails if no append completes for this long (a hang lasts for ever; a loaded CI
/// machine must not look like one).
const STALL: Duration = Duration::from_secs(60);

#[test]
fn sustained_writes_never_deadlock_fjalls_worker() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // 1 MiB memtables (the test config) in a large segment: many rotations while fjall's worker
    // compacts ever larger runs of the same keyspace.
    let store = Store::open(config(dir.path()))?;
    let log = store.create_partition(tp(90, 0), small_segments(256 << 20))?;
    let appended = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let appender = {
        let (log, appended, stop) = (log.clone(), appended.clone(), stop.clone());
        std::thread::spawn(move || -> Result<()> {
            for i in 0..APPENDS {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let b = batch(&Spec {
                    records: 100,
                    value_len: 100,
                    tag: i,
                    ..Spec::default()
                });
                log.append_blocking(b, opts())?;
                appended.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
    };
    let started = Instant::now();
    let (mut last, mut last_change) = (0, Instant::now());
    while !appender.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
        let now = appended.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
        if last_change.elapsed() > STALL {
            // The store's threads are stuck: leave them (and the store) to the process's exit.
            std::mem::forget(store);
            panic!(
                "no append completed for {STALL:?} after {now} appends ({:.1} s): the store hung",
                started.elapsed().as_secs_f64()
            );
        }
        if started.elapsed() > WRITE_FOR {
            stop.store(true, Ordering::Relaxed);
        }
    }
    appender.join().expect("appender thread")?;
    let total = appended.load(Ordering::Relaxed);
    eprintln!(
        "{total} appends ({} MB of values) in {:.1} s",
        total * 100 * 100 / 1_000_000,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(log.log_end_offset() as u64, total * 100);
    // The last batch reads back, and the store still flushes (rotating every memtable).
    let last = log.read(log.log_end_offset() - 1, 1 << 20, i64::MAX)?;
    assert_eq!(
        decode(&last).last().map(|r| r.0),
        Some(log.log_end_offset() - 1)
    );
    store.flush()?;
    Ok(())
}
