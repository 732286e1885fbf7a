//! SIGKILL during cleaning: a child process appends keyed records (fsync=always, one record per
//! batch) while another of its threads cleans the log over and over; the parent kills it at a
//! moment inside a cleaning, reopens the store and checks that every key still has its latest
//! acknowledged record (or a later one), that every record present is the one written at its
//! offset, and that cleaning goes on working.

use super::*;
use rafka_store::{FsyncPolicy, Store, StoreConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_ENV: &str = "RAFKA_STORE_CLEAN_CRASH_DIR";
const KEYS: i64 = 200;

fn child_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        fsync: FsyncPolicy::Always,
        memtable_bytes: 64 * 1024,
        cleaner_threads: 0,
        ..StoreConfig::new(dir)
    }
}

/// What the record at `offset` holds: key, and value (`None` every 17th: a tombstone).
fn record_at(offset: i64) -> (String, Option<String>) {
    let key = format!("k{}", offset % KEYS);
    let value = (offset % 17 != 0).then(|| format!("{key}={offset}"));
    (key, value)
}

/// The child: appends until killed, printing `ACK offset` per acknowledged record, and
/// `CLEANING` before each cleaning of its other thread.
#[test]
#[ignore = "run by compaction::crash::cleaning_survives_sigkill as its child process"]
fn clean_crash_child() -> anyhow::Result<()> {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let store = Store::open(child_config(dir.as_ref()))?;
    let mut cfg = compacted(4096, CompactionStrategy::KeepLatest);
    cfg.compaction.min_cleanable_dirty_ratio = 0.0;
    let log = store.create_partition(tp(61, 0), cfg)?;
    let cleaner = {
        let log = log.clone();
        std::thread::spawn(move || -> anyhow::Result<()> {
            for round in 0.. {
                // Only when a new segment was sealed (a workload's pace, not synchronisation).
                while log.cleaner_state(1_000_000).cleanable_bytes == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                println!("CLEANING {round}");
                let started = std::time::Instant::now();
                let report = log.clean(1_000_000)?;
                let written = report.map_or(0, |r| r.segments_written);
                eprintln!(
                    "cleaning {round}: {written} segments in {:?}",
                    started.elapsed()
                );
            }
            Ok(())
        })
    };
    loop {
        let offset = log.log_end_offset();
        let (key, value) = record_at(offset);
        let a = log.append_blocking(plain(&[Rec::new(&key, value.as_deref(), offset)]), opts())?;
        assert_eq!(a.base_offset, offset, "one appender");
        log.set_high_watermark(a.last_offset + 1)?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "ACK {offset}")?;
        out.flush()?;
        if cleaner.is_finished() {
            break;
        }
    }
    cleaner
        .join()
        .map_err(|_| anyhow::anyhow!("cleaner panicked"))?
}

#[allow(unsafe_code)]
fn sigkill(pid: u32) {
    // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill failed");
}

enum Line {
    Ack(i64),
    Cleaning,
}

/// Runs the child until it has acknowledged `acks` more records and started `cleanings`
/// cleanings, waits `delay`, kills it. Returns the acknowledged offsets.
fn run_child(
    dir: &std::path::Path,
    acks: usize,
    cleanings: usize,
    delay: Duration,
) -> anyhow::Result<Vec<i64>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "compaction::crash::clean_crash_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("RAFKA_CRASH_CHILD_STDERR").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let parsed = if let Some(o) = line.strip_prefix("ACK ") {
                o.parse().ok().map(Line::Ack)
            } else {
                line.starts_with("CLEANING").then_some(Line::Cleaning)
            };
            if let Some(l) = parsed
                && tx.send(l).is_err()
            {
                break;
            }
        }
    });
    let (mut acked, mut cleaned) = (Vec::new(), 0);
    while acked.len() < acks || cleaned < cleanings {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(Line::Ack(o)) => acked.push(o),
            Ok(Line::Cleaning) => cleaned += 1,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!(
                    "child stalled after {} acks, {cleaned} cleanings: {e}",
                    acked.len()
                );
            }
        }
    }
    // Not synchronisation: a varying moment inside the cleaning that just started.
    std::thread::sleep(delay);
    sigkill(child.id());
    let status = child.wait()?;
    assert!(!status.success(), "child was killed");
    reader.join().expect("reader");
    acked.extend(rx.try_iter().filter_map(|l| match l {
        Line::Ack(o) => Some(o),
        Line::Cleaning => None,
    }));
    Ok(acked)
}

fn verify(store: &Store, acked: &[i64]) -> anyhow::Result<usize> {
    let log = store.partition(tp(61, 0)).expect("partition");
    let got = records_of(&log)?;
    assert_increasing(&got);
    let mut newest: HashMap<String, i64> = HashMap::new();
    for g in &got {
        let (key, value) = record_at(g.offset);
        assert_eq!(
            g.key.as_deref(),
            Some(key.as_bytes()),
            "key at {}",
            g.offset
        );
        assert_eq!(
            g.value.as_deref(),
            value.as_deref().map(str::as_bytes),
            "value at {}",
            g.offset
        );
        newest.insert(key, g.offset);
    }
    let mut latest_ack: HashMap<String, i64> = HashMap::new();
    for o in acked {
        let (key, _) = record_at(*o);
        let e = latest_ack.entry(key).or_insert(*o);
        *e = (*e).max(*o);
    }
    for (key, acked) in &latest_ack {
        let present = newest.get(key).copied();
        assert!(
            present.is_some_and(|p| p >= *acked),
            "{key}: latest acknowledged record at {acked}, newest present {present:?}"
        );
    }
    Ok(got.len())
}

#[test]
fn cleaning_survives_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut all = Vec::new();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .subsec_nanos();
    let mut orphans = 0;
    for (round, (acks, cleanings)) in [(400, 1), (100, 2), (100, 3), (100, 4)]
        .into_iter()
        .enumerate()
    {
        let delay = Duration::from_micros(u64::from(nanos.rotate_left(round as u32 * 7) % 400_000));
        eprintln!("round {round}: kill {delay:?} after cleaning {cleanings} starts (seed {nanos})");
        all.extend(run_child(dir.path(), acks, cleanings, delay)?);
        let store = Store::open(child_config(dir.path()))?;
        orphans += store.stats().orphan_segments;
        let present = verify(&store, &all)?;
        // Cleaning resumes on the recovered store and keeps every key.
        let log = store.partition(tp(61, 0)).expect("partition");
        log.clean(2_000_000)?;
        let after = verify(&store, &all)?;
        eprintln!(
            "round {round}: {} acknowledged, {present} records present, {after} after a cleaning; {} orphan segments deleted at open",
            all.len(),
            store.stats().orphan_segments
        );
    }
    eprintln!("{orphans} orphan segments over all rounds (kills inside a cleaning leave some)");
    Ok(())
}
