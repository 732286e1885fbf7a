//! Which part of a log a cleaning covers, and whether it is due (pure; Kafka's
//! `LogCleanerManager.cleanableOffsets`, `calculateCleanableBytes`, `maxCompactionDelay` and the
//! dirty-ratio test of `grabFilthiestCompactedLog`).
//!
//! The log is `[log start, log end)` in segments, the last one active. Below the checkpoint's
//! `first_dirty` it was cleaned already; the cleanable part ends at the first segment that
//! cannot be cleaned: the active one, the one holding `bound` (min(last stable offset, high
//! watermark)), or the first dirty one whose newest record is younger than
//! `min_compaction_lag_ms`. Whole segments only, as in Kafka.

use crate::codec::{CleanerCheckpoint, SegmentSummary};
use crate::config::{CompactionConfig, CompactionStrategy};
use std::ops::Range;

/// Why a cleaning is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// Dirty bytes / log bytes is above `min_cleanable_dirty_ratio`.
    DirtyRatio,
    /// A dirty segment's first batch is older than `max_compaction_lag_ms`.
    MaxCompactionLag,
    /// A kept tombstone's delete horizon has passed.
    TombstoneHorizon,
    /// A hybrid log's history horizon moved by a window since the last cleaning.
    HistoryHorizon,
}

/// The cleanable part of a log.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Where the dirty part starts.
    pub first_dirty: i64,
    /// Offsets below this may be cleaned (a segment boundary).
    pub clean_end: i64,
    /// Segments cleaned this time (indexes into the segment list): every one below
    /// `clean_end`.
    pub segments: Range<usize>,
    /// Bytes of segments wholly below `first_dirty`.
    pub clean_bytes: u64,
    /// Bytes of dirty segments below `clean_end` (the backlog).
    pub dirty_bytes: u64,
    /// Why it should be cleaned now, if it should.
    pub due: Option<Due>,
}

impl Plan {
    /// Dirty bytes over all cleanable bytes (0 for an empty log).
    pub(crate) fn dirty_ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// What the planner needs to know of the log.
pub(crate) struct Log<'a> {
    /// Every segment, oldest first; the last one is active.
    pub segments: &'a [SegmentSummary],
    pub log_start: i64,
    pub log_end: i64,
    /// min(last stable offset, high watermark): nothing at or above it is cleaned.
    pub bound: i64,
    pub checkpoint: CleanerCheckpoint,
}

/// Plans a cleaning at `now_ms`.
pub(crate) fn plan(log: &Log<'_>, cfg: &CompactionConfig, now_ms: i64) -> Plan {
    let segs = log.segments;
    let first_dirty = match log.checkpoint.first_dirty {
        d if d < log.log_start || d > log.log_end => log.log_start,
        d => d,
    };
    let active = segs.len().saturating_sub(1);
    let young = |s: &SegmentSummary| {
        cfg.min_compaction_lag_ms > 0
            && s.last_offset >= first_dirty
            && s.max_timestamp > now_ms.saturating_sub(cfg.min_compaction_lag_ms)
    };
    let end = segs
        .iter()
        .position(|s| s.last_offset >= log.bound || young(s))
        .unwrap_or(active)
        .min(active);
    let below = |s: &&SegmentSummary| s.last_offset < first_dirty;
    let start = segs
        .iter()
        .take_while(|s| s.last_offset < log.log_start)
        .count();
    let cleanable = segs.get(start..end).unwrap_or_default();
    let clean_bytes = cleanable.iter().filter(below).map(|s| s.size_bytes).sum();
    let dirty: Vec<&SegmentSummary> = cleanable.iter().filter(|s| !below(s)).collect();
    let dirty_bytes = dirty.iter().map(|s| s.size_bytes).sum();
    let clean_end = segs.get(end).map_or(log.log_end, |s| s.base_offset);
    let mut plan = Plan {
        first_dirty,
        clean_end: clean_end.max(first_dirty),
        segments: start..end.max(start),
        clean_bytes,
        dirty_bytes,
        due: None,
    };
    plan.due = due(&plan, log, cfg, now_ms);
    plan
}

fn due(plan: &Plan, log: &Log<'_>, cfg: &CompactionConfig, now_ms: i64) -> Option<Due> {
    if plan.segments.is_empty() {
        return None;
    }
    if plan.dirty_bytes > 0 {
        if plan.dirty_ratio() > cfg.min_cleanable_dirty_ratio {
            return Some(Due::DirtyRatio);
        }
        if overdue(log, plan.first_dirty, cfg, now_ms) {
            return Some(Due::MaxCompactionLag);
        }
    }
    let c = log.checkpoint;
    if c.tombstone_due_ms >= 0 && now_ms >= c.tombstone_due_ms {
        return Some(Due::TombstoneHorizon);
    }
    if let CompactionStrategy::Hybrid { window_ms, .. } = cfg.strategy
        && (c.last_clean_ms < 0 || now_ms.saturating_sub(c.last_clean_ms) >= window_ms)
    {
        return Some(Due::HistoryHorizon);
    }
    None
}

/// Kafka's `maxCompactionDelay > 0`: the first batch of some dirty, sealed segment is older
/// than `max_compaction_lag_ms` (unknown first timestamps, <= 0, do not count).
fn overdue(log: &Log<'_>, first_dirty: i64, cfg: &CompactionConfig, now_ms: i64) -> bool {
    let Some(lag) = cfg.max_compaction_lag_ms else {
        return false;
    };
    let sealed = log.segments.len().saturating_sub(1);
    let earliest = log
        .segments
        .iter()
        .take(sealed)
        .filter(|s| s.last_offset >= first_dirty && s.first_timestamp > 0)
        .map(|s| s.first_timestamp)
        .min();
    earliest.is_some_and(|t| t < now_ms.saturating_sub(lag))
}

/// Groups consecutive segments so that each group's bytes stay within `max_bytes` (a group
/// has at least one segment), as Kafka's `groupSegmentsBySize`: each group becomes one cleaned
/// segment, so cleaning never leaves many tiny segments behind.
pub(crate) fn groups(sizes: &[u64], max_bytes: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0u64;
    for (i, size) in sizes.iter().enumerate() {
        if i > start && bytes.saturating_add(*size) > max_bytes {
            out.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes = bytes.saturating_add(*size);
    }
    if start < sizes.len() {
        out.push(start..sizes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, last: i64, size: u64, max_ts: i64) -> SegmentSummary {
        SegmentSummary {
            max_timestamp: max_ts,
            first_timestamp: max_ts - 10,
            size_bytes: size,
            batch_count: 1,
            last_offset: last,
            ..SegmentSummary::empty(base, 0)
        }
    }

    fn log(segments: &[SegmentSummary], bound: i64, first_dirty: i64) -> Log<'_> {
        Log {
            segments,
            log_start: segments.first().map_or(0, |s| s.base_offset),
            log_end: segments.last().map_or(0, |s| s.last_offset + 1),
            bound,
            checkpoint: CleanerCheckpoint {
                first_dirty,
                last_clean_ms: -1,
                tombstone_due_ms: -1,
                ..CleanerCheckpoint::default()
            },
        }
    }

    fn four() -> Vec<SegmentSummary> {
        vec![
            seg(0, 9, 100, 1_000),
            seg(10, 19, 100, 2_000),
            seg(20, 29, 100, 3_000),
            seg(30, 39, 100, 4_000),
        ]
    }

    #[test]
    fn never_the_active_segment_nor_past_the_bound() {
        let cfg = CompactionConfig::default();
        let segs = four();
        let p = plan(&log(&segs, 40, 0), &cfg, 10_000);
        assert_eq!((p.clean_end, p.segments.clone()), (30, 0..3));
        // The segment holding the bound (high watermark 25) is not cleaned, nor any after it.
        let p = plan(&log(&segs, 25, 0), &cfg, 10_000);
        assert_eq!((p.clean_end, p.segments.clone()), (20, 0..2));
        // A bound on a segment boundary keeps the segment starting there.
        let p = plan(&log(&segs, 20, 0), &cfg, 10_000);
        assert_eq!(p.clean_end, 20);
    }

    #[test]
    fn the_dirty_ratio_decides_unless_a_lag_forces_it() {
        let mut cfg = CompactionConfig::default();
        let segs = four();
        // Cleaned up to 20: 200 clean bytes, 100 dirty (segment 20-29): ratio 1/3.
        let p = plan(&log(&segs, 40, 20), &cfg, 10_000);
        assert_eq!((p.clean_bytes, p.dirty_bytes), (200, 100));
        assert!((p.dirty_ratio() - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(p.due, None, "1/3 is not above 0.5");
        cfg.min_cleanable_dirty_ratio = 0.3;
        assert_eq!(
            plan(&log(&segs, 40, 20), &cfg, 10_000).due,
            Some(Due::DirtyRatio)
        );
        cfg.min_cleanable_dirty_ratio = 0.9;
        cfg.max_compaction_lag_ms = Some(5_000);
        // The dirty segment's first batch is at 2_990: overdue at 8_000, not at 7_000.
        let p = plan(&log(&segs, 40, 20), &cfg, 8_000);
        assert_eq!(p.due, Some(Due::MaxCompactionLag));
        assert_eq!(plan(&log(&segs, 40, 20), &cfg, 7_000).due, None);
        // Nothing dirty: no ratio, no lag.
        let p = plan(&log(&segs, 40, 30), &cfg, 100_000);
        assert_eq!((p.dirty_bytes, p.due), (0, None));
    }

    #[test]
    fn young_segments_wait_for_the_min_compaction_lag() {
        let cfg = CompactionConfig {
            min_compaction_lag_ms: 1_500,
            ..CompactionConfig::default()
        };
        let segs = four();
        // At 3_000 only segments whose newest record is at or before 1_500 may be cleaned.
        let p = plan(&log(&segs, 40, 0), &cfg, 3_000);
        assert_eq!((p.clean_end, p.segments.clone()), (10, 0..1));
        // A young segment already below first_dirty does not stop anything.
        let p = plan(&log(&segs, 40, 20), &cfg, 4_000);
        assert_eq!(p.clean_end, 20);
    }

    #[test]
    fn a_checkpoint_outside_the_log_restarts_at_the_log_start() {
        let cfg = CompactionConfig::default();
        let segs = four();
        let mut l = log(&segs[1..], 40, 5);
        l.log_start = 12;
        let p = plan(&l, &cfg, 0);
        assert_eq!((p.first_dirty, p.dirty_bytes, p.clean_bytes), (12, 200, 0));
        let p = plan(&log(&segs, 40, 99), &cfg, 0);
        assert_eq!(p.first_dirty, 0);
    }

    #[test]
    fn tombstones_and_history_make_a_clean_log_due() {
        let segs = four();
        let mut l = log(&segs, 40, 30);
        l.checkpoint.tombstone_due_ms = 5_000;
        let cfg = CompactionConfig::default();
        assert_eq!(plan(&l, &cfg, 4_999).due, None);
        assert_eq!(plan(&l, &cfg, 5_000).due, Some(Due::TombstoneHorizon));
        l.checkpoint.tombstone_due_ms = -1;
        l.checkpoint.last_clean_ms = 1_000;
        let hybrid = CompactionConfig {
            strategy: CompactionStrategy::Hybrid {
                window_ms: 600,
                history_ms: 0,
            },
            ..CompactionConfig::default()
        };
        assert_eq!(plan(&l, &hybrid, 1_599).due, None);
        assert_eq!(plan(&l, &hybrid, 1_600).due, Some(Due::HistoryHorizon));
    }

    #[test]
    fn groups_stay_within_the_segment_size() {
        assert_eq!(groups(&[40, 40, 40, 90, 10], 100), vec![0..2, 2..3, 3..5]);
        assert_eq!(groups(&[500, 1], 100), vec![0..1, 1..2]);
        assert!(groups(&[], 100).is_empty());
    }
}
