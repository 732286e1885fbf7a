//! What a cleaning knows of transactions as it walks a log in offset order (Kafka's
//! `CleanedTransactionMetadata`; pure). Everything a cleaning reads is below the last stable
//! offset, so every transaction in it has its marker there too.
//!
//! - A transactional batch of an aborted transaction (the aborted-transactions index says which:
//!   producer id and first offset) is removed, and never enters the key index.
//! - An abort marker may go once the cleaning saw no batch of its transaction (they all went in
//!   earlier cleanings); a commit marker likewise once no batch of its transaction is left.
//!   "May go" is then delayed like a tombstone (KIP-534): the first cleaning that finds it
//!   removable stamps a delete horizon on it, a cleaning after the horizon removes it.
//! - An empty control batch (cleaned before) may go.

use crate::txn::AbortedTxn;
use rafka_format::marker::ControlType;
use std::collections::{BTreeMap, HashMap, HashSet};

/// The transaction state of one walk through a part of a log.
#[derive(Debug, Default)]
pub(crate) struct TxnWalk {
    /// Aborted transactions not reached yet, by first offset.
    pending: BTreeMap<i64, Vec<i64>>,
    /// Producers in an aborted transaction reached but not yet ended, and whether a batch of it
    /// was seen.
    aborted: HashMap<i64, bool>,
    /// Producers in a transaction (not aborted) of which a batch was seen, not yet ended.
    committed: HashSet<i64>,
}

/// A batch as the walk needs it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchFacts {
    pub producer_id: i64,
    pub last_offset: i64,
    pub transactional: bool,
}

impl TxnWalk {
    /// A walk that will meet the aborted transactions `aborted` (the index's entries whose
    /// marker is at or after where the walk starts).
    pub(crate) fn new(aborted: impl IntoIterator<Item = AbortedTxn>) -> Self {
        let mut walk = TxnWalk::default();
        for a in aborted {
            walk.pending
                .entry(a.first_offset)
                .or_default()
                .push(a.producer_id);
        }
        walk
    }

    fn reach(&mut self, offset: i64) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > offset {
                break;
            }
            for pid in entry.remove() {
                self.aborted.entry(pid).or_insert(false);
            }
        }
    }

    /// A data batch read: whether it belongs to an aborted transaction (and goes).
    pub(crate) fn data(&mut self, b: BatchFacts) -> bool {
        self.reach(b.last_offset);
        if !b.transactional {
            return false;
        }
        match self.aborted.get_mut(&b.producer_id) {
            Some(seen) => {
                *seen = true;
                true
            }
            None => {
                self.committed.insert(b.producer_id);
                false
            }
        }
    }

    /// A control batch read (`kind`: its record's type; `None` if it has no record left):
    /// whether the marker may go, no data of its transaction being left.
    pub(crate) fn control(&mut self, b: BatchFacts, kind: Option<ControlType>) -> bool {
        self.reach(b.last_offset);
        match kind {
            None => true,
            Some(ControlType::Abort) => !self.aborted.remove(&b.producer_id).unwrap_or(false),
            Some(ControlType::Commit) => !self.committed.remove(&b.producer_id),
            Some(ControlType::Unknown(_)) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aborted(producer_id: i64, first_offset: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id,
            first_offset,
            last_offset: first_offset + 4,
            last_stable_offset: first_offset,
        }
    }

    fn batch(producer_id: i64, last_offset: i64) -> BatchFacts {
        BatchFacts {
            producer_id,
            last_offset,
            transactional: true,
        }
    }

    #[test]
    fn aborted_data_goes_and_its_marker_stays_while_data_was_seen() {
        let mut w = TxnWalk::new([aborted(7, 10)]);
        assert!(!w.data(batch(7, 5)), "before the aborted transaction began");
        assert!(w.data(batch(7, 12)));
        assert!(!w.data(batch(8, 13)), "another producer's transaction");
        assert!(
            !w.control(batch(7, 14), Some(ControlType::Abort)),
            "data seen"
        );
        assert!(
            !w.control(batch(8, 15), Some(ControlType::Commit)),
            "data seen"
        );
        // A later cleaning, the aborted data gone: both markers may go.
        let mut w = TxnWalk::new([aborted(7, 10)]);
        assert!(w.control(batch(7, 14), Some(ControlType::Abort)));
        assert!(w.control(batch(8, 15), Some(ControlType::Commit)));
        assert!(w.control(batch(9, 16), None), "an emptied marker");
        assert!(!w.control(batch(9, 17), Some(ControlType::Unknown(5))));
    }

    #[test]
    fn non_transactional_batches_are_not_transactions() {
        let mut w = TxnWalk::new([aborted(3, 0)]);
        let plain = BatchFacts {
            transactional: false,
            ..batch(3, 1)
        };
        assert!(!w.data(plain));
        assert!(w.control(batch(3, 2), Some(ControlType::Abort)));
    }
}
