//! Group commit: concurrent appenders with fsync=always share commits and fsyncs.

use crate::common::*;
use rafka_store::{FsyncPolicy, LogConfig, Store, StoreConfig};
use std::sync::{Arc, Barrier};
use std::time::Duration;

#[test]
fn concurrent_appenders_share_fsyncs() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(StoreConfig {
        fsync: FsyncPolicy::Always,
        ..config(dir.path())
    })?;
    let logs: Vec<_> = (0..4)
        .map(|p| store.create_partition(tp(50, p), LogConfig::default()))
        .collect::<Result<_, _>>()?;
    let before = store.stats();
    let threads = 16;
    let per_thread = 40;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = logs[t % logs.len()].clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                (0..per_thread)
                    .map(|i| log.append_blocking(simple(5, (t * 1000 + i) as u64), opts()))
                    .collect::<Result<Vec<_>, _>>()
            })
        })
        .collect();
    let mut appended = Vec::new();
    for h in handles {
        appended.extend(h.join().expect("thread")?);
    }
    let stats = store.stats();
    let appends = (threads * per_thread) as u64;
    let commits = stats.commits - before.commits;
    let fsyncs = stats.fsyncs - before.fsyncs;
    eprintln!(
        "{appends} appends, {commits} commits, {fsyncs} fsyncs, largest group {}",
        stats.largest_group
    );
    assert_eq!(stats.append_requests - before.append_requests, appends);
    assert!(
        fsyncs < appends,
        "appends shared fsyncs: {fsyncs} fsyncs for {appends} appends"
    );
    assert!(commits < appends);
    assert!(stats.largest_group > 1);
    // Every partition's offsets are contiguous and every batch is readable.
    for log in &logs {
        assert_eq!(
            log.log_end_offset(),
            (threads / logs.len() * per_thread * 5) as i64
        );
        assert_eq!(decode(&read_all(log)?).len() as i64, log.log_end_offset());
    }
    let mut bases: Vec<_> = appended.iter().map(|a| a.base_offset).collect();
    bases.sort_unstable();
    bases.dedup();
    assert_eq!(bases.len(), threads * per_thread / logs.len());
    Ok(())
}

#[test]
fn interval_mode_syncs_on_a_timer_and_never_mode_does_not() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let interval = FsyncPolicy::Interval(Duration::from_millis(20));
    let store = Store::open(StoreConfig {
        fsync: FsyncPolicy::Never,
        ..config(dir.path())
    })?;
    let never = store.create_partition(tp(51, 0), LogConfig::default())?;
    let timed = store.create_partition(
        tp(51, 1),
        LogConfig {
            fsync: Some(interval),
            ..LogConfig::default()
        },
    )?;
    let base = store.stats().fsyncs;
    for i in 0..20 {
        never.append_blocking(simple(2, i), opts())?;
    }
    assert_eq!(
        store.stats().fsyncs,
        base,
        "never: no fsync on the append path"
    );
    timed.append_blocking(simple(2, 1), opts())?;
    assert!(
        wait_until(Duration::from_secs(5), || store.stats().fsyncs > base),
        "interval fsync happened"
    );
    Ok(())
}
