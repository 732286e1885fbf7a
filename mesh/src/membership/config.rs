//! Membership configuration.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::MeshError;
use crate::failure_detector::FailureDetectorConfig;

/// Tuning of the gossip membership protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MembershipConfig {
    /// The cluster this node belongs to, once known. Messages and node states of another cluster
    /// are ignored (and reported), so two clusters sharing a network never mix. A node without one
    /// talks to anyone.
    pub cluster_id: Option<String>,
    /// The own heartbeat counter grows, and is broadcast, this often.
    pub heartbeat_interval_ms: u64,
    /// An anti-entropy round (Syn → Ack → Ack2) with a random live peer starts this often.
    pub gossip_interval_ms: u64,
    /// How often the caller should call `tick` (suspicion is re-evaluated at each tick, so this
    /// adds to the detection time).
    pub tick_interval_ms: u64,
    /// A gap between two ticks longer than this means this node itself stalled (a blocked event
    /// loop, a paused process): the silence of peers during the gap is not held against them.
    pub stall_threshold_ms: u64,
    /// Largest encoded message produced, broadcasts included. gossipsub refuses messages over
    /// 64 KiB by default (its own framing included), hence 60 KiB.
    pub max_message_bytes: usize,
    /// Longest key accepted by `set`.
    pub max_key_bytes: usize,
    /// Longest value accepted by `set`.
    pub max_value_bytes: usize,
    /// A dead or left node is forgotten this long after it became so; its tombstone (generation)
    /// is kept as long again, so stale gossip cannot bring it back.
    pub gc_after_ms: u64,
    /// After `leave`, the departure is broadcast again this many times...
    pub leave_rebroadcasts: u32,
    /// ...this far apart, and sent directly to as many random live peers, so peers learn it at
    /// once even if a broadcast is lost.
    pub leave_rebroadcast_interval_ms: u64,
    /// A node of another cluster is reported at most this often.
    pub foreign_report_interval_ms: u64,
    /// The phi-accrual failure detector.
    pub failure_detector: FailureDetectorConfig,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            cluster_id: None,
            heartbeat_interval_ms: 1_000,
            gossip_interval_ms: 1_000,
            tick_interval_ms: 100,
            stall_threshold_ms: 1_000,
            max_message_bytes: 60 * 1024,
            max_key_bytes: 256,
            max_value_bytes: 16 * 1024,
            gc_after_ms: 60 * 60 * 1000,
            leave_rebroadcasts: 3,
            leave_rebroadcast_interval_ms: 200,
            foreign_report_interval_ms: 60_000,
            failure_detector: FailureDetectorConfig::default(),
        }
    }
}

/// Bytes set aside next to the largest key and value: a node delta's header and the envelope.
const ENTRY_SLACK: usize = 512;

impl MembershipConfig {
    /// Checks the values make sense together.
    pub fn validate(&self) -> Result<(), MeshError> {
        let bad = |m: String| Err(MeshError::Config(format!("membership: {m}")));
        for (name, value) in [
            ("heartbeat_interval_ms", self.heartbeat_interval_ms),
            ("gossip_interval_ms", self.gossip_interval_ms),
            ("tick_interval_ms", self.tick_interval_ms),
            ("gc_after_ms", self.gc_after_ms),
            (
                "leave_rebroadcast_interval_ms",
                self.leave_rebroadcast_interval_ms,
            ),
        ] {
            if value == 0 {
                return bad(format!("{name} must be positive"));
            }
        }
        if self.stall_threshold_ms <= self.tick_interval_ms {
            return bad("stall_threshold_ms must exceed tick_interval_ms".into());
        }
        if !(4 * 1024..=1024 * 1024).contains(&self.max_message_bytes) {
            return bad(format!(
                "max_message_bytes {} is outside 4 KiB..=1 MiB",
                self.max_message_bytes
            ));
        }
        let cluster_len = self.cluster_id.as_ref().map_or(0, String::len);
        // A single entry must fit in the delta half of an Ack, beside the digest half.
        if self.max_key_bytes + self.max_value_bytes + cluster_len + ENTRY_SLACK
            > self.max_message_bytes / 2
        {
            return bad(format!(
                "max_key_bytes {} + max_value_bytes {} do not fit in half of max_message_bytes {}",
                self.max_key_bytes, self.max_value_bytes, self.max_message_bytes
            ));
        }
        if self.max_key_bytes == 0 {
            return bad("max_key_bytes must be positive".into());
        }
        if self.gc_after_ms < self.failure_detector.dead_after_ms {
            return bad("gc_after_ms is shorter than the failure detector's dead_after_ms".into());
        }
        self.failure_detector.validate()
    }

    /// [`Self::heartbeat_interval_ms`] as a `Duration`.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    /// [`Self::gossip_interval_ms`] as a `Duration`.
    pub fn gossip_interval(&self) -> Duration {
        Duration::from_millis(self.gossip_interval_ms)
    }

    /// [`Self::tick_interval_ms`] as a `Duration`.
    pub fn tick_interval(&self) -> Duration {
        Duration::from_millis(self.tick_interval_ms)
    }

    /// [`Self::stall_threshold_ms`] as a `Duration`.
    pub fn stall_threshold(&self) -> Duration {
        Duration::from_millis(self.stall_threshold_ms)
    }

    /// [`Self::gc_after_ms`] as a `Duration`.
    pub fn gc_after(&self) -> Duration {
        Duration::from_millis(self.gc_after_ms)
    }

    /// [`Self::leave_rebroadcast_interval_ms`] as a `Duration`.
    pub fn leave_rebroadcast_interval(&self) -> Duration {
        Duration::from_millis(self.leave_rebroadcast_interval_ms)
    }

    /// [`Self::foreign_report_interval_ms`] as a `Duration`.
    pub fn foreign_report_interval(&self) -> Duration {
        Duration::from_millis(self.foreign_report_interval_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_refused() {
        assert!(MembershipConfig::default().validate().is_ok());
        let bad = [
            MembershipConfig {
                heartbeat_interval_ms: 0,
                ..Default::default()
            },
            MembershipConfig {
                max_message_bytes: 100,
                ..Default::default()
            },
            MembershipConfig {
                max_value_bytes: 40 * 1024,
                ..Default::default()
            },
            MembershipConfig {
                gc_after_ms: 10,
                ..Default::default()
            },
            MembershipConfig {
                failure_detector: FailureDetectorConfig {
                    window_size: 0,
                    ..Default::default()
                },
                ..Default::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn partial_config_fills_in_defaults() {
        let config: MembershipConfig = serde_json::from_str(
            r#"{"cluster_id": "prod", "failure_detector": {"phi_suspect": 10.0}}"#,
        )
        .expect("parses");
        assert_eq!(config.cluster_id.as_deref(), Some("prod"));
        assert_eq!(config.failure_detector.phi_suspect, 10.0);
        assert_eq!(config.heartbeat_interval_ms, 1_000);
        assert!(serde_json::from_str::<MembershipConfig>(r#"{"nope": 1}"#).is_err());
    }
}
