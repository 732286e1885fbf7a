//! Transactional offset commits (TxnOffsetCommit, KIP-98/KIP-447): offsets a producer commits
//! inside its transaction are written to the group's offsets partition as a transactional batch
//! of that producer and kept *pending* per producer until its transaction ends on that
//! partition: the commit marker makes them the group's committed offsets (unless a later write
//! of the same partition is already applied, as Kafka's `replayEndTransactionMarker` decides by
//! log offset), the abort marker drops them. OffsetFetch never returns pending offsets; with
//! `require_stable` it answers UNSTABLE_OFFSET_COMMIT for a partition that has some
//! ([`GroupCoordinator::pending_partitions`]).
//!
//! What goes in:
//! - [`GroupCoordinator::validate_txn_commit`] before the append (Kafka's `validateOffsetCommit`
//!   with `isTransactional`), [`GroupCoordinator::txn_committed`] once it is replicated;
//! - [`GroupCoordinator::end_txn`] when a commit or abort marker of the producer was written to
//!   the offsets partition (the WriteTxnMarkers handler reports it); while the partition loads,
//!   markers are kept and applied after the replay unless the replay already held them;
//! - replay ([`GroupCoordinator::load_log`]): transactional records are buffered per producer
//!   until their marker; what has none stays pending.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use super::group::Group;
use super::membership::check_member;
use super::{Commit, GroupCoordinator, MemberRef, ResponseError};
use crate::group::records::{OffsetKey, OffsetValue, Record};

/// One entry of an offsets partition's log, as replay reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum LogEntry {
    /// A record of a non-transactional batch.
    Record(Record),
    /// A record of a transactional batch of `producer_id` (a TxnOffsetCommit).
    Txn {
        /// The producer.
        producer_id: i64,
        /// The record.
        record: Record,
    },
    /// A commit or abort marker of `producer_id`'s transaction.
    Marker {
        /// The producer.
        producer_id: i64,
        /// Commit (true) or abort.
        commit: bool,
    },
}

impl From<Record> for LogEntry {
    fn from(record: Record) -> Self {
        LogEntry::Record(record)
    }
}

/// The offsets of one producer's open transaction on one offsets partition.
pub(super) type Pending = HashMap<OffsetKey, Commit>;

/// Transactional state of one offsets partition.
#[derive(Default)]
pub(super) struct TxnOffsets {
    /// Per producer id: the offsets its open transaction wrote here.
    pub pending: HashMap<i64, Pending>,
    /// Per producer id: the last marker applied here (log offset, commit), so the report of a
    /// write that a marker already ended (a TxnOffsetCommit whose acknowledgement came late) is
    /// settled as that marker said instead of staying pending.
    pub ended: HashMap<i64, (i64, bool)>,
    /// Markers reported while the partition loads: (producer id, commit, log offset).
    pub early_markers: Vec<(i64, bool, i64)>,
}

impl GroupCoordinator {
    /// Checks a TxnOffsetCommit before its records are appended (Kafka's `validateOffsetCommit`
    /// for a transactional commit): a group unknown here accepts generation -1 (a simple
    /// consumer's group) and answers ILLEGAL_GENERATION otherwise; generation -1 without a member
    /// or instance id (TxnOffsetCommit v0-2 carry none) is accepted whatever the group's state;
    /// otherwise the member must belong to the current generation (UNKNOWN_MEMBER_ID,
    /// FENCED_INSTANCE_ID, ILLEGAL_GENERATION). Unlike OffsetCommit, a group waiting for its
    /// assignment accepts it. Returns the offsets partition to append to.
    pub fn validate_txn_commit(
        &self,
        group: &str,
        generation: i32,
        member: &MemberRef,
    ) -> Result<i32, ResponseError> {
        let partition = self.check_coordinator(group)?;
        let Some(g) = self.groups.get(group) else {
            return if generation < 0 {
                Ok(partition)
            } else {
                Err(ResponseError::IllegalGeneration)
            };
        };
        if generation < 0 && g.members.is_empty() {
            return Ok(partition);
        }
        if generation >= 0 || !member.member_id.is_empty() || member.instance_id.is_some() {
            check_member(g, &member.member_id, member.instance_id.as_deref())?;
            if generation != g.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        }
        Ok(partition)
    }

    /// TxnOffsetCommit records of `producer_id` for `group`, replicated at `log_offset` of the
    /// group's offsets partition: pending until the producer's marker. If a marker of the
    /// producer past `log_offset` was already applied (the acknowledgement came after it), they
    /// are settled as it said.
    pub fn txn_committed(
        &mut self,
        now: Instant,
        group: &str,
        producer_id: i64,
        entries: Vec<(String, i32, OffsetValue)>,
        log_offset: i64,
    ) {
        let partition = self.partition_of(group);
        if !self.is_active(partition) {
            return;
        }
        let txns = self.txns.entry(partition).or_default();
        let ended = txns
            .ended
            .get(&producer_id)
            .copied()
            .filter(|(marker, _)| *marker > log_offset);
        let commits = entries.into_iter().map(|(topic, p, value)| {
            let key = OffsetKey {
                group: group.to_string(),
                topic,
                partition: p,
            };
            (key, Commit { value, log_offset })
        });
        match ended {
            None => txns.pending.entry(producer_id).or_default().extend(commits),
            Some((_, false)) => {}
            Some((_, true)) => {
                let commits: Pending = commits.collect();
                self.apply_commits(now, partition, commits);
            }
        }
    }

    /// A commit (`commit`) or abort marker of `producer_id`'s transaction was written to offsets
    /// partition `partition` at `marker_offset`: the producer's pending offsets there become
    /// committed offsets (each unless a later write of its partition is applied) or are dropped.
    /// While the partition loads the marker is kept and applied after the replay, unless the
    /// replay read it.
    pub fn end_txn(
        &mut self,
        now: Instant,
        partition: i32,
        producer_id: i64,
        commit: bool,
        marker_offset: i64,
    ) {
        if !self.served.contains_key(&partition) {
            // Not served here: a later load replays the marker from the log.
            return;
        }
        let active = self.is_active(partition);
        let txns = self.txns.entry(partition).or_default();
        if !active {
            txns.early_markers
                .push((producer_id, commit, marker_offset));
            return;
        }
        if txns
            .ended
            .get(&producer_id)
            .is_some_and(|(offset, _)| *offset >= marker_offset)
        {
            return;
        }
        txns.ended.insert(producer_id, (marker_offset, commit));
        let pending = txns.pending.remove(&producer_id).unwrap_or_default();
        if commit {
            self.apply_commits(now, partition, pending);
        }
    }

    /// The partitions of `group` with pending transactional offsets (OffsetFetch with
    /// `require_stable` answers UNSTABLE_OFFSET_COMMIT for them).
    pub fn pending_partitions(&self, group: &str) -> BTreeSet<(String, i32)> {
        pending_of(&self.txns, group, self.partition_of(group))
    }

    /// Whether offsets partition `partition` has pending transactional offsets (its log then
    /// holds records a snapshot of the live state would not carry).
    pub fn has_pending_txns(&self, partition: i32) -> bool {
        self.txns
            .get(&partition)
            .is_some_and(|t| t.pending.values().any(|p| !p.is_empty()))
    }

    /// Producers with pending offsets on offsets partition `partition`.
    pub fn pending_producers(&self, partition: i32) -> Vec<i64> {
        let mut producers: Vec<i64> = self
            .txns
            .get(&partition)
            .map(|t| {
                t.pending
                    .iter()
                    .filter(|(_, p)| !p.is_empty())
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        producers.sort_unstable();
        producers
    }

    /// Makes `commits` committed offsets of their groups, each unless a later write of its
    /// partition is applied (Kafka keeps the most recent record when transactional and plain
    /// commits mix).
    fn apply_commits(&mut self, now: Instant, partition: i32, commits: Pending) {
        let created = self.wall_ms(now);
        for (key, commit) in commits {
            let g = self
                .groups
                .entry(key.group.clone())
                .or_insert_with(|| Group::new(&key.group, partition, created));
            let slot = (key.topic, key.partition);
            if g.offsets
                .get(&slot)
                .is_some_and(|c| c.log_offset > commit.log_offset)
            {
                continue;
            }
            g.offsets.insert(slot, commit);
        }
    }

    /// Drops the pending transactional offsets of the given partitions of `group` (tombstones
    /// written for them: OffsetDelete, DeleteGroups), as Kafka's replay of a tombstone does.
    pub(super) fn drop_pending(&mut self, group: &str, keys: &[(String, i32)]) {
        let partition = self.partition_of(group);
        let Some(txns) = self.txns.get_mut(&partition) else {
            return;
        };
        for pending in txns.pending.values_mut() {
            pending.retain(|key, _| {
                key.group != group
                    || !keys
                        .iter()
                        .any(|(t, p)| *t == key.topic && *p == key.partition)
            });
        }
    }

    /// Replays one entry of offsets partition `partition` into `loaded` (groups) and `txns`,
    /// in log order, as Kafka's loader does: plain records apply at once, transactional ones
    /// wait per producer for its marker; a tombstone drops the pending offsets of its key too.
    pub(super) fn replay_entry(
        &self,
        partition: i32,
        (log_offset, entry): (i64, LogEntry),
        loaded: &mut HashMap<String, Group>,
        txns: &mut TxnOffsets,
        now: Instant,
    ) {
        let created = self.wall_ms(now);
        match entry {
            LogEntry::Record(Record::Offset { key, value }) => {
                if value.is_none() {
                    for pending in txns.pending.values_mut() {
                        pending.remove(&key);
                    }
                }
                let group = loaded
                    .entry(key.group.clone())
                    .or_insert_with(|| Group::new(&key.group, partition, created));
                group.replay_offset(key.topic, key.partition, value, log_offset);
            }
            LogEntry::Record(Record::Group { group, metadata }) => match metadata {
                Some(metadata) => {
                    let entry = loaded
                        .entry(group.clone())
                        .or_insert_with(|| Group::new(&group, partition, created));
                    entry.replay_metadata(&metadata, now);
                }
                None => {
                    loaded.remove(&group);
                }
            },
            LogEntry::Txn {
                producer_id,
                record: Record::Offset { key, value },
            } => {
                let pending = txns.pending.entry(producer_id).or_default();
                match value {
                    Some(value) => {
                        pending.insert(key, Commit { value, log_offset });
                    }
                    None => {
                        pending.remove(&key);
                    }
                }
            }
            // Only offsets are written transactionally; anything else is not ours.
            LogEntry::Txn { .. } => {}
            LogEntry::Marker {
                producer_id,
                commit,
            } => {
                txns.ended.insert(producer_id, (log_offset, commit));
                let pending = txns.pending.remove(&producer_id).unwrap_or_default();
                if commit {
                    for (key, commit) in pending {
                        let group = loaded
                            .entry(key.group.clone())
                            .or_insert_with(|| Group::new(&key.group, partition, created));
                        let slot = (key.topic, key.partition);
                        if group
                            .offsets
                            .get(&slot)
                            .is_some_and(|c| c.log_offset > commit.log_offset)
                        {
                            continue;
                        }
                        group.offsets.insert(slot, commit);
                    }
                }
            }
        }
    }
}

/// The partitions of group `group` (on offsets partition `partition`) with pending
/// transactional offsets.
pub(super) fn pending_of(
    txns: &HashMap<i32, TxnOffsets>,
    group: &str,
    partition: i32,
) -> BTreeSet<(String, i32)> {
    txns.get(&partition)
        .into_iter()
        .flat_map(|t| t.pending.values())
        .flat_map(|pending| pending.keys())
        .filter(|key| key.group == group)
        .map(|key| (key.topic.clone(), key.partition))
        .collect()
}
