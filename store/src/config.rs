//! Configuration: the node-wide [`StoreConfig`] and the per-topic [`LogConfig`].
//!
//! Both are serde structs with `Default` and `validate()`; only the node binary layers files,
//! environment and flags on top of them.

use crate::error::{Result, StoreError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// When an acknowledged append is on stable storage. See `docs/storage.md` for what each mode
/// survives; in short:
///
/// - `Always`: fsync (fdatasync) before the append resolves, shared by every append waiting at
///   the same time (group commit). Survives process kill, OS crash and power loss.
/// - `Interval(d)`: the append is handed to the OS before it resolves and fsynced within `d`.
///   Survives a process kill; an OS crash or power loss loses at most the last `d`.
/// - `Never`: handed to the OS before it resolves, fsynced only when the OS or fjall decides
///   (memtable flushes, journal rotation, shutdown). Survives a process kill.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FsyncPolicy {
    /// fsync before acknowledging.
    Always,
    /// fsync at most this long after acknowledging.
    Interval(Duration),
    /// Leave fsync to the OS.
    Never,
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Never => f.write_str("never"),
            FsyncPolicy::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

impl FromStr for FsyncPolicy {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason: String| StoreError::InvalidConfig {
            field: "fsync",
            reason,
        };
        match s.trim() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => {
                let ms = other.strip_prefix("interval:").ok_or_else(|| {
                    bad(format!("{other:?}: expected always, never or interval:MS"))
                })?;
                let ms: u64 = ms.parse().map_err(|e| bad(format!("{other:?}: {e}")))?;
                if ms == 0 {
                    return Err(bad("interval must be at least 1 ms".into()));
                }
                Ok(FsyncPolicy::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl Serialize for FsyncPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which timestamp a topic's records carry (Kafka's `message.timestamp.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimestampType {
    /// The producer's timestamps are kept.
    #[default]
    CreateTime,
    /// The leader stamps every batch with its append time.
    LogAppendTime,
}

/// Kafka's `cleanup.policy`: delete old segments by time and size, compact by key, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CleanupPolicy {
    /// Retention (`retention_ms`, `retention_bytes`) deletes whole old segments.
    pub delete: bool,
    /// The log cleaner keeps the latest record per key (per the compaction strategy).
    pub compact: bool,
}

impl CleanupPolicy {
    /// `delete`, Kafka's default.
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    /// `compact`.
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy::DELETE
    }
}

impl fmt::Display for CleanupPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.compact, self.delete) {
            (true, true) => f.write_str("compact,delete"),
            (true, false) => f.write_str("compact"),
            (false, true) => f.write_str("delete"),
            (false, false) => f.write_str(""),
        }
    }
}

impl FromStr for CleanupPolicy {
    type Err = StoreError;

    /// A comma-separated list of `delete` and `compact` (either order, as Kafka accepts it).
    fn from_str(s: &str) -> Result<Self> {
        let mut p = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for part in s.split(',').map(str::trim) {
            match part {
                "delete" => p.delete = true,
                "compact" => p.compact = true,
                other => {
                    return Err(StoreError::InvalidConfig {
                        field: "cleanup_policy",
                        reason: format!("{other:?}: expected delete, compact or compact,delete"),
                    });
                }
            }
        }
        Ok(p)
    }
}

impl Serialize for CleanupPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CleanupPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which records of a key the log cleaner keeps (`rafka.compaction.strategy`). Every strategy
/// is a verdict over (key, timestamp, offset); `docs/storage.md` defines them exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompactionStrategy {
    /// Kafka's compaction: the latest record per key.
    #[default]
    KeepLatest,
    /// The latest record per key in each window of record timestamps (`window_ms` long).
    TimeWindow {
        /// Window length.
        window_ms: i64,
    },
    /// Time-window for records newer than `history_ms`, keep-latest for older ones.
    Hybrid {
        /// Window length.
        window_ms: i64,
        /// How far back (from now) the windowed history goes.
        history_ms: i64,
    },
}

impl CompactionStrategy {
    /// The name `rafka.compaction.strategy` takes.
    pub fn name(&self) -> &'static str {
        match self {
            CompactionStrategy::KeepLatest => "keep-latest",
            CompactionStrategy::TimeWindow { .. } => "time-window",
            CompactionStrategy::Hybrid { .. } => "hybrid",
        }
    }

    /// The window length, for the strategies that have one.
    pub fn window_ms(&self) -> Option<i64> {
        match *self {
            CompactionStrategy::KeepLatest => None,
            CompactionStrategy::TimeWindow { window_ms }
            | CompactionStrategy::Hybrid { window_ms, .. } => Some(window_ms),
        }
    }
}

/// How a compacted log is cleaned (Kafka's topic configs of the same names, and the strategy).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionConfig {
    /// Which records of a key survive.
    pub strategy: CompactionStrategy,
    /// `delete.retention.ms`: how long a tombstone stays after the first cleaning that kept it.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: a segment whose newest record is younger is not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment whose first batch is older is cleaned whatever
    /// the dirty ratio; also caps the active segment's age (`segment_ms`). `None`: no limit.
    pub max_compaction_lag_ms: Option<i64>,
    /// `min.cleanable.dirty.ratio`: clean once dirty bytes / log bytes exceeds this.
    pub min_cleanable_dirty_ratio: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            strategy: CompactionStrategy::KeepLatest,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: None,
            min_cleanable_dirty_ratio: 0.5,
        }
    }
}

impl CompactionConfig {
    fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(StoreError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        match self.strategy {
            CompactionStrategy::KeepLatest => {}
            CompactionStrategy::TimeWindow { window_ms } if window_ms < 1 => {
                return bad("compaction_window_ms", "must be at least 1");
            }
            CompactionStrategy::Hybrid {
                window_ms,
                history_ms,
            } if window_ms < 1 || history_ms < 0 => {
                return bad(
                    "compaction_window_ms",
                    "window must be at least 1 and history at least 0",
                );
            }
            _ => {}
        }
        if self.delete_retention_ms < 0 {
            return bad("delete_retention_ms", "must be >= 0");
        }
        if self.min_compaction_lag_ms < 0 {
            return bad("min_compaction_lag_ms", "must be >= 0");
        }
        if self.max_compaction_lag_ms.is_some_and(|v| v < 1) {
            return bad("max_compaction_lag_ms", "must be >= 1 (None: no limit)");
        }
        if !(0.0..=1.0).contains(&self.min_cleanable_dirty_ratio) {
            return bad("min_cleanable_dirty_ratio", "must be between 0 and 1");
        }
        Ok(())
    }
}

/// Node-wide store configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The store opens `<data_dir>` as ONE fjall Database for partition data.
    pub data_dir: PathBuf,
    /// Node default durability; topics may override it in [`LogConfig::fsync`].
    pub fsync: FsyncPolicy,
    /// fjall block cache size in bytes.
    pub cache_bytes: u64,
    /// Cap on all memtables together (fjall's write buffer); `None` = fjall's default (off).
    pub max_write_buffer_bytes: Option<u64>,
    /// Cap on the journal files together; `None` = fjall's default (512 MiB). At least 64 MiB.
    pub max_journal_bytes: Option<u64>,
    /// Memtable size of each log segment keyspace before it is flushed to a table.
    pub memtable_bytes: u64,
    /// How often the writer checkpoints changed high watermarks (Kafka's
    /// `replica.high.watermark.checkpoint.interval.ms`). They are also written on shutdown.
    pub hw_checkpoint_interval_ms: u64,
    /// Capacity of the writer's request queue; appenders wait when it is full.
    pub writer_queue: usize,
    /// Log cleaner threads (Kafka's `log.cleaner.threads`); 0 runs none (compacted partitions
    /// are then cleaned only by explicit calls).
    pub cleaner_threads: usize,
    /// How long an idle cleaner thread waits before looking for work again (Kafka's
    /// `log.cleaner.backoff.ms`).
    pub cleaner_backoff_ms: u64,
    /// Keys a cleaning holds in memory before it writes them to the key index (and reads them
    /// back from there); bounds the cleaner's memory (about 100 bytes a key).
    pub cleaner_buffer_keys: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: PathBuf::from("rafka-data/store"),
            fsync: FsyncPolicy::Always,
            cache_bytes: 64 * 1024 * 1024,
            max_write_buffer_bytes: None,
            max_journal_bytes: None,
            memtable_bytes: 32 * 1024 * 1024,
            hw_checkpoint_interval_ms: 5_000,
            writer_queue: 4_096,
            cleaner_threads: 1,
            cleaner_backoff_ms: 15_000,
            cleaner_buffer_keys: 1 << 20,
        }
    }
}

impl StoreConfig {
    /// A default configuration rooted at `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            ..StoreConfig::default()
        }
    }

    /// Checks every value; fjall panics on some out-of-range values, so this runs in `open`.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(StoreError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.data_dir.as_os_str().is_empty() {
            return bad("data_dir", "must not be empty");
        }
        if self.max_journal_bytes.is_some_and(|b| b < 64 * 1024 * 1024) {
            return bad("max_journal_bytes", "must be at least 64 MiB");
        }
        if self.max_write_buffer_bytes.is_some_and(|b| b < 1024 * 1024) {
            return bad("max_write_buffer_bytes", "must be at least 1 MiB");
        }
        if self.memtable_bytes < 64 * 1024 {
            return bad("memtable_bytes", "must be at least 64 KiB");
        }
        if self.hw_checkpoint_interval_ms == 0 {
            return bad("hw_checkpoint_interval_ms", "must be at least 1");
        }
        if self.writer_queue == 0 {
            return bad("writer_queue", "must be at least 1");
        }
        if self.cleaner_backoff_ms == 0 {
            return bad("cleaner_backoff_ms", "must be at least 1");
        }
        if self.cleaner_buffer_keys < 1024 {
            return bad("cleaner_buffer_keys", "must be at least 1024");
        }
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return bad("fsync", "interval must be at least 1 ms");
        }
        Ok(())
    }
}

/// Per-topic log configuration; `Default` is Kafka's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// Durability override; `None` = the node default.
    pub fsync: Option<FsyncPolicy>,
    /// Delete sealed segments whose newest record is older than this; `None` = keep forever.
    pub retention_ms: Option<i64>,
    /// Delete the oldest sealed segments while the rest still hold at least this many bytes;
    /// `None` = unlimited (Kafka's -1).
    pub retention_bytes: Option<u64>,
    /// Roll to a new segment when the active one would exceed this size.
    pub segment_bytes: u64,
    /// Roll to a new segment when the active one is older than this; `None` = never by time.
    pub segment_ms: Option<i64>,
    /// Which timestamps the log keeps.
    pub timestamp_type: TimestampType,
    /// Largest accepted batch in bytes (Kafka's `max.message.bytes`).
    pub max_message_bytes: u32,
    /// Retention, compaction or both (`cleanup.policy`).
    pub cleanup: CleanupPolicy,
    /// How compaction works when `cleanup.compact`.
    pub compaction: CompactionConfig,
}

const WEEK_MS: i64 = 7 * 24 * 3600 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            fsync: None,
            retention_ms: Some(WEEK_MS),
            retention_bytes: None,
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: Some(WEEK_MS),
            timestamp_type: TimestampType::CreateTime,
            max_message_bytes: 1_048_588,
            cleanup: CleanupPolicy::DELETE,
            compaction: CompactionConfig::default(),
        }
    }
}

impl LogConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(StoreError::InvalidConfig {
                field,
                reason: reason.into(),
            })
        };
        if self.retention_ms.is_some_and(|v| v < 0) {
            return bad("retention_ms", "must be >= 0 (None keeps forever)");
        }
        if self.segment_bytes < 1024 {
            return bad("segment_bytes", "must be at least 1024");
        }
        if self.segment_ms.is_some_and(|v| v < 1) {
            return bad("segment_ms", "must be >= 1 (None never rolls by time)");
        }
        if (self.max_message_bytes as usize) < crate::batch::HEADER_LEN {
            return bad("max_message_bytes", "must be at least 61 (a batch header)");
        }
        if let Some(FsyncPolicy::Interval(d)) = self.fsync
            && d.is_zero()
        {
            return bad("fsync", "interval must be at least 1 ms");
        }
        if !self.cleanup.delete && !self.cleanup.compact {
            return bad("cleanup", "delete, compact or both");
        }
        self.compaction.validate()
    }

    /// The age at which the active segment rolls: `segment_ms`, capped by
    /// `max_compaction_lag_ms` on a compacted log (a record cannot be cleaned while its segment
    /// is active), as Kafka's `LogConfig.maxSegmentMs`.
    pub fn roll_ms(&self) -> Option<i64> {
        let lag = self
            .compaction
            .max_compaction_lag_ms
            .filter(|_| self.cleanup.compact);
        match (self.segment_ms, lag) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_round_trips_as_string() {
        for s in ["always", "never", "interval:250"] {
            let p: FsyncPolicy = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
        assert!("interval:0".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }

    #[test]
    fn defaults_validate() {
        StoreConfig::default().validate().unwrap();
        LogConfig::default().validate().unwrap();
        let cfg = StoreConfig {
            max_journal_bytes: Some(1),
            ..StoreConfig::default()
        };
        assert!(cfg.validate().is_err());
        let log = LogConfig {
            segment_bytes: 10,
            ..LogConfig::default()
        };
        assert!(log.validate().is_err());
        let ratio = LogConfig {
            compaction: CompactionConfig {
                min_cleanable_dirty_ratio: 1.5,
                ..CompactionConfig::default()
            },
            ..LogConfig::default()
        };
        assert!(ratio.validate().is_err());
    }

    #[test]
    fn cleanup_policies_parse_as_kafka_spells_them() {
        for (s, delete, compact) in [
            ("delete", true, false),
            ("compact", false, true),
            ("compact,delete", true, true),
            ("delete, compact", true, true),
        ] {
            let p: CleanupPolicy = s.parse().unwrap();
            assert_eq!((p.delete, p.compact), (delete, compact), "{s}");
        }
        assert_eq!(
            CleanupPolicy::from_str("delete,compact")
                .unwrap()
                .to_string(),
            "compact,delete"
        );
        assert!("compact,nonsense".parse::<CleanupPolicy>().is_err());
    }

    #[test]
    fn a_compacted_log_rolls_within_the_max_compaction_lag() {
        let mut cfg = LogConfig {
            segment_ms: Some(10_000),
            cleanup: CleanupPolicy::COMPACT,
            ..LogConfig::default()
        };
        cfg.compaction.max_compaction_lag_ms = Some(3_000);
        assert_eq!(cfg.roll_ms(), Some(3_000));
        cfg.cleanup = CleanupPolicy::DELETE;
        assert_eq!(cfg.roll_ms(), Some(10_000));
    }
}
