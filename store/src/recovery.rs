//! Opening a store: rebuild every partition's state from `meta` without scanning the logs.
//!
//! The rules that make every crash point recoverable (see `docs/storage.md`):
//! - a segment exists iff its summary exists in `meta`; a segment keyspace with no summary
//!   (a crash between creating it and the first commit into it, or between a committed
//!   deletion and `delete_keyspace`) is deleted here;
//! - summaries are written in the same atomic batch as the data they describe, so the active
//!   segment's summary is exact; the tail batch is still checked (key, length, CRC) and a bad
//!   one is truncated away by the writer before the store serves anything.

use crate::batch::check_batch;
use crate::codec::{
    CleanerCheckpoint, IndexEntry, PartitionRecord, SegmentSummary, decode_epoch_start,
    decode_producer,
};
use crate::error::Result;
use crate::keys::{self, META_CLEANER, META_EPOCH, META_PARTITION, META_SEGMENT};
use crate::leader_epoch::LeaderEpochCache;
use crate::shared::{Engine, PartitionShared};
use crate::txn::Ended;
use crate::types::{LogOffsets, TopicPartition};
use crate::writer::state::{PartitionState, SegmentState};
use fjall::{Keyspace, OwnedWriteBatch, PersistMode};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

type Summaries = HashMap<TopicPartition, BTreeMap<i64, SegmentSummary>>;
/// Segment keyspaces by partition and base offset.
type Segments = HashMap<(TopicPartition, i64), Keyspace>;

/// What recovery found.
pub(crate) struct Recovered {
    pub parts: HashMap<TopicPartition, PartitionState>,
    /// Partitions whose tail batch failed its checks: truncate them to this offset.
    pub truncations: Vec<(TopicPartition, i64)>,
    /// Segment keyspaces no summary named (an interrupted roll, cut or cleaning), deleted.
    pub orphans: u64,
}

pub(crate) fn recover(e: &Engine) -> Result<Recovered> {
    let records = load_records(e)?;
    let mut summaries = load_summaries(e)?;
    let mut epochs = load_epochs(e)?;
    let mut cleaners = load_cleaners(e)?;
    let (mut keyspaces, orphans) = segment_keyspaces(e, &records, &summaries)?;
    let mut wb = e.db.batch();
    let mut out = Recovered {
        parts: HashMap::new(),
        truncations: Vec::new(),
        orphans,
    };
    for (tp, rec) in records {
        let sums = summaries.remove(&tp).unwrap_or_default();
        let epochs = epochs.remove(&tp).unwrap_or_default();
        let cleaner = cleaners.remove(&tp);
        let (mut st, fix) = build(e, tp, rec, sums, &mut keyspaces, epochs, &mut wb)?;
        if let Some(c) = cleaner {
            st.cleaner = c;
            st.shared.set_cleaner(c);
        }
        out.truncations.extend(fix.map(|offset| (tp, offset)));
        out.parts.insert(tp, st);
    }
    // Leftovers of partitions with no record (cannot happen with atomic deletes; be tidy).
    for (tp, sums) in summaries {
        for base in sums.keys() {
            wb.remove(
                &e.meta,
                keys::meta_key(META_SEGMENT, tp, &base.to_be_bytes()),
            );
        }
    }
    for (tp, _) in cleaners {
        wb.remove(&e.meta, keys::meta_key(META_CLEANER, tp, &[]));
    }
    load_txns(e, &mut out.parts)?;
    for ((tp, base), ks) in keyspaces {
        tracing::warn!(%tp, offset = base, "deleting segment not reachable from its partition");
        e.db.delete_keyspace(ks)?;
    }
    if !wb.is_empty() {
        wb.durability(Some(PersistMode::SyncData)).commit()?;
    }
    Ok(out)
}

/// Every partition's transactions, from the entries of producers that used them (version 2
/// values): open ones, and ended ones whose marker is at or above the checkpointed high
/// watermark (it may still be cut away by a new leader).
fn load_txns(e: &Engine, parts: &mut HashMap<TopicPartition, PartitionState>) -> Result<()> {
    for kv in e.producers.iter() {
        let (k, v) = kv.into_inner()?;
        if v.first() != Some(&2) {
            continue;
        }
        let Some((tp, pid)) = keys::parse_entry_key(&k) else {
            continue;
        };
        let Some(st) = parts.get_mut(&tp) else {
            continue;
        };
        let entry = decode_producer(&v)?;
        if let Some(first) = entry.ongoing_txn {
            st.txns.begin(pid, first);
        }
        if let Some((first, marker)) = entry.last_txn
            && marker >= st.shared.offsets().high_watermark
            && marker < st.log_end
        {
            st.txns.restore_ended(Ended {
                producer_id: pid,
                first_offset: first,
                marker_offset: marker,
            });
        }
    }
    for st in parts.values() {
        st.publish_offsets();
    }
    Ok(())
}

fn load_records(e: &Engine) -> Result<BTreeMap<TopicPartition, PartitionRecord>> {
    let mut out = BTreeMap::new();
    for kv in e.meta.prefix([META_PARTITION]) {
        let (k, v) = kv.into_inner()?;
        if let Some((tp, _)) = keys::parse_meta_key(META_PARTITION, &k) {
            out.insert(tp, PartitionRecord::decode(&v)?);
        }
    }
    Ok(out)
}

fn load_summaries(e: &Engine) -> Result<Summaries> {
    let mut out: Summaries = HashMap::new();
    for kv in e.meta.prefix([META_SEGMENT]) {
        let (k, v) = kv.into_inner()?;
        if let Some((tp, _)) = keys::parse_meta_key(META_SEGMENT, &k) {
            let s = SegmentSummary::decode(&v)?;
            out.entry(tp).or_default().insert(s.base_offset, s);
        }
    }
    Ok(out)
}

fn load_cleaners(e: &Engine) -> Result<HashMap<TopicPartition, CleanerCheckpoint>> {
    let mut out = HashMap::new();
    for kv in e.meta.prefix([META_CLEANER]) {
        let (k, v) = kv.into_inner()?;
        if let Some((tp, _)) = keys::parse_meta_key(META_CLEANER, &k) {
            let c = CleanerCheckpoint::decode(&v)?;
            e.see_generation(c.generation);
            out.insert(tp, c);
        }
    }
    Ok(out)
}

fn load_epochs(e: &Engine) -> Result<HashMap<TopicPartition, Vec<(i32, i64)>>> {
    let mut out: HashMap<TopicPartition, Vec<(i32, i64)>> = HashMap::new();
    for kv in e.meta.prefix([META_EPOCH]) {
        let (k, v) = kv.into_inner()?;
        if let Some((tp, suffix)) = keys::parse_meta_key(META_EPOCH, &k)
            && let Ok(epoch) = <[u8; 4]>::try_from(suffix)
        {
            out.entry(tp)
                .or_default()
                .push((i32::from_be_bytes(epoch), decode_epoch_start(&v)?));
        }
    }
    Ok(out)
}

/// Opens the segment keyspaces that a summary names (base offset and generation); deletes the
/// others (a segment rolled or cleaned but never committed, or replaced but not yet deleted).
/// Cleaned segments get names above every generation seen here.
fn segment_keyspaces(
    e: &Engine,
    records: &BTreeMap<TopicPartition, PartitionRecord>,
    summaries: &Summaries,
) -> Result<(Segments, u64)> {
    let mut out = HashMap::new();
    let mut orphans = 0;
    for name in e.db.list_keyspace_names() {
        let Some((tp, base, generation)) = keys::parse_segment_name(&name) else {
            continue;
        };
        e.see_generation(generation);
        let ks = e.open_keyspace(&name)?;
        let known = records.contains_key(&tp)
            && summaries
                .get(&tp)
                .and_then(|s| s.get(&base))
                .is_some_and(|s| s.generation == generation);
        if known {
            out.insert((tp, base), ks);
        } else {
            tracing::info!(%tp, offset = base, generation, "deleting orphan segment left by an interrupted operation");
            e.db.delete_keyspace(ks)?;
            orphans += 1;
        }
    }
    Ok((out, orphans))
}

/// The partition's segments in order, from the summaries that have a keyspace. Summaries
/// without one at the head move the log start up; after a hole, everything is dropped.
fn assemble_segments(
    e: &Engine,
    tp: TopicPartition,
    sums: BTreeMap<i64, SegmentSummary>,
    keyspaces: &mut Segments,
    log_start: &mut i64,
    wb: &mut OwnedWriteBatch,
) -> Result<(Vec<SegmentState>, bool)> {
    let mut segments: Vec<SegmentState> = Vec::new();
    let mut broken = false;
    for (base, summary) in sums {
        let ks = keyspaces.remove(&(tp, base));
        match ks {
            Some(keyspace) if !broken => segments.push(SegmentState { summary, keyspace }),
            _ => {
                // A segment's data is gone (not a crash our write order can produce).
                tracing::error!(%tp, offset = base, "segment missing on disk; dropping it and all after it");
                wb.remove(
                    &e.meta,
                    keys::meta_key(META_SEGMENT, tp, &base.to_be_bytes()),
                );
                if segments.is_empty() && !broken {
                    *log_start = (*log_start).max(summary.last_offset + 1);
                } else {
                    broken = true;
                }
                if let Some(ks) = ks {
                    e.db.delete_keyspace(ks)?;
                }
            }
        }
    }
    Ok((segments, broken))
}

fn build(
    e: &Engine,
    tp: TopicPartition,
    rec: PartitionRecord,
    sums: BTreeMap<i64, SegmentSummary>,
    keyspaces: &mut Segments,
    epochs: Vec<(i32, i64)>,
    wb: &mut OwnedWriteBatch,
) -> Result<(PartitionState, Option<i64>)> {
    let mut log_start = rec.log_start;
    let (mut segments, broken) = assemble_segments(e, tp, sums, keyspaces, &mut log_start, wb)?;
    if let Some(first) = segments.first() {
        log_start = log_start.max(first.summary.base_offset);
    }
    let fix = match segments.last_mut() {
        Some(seg) => check_tail(e, tp, seg)?,
        None => None,
    };
    let log_end = segments
        .last()
        .map_or(log_start, |s| s.summary.last_offset + 1)
        .max(log_start);
    if broken {
        // Index entries of the dropped segments would otherwise outlive them.
        for kv in e
            .index
            .range(keys::entry_key(tp, log_end)..=keys::entry_key(tp, i64::MAX))
        {
            wb.remove(&e.index, kv.key()?);
        }
    }
    let hw = rec.high_watermark.clamp(log_start, log_end);
    let offsets = LogOffsets {
        log_start,
        log_end,
        high_watermark: hw,
    };
    let shared = Arc::new(PartitionShared::new(tp, offsets, rec.config.clone()));
    let st = PartitionState {
        shared,
        config: rec.config,
        log_start,
        log_end,
        segments,
        epochs: LeaderEpochCache::from_entries(epochs),
        producers: HashMap::new(),
        hw_checkpoint: rec.high_watermark,
        cleaner: CleanerCheckpoint::default(),
        txns: crate::txn::TxnState::default(),
    };
    st.publish_all();
    Ok((st, fix))
}

/// Checks the active segment's last batch against its key and summary. Returns an offset to
/// truncate to when the batch itself is bad.
fn check_tail(e: &Engine, tp: TopicPartition, seg: &mut SegmentState) -> Result<Option<i64>> {
    let Some(kv) = seg.keyspace.last_key_value() else {
        tracing::warn!(%tp, offset = seg.summary.base_offset, "active segment is empty");
        return Ok(None);
    };
    let (k, v) = kv.into_inner()?;
    let key_last = keys::parse_entry_key(&k)
        .filter(|(ktp, _)| *ktp == tp)
        .map(|(_, last)| last);
    let header_ok = check_batch(&v).ok().filter(|h| h.last_offset() == key_last);
    match (key_last, header_ok) {
        (Some(last), Some(_)) if last == seg.summary.last_offset => Ok(None),
        (Some(last), Some(_)) => {
            tracing::warn!(%tp, offset = last, summary = seg.summary.last_offset, "segment summary disagrees with its data; rebuilding it from the index");
            seg.summary = crate::writer::recompute_summary(e, tp, &seg.summary, last + 1)?;
            Ok(None)
        }
        (Some(last), None) => {
            let entry = e.index.get(keys::entry_key(tp, last))?;
            let base = match entry {
                Some(v) => IndexEntry::decode(&v)?.base_offset,
                None => seg.summary.base_offset,
            };
            tracing::error!(%tp, offset = base, "corrupt tail batch; truncating it");
            Ok(Some(base))
        }
        (None, _) => {
            tracing::error!(%tp, "unexpected key in segment; truncating the segment");
            Ok(Some(seg.summary.base_offset))
        }
    }
}
