//! Deciding what becomes of each stored batch in a cleaning, and rewriting it in Kafka's
//! format (Kafka's `MemoryRecords.filterTo` with the cleaner's `RecordFilter`).
//!
//! A batch whose records all survive is kept byte for byte. One that loses some is rebuilt
//! with the same base offset, last offset delta (so the producer's last sequence stays
//! readable), leader epoch, producer id, epoch and base sequence, codec, timestamp type and
//! transactional flag, each kept record at its own offset delta, and a fresh CRC. A batch
//! that keeps a tombstone gets a delete horizon (KIP-534) the first time. A batch that loses
//! every record goes, unless it is the last batch of a producer the partition still tracks:
//! then its header stays, empty (Kafka's `RETAIN_EMPTY`), so a follower or a later leader still
//! learns the producer's epoch and last sequence; an empty batch that is no longer a producer's
//! last goes. Transactions follow Kafka's rules (`txn.rs` walks them): a batch of an aborted
//! transaction goes as a whole; a marker whose transaction has no data left gets a delete
//! horizon the first time (KIP-534, as a tombstone) and goes once it has passed; any other
//! marker is kept as it is.

use super::key_index::{KeyHasher, KeyIndex, Slot};
use super::strategy::{self, Fact, Seen};
use crate::batch::{self, BatchHeader};
use crate::codec::KeyEntry;
use crate::config::CompactionStrategy;
use crate::error::{Result, StoreError};
use crate::keys::{LATEST_SLOT, window_slot};
use bytes::Bytes;
use kafka_protocol::records::Compression;
use rafka_format::builder::{BatchBuilder, BatchOptions, RecordParts};
use rafka_format::records::{Record, Records};
use std::collections::HashMap;

/// What becomes of one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Kept byte for byte.
    Keep,
    /// Removed.
    Drop,
    /// Kept as a header without records (a producer's last batch).
    Empty,
    /// Rebuilt with the records marked true, stamped with this delete horizon if any.
    Rewrite {
        kept: Vec<bool>,
        horizon: Option<i64>,
    },
}

/// What the cleaning's walk through transactions (`txn.rs`) says of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnVerdict {
    /// Data outside aborted transactions, or a marker whose transaction still has data here.
    Stays,
    /// Data of an aborted transaction (it goes), or a marker whose transaction has no data
    /// left (it goes once its delete horizon has passed).
    Goes,
}

/// What a cleaning needs to judge records.
pub(crate) struct Judge<'a> {
    pub strategy: CompactionStrategy,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    pub hasher: KeyHasher,
    /// Producers the partition tracks, with the last offset of their last batch.
    pub producers: &'a HashMap<i64, i64>,
}

/// One batch judged: the decision and what the cleaning must remember of it.
#[derive(Debug, Default)]
pub(crate) struct Judged {
    pub decision: Option<Decision>,
    pub records: u64,
    pub removed: u64,
    /// Earliest delete horizon of a key's latest record that is a tombstone the batch keeps
    /// (when it passes, a cleaning is due).
    pub horizon: Option<i64>,
    /// Key index latest entries whose tombstone now carries a delete horizon.
    pub stamped: Vec<(Slot, KeyEntry)>,
    /// Keys deleted for good (their tombstone went): their index entries go.
    pub deleted: Vec<[u8; 16]>,
}

/// Judges one stored batch against the key index and what the transaction walk says of it.
pub(crate) fn judge(
    j: &Judge<'_>,
    index: &KeyIndex<'_>,
    batch: &Bytes,
    h: &BatchHeader,
    txn: TxnVerdict,
) -> Result<Judged> {
    let mut out = Judged::default();
    if h.is_control() || txn == TxnVerdict::Goes {
        out.records = u64::try_from(h.record_count).unwrap_or(0);
        let decision = if h.is_control() {
            judge_marker(j, h, txn, &mut out)
        } else {
            gone(j, h)
        };
        if decision == Decision::Drop || decision == Decision::Empty {
            out.removed = out.records;
        }
        out.decision = Some(decision);
        return Ok(out);
    }
    let existing = h.delete_horizon_ms();
    let stamp = existing.unwrap_or_else(|| j.now_ms.saturating_add(j.delete_retention_ms));
    let mut kept = Vec::with_capacity(usize::try_from(h.record_count).unwrap_or(0));
    let mut tombstones_kept = false;
    for record in records(batch, h)? {
        let record = record.map_err(|reason| corrupt(h, reason))?;
        out.records += 1;
        let keep = judge_record(j, index, &record, existing, stamp, &mut out)?;
        tombstones_kept |= keep && record.value.is_none();
        kept.push(keep);
    }
    let survivors = kept.iter().filter(|k| **k).count();
    out.removed = out.records - survivors as u64;
    let must_stamp = tombstones_kept && existing.is_none();
    out.decision = Some(if survivors == 0 {
        gone(j, h)
    } else if survivors == kept.len() && !must_stamp {
        Decision::Keep
    } else {
        let horizon = tombstones_kept.then_some(stamp).or(existing);
        Decision::Rewrite { kept, horizon }
    });
    Ok(out)
}

/// A batch all of whose records go: removed, unless it is the last batch of a producer the
/// partition tracks (then its header stays, empty, as Kafka's `RETAIN_EMPTY`).
fn gone(j: &Judge<'_>, h: &BatchHeader) -> Decision {
    let last = h.last_offset();
    let tracked =
        h.producer_id >= 0 && last.is_some() && j.producers.get(&h.producer_id) == last.as_ref();
    match (tracked, h.record_count) {
        (true, 0) => Decision::Keep,
        (true, _) => Decision::Empty,
        (false, _) => Decision::Drop,
    }
}

/// A marker (control batch): kept while its transaction has data here; then stamped with a
/// delete horizon, and removed once that has passed (Kafka's `CleanedTransactionMetadata` with
/// the tombstone horizon of KIP-534). An empty control batch (cleaned before) goes.
fn judge_marker(j: &Judge<'_>, h: &BatchHeader, txn: TxnVerdict, out: &mut Judged) -> Decision {
    if txn == TxnVerdict::Stays {
        return Decision::Keep;
    }
    if h.record_count == 0 {
        return gone(j, h);
    }
    match h.delete_horizon_ms() {
        Some(horizon) if j.now_ms >= horizon => gone(j, h),
        Some(horizon) => {
            out.horizon = Some(horizon);
            Decision::Keep
        }
        None => {
            let stamp = j.now_ms.saturating_add(j.delete_retention_ms);
            out.horizon = Some(stamp);
            let records = usize::try_from(h.record_count).unwrap_or(0);
            Decision::Rewrite {
                kept: vec![true; records],
                horizon: Some(stamp),
            }
        }
    }
}

fn judge_record(
    j: &Judge<'_>,
    index: &KeyIndex<'_>,
    r: &Record,
    existing: Option<i64>,
    stamp: i64,
    out: &mut Judged,
) -> Result<bool> {
    let Some(key) = r.key.as_deref() else {
        return Ok(false);
    };
    let hash = j.hasher.hash(key);
    let latest = index.get(&(hash, LATEST_SLOT))?;
    let window = match j.strategy.window_ms() {
        Some(w) => index.get(&(hash, window_slot(strategy::window_of(r.timestamp, w))))?,
        None => None,
    };
    let fact = Fact {
        offset: r.offset,
        timestamp: r.timestamp,
        tombstone: r.value.is_none(),
        batch_horizon: existing,
    };
    let keep = strategy::keep(&j.strategy, fact, Seen { latest, window }, j.now_ms);
    let is_latest = latest.is_some_and(|e| e.offset == r.offset);
    if fact.tombstone && !keep && (is_latest || latest.is_none()) {
        out.deleted.push(hash);
    }
    if fact.tombstone && keep && (is_latest || latest.is_none()) {
        // A key's latest record is a tombstone: the key goes once `stamp` has passed.
        out.horizon = Some(out.horizon.map_or(stamp, |h| h.min(stamp)));
        if let Some(e) = latest.filter(|e| e.horizon_ms != stamp) {
            let entry = KeyEntry {
                horizon_ms: stamp,
                ..e
            };
            out.stamped.push(((hash, LATEST_SLOT), entry));
        }
    }
    Ok(keep)
}

/// The bytes a decision leaves of a batch (`None` when it goes).
pub(crate) fn apply(decision: &Decision, batch: &Bytes, h: &BatchHeader) -> Result<Option<Bytes>> {
    match decision {
        Decision::Keep => Ok(Some(batch.clone())),
        Decision::Drop => Ok(None),
        Decision::Empty => Ok(Some(Bytes::copy_from_slice(&batch::empty_batch(h)))),
        Decision::Rewrite { kept, horizon } => rebuild(batch, h, kept, *horizon).map(Some),
    }
}

fn rebuild(batch: &Bytes, h: &BatchHeader, kept: &[bool], horizon: Option<i64>) -> Result<Bytes> {
    let mut builder = BatchBuilder::with_capacity(batch.len());
    let build = |e| StoreError::InvalidRecord {
        reason: batch::BatchError::BadRecords(format!("rewrite: {e}")),
    };
    if let Some(horizon) = horizon {
        builder.set_delete_horizon(horizon).map_err(build)?;
    }
    for (record, keep) in records(batch, h)?.zip(kept) {
        let record = record.map_err(|reason| corrupt(h, reason))?;
        if !keep {
            continue;
        }
        let parts = RecordParts {
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers: &record.headers,
        };
        builder
            .append_at(record.offset_delta, record.timestamp, &parts)
            .map_err(build)?;
    }
    let options = BatchOptions {
        transactional: h.is_transactional(),
        control: h.is_control(),
        base_offset: h.base_offset,
        partition_leader_epoch: h.partition_leader_epoch,
        last_offset_delta: Some(h.last_offset_delta),
        log_append_time: h.is_log_append_time().then_some(h.max_timestamp),
        ..BatchOptions::new(h.identity(), codec(h)?)
    };
    builder.finish(options).map_err(build)
}

fn records(batch: &Bytes, h: &BatchHeader) -> Result<Records> {
    Records::new(batch, h).map_err(|reason| corrupt(h, reason))
}

fn codec(h: &BatchHeader) -> Result<Compression> {
    Ok(match h.compression() {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        codec => {
            return Err(corrupt(h, batch::BatchError::UnknownCompression { codec }));
        }
    })
}

fn corrupt(h: &BatchHeader, reason: batch::BatchError) -> StoreError {
    StoreError::CorruptRecord {
        partition: None,
        offset: h.last_offset(),
        reason,
    }
}
