//! The cleaner threads (Kafka's `log.cleaner.threads`): each picks the dirtiest compacted
//! partition that is due and not being cleaned, cleans it, and looks again; with nothing due
//! it waits `cleaner_backoff_ms` (Kafka's `log.cleaner.backoff.ms`). A partition whose log
//! turns out corrupt is skipped until the store reopens, as Kafka marks it uncleanable.

use super::CleanerShared;
use super::clean::{clean, plan_for};
use crate::error::StoreError;
use crate::shared::PartitionShared;
use crate::writer::wall_clock_ms;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Starts `n` cleaner threads.
pub(crate) fn spawn_threads(
    shared: &Arc<CleanerShared>,
    n: usize,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..n)
        .map(|i| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("rafka-log-cleaner-{i}"))
                .spawn(move || run(&shared))
        })
        .collect()
}

fn run(shared: &CleanerShared) {
    tracing::debug!("log cleaner thread started");
    while !shared.stopping() {
        let now = wall_clock_ms();
        let Some(part) = dirtiest(shared, now) else {
            shared.idle();
            continue;
        };
        match clean(shared, &part, now, false) {
            Ok(_) => {}
            Err(StoreError::Closed) => break,
            Err(e @ StoreError::CleaningAborted { .. }) => {
                tracing::debug!(tp = %part.tp, error = %e, "cleaning abandoned");
            }
            Err(e @ StoreError::CorruptRecord { .. }) => {
                tracing::error!(tp = %part.tp, error = %e, "log cleaner gave up on a partition until restart");
            }
            Err(e) => {
                tracing::warn!(tp = %part.tp, error = %e, "log cleaning failed");
                shared.idle();
            }
        }
    }
    tracing::debug!("log cleaner thread stopped");
}

/// The compacted partition with the highest dirty ratio among those due (Kafka's
/// `grabFilthiestCompactedLog`).
fn dirtiest(shared: &CleanerShared, now_ms: i64) -> Option<Arc<PartitionShared>> {
    let mut best: Option<(f64, Arc<PartitionShared>)> = None;
    for part in shared.registry.all() {
        if !part.config().cleanup.compact
            || part.cleaner_counters.failed()
            || shared.is_busy(&part.tp)
        {
            continue;
        }
        let (_, _, plan) = plan_for(&part, now_ms);
        if plan.due.is_none() {
            continue;
        }
        let ratio = plan.dirty_ratio();
        if best.as_ref().is_none_or(|(r, _)| ratio > *r) {
            best = Some((ratio, part));
        }
    }
    best.map(|(_, p)| p)
}
