//! Recording the coordinator's metrics (names in [`crate::metrics`]).

use std::time::Duration;

use super::core::GroupStats;
use crate::metrics::{
    GROUP_COMMIT_SECONDS, GROUP_LAG, GROUP_LAG_SERIES_DROPPED, GROUP_LAG_SERIES_MAX, GROUP_MEMBERS,
    GROUP_REBALANCES, GROUPS,
};

const STATES: &[&str] = &[
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
];

/// Publishes groups by state and members.
pub fn groups(stats: &GroupStats) {
    for state in STATES {
        let count = stats.by_state.get(state).copied().unwrap_or(0);
        metrics::gauge!(GROUPS, "state" => *state).set(count as f64);
    }
    metrics::gauge!(GROUP_MEMBERS).set(stats.members as f64);
}

/// Counts rebalances started since the last report.
pub fn rebalances(started: u64) {
    metrics::counter!(GROUP_REBALANCES).increment(started);
}

/// Records one OffsetCommit's latency.
pub fn commit_done(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(GROUP_COMMIT_SECONDS, "outcome" => outcome).record(elapsed.as_secs_f64());
}

/// Publishes the lag of each (group, topic, partition), at most [`GROUP_LAG_SERIES_MAX`] series;
/// series published last time and gone now are set to 0 rather than left stale. Returns the
/// series published.
pub fn lag(
    lag: &[(String, String, i32, i64)],
    previous: Vec<(String, String, i32)>,
) -> Vec<(String, String, i32)> {
    let published: Vec<(String, String, i32)> = lag
        .iter()
        .take(GROUP_LAG_SERIES_MAX)
        .map(|(g, t, p, _)| (g.clone(), t.clone(), *p))
        .collect();
    for (group, topic, partition, value) in lag.iter().take(GROUP_LAG_SERIES_MAX) {
        metrics::gauge!(GROUP_LAG, "group" => group.clone(), "topic" => topic.clone(), "partition" => partition.to_string())
            .set(*value as f64);
    }
    for (group, topic, partition) in previous {
        if !published.contains(&(group.clone(), topic.clone(), partition)) {
            metrics::gauge!(GROUP_LAG, "group" => group, "topic" => topic, "partition" => partition.to_string())
                .set(0.0);
        }
    }
    let dropped = lag.len().saturating_sub(GROUP_LAG_SERIES_MAX);
    metrics::gauge!(GROUP_LAG_SERIES_DROPPED).set(dropped as f64);
    published
}
