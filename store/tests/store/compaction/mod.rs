//! Log compaction: Kafka's compact (keep-latest) and the time-window and hybrid strategies,
//! cleaned through the store (`PartitionLog::clean`), checked record by record.

mod crash;
mod keep_latest;
mod model;
mod space;
mod transactions;

use crate::common::*;
use bytes::Bytes;
use kafka_protocol::records::Compression;
use rafka_format::batch::{BatchIdentity, check_batch};
use rafka_format::builder::{BatchBuilder, BatchOptions, RecordParts};
use rafka_format::records::Records;
use rafka_store::{CleanupPolicy, CompactionConfig, CompactionStrategy, LogConfig, PartitionLog};

/// A record to produce: key, value (`None`: tombstone), timestamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub ts: i64,
}

impl Rec {
    pub fn new(key: &str, value: Option<&str>, ts: i64) -> Rec {
        Rec {
            key: Some(key.as_bytes().to_vec()),
            value: value.map(|v| v.as_bytes().to_vec()),
            ts,
        }
    }
}

/// One batch of `recs` (offset deltas 0..n), compressed as asked, with a producer identity.
pub fn keyed_batch(recs: &[Rec], identity: BatchIdentity, compression: Compression) -> Bytes {
    batch_with(recs, BatchOptions::new(identity, compression))
}

/// One batch of `recs` (offset deltas 0..n) built with `options`.
pub fn batch_with(recs: &[Rec], options: BatchOptions) -> Bytes {
    let mut b = BatchBuilder::with_capacity(256);
    for r in recs {
        let parts = RecordParts {
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &[],
        };
        b.append(r.ts, &parts).expect("append");
    }
    b.finish(options).expect("build")
}

pub fn plain(recs: &[Rec]) -> Bytes {
    keyed_batch(recs, BatchIdentity::NONE, Compression::None)
}

/// A compacted log with small segments.
pub fn compacted(segment_bytes: u64, strategy: CompactionStrategy) -> LogConfig {
    LogConfig {
        cleanup: CleanupPolicy::COMPACT,
        compaction: CompactionConfig {
            strategy,
            ..CompactionConfig::default()
        },
        ..small_segments(segment_bytes)
    }
}

/// A record as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Got {
    pub offset: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub ts: i64,
}

/// Every record of the log, in offset order, read with the store's own read path.
pub fn records_of(log: &PartitionLog) -> anyhow::Result<Vec<Got>> {
    let mut out = Vec::new();
    for batch in read_all(log)? {
        let h = check_batch(&batch)?;
        for r in Records::new(&batch, &h)? {
            let r = r?;
            out.push(Got {
                offset: r.offset,
                key: r.key,
                value: r.value,
                ts: r.timestamp,
            });
        }
    }
    Ok(out)
}

/// Offsets strictly increase.
pub fn assert_increasing(got: &[Got]) {
    for w in got.windows(2) {
        assert!(
            w[0].offset < w[1].offset,
            "offsets {} then {}",
            w[0].offset,
            w[1].offset
        );
    }
}
