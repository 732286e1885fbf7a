//! Value encodings of everything the store keeps besides the batches themselves. Each value
//! starts with a format version byte (1); all integers are big-endian. Decoding never panics:
//! a short or unknown value is [`StoreError::CorruptValue`]. The fixture test pins these.

use crate::config::{
    CleanupPolicy, CompactionConfig, CompactionStrategy, FsyncPolicy, LogConfig, TimestampType,
};
use crate::error::{Result, StoreError};
use crate::producer_state::{ProducerBatch, ProducerEntry};
use std::time::Duration;

const VERSION: u8 = 1;

/// Little writer over a `Vec<u8>`.
pub(crate) struct Enc(Vec<u8>);

impl Enc {
    fn new(cap: usize) -> Self {
        Enc::with_version(VERSION, cap)
    }
    fn with_version(version: u8, cap: usize) -> Self {
        let mut v = Vec::with_capacity(cap + 1);
        v.push(version);
        Enc(v)
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    fn i64(&mut self, v: i64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i16(&mut self, v: i16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn done(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Little reader; every getter fails with `CorruptValue` past the end.
pub(crate) struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
    ks: &'static str,
}

impl<'a> Dec<'a> {
    fn new(buf: &'a [u8], ks: &'static str) -> Result<Self> {
        Dec::versioned(buf, ks, VERSION).map(|(d, _)| d)
    }

    /// A decoder of a value whose version is 1 up to `max`, and the version.
    fn versioned(buf: &'a [u8], ks: &'static str, max: u8) -> Result<(Self, u8)> {
        let mut d = Dec { buf, pos: 0, ks };
        match d.u8()? {
            v @ 1.. if v <= max => Ok((d, v)),
            v => Err(StoreError::corrupt(
                ks,
                format!("unknown value version {v}"),
            )),
        }
    }

    fn u64(&mut self) -> Result<u64> {
        self.take::<8>().map(u64::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32> {
        self.take::<4>().map(u32::from_be_bytes)
    }
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let end = self.pos.saturating_add(N);
        let bytes = self.buf.get(self.pos..end).and_then(|s| s.try_into().ok());
        self.pos = end;
        bytes.ok_or_else(|| StoreError::corrupt(self.ks, "value too short"))
    }
    fn i64(&mut self) -> Result<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }
    fn i32(&mut self) -> Result<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }
    fn i16(&mut self) -> Result<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
    fn u8(&mut self) -> Result<u8> {
        self.take::<1>().map(|b| b[0])
    }
}

/// The per-partition record in `meta`: log start, checkpointed high watermark, log config.
/// Version 1 holds the config up to `max_message_bytes`; version 2 adds the cleanup policy and
/// compaction settings, and is written only when they differ from the defaults, so a store that
/// never used compaction stays readable by releases from before it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PartitionRecord {
    pub log_start: i64,
    pub high_watermark: i64,
    pub config: LogConfig,
}

fn opt(v: Option<i64>) -> i64 {
    v.unwrap_or(-1)
}

fn unopt(v: i64) -> Option<i64> {
    (v >= 0).then_some(v)
}

impl PartitionRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let c = &self.config;
        let (tag, ms) = match c.fsync {
            None => (0, 0),
            Some(FsyncPolicy::Always) => (1, 0),
            Some(FsyncPolicy::Never) => (2, 0),
            Some(FsyncPolicy::Interval(d)) => (3, i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        };
        let retention_bytes = c
            .retention_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        let segment_bytes = i64::try_from(c.segment_bytes).unwrap_or(i64::MAX);
        let v2 = c.cleanup != CleanupPolicy::DELETE || c.compaction != CompactionConfig::default();
        let mut enc = Enc::with_version(if v2 { 2 } else { 1 }, 128);
        enc.i64(self.log_start)
            .i64(self.high_watermark)
            .u8(tag)
            .i64(ms)
            .i64(opt(c.retention_ms))
            .i64(opt(retention_bytes))
            .i64(segment_bytes)
            .i64(opt(c.segment_ms))
            .u8(matches!(c.timestamp_type, TimestampType::LogAppendTime) as u8)
            .i32(c.max_message_bytes as i32);
        if v2 {
            encode_compaction(&mut enc, c.cleanup, &c.compaction);
        }
        enc.done()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let (mut d, version) = Dec::versioned(buf, "meta", 2)?;
        let log_start = d.i64()?;
        let high_watermark = d.i64()?;
        let fsync = match (d.u8()?, d.i64()?) {
            (0, _) => None,
            (1, _) => Some(FsyncPolicy::Always),
            (2, _) => Some(FsyncPolicy::Never),
            (3, ms) => Some(FsyncPolicy::Interval(Duration::from_millis(
                ms.max(1) as u64
            ))),
            (t, _) => return Err(StoreError::corrupt("meta", format!("fsync tag {t}"))),
        };
        let config = LogConfig {
            fsync,
            retention_ms: unopt(d.i64()?),
            retention_bytes: unopt(d.i64()?).map(|b| b as u64),
            segment_bytes: d.i64()?.max(0) as u64,
            segment_ms: unopt(d.i64()?),
            timestamp_type: match d.u8()? {
                0 => TimestampType::CreateTime,
                _ => TimestampType::LogAppendTime,
            },
            max_message_bytes: d.i32()? as u32,
            cleanup: CleanupPolicy::DELETE,
            compaction: CompactionConfig::default(),
        };
        let config = if version >= 2 {
            let (cleanup, compaction) = decode_compaction(&mut d)?;
            LogConfig {
                cleanup,
                compaction,
                ..config
            }
        } else {
            config
        };
        Ok(PartitionRecord {
            log_start,
            high_watermark,
            config,
        })
    }
}

fn encode_compaction(enc: &mut Enc, cleanup: CleanupPolicy, c: &CompactionConfig) {
    let (tag, window, history) = match c.strategy {
        CompactionStrategy::KeepLatest => (0, 0, 0),
        CompactionStrategy::TimeWindow { window_ms } => (1, window_ms, 0),
        CompactionStrategy::Hybrid {
            window_ms,
            history_ms,
        } => (2, window_ms, history_ms),
    };
    enc.u8(u8::from(cleanup.delete) | (u8::from(cleanup.compact) << 1))
        .u8(tag)
        .i64(window)
        .i64(history)
        .i64(c.delete_retention_ms)
        .i64(c.min_compaction_lag_ms)
        .i64(opt(c.max_compaction_lag_ms))
        .u64(c.min_cleanable_dirty_ratio.to_bits());
}

fn decode_compaction(d: &mut Dec<'_>) -> Result<(CleanupPolicy, CompactionConfig)> {
    let flags = d.u8()?;
    let cleanup = CleanupPolicy {
        delete: flags & 1 != 0,
        compact: flags & 2 != 0,
    };
    let (tag, window_ms, history_ms) = (d.u8()?, d.i64()?, d.i64()?);
    let strategy = match tag {
        0 => CompactionStrategy::KeepLatest,
        1 => CompactionStrategy::TimeWindow { window_ms },
        2 => CompactionStrategy::Hybrid {
            window_ms,
            history_ms,
        },
        t => return Err(StoreError::corrupt("meta", format!("strategy tag {t}"))),
    };
    let config = CompactionConfig {
        strategy,
        delete_retention_ms: d.i64()?,
        min_compaction_lag_ms: d.i64()?,
        max_compaction_lag_ms: unopt(d.i64()?),
        min_cleanable_dirty_ratio: f64::from_bits(d.u64()?),
    };
    Ok((cleanup, config))
}

/// Summary of one segment in `meta`, rewritten in the same atomic batch as every append to it.
///
/// Version 1 ends at `created_ms`. Version 2 (written for compacted partitions and cleaned
/// segments) adds which keyspace holds the segment (`generation`: 0 is the segment as rolled,
/// `s.<topic>.<partition>.<base>`; a cleaned one is `...<base>.<generation>`) and the max
/// timestamp of its first batch (for `max_compaction_lag_ms`; -1 unknown).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentSummary {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    /// Last offset (key) of the batch holding `max_timestamp`.
    pub max_timestamp_batch: i64,
    pub size_bytes: u64,
    pub batch_count: u64,
    /// Wall-clock time the segment was created (for `segment_ms`).
    pub created_ms: i64,
    /// Which keyspace holds it: 0 as rolled, then one more per cleaning that rewrote it.
    pub generation: u32,
    /// Max timestamp of its first batch (-1 unknown or empty).
    pub first_timestamp: i64,
}

impl SegmentSummary {
    /// A new, empty segment starting at `base_offset`.
    pub(crate) fn empty(base_offset: i64, created_ms: i64) -> Self {
        SegmentSummary {
            base_offset,
            last_offset: base_offset - 1,
            max_timestamp: -1,
            max_timestamp_batch: -1,
            size_bytes: 0,
            batch_count: 0,
            created_ms,
            generation: 0,
            first_timestamp: -1,
        }
    }

    /// Encodes as version 2 when `v2` or when version 1 cannot say it (a cleaned segment).
    pub(crate) fn encode(&self, v2: bool) -> Vec<u8> {
        let v2 = v2 || self.generation != 0;
        let mut enc = Enc::with_version(if v2 { 2 } else { 1 }, 72);
        enc.i64(self.base_offset)
            .i64(self.last_offset)
            .i64(self.max_timestamp)
            .i64(self.max_timestamp_batch)
            .i64(self.size_bytes as i64)
            .i64(self.batch_count as i64)
            .i64(self.created_ms);
        if v2 {
            enc.u32(self.generation).i64(self.first_timestamp);
        }
        enc.done()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let (mut d, version) = Dec::versioned(buf, "meta", 2)?;
        let mut s = SegmentSummary {
            base_offset: d.i64()?,
            last_offset: d.i64()?,
            max_timestamp: d.i64()?,
            max_timestamp_batch: d.i64()?,
            size_bytes: d.i64()?.max(0) as u64,
            batch_count: d.i64()?.max(0) as u64,
            created_ms: d.i64()?,
            generation: 0,
            first_timestamp: -1,
        };
        if version >= 2 {
            s.generation = d.u32()?;
            s.first_timestamp = d.i64()?;
        }
        Ok(s)
    }
}

/// The log cleaner's state of a partition (`meta` `C`): where the dirty part of the log starts,
/// the key index generation, when it last cleaned, and when a kept tombstone falls due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CleanerCheckpoint {
    /// Offsets below this were cleaned (Kafka's cleaner-offset-checkpoint); the dirty part
    /// starts here.
    pub first_dirty: i64,
    /// Key index entries of another generation are stale (a truncation or a strategy change
    /// invalidated them): the cleaner never reads them and the compaction filter drops them.
    pub generation: u32,
    /// Wall-clock time of the last completed cleaning (-1 never).
    pub last_clean_ms: i64,
    /// Earliest delete horizon of a tombstone the last cleaning kept (-1 none): a cleaning is
    /// due then even if the log is not dirty.
    pub tombstone_due_ms: i64,
}

impl CleanerCheckpoint {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Enc::new(28)
            .i64(self.first_dirty)
            .u32(self.generation)
            .i64(self.last_clean_ms)
            .i64(self.tombstone_due_ms)
            .done()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Dec::new(buf, "meta")?;
        Ok(CleanerCheckpoint {
            first_dirty: d.i64()?,
            generation: d.u32()?,
            last_clean_ms: d.i64()?,
            tombstone_due_ms: d.i64()?,
        })
    }
}

/// One key index entry: the latest record of a key (or of a key in one time window) that a
/// cleaning has seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyEntry {
    pub offset: i64,
    pub timestamp: i64,
    pub tombstone: bool,
    /// The delete horizon stamped on the tombstone's batch (-1 not yet).
    pub horizon_ms: i64,
}

impl KeyEntry {
    pub(crate) fn encode(&self) -> Vec<u8> {
        Enc::new(25)
            .i64(self.offset)
            .i64(self.timestamp)
            .u8(u8::from(self.tombstone))
            .i64(self.horizon_ms)
            .done()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Dec::new(buf, "keys")?;
        Ok(KeyEntry {
            offset: d.i64()?,
            timestamp: d.i64()?,
            tombstone: d.u8()? != 0,
            horizon_ms: d.i64()?,
        })
    }
}

/// The store's secret for key hashes (`meta` `H`): two SipHash keys.
pub(crate) fn encode_hash_key(k: [u64; 2]) -> Vec<u8> {
    Enc::new(16).u64(k[0]).u64(k[1]).done()
}

pub(crate) fn decode_hash_key(buf: &[u8]) -> Result<[u64; 2]> {
    let mut d = Dec::new(buf, "meta")?;
    Ok([d.u64()?, d.u64()?])
}

/// One entry of the per-batch index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub base_offset: i64,
    pub max_timestamp: i64,
    pub size: u32,
    pub leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub attributes: i16,
}

impl IndexEntry {
    pub(crate) fn from_header(h: &crate::batch::BatchHeader, size: usize) -> Self {
        IndexEntry {
            base_offset: h.base_offset,
            max_timestamp: h.max_timestamp,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            leader_epoch: h.partition_leader_epoch,
            producer_id: h.producer_id,
            producer_epoch: h.producer_epoch,
            base_sequence: h.base_sequence,
            attributes: h.attributes,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        Enc::new(40)
            .i64(self.base_offset)
            .i64(self.max_timestamp)
            .i32(self.size as i32)
            .i32(self.leader_epoch)
            .i64(self.producer_id)
            .i16(self.producer_epoch)
            .i32(self.base_sequence)
            .i16(self.attributes)
            .done()
    }

    pub(crate) fn decode(buf: &[u8]) -> Result<Self> {
        let mut d = Dec::new(buf, "index")?;
        Ok(IndexEntry {
            base_offset: d.i64()?,
            max_timestamp: d.i64()?,
            size: d.i32()? as u32,
            leader_epoch: d.i32()?,
            producer_id: d.i64()?,
            producer_epoch: d.i16()?,
            base_sequence: d.i32()?,
            attributes: d.i16()?,
        })
    }

    pub(crate) fn is_control(&self) -> bool {
        self.attributes & (1 << 5) != 0
    }
}

/// A leader-epoch cache entry's value: the epoch's start offset.
pub(crate) fn encode_epoch_start(start: i64) -> Vec<u8> {
    Enc::new(8).i64(start).done()
}

pub(crate) fn decode_epoch_start(buf: &[u8]) -> Result<i64> {
    Dec::new(buf, "meta")?.i64()
}

/// Producer state value: epoch, then up to 5 batches (first seq, last seq, base, last offset).
/// Version 2 adds the transaction state (open transaction's first offset, last ended
/// transaction's first and marker offsets, -1 for none); it is written only for producers that
/// used transactions, so stores without them stay readable by releases from before.
pub(crate) fn encode_producer(e: &ProducerEntry) -> Vec<u8> {
    let txn = e.ongoing_txn.is_some() || e.last_txn.is_some();
    let mut enc = Enc::with_version(if txn { 2 } else { 1 }, 27 + 24 * e.batches.len());
    enc.i16(e.epoch).u8(e.batches.len().min(255) as u8);
    for b in &e.batches {
        enc.i32(b.first_seq)
            .i32(b.last_seq)
            .i64(b.base_offset)
            .i64(b.last_offset);
    }
    if txn {
        let (first, marker) = e.last_txn.unwrap_or((-1, -1));
        enc.i64(opt(e.ongoing_txn)).i64(first).i64(marker);
    }
    enc.done()
}

pub(crate) fn decode_producer(buf: &[u8]) -> Result<ProducerEntry> {
    let (mut d, version) = Dec::versioned(buf, "producers", 2)?;
    let epoch = d.i16()?;
    let n = d.u8()?;
    let mut batches = std::collections::VecDeque::with_capacity(usize::from(n).min(8));
    for _ in 0..n {
        batches.push_back(ProducerBatch {
            first_seq: d.i32()?,
            last_seq: d.i32()?,
            base_offset: d.i64()?,
            last_offset: d.i64()?,
        });
    }
    let (ongoing_txn, last_txn) = if version >= 2 {
        let ongoing = unopt(d.i64()?);
        let (first, marker) = (d.i64()?, d.i64()?);
        (
            ongoing,
            (first >= 0 && marker >= 0).then_some((first, marker)),
        )
    } else {
        (None, None)
    };
    Ok(ProducerEntry {
        epoch,
        batches,
        ongoing_txn,
        last_txn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_short_values_fail() {
        let rec = PartitionRecord {
            log_start: 3,
            high_watermark: 9,
            config: LogConfig {
                fsync: Some(FsyncPolicy::Interval(Duration::from_millis(20))),
                retention_bytes: Some(77),
                ..LogConfig::default()
            },
        };
        let bytes = rec.encode();
        assert_eq!(
            bytes.first(),
            Some(&1),
            "version 1 without compaction settings"
        );
        assert_eq!(PartitionRecord::decode(&bytes).unwrap(), rec);
        for cut in 0..bytes.len() {
            assert!(PartitionRecord::decode(&bytes[..cut]).is_err());
        }
        let compacted = PartitionRecord {
            config: LogConfig {
                cleanup: CleanupPolicy::COMPACT,
                compaction: CompactionConfig {
                    strategy: CompactionStrategy::Hybrid {
                        window_ms: 60_000,
                        history_ms: 3_600_000,
                    },
                    max_compaction_lag_ms: Some(5),
                    min_cleanable_dirty_ratio: 0.25,
                    ..CompactionConfig::default()
                },
                ..rec.config.clone()
            },
            ..rec
        };
        let bytes = compacted.encode();
        assert_eq!(bytes.first(), Some(&2));
        assert_eq!(PartitionRecord::decode(&bytes).unwrap(), compacted);
        for cut in 0..bytes.len() {
            assert!(PartitionRecord::decode(&bytes[..cut]).is_err());
        }
        let s = SegmentSummary {
            base_offset: 1,
            last_offset: 2,
            max_timestamp: 3,
            max_timestamp_batch: 2,
            size_bytes: 4,
            batch_count: 5,
            created_ms: 6,
            generation: 0,
            first_timestamp: -1,
        };
        assert_eq!(SegmentSummary::decode(&s.encode(false)).unwrap(), s);
        assert_eq!(
            s.encode(false).first(),
            Some(&1),
            "version 1 when it can say it"
        );
        let cleaned = SegmentSummary {
            generation: 7,
            first_timestamp: 9,
            ..s
        };
        assert_eq!(
            SegmentSummary::decode(&cleaned.encode(false)).unwrap(),
            cleaned
        );
        let c = CleanerCheckpoint {
            first_dirty: 5,
            generation: 2,
            last_clean_ms: 77,
            tombstone_due_ms: -1,
        };
        assert_eq!(CleanerCheckpoint::decode(&c.encode()).unwrap(), c);
        let k = KeyEntry {
            offset: 3,
            timestamp: -4,
            tombstone: true,
            horizon_ms: 99,
        };
        assert_eq!(KeyEntry::decode(&k.encode()).unwrap(), k);
        assert_eq!(
            decode_hash_key(&encode_hash_key([1, u64::MAX])).unwrap(),
            [1, u64::MAX]
        );
        assert!(IndexEntry::decode(&[2, 0, 0]).is_err());
        assert!(decode_producer(&[1, 0, 1, 9]).is_err());
    }

    #[test]
    fn producer_values_carry_transactions_only_when_used() {
        let mut p = ProducerEntry {
            epoch: 3,
            batches: [ProducerBatch {
                first_seq: 0,
                last_seq: 4,
                base_offset: 10,
                last_offset: 14,
            }]
            .into(),
            ongoing_txn: None,
            last_txn: None,
        };
        let v1 = encode_producer(&p);
        assert_eq!(v1.first(), Some(&1), "no transaction: version 1");
        assert_eq!(decode_producer(&v1).unwrap(), p);
        p.ongoing_txn = Some(10);
        p.last_txn = Some((2, 8));
        let v2 = encode_producer(&p);
        assert_eq!(v2.first(), Some(&2));
        assert_eq!(decode_producer(&v2).unwrap(), p);
        for cut in 0..v2.len() {
            assert!(decode_producer(&v2[..cut]).is_err());
        }
    }
}
