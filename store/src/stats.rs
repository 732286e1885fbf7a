//! Counters the writer bumps and [`crate::Store::stats`] reads.

use crate::types::StoreStats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub append_requests: AtomicU64,
    pub appended_batches: AtomicU64,
    pub appended_bytes: AtomicU64,
    pub duplicates: AtomicU64,
    pub commits: AtomicU64,
    pub fsyncs: AtomicU64,
    pub largest_group: AtomicU64,
    pub segments_rolled: AtomicU64,
    pub segments_deleted: AtomicU64,
    pub orphan_segments: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StoreStats {
        StoreStats {
            append_requests: self.append_requests.load(Relaxed),
            appended_batches: self.appended_batches.load(Relaxed),
            appended_bytes: self.appended_bytes.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
            commits: self.commits.load(Relaxed),
            fsyncs: self.fsyncs.load(Relaxed),
            largest_group: self.largest_group.load(Relaxed),
            segments_rolled: self.segments_rolled.load(Relaxed),
            segments_deleted: self.segments_deleted.load(Relaxed),
            orphan_segments: self.orphan_segments.load(Relaxed),
        }
    }
}
