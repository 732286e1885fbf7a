//! The compaction strategies as verdicts over (key, timestamp, offset) (pure).
//!
//! A cleaning knows, for every key, the latest record at or below what it has read so far (the
//! key index's latest slot) and, for the windowed strategies, the latest record of the key in
//! each time window (`floor(timestamp / window_ms)`). "Latest" means highest offset, as in
//! Kafka, whatever the timestamps say. A record with a key survives when:
//!
//! - `keep-latest`: it is its key's latest record (Kafka's compaction);
//! - `time-window`: it is its key's latest record in its window;
//! - `hybrid`: records older than `now - history_ms` as keep-latest, newer ones as time-window;
//!
//! and its key is not deleted: a key whose latest record is a tombstone whose delete horizon has
//! passed has no records left at all (for keep-latest this is Kafka's tombstone removal; for
//! the windowed strategies a deleted key's history goes with it). Records without a key never
//! survive a cleaning (Kafka's `Cleaner.shouldRetainRecord`). A key the index does not know yet
//! counts as latest: missing knowledge keeps records, never drops them.

use crate::codec::KeyEntry;
use crate::config::CompactionStrategy;

/// What the cleaner knows about a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fact {
    pub offset: i64,
    pub timestamp: i64,
    pub tombstone: bool,
    /// The delete horizon stamped on the record's batch, if any.
    pub batch_horizon: Option<i64>,
}

/// What the key index says about the record's key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    /// The key's latest record.
    pub latest: Option<KeyEntry>,
    /// The key's latest record in the record's window (windowed strategies only).
    pub window: Option<KeyEntry>,
}

/// The window number of a timestamp.
pub(crate) fn window_of(timestamp: i64, window_ms: i64) -> i64 {
    timestamp.div_euclid(window_ms.max(1))
}

/// Whether a record with a key survives a cleaning at `now_ms`.
pub(crate) fn keep(strategy: &CompactionStrategy, r: Fact, seen: Seen, now_ms: i64) -> bool {
    if deleted(r, seen.latest, now_ms) {
        return false;
    }
    let latest_of = |e: Option<KeyEntry>| e.is_none_or(|e| r.offset >= e.offset);
    match *strategy {
        CompactionStrategy::KeepLatest => latest_of(seen.latest),
        CompactionStrategy::TimeWindow { .. } => latest_of(seen.window),
        CompactionStrategy::Hybrid { history_ms, .. } => {
            if r.timestamp < now_ms.saturating_sub(history_ms) {
                latest_of(seen.latest)
            } else {
                latest_of(seen.window)
            }
        }
    }
}

/// Whether the record's key is deleted: its latest record is a tombstone whose delete horizon
/// has passed (the record's own batch says it for the tombstone itself, the index for others).
fn deleted(r: Fact, latest: Option<KeyEntry>, now_ms: i64) -> bool {
    let Some(latest) = latest else {
        return r.tombstone && r.batch_horizon.is_some_and(|h| now_ms >= h);
    };
    if !latest.tombstone {
        return false;
    }
    let horizon = if latest.offset == r.offset {
        r.batch_horizon
    } else {
        (latest.horizon_ms >= 0).then_some(latest.horizon_ms)
    };
    horizon.is_some_and(|h| now_ms >= h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fact(offset: i64, timestamp: i64) -> Fact {
        Fact {
            offset,
            timestamp,
            tombstone: false,
            batch_horizon: None,
        }
    }

    fn entry(offset: i64, timestamp: i64) -> KeyEntry {
        KeyEntry {
            offset,
            timestamp,
            tombstone: false,
            horizon_ms: -1,
        }
    }

    #[test]
    fn keep_latest_keeps_only_the_latest_offset() {
        let s = CompactionStrategy::KeepLatest;
        let seen = Seen {
            latest: Some(entry(10, 0)),
            window: None,
        };
        assert!(keep(&s, fact(10, 0), seen, 0));
        assert!(!keep(&s, fact(9, 500), seen, 0), "offset order, not time");
        assert!(
            keep(&s, fact(3, 0), Seen::default(), 0),
            "unknown keys are kept"
        );
    }

    #[test]
    fn time_window_keeps_the_latest_per_window() {
        let s = CompactionStrategy::TimeWindow { window_ms: 100 };
        let seen = Seen {
            latest: Some(entry(20, 350)),
            window: Some(entry(12, 150)),
        };
        assert!(keep(&s, fact(12, 150), seen, 0));
        assert!(!keep(&s, fact(11, 120), seen, 0));
        assert_eq!((window_of(-1, 100), window_of(199, 100)), (-1, 1));
    }

    #[test]
    fn hybrid_switches_at_the_history_horizon() {
        let s = CompactionStrategy::Hybrid {
            window_ms: 100,
            history_ms: 1_000,
        };
        let seen = Seen {
            latest: Some(entry(20, 5_000)),
            window: Some(entry(12, 4_150)),
        };
        // At 5_000 the horizon is 4_000: a record at 4_150 is history, kept per window.
        assert!(keep(&s, fact(12, 4_150), seen, 5_000));
        // At 5_200 the horizon is 4_200: the same record is old, and not the latest.
        assert!(!keep(&s, fact(12, 4_150), seen, 5_200));
    }

    #[test]
    fn a_tombstone_past_its_horizon_deletes_its_key() {
        let tomb = KeyEntry {
            tombstone: true,
            horizon_ms: 1_000,
            ..entry(30, 0)
        };
        let seen = Seen {
            latest: Some(tomb),
            window: Some(entry(5, 0)),
        };
        let tw = CompactionStrategy::TimeWindow { window_ms: 100 };
        assert!(keep(&tw, fact(5, 0), seen, 999));
        assert!(
            !keep(&tw, fact(5, 0), seen, 1_000),
            "the history goes with the key"
        );
        // The tombstone itself: its own batch's horizon decides.
        let t = Fact {
            tombstone: true,
            batch_horizon: None,
            ..fact(30, 0)
        };
        let unstamped = Seen {
            latest: Some(KeyEntry {
                horizon_ms: -1,
                ..tomb
            }),
            window: None,
        };
        assert!(keep(&CompactionStrategy::KeepLatest, t, unstamped, 5_000));
        let stamped = Fact {
            batch_horizon: Some(1_000),
            ..t
        };
        assert!(!keep(
            &CompactionStrategy::KeepLatest,
            stamped,
            unstamped,
            1_000
        ));
        assert!(!keep(
            &CompactionStrategy::KeepLatest,
            stamped,
            Seen::default(),
            1_000
        ));
    }
}
