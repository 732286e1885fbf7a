//! The read side of [`PartitionLog`]: fetch reads, ListOffsets by timestamp, max timestamp,
//! producer state. Runs on the caller's thread against fjall and the published snapshots;
//! every batch read back is checked (key, length, CRC) and a bad one is `CorruptRecord`.

use crate::batch::{BatchHeader, check_batch};
use crate::codec::{IndexEntry, decode_producer};
use crate::error::{Result, StoreError};
use crate::keys::{self, META_TXN};
use crate::partition::PartitionLog;
use crate::producer_state::ProducerSnapshot;
use crate::records::{RecordTime, find_record};
use crate::shared::{Engine, SegmentView};
use crate::txn::{self, AbortedTxn};
use crate::types::{TimestampOffset, TopicPartition};
use bytes::Bytes;

impl PartitionLog {
    /// Whole batches holding offsets in `[offset, upper_bound)`, starting with the batch that
    /// contains `offset`, up to `max_bytes`; the first batch is returned even when alone it
    /// exceeds `max_bytes` (KIP-74). `offset` equal to the log end (or >= `upper_bound`)
    /// returns nothing; `offset` outside `[log_start, log_end]` is `OffsetOutOfRange`.
    pub fn read(&self, offset: i64, max_bytes: usize, upper_bound: i64) -> Result<Vec<Bytes>> {
        let o = self.shared.offsets();
        let tp = self.shared.tp;
        if offset < o.log_start || offset > o.log_end {
            return Err(StoreError::OffsetOutOfRange {
                partition: tp,
                requested: offset,
                log_start: o.log_start,
                log_end: o.log_end,
            });
        }
        let end = upper_bound.min(o.log_end);
        let mut out = Vec::new();
        if offset >= end {
            return Ok(out);
        }
        let segments = self.shared.segments();
        let first = segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1);
        let mut total = 0usize;
        for seg in segments.get(first..).unwrap_or_default() {
            // Up to the end of the segment: the batch holding `end - 1` may end past it.
            let range = keys::entry_key(tp, offset)..=keys::entry_key(tp, i64::MAX);
            for kv in seg.keyspace.range(range) {
                let (k, v) = kv.into_inner()?;
                let (h, value) = self.checked_batch(&k, v.into())?;
                if h.base_offset >= end || (!out.is_empty() && total + value.len() > max_bytes) {
                    return Ok(out);
                }
                total += value.len();
                out.push(value);
            }
        }
        Ok(out)
    }

    /// Checks a stored batch against its key: the bytes must be a valid batch whose last
    /// offset is the key's.
    fn checked_batch(&self, key: &[u8], value: Bytes) -> Result<(BatchHeader, Bytes)> {
        let tp = self.shared.tp;
        let key_last = keys::parse_entry_key(key)
            .filter(|(ktp, _)| *ktp == tp)
            .map(|k| k.1);
        let corrupt = |reason| StoreError::CorruptRecord {
            partition: Some(tp),
            offset: key_last,
            reason,
        };
        let h = check_batch(&value).map_err(corrupt)?;
        if key_last.is_none() || h.last_offset() != key_last {
            let reason = crate::batch::BatchError::BadOffsets {
                base_offset: h.base_offset,
                last_offset_delta: h.last_offset_delta,
            };
            return Err(corrupt(reason));
        }
        Ok((h, value))
    }

    /// The batch stored under `last_offset` in `seg`, checked.
    fn batch_at(
        &self,
        seg: &SegmentView,
        last_offset: i64,
    ) -> Result<Option<(BatchHeader, Bytes)>> {
        let key = keys::entry_key(self.shared.tp, last_offset);
        match seg.keyspace.get(key)? {
            Some(v) => self.checked_batch(&key, v.into()).map(Some),
            None => Ok(None),
        }
    }

    /// ListOffsets by timestamp: the first record (in offset order, at or after the log start)
    /// whose timestamp is >= `ts`. Finds the segment by its summary, the batch by the index
    /// (first batch whose max timestamp is >= `ts`), then decodes that batch's records
    /// (decompressing if needed) for the exact record.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<TimestampOffset>> {
        let o = self.shared.offsets();
        let tp = self.shared.tp;
        for seg in self.shared.segments().iter() {
            let Some(summary) = self.shared.summary_of(seg) else {
                continue;
            };
            let last = summary.last_offset.min(o.log_end - 1);
            if last < o.log_start || summary.max_timestamp < ts {
                continue;
            }
            let from = seg.base_offset.max(o.log_start);
            for kv in self.shared_index_range(from, last) {
                let (k, v) = kv.into_inner()?;
                let Some((_, key_last)) = keys::parse_entry_key(&k) else {
                    continue;
                };
                if IndexEntry::decode(&v)?.max_timestamp < ts {
                    continue;
                }
                let Some((h, batch)) = self.batch_at(seg, key_last)? else {
                    continue;
                };
                let found =
                    find_record(&batch, &h, |r| r.offset >= o.log_start && r.timestamp >= ts)
                        .map_err(|reason| corrupt_at(tp, key_last, reason))?;
                if let Some(RecordTime { offset, timestamp }) = found {
                    return Ok(Some(TimestampOffset { timestamp, offset }));
                }
            }
        }
        Ok(None)
    }

    fn shared_index_range(&self, from: i64, last: i64) -> fjall::Iter {
        let tp = self.shared.tp;
        self.inner
            .engine
            .index
            .range(keys::entry_key(tp, from)..=keys::entry_key(tp, last))
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the record with the largest timestamp (the first such
    /// record in offset order) at or after the log start.
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>> {
        let o = self.shared.offsets();
        let tp = self.shared.tp;
        // (max timestamp, segment, last offset of the batch holding it)
        let mut best: Option<(i64, SegmentView, i64)> = None;
        for seg in self.shared.segments().iter() {
            let Some(s) = self.shared.summary_of(seg) else {
                continue;
            };
            if s.batch_count == 0 || s.last_offset < o.log_start {
                continue;
            }
            let candidate = if s.max_timestamp_batch >= o.log_start {
                Some((s.max_timestamp, s.max_timestamp_batch))
            } else {
                self.max_in_index(seg.base_offset.max(o.log_start), s.last_offset)?
            };
            if let Some((ts, batch)) = candidate
                && best.as_ref().is_none_or(|b| ts > b.0)
            {
                best = Some((ts, seg.clone(), batch));
            }
        }
        let Some((_, seg, key_last)) = best else {
            return Ok(None);
        };
        let Some((h, batch)) = self.batch_at(&seg, key_last)? else {
            return Ok(None);
        };
        let mut top: Option<RecordTime> = None;
        find_record(&batch, &h, |r| {
            if r.offset >= o.log_start && top.is_none_or(|t| r.timestamp > t.timestamp) {
                top = Some(r);
            }
            false
        })
        .map_err(|reason| corrupt_at(tp, key_last, reason))?;
        Ok(top.map(|r| TimestampOffset {
            timestamp: r.timestamp,
            offset: r.offset,
        }))
    }

    /// (max timestamp, batch key) over index entries in `[from, last]`.
    fn max_in_index(&self, from: i64, last: i64) -> Result<Option<(i64, i64)>> {
        let mut best: Option<(i64, i64)> = None;
        for kv in self.shared_index_range(from, last) {
            let (k, v) = kv.into_inner()?;
            let Some((_, key_last)) = keys::parse_entry_key(&k) else {
                continue;
            };
            let ts = IndexEntry::decode(&v)?.max_timestamp;
            if best.is_none_or(|b| ts > b.0) {
                best = Some((ts, key_last));
            }
        }
        Ok(best)
    }

    /// A producer's state (current epoch, last 5 batches), as last committed.
    pub fn producer(&self, producer_id: i64) -> Result<Option<ProducerSnapshot>> {
        let key = keys::entry_key(self.shared.tp, producer_id);
        let Some(v) = self.inner.engine.producers.get(key)? else {
            return Ok(None);
        };
        let entry = decode_producer(&v)?;
        if entry.is_below(self.log_start_offset()) {
            return Ok(None);
        }
        Ok(Some(entry.snapshot(producer_id)))
    }

    /// The aborted transactions a read of `[from, upper_bound)` must tell a read_committed
    /// consumer about (Kafka's `collectAbortedTransactions`): those whose abort marker is at or
    /// after `from` and that began before `upper_bound`, in marker order. The index is keyed by
    /// marker offset; the scan stops at the first entry whose last stable offset at abort
    /// reaches `upper_bound` (every transaction aborted after it began at or after that).
    pub fn aborted_transactions(&self, from: i64, upper_bound: i64) -> Result<Vec<AbortedTxn>> {
        aborted_between(&self.inner.engine, self.shared.tp, from, upper_bound)
    }

    /// First offset of the transaction `producer_id` has open on this partition, as of the
    /// last commit (the produce path asks the coordinator to verify a transactional batch of a
    /// producer with none open: KIP-890).
    pub fn open_transaction(&self, producer_id: i64) -> Option<i64> {
        self.shared.txns().ongoing(producer_id)
    }

    /// A producer's current epoch (what InitProducerId and the transaction coordinator need).
    pub fn producer_epoch(&self, producer_id: i64) -> Result<Option<i16>> {
        Ok(self.producer(producer_id)?.map(|p| p.epoch))
    }
}

fn corrupt_at(
    tp: crate::TopicPartition,
    offset: i64,
    reason: crate::batch::BatchError,
) -> StoreError {
    StoreError::CorruptRecord {
        partition: Some(tp),
        offset: Some(offset),
        reason,
    }
}

/// [`PartitionLog::aborted_transactions`] of `tp` (the log cleaner reads them too).
pub(crate) fn aborted_between(
    engine: &Engine,
    tp: TopicPartition,
    from: i64,
    upper_bound: i64,
) -> Result<Vec<AbortedTxn>> {
    let range = keys::meta_key(META_TXN, tp, &from.max(0).to_be_bytes())
        ..=keys::meta_key(META_TXN, tp, &i64::MAX.to_be_bytes());
    let mut out = Vec::new();
    for kv in engine.meta.range(range) {
        let (k, v) = kv.into_inner()?;
        let last = keys::parse_meta_key(META_TXN, &k)
            .and_then(|(_, suffix)| <[u8; 8]>::try_from(suffix).ok())
            .map(i64::from_be_bytes);
        let Some(aborted) = last.and_then(|last| txn::decode_aborted(last, &v)) else {
            return Err(StoreError::corrupt("meta", "bad aborted transaction entry"));
        };
        if aborted.first_offset < upper_bound {
            out.push(aborted);
        }
        if aborted.last_stable_offset >= upper_bound {
            break;
        }
    }
    Ok(out)
}
