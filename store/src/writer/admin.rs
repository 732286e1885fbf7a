//! Partition lifecycle and housekeeping requests: create, delete, config changes, flushes and
//! high-watermark checkpoints. Each commits on its own with `SyncData`.

use super::Writer;
use super::request::Request;
use super::state::PartitionState;
use crate::codec::CleanerCheckpoint;
use crate::config::LogConfig;
use crate::error::{Result, StoreError};
use crate::keys::{self, META_CLEANER, META_EPOCH, META_PARTITION, META_SEGMENT, META_TXN};
use crate::leader_epoch::LeaderEpochCache;
use crate::shared::PartitionShared;
use crate::stats::Counters;
use crate::types::{LogOffsets, TopicPartition};
use fjall::{Keyspace, OwnedWriteBatch, PersistMode};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Writer {
    pub(super) fn admin(&mut self, req: Request) {
        if let Err(e) = self.check_failed() {
            return fail_request(req, e);
        }
        match req {
            Request::Create { tp, config, reply } => reply.send(self.create(tp, config)),
            Request::Delete { tp, reply } => reply.send(self.delete(tp)),
            Request::SetConfig { tp, config, reply } => reply.send(self.set_config(tp, config)),
            Request::Truncate { tp, offset, reply } => reply.send(self.truncate(tp, offset)),
            Request::ResetTo { tp, offset, reply } => reply.send(self.reset_to(tp, offset)),
            Request::DeleteRecords { tp, offset, reply } => {
                reply.send(self.delete_records(tp, offset))
            }
            Request::Retention { now_ms, reply } => reply.send(self.retention(now_ms)),
            Request::Flush { reply } => reply.send(self.flush()),
            Request::Swap { swap, reply } => reply.send(self.swap(*swap)),
            Request::CleanDone {
                part,
                generation,
                checkpoint,
                reply,
            } => reply.send(self.clean_done(&part, generation, checkpoint)),
            Request::ResetKeyIndex { part, reply } => reply.send(self.reset_key_index(&part)),
            Request::HashKey { reply } => reply.send(self.hash_key()),
            Request::Leader(_) | Request::Replica(_) => {}
        }
    }

    /// Commits an administrative write batch with `SyncData`; a failure fails the store.
    pub(super) fn commit_sync(&mut self, wb: OwnedWriteBatch) -> Result<()> {
        if wb.is_empty() {
            return Ok(());
        }
        Counters::add(&self.stats.commits, 1);
        Counters::add(&self.stats.fsyncs, 1);
        match wb.durability(Some(PersistMode::SyncData)).commit() {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::Failed {
                reason: self.fail(e.into()),
            }),
        }
    }

    pub(super) fn state(&mut self, tp: TopicPartition) -> Result<&mut PartitionState> {
        self.parts
            .get_mut(&tp)
            .ok_or(StoreError::UnknownPartition { partition: tp })
    }

    fn create(&mut self, tp: TopicPartition, config: LogConfig) -> Result<Arc<PartitionShared>> {
        if let Some(st) = self.parts.get(&tp) {
            return Ok(st.shared.clone());
        }
        if tp.partition < 0 {
            return Err(StoreError::InvalidRequest {
                reason: format!("negative partition in {tp}"),
            });
        }
        config.validate()?;
        let shared = Arc::new(PartitionShared::new(
            tp,
            LogOffsets::default(),
            config.clone(),
        ));
        let mut st = PartitionState {
            shared: shared.clone(),
            config,
            log_start: 0,
            log_end: 0,
            segments: Vec::new(),
            epochs: LeaderEpochCache::default(),
            producers: HashMap::new(),
            hw_checkpoint: 0,
            cleaner: CleanerCheckpoint::default(),
            txns: crate::txn::TxnState::default(),
        };
        let mut wb = self.engine.db.batch();
        st.put_record(&self.engine, &mut wb);
        // A compacted partition starts its key index under a generation never used before.
        st.invalidate_key_index(&self.engine, &mut wb);
        shared.set_cleaner(st.cleaner);
        self.commit_sync(wb)?;
        self.registry.insert(shared.clone());
        self.parts.insert(tp, st);
        tracing::debug!(%tp, "created partition");
        Ok(shared)
    }

    /// Deletes every key of the partition in one atomic batch, then its segment keyspaces.
    /// A crash in between leaves keyspaces with no summary: recovery deletes them.
    fn delete(&mut self, tp: TopicPartition) -> Result<()> {
        let Some(st) = self.parts.get(&tp) else {
            return Ok(());
        };
        let e = self.engine.clone();
        let mut wb = e.db.batch();
        let prefix = keys::tp_prefix(tp);
        for tag in [
            META_PARTITION,
            META_SEGMENT,
            META_EPOCH,
            META_CLEANER,
            META_TXN,
        ] {
            remove_prefix(&mut wb, &e.meta, &keys::meta_key(tag, tp, &[]))?;
        }
        remove_prefix(&mut wb, &e.index, &prefix)?;
        remove_prefix(&mut wb, &e.producers, &prefix)?;
        let segments: Vec<Keyspace> = st.segments.iter().map(|s| s.keyspace.clone()).collect();
        self.commit_sync(wb)?;
        if let Some(st) = self.parts.remove(&tp) {
            st.shared.deleted.store(true, Ordering::Release);
            st.shared.set_segments(Vec::new());
        }
        self.registry.remove(&tp);
        self.drop_keyspaces(segments);
        tracing::debug!(%tp, "deleted partition");
        Ok(())
    }

    /// Deletes segment keyspaces whose summaries are already gone, and flushes the small
    /// keyspaces so that the journals holding the deleted ones can go. fjall removes the
    /// folder once the last handle (a reader's, a sealed journal's) is dropped.
    pub(super) fn drop_keyspaces(&mut self, keyspaces: Vec<Keyspace>) {
        if keyspaces.is_empty() {
            return;
        }
        self.delete_keyspaces(keyspaces);
        // Sealed journals hold handles to the keyspaces they have data of, so the folders
        // only go once those journals are deleted, which fjall checks after each flush.
        // Flushing the small keyspaces lets it happen now rather than at the next roll.
        super::rotate(&self.engine.small_keyspaces());
    }

    /// Deletes segment keyspaces whose summaries are already gone (no flush).
    pub(super) fn delete_keyspaces(&mut self, keyspaces: Vec<Keyspace>) {
        for ks in keyspaces {
            let name = ks.name().to_string();
            match self.engine.db.delete_keyspace(ks) {
                Ok(()) => Counters::add(&self.stats.segments_deleted, 1),
                // Left for recovery to delete: it has no summary.
                Err(e) => tracing::warn!(keyspace = %name, error = %e, "could not delete segment"),
            }
        }
    }

    fn set_config(&mut self, tp: TopicPartition, config: LogConfig) -> Result<()> {
        config.validate()?;
        let e = self.engine.clone();
        let st = self.state(tp)?;
        let mut wb = e.db.batch();
        if changes_key_index(&st.config, &config) {
            let was = st.config.cleanup.compact;
            st.config = config.clone();
            if was {
                st.renew_key_index(&e, &mut wb);
            } else {
                st.invalidate_key_index(&e, &mut wb);
            }
        }
        st.config = config.clone();
        st.put_record(&e, &mut wb);
        st.shared.set_config(config);
        self.commit_sync(wb)?;
        let st = self.state(tp)?;
        st.shared.set_cleaner(st.cleaner);
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.checkpoint_high_watermarks()?;
        Counters::add(&self.stats.fsyncs, 1);
        self.engine
            .db
            .persist(PersistMode::SyncAll)
            .map_err(|e| StoreError::Failed {
                reason: self.fail(e.into()),
            })
    }

    /// Writes the partition record of every partition whose high watermark changed.
    pub(super) fn checkpoint_high_watermarks(&mut self) -> Result<()> {
        if self.failed.is_some() {
            return Ok(());
        }
        let e = self.engine.clone();
        let mut wb = e.db.batch();
        for st in self.parts.values_mut() {
            if st.shared.hw_dirty.swap(false, Ordering::AcqRel)
                && st.shared.offsets().high_watermark != st.hw_checkpoint
            {
                st.put_record(&e, &mut wb);
            }
        }
        if wb.is_empty() {
            return Ok(());
        }
        Counters::add(&self.stats.commits, 1);
        wb.durability(Some(PersistMode::Buffer))
            .commit()
            .map_err(|e| StoreError::Failed {
                reason: self.fail(e.into()),
            })
    }
}

/// Whether a config change makes the key index hold the wrong things: compaction starts or
/// stops, or the strategy or its windows change.
fn changes_key_index(old: &LogConfig, new: &LogConfig) -> bool {
    let (a, b) = (&old.compaction.strategy, &new.compaction.strategy);
    old.cleanup.compact != new.cleanup.compact
        || a.name() != b.name()
        || a.window_ms() != b.window_ms()
}

/// Stages a tombstone for every key under `prefix`.
pub(super) fn remove_prefix(wb: &mut OwnedWriteBatch, ks: &Keyspace, prefix: &[u8]) -> Result<()> {
    for kv in ks.prefix(prefix) {
        wb.remove(ks, kv.key()?);
    }
    Ok(())
}

fn fail_request(req: Request, e: StoreError) {
    let reason = e.to_string();
    let err = || StoreError::Failed {
        reason: reason.clone(),
    };
    match req {
        Request::Create { reply, .. } => reply.send(Err(err())),
        Request::Delete { reply, .. } | Request::SetConfig { reply, .. } => reply.send(Err(err())),
        Request::ResetTo { reply, .. } | Request::Flush { reply } => reply.send(Err(err())),
        Request::Truncate { reply, .. } | Request::DeleteRecords { reply, .. } => {
            reply.send(Err(err()))
        }
        Request::Retention { reply, .. } => reply.send(Err(err())),
        Request::Swap { reply, .. } => reply.send(Err(err())),
        Request::CleanDone { reply, .. } | Request::ResetKeyIndex { reply, .. } => {
            reply.send(Err(err()))
        }
        Request::HashKey { reply } => reply.send(Err(err())),
        Request::Leader(a) => a.reply.send(Err(err())),
        Request::Replica(r) => r.reply.send(Err(err())),
    }
}
