//! Topic configuration: the keys Rafka understands, their validation, defaults and mapping onto the
//! store's [`LogConfig`].

use std::collections::BTreeMap;
use std::str::FromStr;

use rafka_store::{
    CleanupPolicy, CompactionConfig, CompactionStrategy, FsyncPolicy, LogConfig, TimestampType,
};

/// A bad topic config.
#[derive(Clone, Debug, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum TopicConfigError {
    /// The key is not a topic config Rafka knows.
    #[error("unknown topic config '{0}'")]
    Unknown(String),
    /// The value does not parse or is out of range.
    #[error("invalid value {value:?} for topic config '{key}': {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What is expected.
        reason: String,
    },
}

/// Kafka's type codes for DescribeConfigs v3+.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    /// BOOLEAN.
    Boolean = 1,
    /// STRING.
    String = 2,
    /// INT.
    Int = 3,
    /// LONG.
    Long = 5,
    /// DOUBLE.
    Double = 6,
    /// LIST.
    List = 7,
}

/// One known key: its type and documentation.
#[derive(Debug)]
pub struct ConfigKey {
    /// Kafka name.
    pub name: &'static str,
    /// Type.
    pub kind: ConfigType,
    /// One-line documentation.
    pub doc: &'static str,
}

/// Every topic config Rafka understands.
pub const KEYS: &[ConfigKey] = &[
    ConfigKey {
        name: "cleanup.policy",
        kind: ConfigType::List,
        doc: "delete, compact or compact,delete: retention by time and size, key compaction, or both",
    },
    ConfigKey {
        name: "compression.type",
        kind: ConfigType::String,
        doc: "producer: batches are stored as the producer compressed them",
    },
    ConfigKey {
        name: "delete.retention.ms",
        kind: ConfigType::Long,
        doc: "how long a tombstone stays after the first cleaning that kept it",
    },
    ConfigKey {
        name: "max.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "a record is cleaned at the latest this long after it was written",
    },
    ConfigKey {
        name: "max.message.bytes",
        kind: ConfigType::Int,
        doc: "largest record batch accepted",
    },
    ConfigKey {
        name: "message.timestamp.type",
        kind: ConfigType::String,
        doc: "CreateTime or LogAppendTime",
    },
    ConfigKey {
        name: "min.cleanable.dirty.ratio",
        kind: ConfigType::Double,
        doc: "clean a compacted log once this share of it is dirty",
    },
    ConfigKey {
        name: "min.compaction.lag.ms",
        kind: ConfigType::Long,
        doc: "a record stays uncompacted at least this long",
    },
    ConfigKey {
        name: "min.insync.replicas",
        kind: ConfigType::Int,
        doc: "replicas that must have a write before acks=all succeeds",
    },
    ConfigKey {
        name: "rafka.compaction.history.ms",
        kind: ConfigType::Long,
        doc: "hybrid: how far back the windowed history goes; older records as keep-latest",
    },
    ConfigKey {
        name: "rafka.compaction.strategy",
        kind: ConfigType::String,
        doc: "keep-latest (Kafka's compaction), time-window or hybrid",
    },
    ConfigKey {
        name: "rafka.compaction.window.ms",
        kind: ConfigType::Long,
        doc: "time-window and hybrid: the latest record per key in each window of this length survives",
    },
    ConfigKey {
        name: "rafka.fsync",
        kind: ConfigType::String,
        doc: "always | never | interval:MS; overrides the node's --fsync",
    },
    ConfigKey {
        name: "retention.bytes",
        kind: ConfigType::Long,
        doc: "size kept per partition; -1 unlimited",
    },
    ConfigKey {
        name: "retention.ms",
        kind: ConfigType::Long,
        doc: "time data is kept; -1 forever",
    },
    ConfigKey {
        name: "segment.bytes",
        kind: ConfigType::Int,
        doc: "segment size: retention drops whole segments",
    },
    ConfigKey {
        name: "segment.ms",
        kind: ConfigType::Long,
        doc: "segment age after which a new one is rolled",
    },
    ConfigKey {
        name: "unclean.leader.election.enable",
        kind: ConfigType::Boolean,
        doc: "elect an out-of-sync replica when none is in sync (may lose data)",
    },
];

/// Node-level defaults that topic configs override.
#[derive(Clone, Debug)]
pub struct TopicDefaults {
    /// Node fsync policy.
    pub fsync: FsyncPolicy,
    /// Default retention.ms.
    pub retention_ms: i64,
    /// Default retention.bytes.
    pub retention_bytes: i64,
    /// Default segment.bytes.
    pub segment_bytes: u64,
    /// Default min.insync.replicas.
    pub min_insync_replicas: i32,
}

impl TopicDefaults {
    /// The default value of a key, as a string.
    pub fn default_value(&self, key: &str) -> Option<String> {
        let compaction = CompactionConfig::default();
        let value = match key {
            "cleanup.policy" => "delete".to_string(),
            "compression.type" => "producer".to_string(),
            "delete.retention.ms" => compaction.delete_retention_ms.to_string(),
            "max.compaction.lag.ms" => i64::MAX.to_string(),
            "max.message.bytes" => LogConfig::default().max_message_bytes.to_string(),
            "message.timestamp.type" => "CreateTime".to_string(),
            "min.cleanable.dirty.ratio" => compaction.min_cleanable_dirty_ratio.to_string(),
            "min.compaction.lag.ms" => compaction.min_compaction_lag_ms.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "rafka.compaction.history.ms" => DEFAULT_HISTORY_MS.to_string(),
            "rafka.compaction.strategy" => "keep-latest".to_string(),
            "rafka.compaction.window.ms" => DEFAULT_WINDOW_MS.to_string(),
            "rafka.fsync" => self.fsync.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => "604800000".to_string(),
            "unclean.leader.election.enable" => "false".to_string(),
            _ => return None,
        };
        Some(value)
    }
}

/// `rafka.compaction.window.ms` when not set: an hour.
const DEFAULT_WINDOW_MS: i64 = 3_600_000;
/// `rafka.compaction.history.ms` when not set: a week.
const DEFAULT_HISTORY_MS: i64 = 7 * 24 * 3_600_000;

/// Checks that `key` is a list config (IncrementalAlterConfigs may APPEND to and SUBTRACT from
/// it): an error when it is unknown or not a list.
pub fn check_list_key(key: &str) -> Result<(), TopicConfigError> {
    match KEYS.iter().find(|k| k.name == key) {
        None => Err(TopicConfigError::Unknown(key.to_string())),
        Some(k) if k.kind == ConfigType::List => Ok(()),
        Some(_) => Err(TopicConfigError::Invalid {
            key: key.to_string(),
            value: String::new(),
            reason: "APPEND and SUBTRACT work only on list configs".into(),
        }),
    }
}

/// Validates explicit overrides (as given to CreateTopics or AlterConfigs).
pub fn validate(configs: &BTreeMap<String, String>) -> Result<(), TopicConfigError> {
    for (key, value) in configs {
        validate_one(key, value)?;
    }
    Ok(())
}

fn validate_one(key: &str, value: &str) -> Result<(), TopicConfigError> {
    let invalid = |reason: &str| TopicConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let long_at_least = |min: i64| -> Result<(), TopicConfigError> {
        match value.parse::<i64>() {
            Ok(v) if v >= min => Ok(()),
            _ => Err(invalid(&format!("an integer >= {min}"))),
        }
    };
    match key {
        "cleanup.policy" => CleanupPolicy::from_str(value)
            .map(|_| ())
            .map_err(|_| invalid("delete, compact or compact,delete")),
        "delete.retention.ms" | "min.compaction.lag.ms" | "rafka.compaction.history.ms" => {
            long_at_least(0)
        }
        "max.compaction.lag.ms" | "rafka.compaction.window.ms" => long_at_least(1),
        "min.cleanable.dirty.ratio" => match value.parse::<f64>() {
            Ok(v) if (0.0..=1.0).contains(&v) => Ok(()),
            _ => Err(invalid("a number between 0 and 1")),
        },
        "rafka.compaction.strategy"
            if matches!(value, "keep-latest" | "time-window" | "hybrid") =>
        {
            Ok(())
        }
        "rafka.compaction.strategy" => Err(invalid("keep-latest, time-window or hybrid")),
        "compression.type" if value == "producer" => Ok(()),
        "compression.type" => Err(invalid(
            "only 'producer' is supported: batches are stored verbatim",
        )),
        "max.message.bytes" => long_at_least(0).and_then(|()| {
            value
                .parse::<u32>()
                .map(|_| ())
                .map_err(|_| invalid("at most 4294967295"))
        }),
        "message.timestamp.type" if matches!(value, "CreateTime" | "LogAppendTime") => Ok(()),
        "message.timestamp.type" => Err(invalid("CreateTime or LogAppendTime")),
        "min.insync.replicas" => long_at_least(1),
        "rafka.fsync" => FsyncPolicy::from_str(value)
            .map(|_| ())
            .map_err(|e| invalid(&e.to_string())),
        "retention.bytes" | "retention.ms" => match value.parse::<i64>() {
            Ok(-1) => Ok(()),
            Ok(v) if v > 0 => Ok(()),
            _ => Err(invalid("-1 or a positive integer")),
        },
        "segment.bytes" => long_at_least(1024),
        "segment.ms" => long_at_least(1),
        "unclean.leader.election.enable" if matches!(value, "true" | "false") => Ok(()),
        "unclean.leader.election.enable" => Err(invalid("true or false")),
        _ => Err(TopicConfigError::Unknown(key.to_string())),
    }
}

/// The effective value of `key` for a topic with these overrides.
pub fn effective(
    configs: &BTreeMap<String, String>,
    defaults: &TopicDefaults,
    key: &str,
) -> Option<String> {
    configs
        .get(key)
        .cloned()
        .or_else(|| defaults.default_value(key))
}

/// The store's view of a topic's config.
pub fn log_config(configs: &BTreeMap<String, String>, defaults: &TopicDefaults) -> LogConfig {
    let get = |key: &str| effective(configs, defaults, key).unwrap_or_default();
    let positive = |key: &str| get(key).parse::<i64>().ok().filter(|v| *v > 0);
    let base = LogConfig::default();
    LogConfig {
        fsync: configs
            .get("rafka.fsync")
            .and_then(|v| FsyncPolicy::from_str(v).ok()),
        retention_ms: positive("retention.ms"),
        retention_bytes: positive("retention.bytes").and_then(|v| u64::try_from(v).ok()),
        segment_bytes: positive("segment.bytes")
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(base.segment_bytes),
        segment_ms: positive("segment.ms"),
        timestamp_type: if get("message.timestamp.type") == "LogAppendTime" {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        max_message_bytes: get("max.message.bytes")
            .parse()
            .unwrap_or(base.max_message_bytes),
        cleanup: CleanupPolicy::from_str(&get("cleanup.policy")).unwrap_or_default(),
        compaction: compaction_config(&get),
    }
}

/// The compaction settings of a topic (validated values; the defaults otherwise).
fn compaction_config(get: &dyn Fn(&str) -> String) -> CompactionConfig {
    let base = CompactionConfig::default();
    let long = |key: &str, default: i64| get(key).parse::<i64>().unwrap_or(default);
    let window_ms = long("rafka.compaction.window.ms", DEFAULT_WINDOW_MS);
    let strategy = match get("rafka.compaction.strategy").as_str() {
        "time-window" => CompactionStrategy::TimeWindow { window_ms },
        "hybrid" => CompactionStrategy::Hybrid {
            window_ms,
            history_ms: long("rafka.compaction.history.ms", DEFAULT_HISTORY_MS),
        },
        _ => CompactionStrategy::KeepLatest,
    };
    CompactionConfig {
        strategy,
        delete_retention_ms: long("delete.retention.ms", base.delete_retention_ms),
        min_compaction_lag_ms: long("min.compaction.lag.ms", base.min_compaction_lag_ms),
        max_compaction_lag_ms: Some(long("max.compaction.lag.ms", i64::MAX))
            .filter(|v| *v < i64::MAX),
        min_cleanable_dirty_ratio: get("min.cleanable.dirty.ratio")
            .parse()
            .unwrap_or(base.min_cleanable_dirty_ratio),
    }
}

/// `min.insync.replicas` of a topic: its override, else the node default.
pub fn min_insync_replicas(configs: &BTreeMap<String, String>, defaults: &TopicDefaults) -> i32 {
    configs
        .get("min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.min_insync_replicas)
}

/// `unclean.leader.election.enable` of a topic (off unless set).
pub fn unclean_leader_election(configs: &BTreeMap<String, String>) -> bool {
    configs
        .get("unclean.leader.election.enable")
        .is_some_and(|v| v == "true")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Node defaults for unit tests.
    pub(crate) fn defaults() -> TopicDefaults {
        TopicDefaults {
            fsync: FsyncPolicy::Always,
            retention_ms: 1000,
            retention_bytes: -1,
            segment_bytes: 1 << 20,
            min_insync_replicas: 1,
        }
    }

    /// Overrides from pairs.
    pub(crate) fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn known_keys_validate_and_unknown_keys_do_not() {
        assert!(
            validate(&map(&[
                ("retention.ms", "-1"),
                ("rafka.fsync", "interval:50")
            ]))
            .is_ok()
        );
        assert!(matches!(
            validate(&map(&[("retention.mss", "1")])),
            Err(TopicConfigError::Unknown(_))
        ));
        for (k, v) in [
            ("retention.ms", "0"),
            ("cleanup.policy", "compact,nonsense"),
            ("min.cleanable.dirty.ratio", "1.5"),
            ("rafka.compaction.strategy", "newest"),
            ("rafka.compaction.window.ms", "0"),
            ("rafka.fsync", "sometimes"),
            ("message.timestamp.type", "Now"),
            ("segment.bytes", "12"),
        ] {
            assert!(validate(&map(&[(k, v)])).is_err(), "{k}={v} accepted");
        }
        for key in KEYS {
            assert!(
                defaults().default_value(key.name).is_some(),
                "{} has no default",
                key.name
            );
        }
    }

    #[test]
    fn overrides_map_onto_the_log_config() {
        let config = log_config(
            &map(&[
                ("retention.bytes", "4096"),
                ("message.timestamp.type", "LogAppendTime"),
                ("rafka.fsync", "never"),
            ]),
            &defaults(),
        );
        assert_eq!(config.retention_bytes, Some(4096));
        assert_eq!(config.retention_ms, Some(1000), "node default applies");
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.fsync, Some(FsyncPolicy::Never));
        assert_eq!(config.segment_bytes, 1 << 20);
        let forever = log_config(&map(&[("retention.ms", "-1")]), &defaults());
        assert_eq!(forever.retention_ms, None);
        assert_eq!(forever.cleanup, CleanupPolicy::DELETE);
    }

    #[test]
    fn compaction_configs_map_onto_the_log_config() {
        let plain = log_config(&map(&[("cleanup.policy", "compact")]), &defaults());
        assert_eq!(plain.cleanup, CleanupPolicy::COMPACT);
        assert_eq!(plain.compaction, CompactionConfig::default());
        let hybrid = log_config(
            &map(&[
                ("cleanup.policy", "compact,delete"),
                ("rafka.compaction.strategy", "hybrid"),
                ("rafka.compaction.window.ms", "60000"),
                ("rafka.compaction.history.ms", "86400000"),
                ("delete.retention.ms", "100"),
                ("min.compaction.lag.ms", "5"),
                ("max.compaction.lag.ms", "7000"),
                ("min.cleanable.dirty.ratio", "0.01"),
            ]),
            &defaults(),
        );
        assert!(hybrid.cleanup.compact && hybrid.cleanup.delete);
        let c = hybrid.compaction;
        assert_eq!(
            c.strategy,
            CompactionStrategy::Hybrid {
                window_ms: 60_000,
                history_ms: 86_400_000
            }
        );
        assert_eq!(
            (
                c.delete_retention_ms,
                c.min_compaction_lag_ms,
                c.max_compaction_lag_ms
            ),
            (100, 5, Some(7_000))
        );
        assert_eq!(c.min_cleanable_dirty_ratio, 0.01);
        hybrid.validate().expect("a valid store config");
        let window = log_config(
            &map(&[("rafka.compaction.strategy", "time-window")]),
            &defaults(),
        );
        assert_eq!(
            window.compaction.strategy,
            CompactionStrategy::TimeWindow {
                window_ms: DEFAULT_WINDOW_MS
            }
        );
    }
}
