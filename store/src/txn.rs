//! Transactions on one partition, without I/O: which producers have a transaction open here and
//! where it began, the transactions a marker ended that the high watermark has not passed yet,
//! the last stable offset they give, and the aborted-transactions index entries markers add
//! (Kafka's `ProducerStateManager` ongoing and unreplicated transactions, and its
//! `TransactionIndex`).
//!
//! The writer owns a [`TxnState`] per partition and changes it as it stages appends, markers and
//! cuts; readers get a published copy. What must survive a restart is persisted beside it, in the
//! same atomic batch: the open transaction's first offset and the last ended transaction in the
//! producer's entry (`producers`), the aborted transactions under `meta` `T`.
//!
//! The last stable offset (LSO) is the first offset of the oldest transaction not yet decided
//! on every in-sync replica: the smallest first offset of the open transactions and of the ended
//! ones whose marker is at or above the high watermark (a marker above it may still be cut
//! away by a new leader, reopening its transaction), capped by the high watermark.

use crate::batch::BatchHeader;
use bytes::Bytes;
use rafka_format::marker::{ControlType, control_type};
use rafka_format::records::Records;
use std::collections::BTreeMap;

/// An aborted transaction, as the aborted-transactions index keeps it (Kafka's `AbortedTxn`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer.
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of its abort marker.
    pub last_offset: i64,
    /// The last stable offset once the marker was written: every transaction aborted later
    /// began at or after it (reads use it to stop scanning the index).
    pub last_stable_offset: i64,
}

/// A transaction a marker ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ended {
    pub producer_id: i64,
    pub first_offset: i64,
    pub marker_offset: i64,
}

/// The transactions of one partition (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct TxnState {
    /// Producer id → first offset of its open transaction.
    ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker the high watermark had not passed when last pruned, in
    /// marker order.
    unreplicated: Vec<Ended>,
}

impl TxnState {
    /// A producer's first transactional batch since its last marker, at `first_offset`.
    pub(crate) fn begin(&mut self, producer_id: i64, first_offset: i64) {
        self.ongoing.entry(producer_id).or_insert(first_offset);
    }

    /// A marker at `marker_offset` ended the producer's transaction begun at `first_offset`.
    /// For an abort, the index entry to write.
    pub(crate) fn end(&mut self, ended: Ended, aborted: bool) -> Option<AbortedTxn> {
        self.ongoing.remove(&ended.producer_id);
        // Every transaction aborted later began at or after this (an ended one may reopen if
        // its marker is cut, so those count too).
        let last_stable_offset = self
            .ongoing
            .values()
            .copied()
            .chain(self.unreplicated.iter().map(|e| e.first_offset))
            .fold(ended.marker_offset + 1, i64::min);
        self.unreplicated.push(ended);
        aborted.then_some(AbortedTxn {
            producer_id: ended.producer_id,
            first_offset: ended.first_offset,
            last_offset: ended.marker_offset,
            last_stable_offset,
        })
    }

    /// An ended transaction known from its producer's entry at open (its marker is at or
    /// above the checkpointed high watermark).
    pub(crate) fn restore_ended(&mut self, ended: Ended) {
        let at = self
            .unreplicated
            .partition_point(|e| e.marker_offset < ended.marker_offset);
        self.unreplicated.insert(at, ended);
    }

    /// First offset of the producer's open transaction here.
    pub(crate) fn ongoing(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// The producer's latest ended transaction the high watermark has not passed.
    pub(crate) fn last_unreplicated(&self, producer_id: i64) -> Option<Ended> {
        self.unreplicated
            .iter()
            .rev()
            .find(|e| e.producer_id == producer_id)
            .copied()
    }

    /// The first offset not yet decided on every in-sync replica, if any is below `hw`'s view.
    pub(crate) fn first_unstable(&self, high_watermark: i64) -> Option<i64> {
        let ended = self
            .unreplicated
            .iter()
            .filter(|e| e.marker_offset >= high_watermark)
            .map(|e| e.first_offset);
        self.ongoing.values().copied().chain(ended).min()
    }

    /// The last stable offset under `high_watermark`.
    pub(crate) fn last_stable_offset(&self, high_watermark: i64) -> i64 {
        self.first_unstable(high_watermark)
            .map_or(high_watermark, |f| f.min(high_watermark))
    }

    /// Forgets ended transactions whose marker is below the high watermark.
    pub(crate) fn prune(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|e| e.marker_offset >= high_watermark);
    }

    /// The log is cut at `new_end`: transactions begun at or after it are gone; an ended one
    /// whose marker is cut but whose data is not is open again. Returns the producers changed.
    pub(crate) fn truncate(&mut self, new_end: i64) -> Vec<i64> {
        let mut changed = Vec::new();
        self.ongoing.retain(|pid, first| {
            let keep = *first < new_end;
            if !keep {
                changed.push(*pid);
            }
            keep
        });
        let (cut, kept): (Vec<Ended>, Vec<Ended>) = self
            .unreplicated
            .iter()
            .partition(|e| e.marker_offset >= new_end);
        self.unreplicated = kept;
        for e in cut {
            if e.first_offset < new_end {
                self.ongoing.insert(e.producer_id, e.first_offset);
            }
            changed.push(e.producer_id);
        }
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// The log was emptied.
    pub(crate) fn clear(&mut self) {
        *self = TxnState::default();
    }

    /// True when no transaction is open or awaiting replication.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.ongoing.is_empty() && self.unreplicated.is_empty()
    }
}

/// The type of a control batch's record (a marker's commit or abort); `None` when the batch
/// holds no readable control record.
pub(crate) fn marker_type(batch: &Bytes, h: &BatchHeader) -> Option<ControlType> {
    let mut records = Records::new(batch, h).ok()?;
    let record = records.next()?.ok()?;
    control_type(record.key.as_deref()?)
}

/// Encodes an aborted-transactions index value: version 1, producer id, first offset, last
/// stable offset (the marker offset is the key).
pub(crate) fn encode_aborted(a: &AbortedTxn) -> Vec<u8> {
    let mut v = Vec::with_capacity(25);
    v.push(1u8);
    v.extend_from_slice(&a.producer_id.to_be_bytes());
    v.extend_from_slice(&a.first_offset.to_be_bytes());
    v.extend_from_slice(&a.last_stable_offset.to_be_bytes());
    v
}

/// Decodes [`encode_aborted`]'s value of the marker at `last_offset`; `None` if malformed.
pub(crate) fn decode_aborted(last_offset: i64, v: &[u8]) -> Option<AbortedTxn> {
    let (version, rest) = v.split_first()?;
    if *version != 1 {
        return None;
    }
    let (pid, rest) = rest.split_first_chunk::<8>()?;
    let (first, rest) = rest.split_first_chunk::<8>()?;
    let (lso, _) = rest.split_first_chunk::<8>()?;
    Some(AbortedTxn {
        producer_id: i64::from_be_bytes(*pid),
        first_offset: i64::from_be_bytes(*first),
        last_offset,
        last_stable_offset: i64::from_be_bytes(*lso),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ended(producer_id: i64, first_offset: i64, marker_offset: i64) -> Ended {
        Ended {
            producer_id,
            first_offset,
            marker_offset,
        }
    }

    #[test]
    fn the_lso_is_the_oldest_undecided_first_offset() {
        let mut t = TxnState::default();
        assert_eq!(t.last_stable_offset(10), 10, "no transaction: the HW");
        t.begin(1, 5);
        t.begin(2, 8);
        t.begin(1, 9); // already open: keeps its first offset
        assert_eq!(t.ongoing(1), Some(5));
        assert_eq!(t.last_stable_offset(20), 5);
        assert_eq!(t.last_stable_offset(3), 3, "never above the HW");
        let aborted = t.end(ended(1, 5, 12), true).expect("abort indexed");
        assert_eq!(
            aborted,
            AbortedTxn {
                producer_id: 1,
                first_offset: 5,
                last_offset: 12,
                last_stable_offset: 8
            }
        );
        // The marker at 12 is not below the HW yet: still unstable from 5.
        assert_eq!(t.last_stable_offset(12), 5);
        assert_eq!(t.last_stable_offset(13), 8);
        assert_eq!(
            t.end(ended(2, 8, 14), false),
            None,
            "commits are not indexed"
        );
        assert_eq!(t.last_stable_offset(15), 15);
        t.prune(15);
        assert!(t.is_empty());
    }

    #[test]
    fn a_cut_marker_reopens_its_transaction_and_a_cut_start_forgets_it() {
        let mut t = TxnState::default();
        t.begin(1, 5);
        t.end(ended(1, 5, 10), false);
        t.begin(2, 11);
        t.begin(3, 20);
        let cuts = t.truncate(15);
        assert_eq!(
            cuts,
            vec![3],
            "only producer 3's transaction began past the cut"
        );
        assert_eq!(t.ongoing(3), None);
        assert_eq!(t.ongoing(2), Some(11));
        let cuts = t.truncate(8);
        assert_eq!(cuts, vec![1, 2]);
        assert_eq!(t.ongoing(1), Some(5), "its marker is gone: open again");
        assert_eq!(t.ongoing(2), None);
        assert_eq!(t.last_stable_offset(100), 5);
    }

    #[test]
    fn index_values_round_trip_and_short_ones_fail() {
        let a = AbortedTxn {
            producer_id: 7,
            first_offset: 3,
            last_offset: 9,
            last_stable_offset: 4,
        };
        let v = encode_aborted(&a);
        assert_eq!(decode_aborted(9, &v), Some(a));
        for cut in 0..v.len() {
            assert_eq!(decode_aborted(9, &v[..cut]), None);
        }
    }
}
