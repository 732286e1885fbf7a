//! Log cleaner benchmark: one compacted partition of about `--mb` MB of keyed 100-byte records
//! (batches of 100 records), where `--live` percent of the records have distinct keys (the rest
//! are older versions of them); then one cleaning, timed, with its CPU time and the data
//! directory's size before and after.
//!
//! `cargo bench -p rafka-store --bench cleaning -- [--mb N] [--live PERCENT]`
//! Without `--live` it runs 1% and 50%. Data goes to a temporary directory under
//! `RAFKA_BENCH_DIR` (default `.`), removed afterwards.

mod common;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use common::Values;
use rafka_store::{
    AppendOptions, CleanupPolicy, CompactionConfig, FsyncPolicy, LogConfig, Store, StoreConfig,
    TopicPartition,
};
use std::path::Path;
use std::time::Instant;

const VALUE_BYTES: usize = 100;
const RECORDS_PER_BATCH: u64 = 100;
/// Bytes per record in a batch: value, key, record framing, and the batch header shared out.
const BYTES_PER_RECORD: u64 = 128;

struct Args {
    mb: u64,
    live: Vec<u64>,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        mb: 1024,
        live: vec![1, 50],
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--mb" => args.mb = it.next().context("--mb N")?.parse()?,
            "--live" => args.live = vec![it.next().context("--live PERCENT")?.parse()?],
            "--bench" => {}
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(args)
}

/// One batch: records `first..first + RECORDS_PER_BATCH`, record i keyed `i mod keys`.
fn batch(first: u64, keys: u64, values: &mut Values) -> Result<Bytes> {
    common::batch(
        1_700_000_000_000 + first as i64,
        (first..first + RECORDS_PER_BATCH).map(|i| {
            let key = Bytes::from(format!("key-{:012}", i % keys));
            (Some(key), values.next(VALUE_BYTES))
        }),
    )
}

fn dir_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn run(root: &Path, mb: u64, live_percent: u64) -> Result<()> {
    let dir = tempfile::tempdir_in(root)?;
    let records = mb * 1_000_000 / BYTES_PER_RECORD;
    let records = records - records % RECORDS_PER_BATCH;
    let keys = (records * live_percent / 100).max(1);
    let mut config = StoreConfig::new(dir.path());
    config.fsync = FsyncPolicy::Never;
    config.cleaner_threads = 0;
    let store = Store::open(config)?;
    let tp = TopicPartition::new(uuid::Uuid::from_u128(0xc1ea_0000), 0);
    let log = store.create_partition(
        tp,
        LogConfig {
            segment_bytes: 64 << 20,
            cleanup: CleanupPolicy::COMPACT,
            compaction: CompactionConfig::default(),
            ..LogConfig::default()
        },
    )?;
    let mut values = Values::new();
    let started = Instant::now();
    let mut first = 0;
    while first < records {
        let opts = AppendOptions {
            leader_epoch: 0,
            now_ms: 1_700_000_000_000,
        };
        log.append_blocking(batch(first, keys, &mut values)?, opts)?;
        first += RECORDS_PER_BATCH;
    }
    log.set_high_watermark(log.log_end_offset())?;
    store.flush()?;
    let written = started.elapsed();
    let before = dir_bytes(dir.path());
    let started = Instant::now();
    let report = log.clean(1_800_000_000_000)?.context("nothing cleaned")?;
    let wall = started.elapsed();
    store.flush()?;
    let after = dir_bytes(dir.path());
    let mb_read = report.bytes_read as f64 / 1e6;
    let cpu_s = report.cpu_ns as f64 / 1e9;
    println!(
        "live {live_percent}%: {records} records, {keys} keys, written in {:.1} s; cleaned {:.0} MB \
         ({} segments) in {:.1} s = {:.0} MB/s, CPU {:.1} s = {:.1} CPU-s/GB; {} records removed, \
         {:.0} MB written; data dir {:.0} MB -> {:.0} MB",
        written.as_secs_f64(),
        mb_read,
        report.segments_read,
        wall.as_secs_f64(),
        mb_read / wall.as_secs_f64(),
        cpu_s,
        cpu_s / (mb_read / 1000.0),
        report.records_removed,
        report.bytes_written as f64 / 1e6,
        before as f64 / 1e6,
        after as f64 / 1e6,
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let root = std::env::var("RAFKA_BENCH_DIR").unwrap_or_else(|_| ".".into());
    for live in args.live {
        run(Path::new(&root), args.mb, live)?;
    }
    Ok(())
}
