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
        if let FsyncPolicy::Interval(d) = self.fsync
            && d.is_zero()
        {
            return bad("fsync", "interval must be at least 1 ms");
        }
        Ok(())
    }
}

/// Per-topic log configuration; `Default` is Kafka's defaults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
        Ok(())
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
    }
}
