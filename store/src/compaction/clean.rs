//! One cleaning of one partition (Kafka's `Cleaner.doClean`):
//!
//! 1. plan: the cleanable segments, below min(last stable offset, high watermark), never the
//!    active one (`plan.rs`);
//! 2. merge the dirty part's records into the key index (`key_index.rs`), leaving out aborted
//!    transactions (`txn.rs`);
//! 3. for each group of consecutive segments (at most `segment_bytes` together): judge every
//!    batch against the index (`rewrite.rs`); if anything changes (or the group merges
//!    segments), write the survivors into a new segment keyspace by bulk ingestion and ask the
//!    writer to swap it in (`writer/swap.rs`);
//! 4. advance the cleaner checkpoint: offsets below the cleaned end are clean.
//!
//! The partition may change meanwhile (appends, retention, truncation, reconfiguration): the
//! writer refuses a swap whose segments or key index generation changed, and the cleaning is
//! abandoned (`CleaningAborted`); the next one starts over.

use super::key_index::{KeyIndex, Slot};
use super::plan::{self, Plan};
use super::rewrite::{self, Decision, Judge, TxnVerdict};
use super::txn::{BatchFacts, TxnWalk};
use super::{CleanerShared, strategy, thread_cpu_ns};
use crate::batch::{BatchHeader, check_batch};
use crate::codec::{CleanerCheckpoint, IndexEntry, KeyEntry, SegmentSummary, decode_producer};
use crate::error::{Result, StoreError};
use crate::keys::{self, LATEST_SLOT, window_slot};
use crate::shared::{PartitionShared, SegmentView};
use crate::txn;
use crate::types::{CleanReport, TopicPartition};
use crate::writer::request::{Request, Swap};
use bytes::Bytes;
use fjall::{Keyspace, PersistMode};
use rafka_format::marker::ControlType;
use rafka_format::records::Records;
use std::collections::HashMap;
use std::sync::Arc;

/// What a cleaning works from: a snapshot of the partition.
struct Round<'a> {
    c: &'a CleanerShared,
    part: &'a Arc<PartitionShared>,
    tp: TopicPartition,
    generation: u32,
    views: Arc<Vec<SegmentView>>,
    summaries: Vec<SegmentSummary>,
    plan: Plan,
}

/// Cleans `part` at `now_ms` if a cleaning is due (or whenever there is something to clean,
/// with `force`). `None` when there was nothing to do or another cleaning of it is running.
pub(crate) fn clean(
    c: &CleanerShared,
    part: &Arc<PartitionShared>,
    now_ms: i64,
    force: bool,
) -> Result<Option<CleanReport>> {
    let Some(_claim) = c.claim(part.tp) else {
        return Ok(None);
    };
    let cpu = thread_cpu_ns();
    let config = part.config();
    if !config.cleanup.compact || part.is_deleted() {
        return Ok(None);
    }
    if part.cleaner().generation == 0 {
        let part = part.clone();
        c.call(|reply| Request::ResetKeyIndex { part, reply })?;
    }
    let Some(round) = snapshot(c, part, now_ms, force) else {
        return Ok(None);
    };
    let result = run(&round, &config, now_ms);
    if let Err(StoreError::CorruptRecord { .. }) = &result {
        part.cleaner_counters.mark_failed();
    }
    let mut report = result?;
    report.cpu_ns = thread_cpu_ns().saturating_sub(cpu);
    part.cleaner_counters.record(&report, now_ms);
    tracing::info!(tp = %round.tp, first_dirty = report.first_dirty, clean_end = report.clean_end,
        bytes_read = report.bytes_read, bytes_written = report.bytes_written,
        records_removed = report.records_removed, cpu_ms = report.cpu_ns / 1_000_000, "cleaned log");
    Ok(Some(report))
}

/// The partition as a cleaning sees it, and its plan, if there is anything to do.
fn snapshot<'a>(
    c: &'a CleanerShared,
    part: &'a Arc<PartitionShared>,
    now_ms: i64,
    force: bool,
) -> Option<Round<'a>> {
    let (views, summaries, plan) = plan_for(part, now_ms);
    if plan.segments.is_empty() || (!force && plan.due.is_none()) {
        return None;
    }
    Some(Round {
        c,
        part,
        tp: part.tp,
        generation: part.cleaner().generation,
        views,
        summaries,
        plan,
    })
}

/// The partition's segments, their summaries, and the cleaning plan at `now_ms`.
pub(crate) fn plan_for(
    part: &PartitionShared,
    now_ms: i64,
) -> (Arc<Vec<SegmentView>>, Vec<SegmentSummary>, Plan) {
    let config = part.config();
    let views = part.segments();
    let summaries: Vec<SegmentSummary> = views.iter().filter_map(|v| part.summary_of(v)).collect();
    let offsets = part.offsets();
    let log = plan::Log {
        segments: &summaries,
        log_start: offsets.log_start,
        log_end: offsets.log_end,
        bound: part.cleanable_bound(),
        checkpoint: part.cleaner(),
    };
    let plan = plan::plan(&log, &config.compaction, now_ms);
    (views, summaries, plan)
}

fn run(round: &Round<'_>, config: &crate::LogConfig, now_ms: i64) -> Result<CleanReport> {
    let c = round.c;
    let plan = &round.plan;
    let strategy = config.compaction.strategy;
    let hasher = c.hasher()?;
    let mut index = KeyIndex::new(&c.engine, round.tp, round.generation, c.buffer_keys);
    let views = round.views.get(plan.segments.clone()).unwrap_or_default();
    let sums = round
        .summaries
        .get(plan.segments.clone())
        .unwrap_or_default();
    let mut report = CleanReport {
        first_dirty: plan.first_dirty,
        clean_end: plan.clean_end,
        segments_read: views.len(),
        ..CleanReport::default()
    };
    // 1. What the dirty part says about each key (aborted transactions left out).
    let aborted_from =
        |from| crate::read::aborted_between(&c.engine, round.tp, from, plan.clean_end);
    let mut walk = TxnWalk::new(aborted_from(plan.first_dirty)?);
    for view in views {
        stop_check(c, round.tp)?;
        merge_dirty(round, view, &mut index, &strategy, &hasher, &mut walk)?;
    }
    index.flush()?;
    report.keys_indexed = index.written;
    // 2. Every cleanable batch judged, group by group.
    let producers = tracked_producers(round)?;
    let judge = Judge {
        strategy,
        now_ms,
        delete_retention_ms: config.compaction.delete_retention_ms,
        hasher,
        producers: &producers,
    };
    let sizes: Vec<u64> = sums.iter().map(|s| s.size_bytes).collect();
    let mut due: Option<i64> = None;
    let mut walk = TxnWalk::new(aborted_from(sums.first().map_or(0, |s| s.base_offset))?);
    for group in plan::groups(&sizes, config.segment_bytes) {
        stop_check(c, round.tp)?;
        let (Some(v), Some(s)) = (views.get(group.clone()), sums.get(group)) else {
            continue;
        };
        let mut pass = Pass {
            index: &index,
            judge: &judge,
            walk: &mut walk,
            report: &mut report,
            due: &mut due,
        };
        clean_group(round, v, s, &mut pass)?;
    }
    // 3. Offsets below the cleaned end are clean now.
    let checkpoint = CleanerCheckpoint {
        first_dirty: plan.clean_end,
        generation: round.generation,
        last_clean_ms: now_ms,
        tombstone_due_ms: due.unwrap_or(-1),
    };
    let (part, generation) = (round.part.clone(), round.generation);
    c.call(|reply| Request::CleanDone {
        part,
        generation,
        checkpoint,
        reply,
    })?;
    Ok(report)
}

fn stop_check(c: &CleanerShared, tp: TopicPartition) -> Result<()> {
    if c.stopping() {
        return Err(StoreError::CleaningAborted {
            partition: tp,
            reason: "the store is closing".into(),
        });
    }
    Ok(())
}

/// The stored batches of a segment from the one holding `from` on: key offset, checked header,
/// bytes.
fn batches(
    tp: TopicPartition,
    ks: &Keyspace,
    from: i64,
) -> impl Iterator<Item = Result<(i64, BatchHeader, Bytes)>> {
    let range = keys::entry_key(tp, from)..=keys::entry_key(tp, i64::MAX);
    ks.range(range).map(move |kv| {
        let (k, v) = kv.into_inner()?;
        let last = keys::parse_entry_key(&k)
            .filter(|(t, _)| *t == tp)
            .map(|(_, l)| l);
        let bytes: Bytes = v.into();
        let corrupt = |reason| StoreError::CorruptRecord {
            partition: Some(tp),
            offset: last,
            reason,
        };
        let h = check_batch(&bytes).map_err(corrupt)?;
        match last {
            Some(l) if h.last_offset() == Some(l) => Ok((l, h, bytes)),
            _ => Err(corrupt(crate::batch::BatchError::BadOffsets {
                base_offset: h.base_offset,
                last_offset_delta: h.last_offset_delta,
            })),
        }
    })
}

/// Adds the records of `view` at or after the first dirty offset to the key index.
fn merge_dirty(
    round: &Round<'_>,
    view: &SegmentView,
    index: &mut KeyIndex<'_>,
    strategy: &crate::CompactionStrategy,
    hasher: &super::key_index::KeyHasher,
    walk: &mut TxnWalk,
) -> Result<()> {
    let first_dirty = round.plan.first_dirty;
    for item in batches(round.tp, &view.keyspace, first_dirty) {
        let (last, h, bytes) = item?;
        if h.is_control() {
            walk.control(facts(&h, last), marker_kind(&bytes, &h));
            continue;
        }
        if walk.data(facts(&h, last)) {
            // Aborted: never anyone's latest record.
            continue;
        }
        let horizon = h.delete_horizon_ms().unwrap_or(-1);
        let records = Records::new(&bytes, &h).map_err(|reason| corrupt(round.tp, &h, reason))?;
        for record in records {
            let r = record.map_err(|reason| corrupt(round.tp, &h, reason))?;
            let Some(key) = r.key.as_deref().filter(|_| r.offset >= first_dirty) else {
                continue;
            };
            let hash = hasher.hash(key);
            let tombstone = r.value.is_none();
            let entry = KeyEntry {
                offset: r.offset,
                timestamp: r.timestamp,
                tombstone,
                horizon_ms: if tombstone { horizon } else { -1 },
            };
            index.observe((hash, LATEST_SLOT), entry)?;
            if let Some(w) = strategy.window_ms() {
                let slot = window_slot(strategy::window_of(r.timestamp, w));
                index.observe((hash, slot), entry)?;
            }
        }
    }
    Ok(())
}

/// What the transaction walk needs of a batch ending at `last`.
fn facts(h: &BatchHeader, last: i64) -> BatchFacts {
    BatchFacts {
        producer_id: h.producer_id,
        last_offset: last,
        transactional: h.is_transactional(),
    }
}

/// A control batch's type as the walk needs it: `None` when it has no record left (cleaned
/// before); a record this build cannot read counts as a type it does not know (kept, as
/// Kafka keeps unknown control types).
fn marker_kind(bytes: &Bytes, h: &BatchHeader) -> Option<ControlType> {
    if h.record_count == 0 {
        return None;
    }
    Some(txn::marker_type(bytes, h).unwrap_or(ControlType::Unknown(-1)))
}

/// What the transaction walk says of a batch, as it passes it.
fn txn_verdict(walk: &mut TxnWalk, h: &BatchHeader, bytes: &Bytes, last: i64) -> TxnVerdict {
    let goes = if h.is_control() {
        walk.control(facts(h, last), marker_kind(bytes, h))
    } else {
        walk.data(facts(h, last))
    };
    if goes {
        TxnVerdict::Goes
    } else {
        TxnVerdict::Stays
    }
}

fn corrupt(tp: TopicPartition, h: &BatchHeader, reason: crate::batch::BatchError) -> StoreError {
    StoreError::CorruptRecord {
        partition: Some(tp),
        offset: h.last_offset(),
        reason,
    }
}

/// Producers the partition tracks, with the last offset of their last batch.
fn tracked_producers(round: &Round<'_>) -> Result<HashMap<i64, i64>> {
    let log_start = round.part.offsets().log_start;
    let mut out = HashMap::new();
    for kv in round.c.engine.producers.prefix(keys::tp_prefix(round.tp)) {
        let (k, v) = kv.into_inner()?;
        let (Some((_, pid)), entry) = (keys::parse_entry_key(&k), decode_producer(&v)?) else {
            continue;
        };
        if let Some(last) = entry.last_offset().filter(|_| !entry.is_below(log_start)) {
            out.insert(pid, last);
        }
    }
    Ok(out)
}

/// What the judging pass carries from group to group.
struct Pass<'p, 'a> {
    index: &'p KeyIndex<'a>,
    judge: &'p Judge<'a>,
    walk: &'p mut TxnWalk,
    report: &'p mut CleanReport,
    due: &'p mut Option<i64>,
}

/// What pass A decided for a group.
struct Judgement {
    decisions: Vec<(i64, Decision)>,
    changed: bool,
    stamped: Vec<(Slot, KeyEntry)>,
    deleted: Vec<[u8; 16]>,
}

/// Cleans one group of consecutive segments into one.
fn clean_group(
    round: &Round<'_>,
    views: &[SegmentView],
    sums: &[SegmentSummary],
    pass: &mut Pass<'_, '_>,
) -> Result<()> {
    let j = judge_group(round, views, pass)?;
    let (index, report) = (pass.index, &mut *pass.report);
    if !j.changed {
        report.bytes_written += sums.iter().map(|s| s.size_bytes).sum::<u64>();
        // The batches carry their horizons already; the index learns them (a rebuilt index).
        let mut wb = round.c.engine.db.batch();
        for (slot, entry) in &j.stamped {
            wb.insert(&round.c.engine.keys, index.key(slot), entry.encode());
        }
        if !wb.is_empty() {
            wb.durability(Some(PersistMode::Buffer)).commit()?;
        }
        return Ok(());
    }
    let (Some(first), Some(last)) = (sums.first(), sums.last()) else {
        return Ok(());
    };
    let generation = round.c.engine.new_generation();
    let name = keys::segment_name(round.tp, first.base_offset, generation);
    let keyspace = round.c.engine.open_keyspace(&name)?;
    let summary = SegmentSummary {
        generation,
        last_offset: last.last_offset,
        ..SegmentSummary::empty(first.base_offset, first.created_ms)
    };
    let written = match write_group(round, views, &j.decisions, &keyspace, summary) {
        Ok(w) => w,
        Err(e) => {
            // Never named by a summary: nothing refers to it (recovery would delete it too).
            let _ = round.c.engine.db.delete_keyspace(keyspace);
            return Err(e);
        }
    };
    let mut key_removes = Vec::new();
    for hash in &j.deleted {
        key_removes.extend(index.keys_of(hash)?);
    }
    let key_puts = j
        .stamped
        .iter()
        .map(|(slot, e)| (index.key(slot).to_vec(), e.encode()))
        .collect();
    report.segments_written += 1;
    report.bytes_written += written.summary.size_bytes;
    let swap = Swap {
        part: round.part.clone(),
        generation: round.generation,
        old: sums.iter().map(|s| (s.base_offset, s.generation)).collect(),
        keyspace,
        summary: written.summary,
        index_puts: written.index_puts,
        index_removes: written.index_removes,
        txn_removes: written.markers_removed,
        key_puts,
        key_removes,
    };
    let swap = Box::new(swap);
    round.c.call(|reply| Request::Swap { swap, reply })
}

/// Pass A: every batch of the group judged.
fn judge_group(
    round: &Round<'_>,
    views: &[SegmentView],
    pass: &mut Pass<'_, '_>,
) -> Result<Judgement> {
    let report = &mut *pass.report;
    let mut j = Judgement {
        decisions: Vec::new(),
        changed: views.len() > 1,
        stamped: Vec::new(),
        deleted: Vec::new(),
    };
    for view in views {
        for item in batches(round.tp, &view.keyspace, 0) {
            let (last, h, bytes) = item?;
            report.bytes_read += bytes.len() as u64;
            let txn = txn_verdict(pass.walk, &h, &bytes, last);
            let judged = rewrite::judge(pass.judge, pass.index, &bytes, &h, txn)
                .map_err(|e| with_partition(e, round.tp))?;
            report.records_read += judged.records;
            report.records_removed += judged.removed;
            if let Some(h) = judged.horizon {
                *pass.due = Some(pass.due.map_or(h, |d| d.min(h)));
            }
            j.stamped.extend(judged.stamped);
            j.deleted.extend(judged.deleted);
            let decision = judged.decision.unwrap_or(Decision::Keep);
            j.changed |= decision != Decision::Keep;
            j.decisions.push((last, decision));
        }
    }
    Ok(j)
}

fn with_partition(e: StoreError, tp: TopicPartition) -> StoreError {
    match e {
        StoreError::CorruptRecord {
            partition: None,
            offset,
            reason,
        } => StoreError::CorruptRecord {
            partition: Some(tp),
            offset,
            reason,
        },
        e => e,
    }
}

/// What pass B wrote.
struct Written {
    summary: SegmentSummary,
    index_puts: Vec<(i64, IndexEntry)>,
    index_removes: Vec<i64>,
    /// Offsets of the markers removed (their aborted-transactions index entries go too).
    markers_removed: Vec<i64>,
}

/// Pass B: the surviving batches, in offset order, ingested into the new keyspace (durable
/// when `finish` returns).
fn write_group(
    round: &Round<'_>,
    views: &[SegmentView],
    decisions: &[(i64, Decision)],
    keyspace: &Keyspace,
    mut summary: SegmentSummary,
) -> Result<Written> {
    let mut out = Written {
        summary,
        index_puts: Vec::new(),
        index_removes: Vec::new(),
        markers_removed: Vec::new(),
    };
    let mut ingestion = keyspace.start_ingestion()?;
    let mut planned = decisions.iter();
    for view in views {
        for item in batches(round.tp, &view.keyspace, 0) {
            let (last, h, bytes) = item?;
            let Some((at, decision)) = planned.next().filter(|(at, _)| *at == last) else {
                return Err(StoreError::CleaningAborted {
                    partition: round.tp,
                    reason: "a segment changed while it was cleaned".into(),
                });
            };
            let Some(kept) = rewrite::apply(decision, &bytes, &h)? else {
                out.index_removes.push(*at);
                if h.is_control() {
                    out.markers_removed.push(*at);
                }
                continue;
            };
            let header = check_batch(&kept).map_err(|reason| corrupt(round.tp, &h, reason))?;
            if *decision != Decision::Keep {
                out.index_puts
                    .push((last, IndexEntry::from_header(&header, kept.len())));
            }
            let s = &mut summary;
            if s.batch_count == 0 {
                s.first_timestamp = header.max_timestamp;
            }
            if s.batch_count == 0 || header.max_timestamp > s.max_timestamp {
                s.max_timestamp = header.max_timestamp;
                s.max_timestamp_batch = last;
            }
            s.size_bytes += kept.len() as u64;
            s.batch_count += 1;
            ingestion.write(keys::entry_key(round.tp, last).to_vec(), kept)?;
        }
    }
    ingestion.finish()?;
    out.summary = summary;
    Ok(out)
}
