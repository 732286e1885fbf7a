//! Recording the transaction coordinator's metrics (names in [`crate::metrics`]).

use std::time::Duration;

use super::core::{TxnCoordinator, TxnStats, TxnStatus};
use crate::metrics::{
    TXN_END_SECONDS, TXN_ENDED, TXN_FENCED, TXN_IDS, TXN_MARKERS_PENDING, TXN_OPEN, TXN_TIMEOUTS,
};

/// Publishes the gauges, and the counters' growth since `reported` (then updated).
pub fn publish(core: &TxnCoordinator, reported: &mut TxnStats) {
    let counts = core.count_by_status();
    // Dead and PrepareEpochFence are never kept.
    let kept = TxnStatus::ALL
        .iter()
        .filter(|s| !matches!(s, TxnStatus::Dead | TxnStatus::PrepareEpochFence));
    for status in kept {
        let count = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        metrics::gauge!(TXN_IDS, "status" => status.name()).set(count as f64);
    }
    metrics::gauge!(TXN_OPEN).set(core.open_transactions() as f64);
    metrics::gauge!(TXN_MARKERS_PENDING).set(core.markers_pending() as f64);
    let stats = core.stats();
    let grown = |now: u64, before: u64| now.saturating_sub(before);
    metrics::counter!(TXN_ENDED, "outcome" => "commit")
        .increment(grown(stats.commits, reported.commits));
    metrics::counter!(TXN_ENDED, "outcome" => "abort")
        .increment(grown(stats.aborts, reported.aborts));
    metrics::counter!(TXN_TIMEOUTS).increment(grown(stats.timeouts, reported.timeouts));
    metrics::counter!(TXN_FENCED).increment(grown(stats.fenced, reported.fenced));
    *reported = stats;
}

/// Records one EndTxn's latency.
pub fn end_done(elapsed: Duration, ok: bool) {
    let outcome = if ok { "ok" } else { "error" };
    metrics::histogram!(TXN_END_SECONDS, "outcome" => outcome).record(elapsed.as_secs_f64());
}
