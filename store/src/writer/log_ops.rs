//! Operations that cut the log: truncation (follower divergence), full reset, DeleteRecords
//! and retention. Each stages its key changes in one atomic batch committed with `SyncData`,
//! and only then deletes the segment keyspaces it dropped: a crash in between leaves
//! keyspaces without a summary, which recovery deletes.

use super::Writer;
use super::admin::remove_prefix;
use super::state::{PartitionState, SegmentState};
use crate::batch::increment_sequence;
use crate::codec::{IndexEntry, SegmentSummary, decode_producer};
use crate::error::{Result, StoreError};
use crate::keys::{self, META_EPOCH, META_TXN};
use crate::leader_epoch::LeaderEpochCache;
use crate::producer_state::{MAX_CACHED_BATCHES, ProducerBatch, ProducerEntry};
use crate::shared::Engine;
use crate::types::{RetentionReport, TopicPartition};
use fjall::{Keyspace, OwnedWriteBatch};
use std::collections::{HashMap, HashSet};

impl Writer {
    /// Truncates to the start of the batch holding `offset`; returns the new log end.
    pub(super) fn truncate(&mut self, tp: TopicPartition, offset: i64) -> Result<i64> {
        let e = self.engine.clone();
        let (log_start, log_end) = {
            let st = self.state(tp)?;
            (st.log_start, st.log_end)
        };
        if offset < 0 {
            return Err(StoreError::InvalidRequest {
                reason: format!("truncate to {offset}"),
            });
        }
        if offset >= log_end {
            return Ok(log_end);
        }
        if offset < log_start {
            self.reset_to(tp, offset)?;
            return Ok(offset);
        }
        let new_end = batch_base_containing(&e, tp, offset)?;
        let mut wb = e.db.batch();
        let dropped = stage_truncate(&e, self.state(tp)?, new_end, &mut wb)?;
        self.commit_sync(wb)?;
        self.finish_cut(tp, dropped);
        tracing::info!(%tp, offset = new_end, "truncated log");
        Ok(new_end)
    }

    /// Empties the log and restarts it at `offset` (Kafka's truncateFullyAndStartAt).
    pub(super) fn reset_to(&mut self, tp: TopicPartition, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(StoreError::InvalidRequest {
                reason: format!("reset to {offset}"),
            });
        }
        let e = self.engine.clone();
        let st = self.state(tp)?;
        let mut wb = e.db.batch();
        let dropped = std::mem::take(&mut st.segments);
        for s in &dropped {
            st.remove_summary(&e, &mut wb, s.summary.base_offset);
        }
        let prefix = keys::tp_prefix(tp);
        remove_prefix(&mut wb, &e.index, &prefix)?;
        remove_prefix(&mut wb, &e.producers, &prefix)?;
        remove_prefix(&mut wb, &e.meta, &keys::meta_key(META_EPOCH, tp, &[]))?;
        remove_prefix(&mut wb, &e.meta, &keys::meta_key(META_TXN, tp, &[]))?;
        st.producers.clear();
        st.txns.clear();
        st.epochs = LeaderEpochCache::default();
        st.log_start = offset;
        st.log_end = offset;
        st.put_record(&e, &mut wb);
        st.invalidate_key_index(&e, &mut wb);
        self.commit_sync(wb)?;
        self.finish_cut(tp, dropped);
        tracing::info!(%tp, offset, "reset log");
        Ok(())
    }

    /// DeleteRecords: moves the log start up to `offset` (at most the log end) and deletes the
    /// sealed segments wholly below it. Returns the new log start.
    pub(super) fn delete_records(&mut self, tp: TopicPartition, offset: i64) -> Result<i64> {
        let st = self.state(tp)?;
        if offset > st.log_end || offset < 0 {
            return Err(StoreError::OffsetOutOfRange {
                partition: tp,
                requested: offset,
                log_start: st.log_start,
                log_end: st.log_end,
            });
        }
        if offset <= st.log_start {
            return Ok(st.log_start);
        }
        let sealed = st.segments.len().saturating_sub(1);
        let below = st
            .segments
            .iter()
            .take(sealed)
            .take_while(|s| s.summary.last_offset < offset);
        let count = below.count();
        self.advance_log_start(tp, offset, count)?;
        Ok(offset)
    }

    /// One retention pass over every partition.
    pub(super) fn retention(&mut self, now_ms: i64) -> Result<RetentionReport> {
        let mut report = RetentionReport::default();
        let mut tps: Vec<TopicPartition> = self.parts.keys().copied().collect();
        tps.sort();
        for tp in tps {
            let Some(st) = self.parts.get(&tp) else {
                continue;
            };
            let summaries: Vec<SegmentSummary> = st.segments.iter().map(|s| s.summary).collect();
            let count = crate::retention::plan(&summaries, &st.config, st.log_start, now_ms);
            let Some(next) = summaries.get(count).filter(|_| count > 0) else {
                continue;
            };
            let new_start = st.log_start.max(next.base_offset);
            let bytes: u64 = summaries.iter().take(count).map(|s| s.size_bytes).sum();
            self.advance_log_start(tp, new_start, count)?;
            report.segments_deleted += count;
            report.bytes_deleted += bytes;
            report.log_starts.push((tp, new_start));
            tracing::info!(%tp, offset = new_start, segments = count, bytes, "retention advanced log start");
        }
        Ok(report)
    }

    /// Sets the log start to `new_start` and deletes the `count` oldest segments.
    fn advance_log_start(
        &mut self,
        tp: TopicPartition,
        new_start: i64,
        count: usize,
    ) -> Result<()> {
        let e = self.engine.clone();
        let st = self.state(tp)?;
        let count = count.min(st.segments.len().saturating_sub(1));
        let mut wb = e.db.batch();
        let dropped: Vec<SegmentState> = st.segments.drain(..count).collect();
        for s in &dropped {
            st.remove_summary(&e, &mut wb, s.summary.base_offset);
        }
        st.log_start = new_start;
        let changes = st.epochs.truncate_from_start(new_start);
        st.put_epoch_changes(&e, &mut wb, &changes);
        // Producers whose batches are all gone are forgotten (on disk by the compaction filter).
        st.producers.retain(|_, p| !p.is_below(new_start));
        // Aborted transactions whose marker is gone can no longer overlap a read.
        let below = keys::meta_key(META_TXN, tp, &0i64.to_be_bytes())
            ..keys::meta_key(META_TXN, tp, &new_start.to_be_bytes());
        for kv in e.meta.range(below) {
            wb.remove(&e.meta, kv.key()?);
        }
        st.put_record(&e, &mut wb);
        self.commit_sync(wb)?;
        self.finish_cut(tp, dropped);
        Ok(())
    }

    /// After a cut is committed: drop the segment keyspaces and publish.
    fn finish_cut(&mut self, tp: TopicPartition, dropped: Vec<SegmentState>) {
        let keyspaces: Vec<Keyspace> = dropped.into_iter().map(|s| s.keyspace).collect();
        if let Some(st) = self.parts.get(&tp) {
            st.publish_all();
        }
        self.drop_keyspaces(keyspaces);
    }
}

/// Base offset of the batch holding `offset`, from the index.
fn batch_base_containing(e: &Engine, tp: TopicPartition, offset: i64) -> Result<i64> {
    let range = keys::entry_key(tp, offset)..=keys::entry_key(tp, i64::MAX);
    match e.index.range(range).next() {
        Some(kv) => Ok(IndexEntry::decode(&kv.value()?)?.base_offset.min(offset)),
        None => Err(StoreError::corrupt(
            "index",
            format!("no entry at or after {offset} in {tp}"),
        )),
    }
}

/// Stages the removal of everything at or after `new_end`; returns the dropped segments.
fn stage_truncate(
    e: &Engine,
    st: &mut PartitionState,
    new_end: i64,
    wb: &mut OwnedWriteBatch,
) -> Result<Vec<SegmentState>> {
    let tp = st.tp();
    let keep = st
        .segments
        .partition_point(|s| s.summary.base_offset < new_end);
    let dropped = st.segments.split_off(keep);
    for s in &dropped {
        st.remove_summary(e, wb, s.summary.base_offset);
    }
    let tail = keys::entry_key(tp, new_end)..=keys::entry_key(tp, i64::MAX);
    if let Some(seg) = st.segments.last_mut()
        && seg.summary.last_offset >= new_end
    {
        for kv in seg.keyspace.range(tail.clone()) {
            wb.remove(&seg.keyspace, kv.key()?);
        }
        seg.summary = recompute_summary(e, tp, &seg.summary, new_end)?;
    }
    if let Some(seg) = st.segments.last() {
        st.put_summary(e, wb, &seg.summary);
    }
    for kv in e.index.range(tail) {
        wb.remove(&e.index, kv.key()?);
    }
    let changes = st.epochs.truncate_from_end(new_end);
    st.put_epoch_changes(e, wb, &changes);
    let rebuilt = rebuild_producers(e, st, new_end, wb)?;
    truncate_txns(e, st, new_end, rebuilt, wb)?;
    st.log_end = new_end;
    st.put_record(e, wb);
    // The key index may know records that are gone now.
    st.invalidate_key_index(e, wb);
    Ok(dropped)
}

/// A segment's summary over its batches below `new_end`, from the index.
pub(crate) fn recompute_summary(
    e: &Engine,
    tp: TopicPartition,
    old: &SegmentSummary,
    new_end: i64,
) -> Result<SegmentSummary> {
    let mut s = SegmentSummary {
        last_offset: old.base_offset - 1,
        max_timestamp: -1,
        max_timestamp_batch: -1,
        size_bytes: 0,
        batch_count: 0,
        first_timestamp: -1,
        ..*old
    };
    let range = keys::entry_key(tp, old.base_offset)..keys::entry_key(tp, new_end);
    for kv in e.index.range(range) {
        let (k, v) = kv.into_inner()?;
        let Some((_, last)) = keys::parse_entry_key(&k) else {
            continue;
        };
        let entry = IndexEntry::decode(&v)?;
        if s.batch_count == 0 {
            s.first_timestamp = entry.max_timestamp;
        }
        if s.batch_count == 0 || entry.max_timestamp > s.max_timestamp {
            s.max_timestamp = entry.max_timestamp;
            s.max_timestamp_batch = last;
        }
        s.last_offset = last;
        s.size_bytes += u64::from(entry.size);
        s.batch_count += 1;
    }
    Ok(s)
}

/// Producers that wrote at or after `new_end` get their state rebuilt from the index entries
/// below it (newest first, up to 5 batches of the latest epoch); with none left they are
/// forgotten.
fn rebuild_producers(
    e: &Engine,
    st: &mut PartitionState,
    new_end: i64,
    wb: &mut OwnedWriteBatch,
) -> Result<HashSet<i64>> {
    let tp = st.tp();
    let affected = producers_past(e, st, new_end)?;
    if affected.is_empty() {
        return Ok(affected);
    }
    let mut rebuilt = scan_index_for(e, tp, st.log_start, new_end, &affected)?;
    for &pid in &affected {
        let key = keys::entry_key(tp, pid);
        match rebuilt.remove(&pid) {
            Some(p) => {
                wb.insert(&e.producers, key, crate::codec::encode_producer(&p));
                st.producers.insert(pid, p);
            }
            None => {
                wb.remove(&e.producers, key);
                st.producers.remove(&pid);
            }
        }
    }
    Ok(affected)
}

/// The transactions after a cut at `new_end` (`txn.rs`: those begun past it are gone, those
/// whose marker is cut are open again), written into the entries of the producers concerned
/// (those whose transactions changed, and those `rebuild_producers` rebuilt from the index,
/// which knows no transactions); aborted-index entries of cut markers go.
fn truncate_txns(
    e: &Engine,
    st: &mut PartitionState,
    new_end: i64,
    rebuilt: HashSet<i64>,
    wb: &mut OwnedWriteBatch,
) -> Result<()> {
    let tp = st.tp();
    let mut concerned = st.txns.truncate(new_end);
    concerned.extend(rebuilt.iter().copied());
    concerned.sort_unstable();
    concerned.dedup();
    for pid in concerned {
        let key = keys::entry_key(tp, pid);
        // A rebuilt producer's entry is in the cache, or it was forgotten (its removal is
        // staged, not committed: the disk still has the old entry).
        let entry = match st.producers.remove(&pid) {
            Some(p) => Some(p),
            None if rebuilt.contains(&pid) => None,
            None => e
                .producers
                .get(key)?
                .map(|v| decode_producer(&v))
                .transpose()?,
        };
        let Some(mut p) = entry else {
            continue;
        };
        p.ongoing_txn = st.txns.ongoing(pid);
        p.last_txn = match st.txns.last_unreplicated(pid) {
            Some(ended) => Some((ended.first_offset, ended.marker_offset)),
            None => p.last_txn.filter(|(_, marker)| *marker < new_end),
        };
        wb.insert(&e.producers, key, crate::codec::encode_producer(&p));
        st.producers.insert(pid, p);
    }
    let cut = keys::meta_key(META_TXN, tp, &new_end.to_be_bytes())
        ..=keys::meta_key(META_TXN, tp, &i64::MAX.to_be_bytes());
    for kv in e.meta.range(cut) {
        wb.remove(&e.meta, kv.key()?);
    }
    Ok(())
}

/// Producers (persisted or cached) with a remembered batch at or after `new_end`.
fn producers_past(e: &Engine, st: &PartitionState, new_end: i64) -> Result<HashSet<i64>> {
    let mut all: HashMap<i64, ProducerEntry> = HashMap::new();
    for kv in e.producers.prefix(keys::tp_prefix(st.tp())) {
        let (k, v) = kv.into_inner()?;
        if let Some((_, pid)) = keys::parse_entry_key(&k) {
            all.insert(pid, decode_producer(&v)?);
        }
    }
    all.extend(st.producers.iter().map(|(pid, p)| (*pid, p.clone())));
    Ok(all
        .into_iter()
        .filter(|(_, p)| p.last_offset().is_some_and(|last| last >= new_end))
        .map(|(pid, _)| pid)
        .collect())
}

/// Walks the index backwards from `new_end` collecting each affected producer's latest batches.
fn scan_index_for(
    e: &Engine,
    tp: TopicPartition,
    log_start: i64,
    new_end: i64,
    affected: &HashSet<i64>,
) -> Result<HashMap<i64, ProducerEntry>> {
    let mut rebuilt: HashMap<i64, ProducerEntry> = HashMap::new();
    let mut done: HashSet<i64> = HashSet::new();
    let range = keys::entry_key(tp, log_start)..keys::entry_key(tp, new_end);
    for kv in e.index.range(range).rev() {
        if done.len() == affected.len() {
            break;
        }
        let (k, v) = kv.into_inner()?;
        let (Some((_, last)), entry) = (keys::parse_entry_key(&k), IndexEntry::decode(&v)?) else {
            continue;
        };
        let pid = entry.producer_id;
        if !affected.contains(&pid) || done.contains(&pid) || entry.is_control() {
            continue;
        }
        let p = rebuilt.entry(pid).or_insert_with(|| ProducerEntry {
            epoch: entry.producer_epoch,
            ..ProducerEntry::default()
        });
        if entry.producer_epoch != p.epoch || entry.base_sequence < 0 {
            done.insert(pid);
            continue;
        }
        let delta = i32::try_from(last - entry.base_offset).unwrap_or(0);
        p.batches.push_front(ProducerBatch {
            first_seq: entry.base_sequence,
            last_seq: increment_sequence(entry.base_sequence, delta),
            base_offset: entry.base_offset,
            last_offset: last,
        });
        if p.batches.len() >= MAX_CACHED_BATCHES {
            done.insert(pid);
        }
    }
    Ok(rebuilt)
}
