//! The writer's side of log cleaning: swapping cleaned segments in, advancing the cleaner's
//! checkpoint, starting a key index afresh, and the key hash secret.
//!
//! The cleaner writes a cleaned segment into a keyspace nothing refers to (as Kafka writes
//! `.cleaned` files), durably (fjall's ingestion fsyncs its tables and its manifest). The swap
//! then commits, in one `SyncData` batch, the new segment's summary (naming the new keyspace by
//! its generation), the removal of the replaced segments' summaries, the index entries of the
//! rewritten and removed batches, the aborted-transactions index entries of removed markers,
//! and the key index changes; only then are the old keyspaces
//! deleted. A crash before the commit leaves the new keyspace unnamed by any summary, a crash
//! after it leaves the old ones unnamed: recovery deletes whichever it finds (see
//! `recovery.rs`), so the log is always either all old or all new.

use super::Writer;
use super::append::live_state;
use super::request::Swap;
use super::state::SegmentState;
use crate::codec::{CleanerCheckpoint, decode_hash_key, encode_hash_key};
use crate::error::{Result, StoreError};
use crate::keys::{self, META_TXN};
use crate::shared::PartitionShared;
use fjall::Keyspace;
use std::sync::Arc;

impl Writer {
    pub(super) fn swap(&mut self, s: Swap) -> Result<()> {
        let Swap {
            part,
            generation,
            old,
            keyspace,
            summary,
            index_puts,
            index_removes,
            txn_removes,
            key_puts,
            key_removes,
        } = s;
        let first = match self.swappable(&part, generation, &old) {
            Ok(first) => first,
            Err(e) => {
                self.delete_keyspaces(vec![keyspace]);
                return Err(e);
            }
        };
        let e = self.engine.clone();
        let st = live_state(&mut self.parts, &part)?;
        let tp = st.tp();
        let mut wb = e.db.batch();
        for (base, _) in old.iter().skip(1) {
            st.remove_summary(&e, &mut wb, *base);
        }
        st.put_summary(&e, &mut wb, &summary);
        for last in index_removes {
            wb.remove(&e.index, keys::entry_key(tp, last));
        }
        for (last, entry) in index_puts {
            wb.insert(&e.index, keys::entry_key(tp, last), entry.encode());
        }
        for marker in txn_removes {
            wb.remove(&e.meta, keys::meta_key(META_TXN, tp, &marker.to_be_bytes()));
        }
        for key in key_removes {
            wb.remove(&e.keys, key);
        }
        for (key, value) in key_puts {
            wb.insert(&e.keys, key, value);
        }
        self.commit_sync(wb)?;
        let st = live_state(&mut self.parts, &part)?;
        let new = SegmentState { summary, keyspace };
        let replaced: Vec<Keyspace> = st
            .segments
            .splice(first..first + old.len(), [new])
            .map(|s| s.keyspace)
            .collect();
        st.publish_segments();
        st.publish_offsets();
        tracing::debug!(%tp, offset = summary.base_offset, segments = old.len(), generation = summary.generation, "swapped in a cleaned segment");
        // The small keyspaces are flushed once the cleaning is done (`clean_done`).
        self.delete_keyspaces(replaced);
        Ok(())
    }

    /// Where the replaced segments start, if they are all still there, consecutive, sealed,
    /// and the key index generation is the cleaning's.
    fn swappable(
        &mut self,
        part: &Arc<PartitionShared>,
        generation: u32,
        old: &[(i64, u32)],
    ) -> Result<usize> {
        let st = live_state(&mut self.parts, part)?;
        let aborted = |reason: &str| StoreError::CleaningAborted {
            partition: part.tp,
            reason: reason.to_string(),
        };
        if st.cleaner.generation != generation {
            return Err(aborted("the key index was invalidated meanwhile"));
        }
        let first_base = old.first().map(|o| o.0);
        let Some(first) = st
            .segments
            .iter()
            .position(|s| Some(s.summary.base_offset) == first_base)
        else {
            return Err(aborted("the segments were deleted meanwhile"));
        };
        let sealed = st.segments.len().saturating_sub(1);
        let same = old.iter().enumerate().all(|(i, (base, g))| {
            st.segments.get(first + i).is_some_and(|s| {
                first + i < sealed && s.summary.base_offset == *base && s.summary.generation == *g
            })
        });
        if !same {
            return Err(aborted("the segments changed meanwhile"));
        }
        Ok(first)
    }

    pub(super) fn clean_done(
        &mut self,
        part: &Arc<PartitionShared>,
        generation: u32,
        checkpoint: CleanerCheckpoint,
    ) -> Result<()> {
        let e = self.engine.clone();
        let st = live_state(&mut self.parts, part)?;
        if st.cleaner.generation != generation {
            return Err(StoreError::CleaningAborted {
                partition: part.tp,
                reason: "the key index was invalidated meanwhile".into(),
            });
        }
        let mut wb = e.db.batch();
        st.put_cleaner(&e, &mut wb, checkpoint);
        self.commit_sync(wb)?;
        part.set_cleaner(checkpoint);
        // Lets the journals that hold the replaced segments (and the key index) go.
        super::rotate(&e.small_keyspaces());
        Ok(())
    }

    pub(super) fn reset_key_index(&mut self, part: &Arc<PartitionShared>) -> Result<()> {
        let e = self.engine.clone();
        let st = live_state(&mut self.parts, part)?;
        let c = CleanerCheckpoint {
            first_dirty: st.log_start,
            generation: e.new_generation(),
            tombstone_due_ms: -1,
            ..st.cleaner
        };
        let mut wb = e.db.batch();
        st.put_cleaner(&e, &mut wb, c);
        self.commit_sync(wb)?;
        part.set_cleaner(c);
        Ok(())
    }

    pub(super) fn hash_key(&mut self) -> Result<[u64; 2]> {
        if let Some(v) = self.engine.meta.get(keys::META_HASH_KEY)? {
            return decode_hash_key(&v);
        }
        let secret = crate::compaction::new_secret();
        let mut wb = self.engine.db.batch();
        wb.insert(
            &self.engine.meta,
            keys::META_HASH_KEY,
            encode_hash_key(secret),
        );
        self.commit_sync(wb)?;
        Ok(secret)
    }
}
