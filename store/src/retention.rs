//! Which segments retention deletes (pure; the writer carries it out).
//!
//! Kafka semantics: only whole segments go, oldest first, never the active one. A segment is
//! deletable when its newest record is older than `retention_ms`, when the segments after it
//! still hold at least `retention_bytes` (both only with `cleanup.policy` delete), or when it
//! lies wholly below the log start offset (after DeleteRecords). Deletion stops at the first
//! segment that is none of these.

use crate::codec::SegmentSummary;
use crate::config::LogConfig;

/// How many of the oldest segments to delete.
pub(crate) fn plan(
    segments: &[SegmentSummary],
    cfg: &LogConfig,
    log_start: i64,
    now_ms: i64,
) -> usize {
    let mut total: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let sealed = segments.len().saturating_sub(1);
    let mut n = 0;
    for s in segments.iter().take(sealed) {
        let delete = cfg.cleanup.delete;
        let expired = delete
            && cfg
                .retention_ms
                .is_some_and(|ms| now_ms.saturating_sub(s.max_timestamp) > ms);
        let oversize = delete
            && cfg
                .retention_bytes
                .is_some_and(|max| total.saturating_sub(s.size_bytes) >= max);
        let below_start = s.last_offset < log_start;
        if !(expired || oversize || below_start) {
            break;
        }
        total = total.saturating_sub(s.size_bytes);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: i64, size: u64, ts: i64) -> SegmentSummary {
        SegmentSummary {
            last_offset: base + 9,
            max_timestamp: ts,
            max_timestamp_batch: base + 9,
            size_bytes: size,
            batch_count: 1,
            ..SegmentSummary::empty(base, 0)
        }
    }

    #[test]
    fn never_the_active_segment() {
        let segs = [seg(0, 100, 0), seg(10, 100, 0), seg(20, 100, 0)];
        let cfg = LogConfig {
            retention_ms: Some(10),
            ..LogConfig::default()
        };
        assert_eq!(plan(&segs, &cfg, 0, 1_000), 2);
        assert_eq!(plan(&segs, &cfg, 0, 5), 0);
    }

    #[test]
    fn by_size_keeps_at_least_retention_bytes() {
        let segs = [
            seg(0, 100, 0),
            seg(10, 100, 0),
            seg(20, 100, 0),
            seg(30, 100, 0),
        ];
        let cfg = LogConfig {
            retention_ms: None,
            retention_bytes: Some(150),
            ..LogConfig::default()
        };
        // 400 total: dropping two leaves 200 >= 150, a third would leave 100 < 150.
        assert_eq!(plan(&segs, &cfg, 0, 0), 2);
        let cfg = LogConfig {
            retention_ms: None,
            ..LogConfig::default()
        };
        assert_eq!(plan(&segs, &cfg, 25, 0), 2);
    }

    #[test]
    fn a_compact_only_log_keeps_old_segments() {
        let segs = [seg(0, 100, 0), seg(10, 100, 0), seg(20, 100, 0)];
        let cfg = LogConfig {
            retention_ms: Some(10),
            retention_bytes: Some(1),
            cleanup: crate::CleanupPolicy::COMPACT,
            ..LogConfig::default()
        };
        assert_eq!(plan(&segs, &cfg, 0, 1_000), 0);
        assert_eq!(
            plan(&segs, &cfg, 15, 1_000),
            1,
            "DeleteRecords still counts"
        );
    }
}
