//! Storage engine benchmark: concurrent appenders writing 100-byte records in ~16 KiB batches
//! to several partitions (so group commit shows), then a reopen, then every record read back.
//!
//! `cargo bench -p rafka-store --bench storage -- [--records N] [--fsync always|never|interval:MS]`
//! Without `--fsync` it runs the three modes in turn.

mod common;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use rafka_store::batch::BatchHeader;
use rafka_store::{
    AppendOptions, FsyncPolicy, LogConfig, PartitionLog, Store, StoreConfig, TopicPartition,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const RECORD_BYTES: usize = 100;
const RECORDS_PER_BATCH: usize = 140;
const PARTITIONS: i32 = 4;
const APPENDERS: usize = 8;

struct Args {
    records: u64,
    modes: Vec<FsyncPolicy>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        records: 5_000_000,
        modes: vec![
            FsyncPolicy::Always,
            FsyncPolicy::Interval(Duration::from_millis(100)),
            FsyncPolicy::Never,
        ],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--records" => args.records = it.next().context("--records N")?.parse()?,
            "--fsync" => args.modes = vec![it.next().context("--fsync MODE")?.parse()?],
            "--bench" => {} // cargo bench passes this
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

/// A few distinct batches of incompressible 100-byte values.
fn templates() -> Result<Vec<Bytes>> {
    let mut values = common::Values::new();
    (0..16)
        .map(|_| {
            common::batch(
                1_700_000_000_000,
                (0..RECORDS_PER_BATCH).map(|_| (None, values.next(RECORD_BYTES))),
            )
        })
        .collect()
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new(uuid::Uuid::from_u128(0xbe4c_0000), p)
}

fn config(dir: &std::path::Path, fsync: FsyncPolicy) -> StoreConfig {
    StoreConfig {
        fsync,
        ..StoreConfig::new(dir)
    }
}

fn append_phase(logs: &[PartitionLog], batches: u64, templates: &[Bytes]) -> Result<Duration> {
    let next = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(APPENDERS + 1));
    let handles: Vec<_> = (0..APPENDERS)
        .map(|t| {
            let (log, next, barrier) =
                (logs[t % logs.len()].clone(), next.clone(), barrier.clone());
            let templates = templates.to_vec();
            std::thread::spawn(move || -> Result<()> {
                barrier.wait();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= batches {
                        return Ok(());
                    }
                    let batch = templates[i as usize % templates.len()].clone();
                    log.append_blocking(
                        batch,
                        AppendOptions {
                            leader_epoch: 0,
                            now_ms: 0,
                        },
                    )?;
                }
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("appender panicked"))??;
    }
    Ok(started.elapsed())
}

/// Reads every partition from its start, one reader thread each; returns (records, bytes).
fn read_phase(logs: &[PartitionLog]) -> Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let handles: Vec<_> = logs
        .iter()
        .cloned()
        .map(|log| {
            std::thread::spawn(move || -> Result<(u64, u64)> {
                let (mut records, mut bytes) = (0u64, 0u64);
                let mut offset = log.log_start_offset();
                while offset < log.log_end_offset() {
                    let batches = log.read(offset, 1 << 20, i64::MAX)?;
                    for b in &batches {
                        let h = BatchHeader::parse(b)?;
                        records += h.record_count as u64;
                        bytes += b.len() as u64;
                        offset = h.last_offset().context("offset")? + 1;
                    }
                }
                Ok((records, bytes))
            })
        })
        .collect();
    let (mut records, mut bytes) = (0, 0);
    for h in handles {
        let (r, b) = h.join().map_err(|_| anyhow::anyhow!("reader panicked"))??;
        records += r;
        bytes += b;
    }
    Ok((records, bytes, started.elapsed()))
}

fn rate(n: u64, bytes: u64, d: Duration) -> String {
    let s = d.as_secs_f64();
    format!(
        "{n} records in {s:.2} s = {:.2} M records/s, {:.1} MB/s",
        n as f64 / s / 1e6,
        bytes as f64 / s / 1e6
    )
}

fn run(mode: FsyncPolicy, records: u64, templates: &[Bytes]) -> Result<()> {
    let dir =
        tempfile::tempdir_in(std::env::var_os("RAFKA_BENCH_DIR").unwrap_or_else(|| ".".into()))?;
    let batches = records.div_ceil(RECORDS_PER_BATCH as u64);
    let batch_len = templates.first().map_or(0, |b| b.len()) as u64;
    let store = Store::open(config(dir.path(), mode))?;
    let logs: Vec<_> = (0..PARTITIONS)
        .map(|p| store.create_partition(tp(p), LogConfig::default()))
        .collect::<Result<_, _>>()?;
    let elapsed = append_phase(&logs, batches, templates)?;
    let s = store.stats();
    let n = batches * RECORDS_PER_BATCH as u64;
    println!(
        "fsync={mode:<13} append: {}",
        rate(n, batches * batch_len, elapsed)
    );
    println!(
        "{:20} group commit: {} appends in {} commits, {} fsyncs, largest group {}",
        "", s.append_requests, s.commits, s.fsyncs, s.largest_group
    );
    drop(logs);
    drop(store);
    let started = Instant::now();
    let store = Store::open(config(dir.path(), mode))?;
    let open = started.elapsed();
    let logs = store.partitions();
    let (read, bytes, elapsed) = read_phase(&logs)?;
    anyhow::ensure!(read == n, "read {read} records, wrote {n}");
    println!(
        "{:20} reopen: {} ms; read: {}",
        "",
        open.as_millis(),
        rate(read, bytes, elapsed)
    );
    println!("{:20} disk: {} MB", "", store.disk_space() / 1_000_000);
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let templates = templates()?;
    println!(
        "{} records of {RECORD_BYTES} B in batches of {RECORDS_PER_BATCH} ({} B), {APPENDERS} appenders, {PARTITIONS} partitions",
        args.records,
        templates.first().map_or(0, |b| b.len())
    );
    for mode in args.modes {
        run(mode, args.records, &templates)?;
    }
    Ok(())
}
