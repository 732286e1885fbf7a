//! The writer's own view of each partition, and how it publishes it to readers.

use crate::codec::{CleanerCheckpoint, PartitionRecord, SegmentSummary};
use crate::config::LogConfig;
use crate::keys::{self, META_CLEANER, META_EPOCH, META_PARTITION, META_SEGMENT};
use crate::leader_epoch::{EpochChange, LeaderEpochCache};
use crate::producer_state::ProducerEntry;
use crate::shared::{Engine, PartitionShared, SegmentView};
use crate::txn::TxnState;
use crate::types::TopicPartition;
use fjall::{Keyspace, OwnedWriteBatch};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A segment: its keyspace and its running summary.
pub(crate) struct SegmentState {
    pub summary: SegmentSummary,
    pub keyspace: Keyspace,
}

/// Everything the writer knows about one partition. Only the writer thread touches it.
pub(crate) struct PartitionState {
    pub shared: Arc<PartitionShared>,
    pub config: LogConfig,
    pub log_start: i64,
    pub log_end: i64,
    /// Sorted by base offset; the last one is active.
    pub segments: Vec<SegmentState>,
    pub epochs: LeaderEpochCache,
    /// Producer states read so far (authoritative for the ids present).
    pub producers: HashMap<i64, ProducerEntry>,
    /// High watermark last written to `meta`.
    pub hw_checkpoint: i64,
    /// The log cleaner's checkpoint (written to `meta` only once a cleaning or an
    /// invalidation touches it).
    pub cleaner: CleanerCheckpoint,
    /// Open transactions and ended ones not yet below the high watermark (every producer's:
    /// loaded at open, unlike `producers`).
    pub txns: TxnState,
}

impl PartitionState {
    pub(crate) fn tp(&self) -> TopicPartition {
        self.shared.tp
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.summary.size_bytes).sum()
    }

    /// The partition record with the current log start and high watermark.
    pub(crate) fn record(&self) -> PartitionRecord {
        PartitionRecord {
            log_start: self.log_start,
            high_watermark: self
                .shared
                .offsets()
                .high_watermark
                .clamp(self.log_start, self.log_end.max(self.log_start)),
            config: self.config.clone(),
        }
    }

    pub(crate) fn put_record(&mut self, e: &Engine, wb: &mut OwnedWriteBatch) {
        let rec = self.record();
        self.hw_checkpoint = rec.high_watermark;
        wb.insert(
            &e.meta,
            keys::meta_key(META_PARTITION, self.tp(), &[]),
            rec.encode(),
        );
    }

    /// Stages the cleaner checkpoint; the writer publishes it after the commit.
    pub(crate) fn put_cleaner(
        &mut self,
        e: &Engine,
        wb: &mut OwnedWriteBatch,
        c: CleanerCheckpoint,
    ) {
        self.cleaner = c;
        wb.insert(
            &e.meta,
            keys::meta_key(META_CLEANER, self.tp(), &[]),
            c.encode(),
        );
    }

    /// Throws the key index away and restarts cleaning from the log start: after a cut below
    /// what the index may know about, or a change of what it holds. The partition gets a key
    /// index generation no partition of this store has used (so not even a deleted and
    /// recreated partition of the same name can meet old entries); the compaction filter drops
    /// the old generation's entries. Nothing to do for a partition never compacted.
    pub(crate) fn invalidate_key_index(&mut self, e: &Engine, wb: &mut OwnedWriteBatch) {
        if self.config.cleanup.compact || self.cleaner != CleanerCheckpoint::default() {
            self.renew_key_index(e, wb);
        }
    }

    /// [`PartitionState::invalidate_key_index`] whether compacted or not.
    pub(crate) fn renew_key_index(&mut self, e: &Engine, wb: &mut OwnedWriteBatch) {
        let c = CleanerCheckpoint {
            first_dirty: self.log_start,
            generation: e.new_generation(),
            ..self.cleaner
        };
        self.put_cleaner(e, wb, c);
    }

    pub(crate) fn put_summary(&self, e: &Engine, wb: &mut OwnedWriteBatch, s: &SegmentSummary) {
        let key = keys::meta_key(META_SEGMENT, self.tp(), &s.base_offset.to_be_bytes());
        wb.insert(&e.meta, key, s.encode(self.config.cleanup.compact));
    }

    pub(crate) fn remove_summary(&self, e: &Engine, wb: &mut OwnedWriteBatch, base: i64) {
        wb.remove(
            &e.meta,
            keys::meta_key(META_SEGMENT, self.tp(), &base.to_be_bytes()),
        );
    }

    pub(crate) fn put_epoch_changes(
        &self,
        e: &Engine,
        wb: &mut OwnedWriteBatch,
        c: &[EpochChange],
    ) {
        for change in c {
            match *change {
                EpochChange::Put(epoch, start) => wb.insert(
                    &e.meta,
                    keys::meta_key(META_EPOCH, self.tp(), &epoch.to_be_bytes()),
                    crate::codec::encode_epoch_start(start),
                ),
                EpochChange::Remove(epoch) => wb.remove(
                    &e.meta,
                    keys::meta_key(META_EPOCH, self.tp(), &epoch.to_be_bytes()),
                ),
            }
        }
    }

    /// Publishes offsets and the active summary (after every commit touching the partition).
    /// The transactions go first, so that a reader woken by the new offsets sees the last
    /// stable offset that goes with them.
    pub(crate) fn publish_offsets(&self) {
        if *self.shared.txns() != self.txns {
            self.shared.set_txns(self.txns.clone());
        }
        let (start, end) = (self.log_start, self.log_end);
        self.shared.offsets.send_modify(|o| {
            o.log_start = start;
            o.log_end = end;
            o.high_watermark = o.high_watermark.clamp(start, end);
        });
        self.shared
            .set_active(self.segments.last().map(|s| s.summary));
        self.shared
            .size_bytes
            .store(self.size_bytes(), Ordering::Release);
    }

    /// Publishes the segment list (after rolls, deletions, truncation).
    pub(crate) fn publish_segments(&self) {
        let n = self.segments.len();
        let views = self
            .segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentView {
                base_offset: s.summary.base_offset,
                keyspace: s.keyspace.clone(),
                sealed: (i + 1 < n).then_some(s.summary),
            })
            .collect();
        // Offsets first when shrinking would be safer for readers; the views are a superset
        // of what the offsets allow while they differ, and readers bound every read by them.
        self.shared.set_segments(views);
    }

    pub(crate) fn publish_epochs(&self) {
        self.shared.set_epochs(self.epochs.clone());
    }

    pub(crate) fn publish_all(&self) {
        self.publish_segments();
        self.publish_offsets();
        self.publish_epochs();
        self.shared.set_cleaner(self.cleaner);
    }
}
