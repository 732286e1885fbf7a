//! The leader-epoch cache (KIP-101/KIP-279): for each leader epoch, the first offset written
//! in it. Pure; the writer persists the changes it reports under `meta` `E` keys.

/// Sorted `(epoch, start offset)` entries, both strictly increasing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<(i32, i64)>,
}

/// A change to persist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EpochChange {
    Put(i32, i64),
    Remove(i32),
}

impl LeaderEpochCache {
    pub(crate) fn from_entries(mut entries: Vec<(i32, i64)>) -> Self {
        entries.sort_unstable();
        LeaderEpochCache { entries }
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.0)
    }

    /// Records that `epoch` starts at `start` if it is newer than the latest epoch. Negative
    /// epochs (batches written without one) are ignored, as are older epochs.
    pub(crate) fn assign(&mut self, epoch: i32, start: i64) -> Option<EpochChange> {
        if epoch < 0 || self.latest_epoch().is_some_and(|latest| epoch <= latest) {
            return None;
        }
        self.entries.push((epoch, start));
        Some(EpochChange::Put(epoch, start))
    }

    /// Drops entries starting at or after `end` (the log was truncated to `end`).
    pub(crate) fn truncate_from_end(&mut self, end: i64) -> Vec<EpochChange> {
        let keep = self.entries.partition_point(|e| e.1 < end);
        self.entries
            .split_off(keep)
            .into_iter()
            .map(|e| EpochChange::Remove(e.0))
            .collect()
    }

    /// The log start moved to `start`: entries wholly before it go, the one covering it is
    /// moved up to `start`.
    pub(crate) fn truncate_from_start(&mut self, start: i64) -> Vec<EpochChange> {
        let below = self.entries.partition_point(|e| e.1 < start);
        if below == 0 {
            return Vec::new();
        }
        let covered = self.entries.get(below).is_none_or(|e| e.1 > start);
        let mut changes: Vec<EpochChange> = self
            .entries
            .drain(..below)
            .map(|e| EpochChange::Remove(e.0))
            .collect();
        if covered && let Some(EpochChange::Remove(epoch)) = changes.pop() {
            self.entries.insert(0, (epoch, start));
            changes.push(EpochChange::Put(epoch, start));
        }
        changes
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch <= `requested` and the
    /// offset where it ended (the next epoch's start, or `log_end` for the latest epoch).
    /// `None` is Kafka's (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET).
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(i32, i64)> {
        if requested < 0 {
            return None;
        }
        if self.latest_epoch() == Some(requested) {
            return Some((requested, log_end));
        }
        let higher = self.entries.iter().find(|e| e.0 > requested)?;
        let floor = self.entries.iter().rev().find(|e| e.0 <= requested);
        Some(match floor {
            Some(f) => (f.0, higher.1),
            None => (requested, higher.1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_end_offset_semantics() {
        let mut c = LeaderEpochCache::default();
        assert_eq!(c.end_offset_for(0, 10), None);
        assert!(c.assign(1, 0).is_some());
        assert!(c.assign(1, 5).is_none());
        assert!(c.assign(3, 10).is_some());
        assert_eq!(c.end_offset_for(3, 20), Some((3, 20)));
        assert_eq!(c.end_offset_for(2, 20), Some((1, 10)));
        assert_eq!(c.end_offset_for(0, 20), Some((0, 0)));
        assert_eq!(c.end_offset_for(4, 20), None);
        assert_eq!(c.truncate_from_end(10), vec![EpochChange::Remove(3)]);
        assert_eq!(c.truncate_from_start(4), vec![EpochChange::Put(1, 4)]);
        assert_eq!(c.entries(), &[(1, 4)]);
    }
}
