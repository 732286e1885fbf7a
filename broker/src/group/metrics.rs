//! Recording the coordinator's metrics (names in [`crate::metrics`]).

use std::time::Duration;

use super::core::GroupStats;
use crate::metrics::{GROUP_COMMIT_SECONDS, GROUP_MEMBERS, GROUP_REBALANCES, GROUPS};

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
