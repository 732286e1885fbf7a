//! Tests of the replication cores: unit tests of each rule (`leader`, `follower`) and the KIP-101
//! and KIP-279 divergence scenarios (`scenarios`); [`MemLog`], the in-memory log they and the
//! seeded simulation (`partition/sim/`, which drives the shells) use.

mod follower;
mod leader;
mod scenarios;

use super::LocalLog;
use crate::ids::{LeaderEpoch, Offset};

/// An in-memory log: one record per offset, each with the leader epoch it was written in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MemLog {
    /// (offset, leader epoch), offsets contiguous from the log start.
    pub records: Vec<(i64, i32)>,
    pub start: i64,
    pub high_watermark: i64,
}

impl MemLog {
    /// A log from the epochs of records 0, 1, 2, ...
    pub fn from_epochs(epochs: &[i32]) -> Self {
        Self {
            records: epochs
                .iter()
                .copied()
                .zip(0..)
                .map(|(e, o)| (o, e))
                .collect(),
            start: 0,
            high_watermark: 0,
        }
    }

    pub fn end(&self) -> i64 {
        self.start + self.records.len() as i64
    }

    pub fn append(&mut self, epoch: i32) -> i64 {
        let offset = self.end();
        self.records.push((offset, epoch));
        offset
    }

    /// The records from `offset` on, at most `max`.
    pub fn read(&self, offset: i64, max: usize) -> Vec<(i64, i32)> {
        let from = usize::try_from(offset - self.start).unwrap_or(usize::MAX);
        self.records.iter().skip(from).take(max).copied().collect()
    }

    /// Appends records that must start at the log end.
    pub fn append_replicated(&mut self, records: &[(i64, i32)]) {
        for &(offset, epoch) in records {
            assert_eq!(offset, self.end(), "replicated records continue the log");
            self.records.push((offset, epoch));
        }
    }

    pub fn truncate_to(&mut self, offset: i64) {
        if offset < self.start {
            self.reset_to(offset);
            return;
        }
        let keep = usize::try_from(offset - self.start).unwrap_or(usize::MAX);
        self.records.truncate(keep);
        self.high_watermark = self.high_watermark.min(self.end());
    }

    pub fn reset_to(&mut self, offset: i64) {
        self.records.clear();
        self.start = offset;
        self.high_watermark = offset;
    }

    pub fn epoch_at(&self, offset: i64) -> Option<i32> {
        let index = usize::try_from(offset - self.start).ok()?;
        self.records.get(index).map(|r| r.1)
    }

    /// The leader-epoch cache: (epoch, start offset) at each epoch increase.
    fn epoch_entries(&self) -> Vec<(i32, i64)> {
        let mut entries: Vec<(i32, i64)> = Vec::new();
        for &(offset, epoch) in &self.records {
            if entries.last().is_none_or(|last| epoch > last.0) {
                entries.push((epoch, offset));
            }
        }
        entries
    }
}

impl LocalLog for MemLog {
    fn log_start_offset(&self) -> Offset {
        Offset(self.start)
    }

    fn log_end_offset(&self) -> Offset {
        Offset(self.end())
    }

    fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark)
    }

    fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epoch_entries().last().map(|e| LeaderEpoch(e.0))
    }

    /// The store's semantics (`store/src/leader_epoch.rs`), which are Kafka's.
    fn end_offset_for_epoch(&self, requested: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.end_offset_for(requested.0)
            .map(|(epoch, end)| (LeaderEpoch(epoch), Offset(end)))
    }
}

impl MemLog {
    fn end_offset_for(&self, requested: i32) -> Option<(i32, i64)> {
        let entries = self.epoch_entries();
        if requested < 0 {
            return None;
        }
        if entries.last().map(|e| e.0) == Some(requested) {
            return Some((requested, self.end()));
        }
        let higher = entries.iter().find(|e| e.0 > requested)?;
        let floor = entries.iter().rev().find(|e| e.0 <= requested);
        Some(match floor {
            Some(f) => (f.0, higher.1),
            None => (requested, higher.1),
        })
    }
}
