//! Idempotent-producer rules, as plain functions over a producer's state (no I/O).
//!
//! Per partition and producer id the store keeps the current epoch and the last 5 appended
//! batches. The writer checks each leader append in offset order (see `docs/specs/store-api.md`):
//!
//! 1. epoch < current → `InvalidProducerEpoch`;
//! 2. same epoch and (first, last) sequence equal to a cached batch → duplicate, original offsets;
//! 3. epoch > current → accepted only with first sequence 0 (the KIP-360 bump), state reset;
//! 4. no state → any sequence accepted;
//! 5. otherwise first sequence must be last sequence + 1 (wrapping at `i32::MAX` to 0).
//!
//! Control batches (transaction markers) and a coordinator's batches for a producer (base
//! sequence -1: the group coordinator's TxnOffsetCommit records) are checked for fencing only
//! and do not enter the 5-batch cache. Replicated batches are recorded without checks (the leader checked them).
//!
//! Transactions: a producer's first transactional batch opens its transaction on the partition
//! (its offset is the transaction's first offset, which holds the last stable offset back); a
//! commit or abort marker ends it. While one is open, a non-transactional batch of the producer
//! is `InvalidTxnState`, as in Kafka's `ProducerAppendInfo`.

use crate::TopicPartition;
use crate::batch::{BatchHeader, increment_sequence};
use crate::error::{Result, StoreError};
use rafka_format::marker::ControlType;
use std::collections::VecDeque;

/// How many batches per producer are remembered for duplicate detection (Kafka's 5).
pub const MAX_CACHED_BATCHES: usize = 5;

/// One remembered batch of a producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerBatch {
    /// Sequence of the batch's first record.
    pub first_seq: i32,
    /// Sequence of the batch's last record.
    pub last_seq: i32,
    /// Offset of the batch's first record.
    pub base_offset: i64,
    /// Offset of the batch's last record.
    pub last_offset: i64,
}

/// A producer's state as the store keeps it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProducerEntry {
    /// Current producer epoch.
    pub epoch: i16,
    /// Up to [`MAX_CACHED_BATCHES`] most recent batches, oldest first.
    pub batches: VecDeque<ProducerBatch>,
    /// First offset of the transaction the producer has open on the partition.
    pub ongoing_txn: Option<i64>,
    /// The producer's last transaction a marker ended here: (first offset, marker offset).
    pub last_txn: Option<(i64, i64)>,
}

/// What [`crate::PartitionLog::producer`] returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerSnapshot {
    /// The producer.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// Its most recent batches, oldest first.
    pub batches: Vec<ProducerBatch>,
    /// First offset of its open transaction on the partition.
    pub ongoing_txn: Option<i64>,
}

impl ProducerEntry {
    /// Highest offset this producer wrote that the store remembers.
    pub fn last_offset(&self) -> Option<i64> {
        self.batches.iter().map(|b| b.last_offset).max()
    }

    /// True when every remembered batch lies below `log_start` (Kafka then forgets the
    /// producer, as its batches are gone from the log) and it has no transaction open.
    pub fn is_below(&self, log_start: i64) -> bool {
        self.ongoing_txn.is_none() && self.last_offset().is_some_and(|last| last < log_start)
    }

    /// The public view.
    pub fn snapshot(&self, producer_id: i64) -> ProducerSnapshot {
        ProducerSnapshot {
            producer_id,
            epoch: self.epoch,
            batches: self.batches.iter().copied().collect(),
            ongoing_txn: self.ongoing_txn,
        }
    }
}

/// What an append did to the producer's transaction on the partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxnEvent {
    /// Nothing.
    None,
    /// A transaction opened at this offset.
    Begin(i64),
    /// A marker ended the transaction begun at `first`.
    End {
        /// The transaction's first offset.
        first: i64,
        /// True for an abort marker.
        aborted: bool,
    },
}

/// Outcome of checking a leader append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SequenceCheck {
    /// Append it.
    Append,
    /// An idempotent retry: answer with these offsets, write nothing.
    Duplicate(ProducerBatch),
}

/// Applies the rules above to a batch of producer `h.producer_id >= 0`.
pub(crate) fn check(
    tp: TopicPartition,
    entry: Option<&ProducerEntry>,
    h: &BatchHeader,
) -> Result<SequenceCheck> {
    let Some(e) = entry else {
        return Ok(SequenceCheck::Append);
    };
    let (first, last) = (h.base_sequence, h.last_sequence());
    if h.producer_epoch < e.epoch {
        return Err(StoreError::InvalidProducerEpoch {
            partition: tp,
            producer_id: h.producer_id,
            current: e.epoch,
            received: h.producer_epoch,
        });
    }
    if h.is_control() {
        return Ok(SequenceCheck::Append);
    }
    if e.ongoing_txn.is_some() && !h.is_transactional() {
        return Err(StoreError::InvalidTxnState {
            partition: tp,
            producer_id: h.producer_id,
            reason: "a non-transactional batch while its transaction is open",
        });
    }
    if h.base_sequence < 0 {
        // A coordinator's write for the producer (a TxnOffsetCommit on `__consumer_offsets`,
        // base sequence -1; clients' batches with a producer id always carry a sequence): fenced
        // by epoch only, as Kafka checks appends of origin COORDINATOR.
        return Ok(SequenceCheck::Append);
    }
    let out_of_order = |expected| StoreError::OutOfOrderSequence {
        partition: tp,
        producer_id: h.producer_id,
        epoch: h.producer_epoch,
        expected,
        received: first,
    };
    if h.producer_epoch > e.epoch {
        return if first == 0 {
            Ok(SequenceCheck::Append)
        } else {
            Err(out_of_order(0))
        };
    }
    if let Some(dup) = e
        .batches
        .iter()
        .find(|b| b.first_seq == first && b.last_seq == last)
    {
        return Ok(SequenceCheck::Duplicate(*dup));
    }
    match e.batches.back() {
        None => Ok(SequenceCheck::Append),
        Some(prev) => {
            let expected = increment_sequence(prev.last_seq, 1);
            if first == expected {
                Ok(SequenceCheck::Append)
            } else {
                Err(out_of_order(expected))
            }
        }
    }
}

/// The state after appending batch `h` at `[base_offset, last_offset]` (`marker`: a control
/// batch's record type), and what it did to the producer's transaction. A new epoch starts a
/// new batch cache but keeps the transaction state: the coordinator ends a transaction with a
/// marker of a bumped epoch when it fences the producer.
pub(crate) fn record(
    entry: Option<ProducerEntry>,
    h: &BatchHeader,
    (base_offset, last_offset): (i64, i64),
    marker: Option<ControlType>,
) -> (ProducerEntry, TxnEvent) {
    let mut e = match entry {
        Some(e) if e.epoch == h.producer_epoch => e,
        Some(e) => ProducerEntry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            ..e
        },
        None => ProducerEntry {
            epoch: h.producer_epoch,
            ..ProducerEntry::default()
        },
    };
    let event = match (h.is_control(), marker) {
        (true, Some(kind @ (ControlType::Commit | ControlType::Abort))) => {
            match e.ongoing_txn.take() {
                Some(first) => {
                    e.last_txn = Some((first, base_offset));
                    TxnEvent::End {
                        first,
                        aborted: kind == ControlType::Abort,
                    }
                }
                None => TxnEvent::None,
            }
        }
        (false, _) if h.is_transactional() && e.ongoing_txn.is_none() => {
            e.ongoing_txn = Some(base_offset);
            TxnEvent::Begin(base_offset)
        }
        _ => TxnEvent::None,
    };
    if !h.is_control() && h.base_sequence >= 0 {
        e.batches.push_back(ProducerBatch {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            base_offset,
            last_offset,
        });
        while e.batches.len() > MAX_CACHED_BATCHES {
            e.batches.pop_front();
        }
    }
    (e, event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(epoch: i16, seq: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: 7,
            producer_epoch: epoch,
            base_sequence: seq,
            record_count: records,
        }
    }

    #[test]
    fn rules_in_order() {
        let tp = TopicPartition::new(uuid::Uuid::from_u128(1), 0);
        let mut e = None;
        let mut off = 0;
        for i in 0..7 {
            let h = header(1, i * 2, 2);
            assert_eq!(check(tp, e.as_ref(), &h).unwrap(), SequenceCheck::Append);
            e = Some(record(e, &h, (off, off + 1), None).0);
            off += 2;
        }
        let st = e.clone().unwrap();
        assert_eq!(st.batches.len(), MAX_CACHED_BATCHES);
        // Duplicate of the oldest cached one, and of an evicted one (out of order).
        assert!(matches!(
            check(tp, Some(&st), &header(1, 4, 2)),
            Ok(SequenceCheck::Duplicate(_))
        ));
        assert!(check(tp, Some(&st), &header(1, 2, 2)).is_err());
        assert!(matches!(
            check(tp, Some(&st), &header(0, 14, 2)),
            Err(StoreError::InvalidProducerEpoch { .. })
        ));
        assert!(check(tp, Some(&st), &header(2, 0, 1)).is_ok());
        assert!(check(tp, Some(&st), &header(2, 5, 1)).is_err());
    }

    #[test]
    fn a_coordinators_batch_without_sequence_is_fenced_by_epoch_only() {
        let tp = TopicPartition::new(uuid::Uuid::from_u128(1), 0);
        // TxnOffsetCommit records: transactional, base sequence -1, one after another.
        let txn = |epoch| BatchHeader {
            attributes: rafka_format::batch::TRANSACTIONAL_BIT,
            ..header(epoch, -1, 2)
        };
        let mut e = None;
        let mut off = 0;
        for _ in 0..3 {
            assert_eq!(
                check(tp, e.as_ref(), &txn(1)).unwrap(),
                SequenceCheck::Append
            );
            e = Some(record(e, &txn(1), (off, off + 1), None).0);
            off += 2;
        }
        let st = e.unwrap();
        assert!(st.batches.is_empty());
        assert_eq!(st.ongoing_txn, Some(0));
        // A newer epoch (InitProducerId bumped it, no marker yet) is accepted; an older one not.
        assert_eq!(
            check(tp, Some(&st), &txn(2)).unwrap(),
            SequenceCheck::Append
        );
        assert!(matches!(
            check(tp, Some(&st), &txn(0)),
            Err(StoreError::InvalidProducerEpoch { .. })
        ));
    }
}
