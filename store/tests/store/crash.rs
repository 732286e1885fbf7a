//! Crash test: a child process appends with fsync=always and prints every acknowledged batch;
//! the parent SIGKILLs it mid-stream, reopens the store and checks that every acknowledged
//! batch is there intact, with no torn batch and contiguous offsets.

use crate::common::*;
use rafka_store::{FsyncPolicy, LogConfig, Store, StoreConfig};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const CHILD_ENV: &str = "RAFKA_STORE_CRASH_DIR";
const PARTITIONS: i32 = 2;
const THREADS: usize = 4;
const RECORDS: usize = 20;
const VALUE_LEN: usize = 200;

fn child_config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        fsync: FsyncPolicy::Always,
        memtable_bytes: 64 * 1024,
        ..StoreConfig::new(dir)
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 128 * 1024,
        ..small_segments(0)
    }
}

fn spec(tag: u64) -> Spec {
    Spec {
        records: RECORDS,
        value_len: VALUE_LEN,
        tag,
        base_ts: tag as i64,
        ..Spec::default()
    }
}

/// The child: appends until killed, printing `ACK partition base last tag` per acknowledged batch.
#[test]
#[ignore = "run by crash::acknowledged_batches_survive_sigkill as its child process"]
fn crash_child() -> anyhow::Result<()> {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return Ok(());
    };
    let store = Store::open(child_config(dir.as_ref()))?;
    let logs: Vec<_> = (0..PARTITIONS)
        .map(|p| store.create_partition(tp(60, p), log_config()))
        .collect::<Result<_, _>>()?;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let log = logs[t % logs.len()].clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                for i in 0..1_000_000u64 {
                    let tag = t as u64 * 10_000_000 + i;
                    let a = log.append_blocking(batch(&spec(tag)), opts())?;
                    let mut out = std::io::stdout().lock();
                    writeln!(
                        out,
                        "ACK {} {} {} {tag}",
                        log.topic_partition().partition,
                        a.base_offset,
                        a.last_offset
                    )?;
                    out.flush()?;
                }
                Ok(())
            })
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    Ok(())
}

struct Ack {
    partition: i32,
    base: i64,
    last: i64,
    tag: u64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut it = line.strip_prefix("ACK ")?.split(' ');
    Some(Ack {
        partition: it.next()?.parse().ok()?,
        base: it.next()?.parse().ok()?,
        last: it.next()?.parse().ok()?,
        tag: it.next()?.parse().ok()?,
    })
}

#[allow(unsafe_code)]
fn sigkill(pid: u32) {
    // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
    let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill failed");
}

/// Runs the child until `kill_after` acks (on top of what the store already holds), kills it.
fn run_child(dir: &std::path::Path, kill_after: usize) -> anyhow::Result<Vec<Ack>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "crash::crash_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(ack) = parse_ack(&line)
                && tx.send(ack).is_err()
            {
                break;
            }
        }
    });
    let mut acks = Vec::new();
    while acks.len() < kill_after {
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                anyhow::bail!("child stopped acknowledging after {} acks: {e}", acks.len());
            }
        }
    }
    sigkill(child.id());
    let status = child.wait()?;
    assert!(!status.success(), "child was killed");
    // Acks printed before the kill landed count too: they were acknowledged.
    reader.join().expect("reader");
    acks.extend(rx.try_iter());
    Ok(acks)
}

fn verify(dir: &std::path::Path, acks: &[Ack]) -> anyhow::Result<()> {
    let store = Store::open(child_config(dir))?;
    let mut max_last: HashMap<i32, i64> = HashMap::new();
    for p in 0..PARTITIONS {
        let log = store.partition(tp(60, p)).expect("partition");
        // Whole log readable (every CRC checked), offsets contiguous, no torn batch.
        let batches = read_all(&log)?;
        let mut next = 0;
        for b in &batches {
            let h = rafka_store::batch::check_batch(b)?;
            assert_eq!(h.base_offset, next, "contiguous offsets in partition {p}");
            assert_eq!(h.record_count as usize, RECORDS);
            next = h.last_offset().expect("last") + 1;
        }
        assert_eq!(next, log.log_end_offset());
        max_last.insert(p, next - 1);
    }
    for ack in acks {
        let log = store.partition(tp(60, ack.partition)).expect("partition");
        assert!(
            ack.last <= max_last[&ack.partition],
            "acknowledged batch at {} lost",
            ack.base
        );
        let got = log.read(ack.base, 1, i64::MAX)?;
        let h = rafka_store::batch::check_batch(&got[0])?;
        assert_eq!((h.base_offset, h.last_offset()), (ack.base, Some(ack.last)));
        let records = decode(&got[..1]);
        for (j, r) in records.iter().enumerate() {
            assert_eq!(r.0, ack.base + j as i64);
            assert_eq!(
                r.2.as_ref(),
                Some(&value_for(ack.tag, j, VALUE_LEN)),
                "content of {}",
                ack.base
            );
        }
    }
    Ok(())
}

#[test]
fn acknowledged_batches_survive_sigkill() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut all = Vec::new();
    for kill_after in [120, 450, 900] {
        let started = std::time::Instant::now();
        let acks = run_child(dir.path(), kill_after)?;
        let killed = started.elapsed();
        all.extend(acks);
        // Each round checks every batch acknowledged in every round so far.
        verify(dir.path(), &all)?;
        eprintln!(
            "killed the child after {kill_after}+ acks ({killed:?}); verified {} acks ({:?})",
            all.len(),
            started.elapsed() - killed
        );
    }
    Ok(())
}
