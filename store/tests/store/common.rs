//! Helpers shared by the store tests.

use anyhow::Result;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use rafka_store::{
    AppendOptions, FsyncPolicy, LogConfig, PartitionLog, Store, StoreConfig, TopicPartition,
};
use std::path::Path;
use std::time::{Duration, Instant};

pub fn tp(n: u128, partition: i32) -> TopicPartition {
    TopicPartition::new(uuid::Uuid::from_u128(0x5eed_0000 + n), partition)
}

/// What a batch should hold.
#[derive(Clone, Debug)]
pub struct Spec {
    pub records: usize,
    pub value_len: usize,
    pub base_ts: i64,
    /// Timestamp step between records (may be negative).
    pub ts_step: i64,
    pub compression: Compression,
    pub producer: Option<(i64, i16, i32)>,
    /// Fills values so batches are distinguishable.
    pub tag: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            records: 10,
            value_len: 100,
            base_ts: 1_000,
            ts_step: 1,
            compression: Compression::None,
            producer: None,
            tag: 0,
        }
    }
}

pub fn value_for(tag: u64, i: usize, len: usize) -> Bytes {
    let mut v = Vec::with_capacity(len);
    let mut x = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i as u64);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v.into()
}

pub fn records(spec: &Spec) -> Vec<Record> {
    let (pid, epoch, seq) = spec.producer.unwrap_or((-1, -1, -1));
    (0..spec.records)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: seq.wrapping_add(i as i32),
            timestamp: spec.base_ts + spec.ts_step * i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(value_for(spec.tag, i, spec.value_len)),
            headers: Default::default(),
        })
        .collect()
}

pub fn batch(spec: &Spec) -> Bytes {
    let recs = records(spec);
    let mut buf = BytesMut::new();
    let opts = RecordEncodeOptions {
        version: 2,
        compression: spec.compression,
    };
    RecordBatchEncoder::encode(&mut buf, recs.iter(), &opts).expect("encode");
    buf.freeze()
}

pub fn simple(records: usize, tag: u64) -> Bytes {
    batch(&Spec {
        records,
        tag,
        ..Spec::default()
    })
}

pub fn idem(pid: i64, epoch: i16, seq: i32, records: usize) -> Bytes {
    batch(&Spec {
        records,
        producer: Some((pid, epoch, seq)),
        ..Spec::default()
    })
}

pub fn opts() -> AppendOptions {
    AppendOptions {
        leader_epoch: 0,
        now_ms: 1_000,
    }
}

/// Tests clean explicitly (`PartitionLog::clean`); a test that wants cleaner threads asks.
pub fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        fsync: FsyncPolicy::Never,
        memtable_bytes: 1024 * 1024,
        hw_checkpoint_interval_ms: 50,
        cleaner_threads: 0,
        ..StoreConfig::new(dir)
    }
}

pub fn open(dir: &Path) -> Result<Store> {
    Ok(Store::open(config(dir))?)
}

pub fn small_segments(bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes: bytes,
        retention_ms: None,
        segment_ms: None,
        ..LogConfig::default()
    }
}

/// Decodes every record of the batches; returns (offset, timestamp, value).
pub fn decode(batches: &[Bytes]) -> Vec<(i64, i64, Option<Bytes>)> {
    let mut out = Vec::new();
    for b in batches {
        let mut buf = b.clone();
        let set = RecordBatchDecoder::decode(&mut buf).expect("decode");
        out.extend(
            set.records
                .into_iter()
                .map(|r| (r.offset, r.timestamp, r.value)),
        );
    }
    out
}

/// Reads the whole log.
pub fn read_all(log: &PartitionLog) -> Result<Vec<Bytes>> {
    let mut out = Vec::new();
    let mut next = log.log_start_offset();
    while next < log.log_end_offset() {
        let got = log.read(next, 1 << 20, i64::MAX)?;
        let Some(last) = got.last() else { break };
        let h = rafka_store::batch::BatchHeader::parse(last)?;
        next = h.last_offset().expect("last offset") + 1;
        out.extend(got);
    }
    Ok(out)
}

/// Waits for a condition with a deadline, never a fixed sleep as synchronisation.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sum of file sizes under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.metadata() {
            Ok(m) if m.is_dir() => total += dir_size(&path),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}
