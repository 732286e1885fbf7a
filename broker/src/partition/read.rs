//! Reads of a led partition for a consumer or a follower (the store's batches, as they are
//! stored): how far each may see is decided here, in one place.

use bytes::Bytes;
use rafka_store::batch::BatchHeader;
use rafka_store::{AbortedTxn, PartitionLog, StoreError};

use super::env::Env;
use super::leader::Leader;
use crate::ids::Offset;

/// Who reads a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// A consumer reading committed records (read_committed): up to the last stable offset,
    /// with the aborted transactions of what it read.
    Consumer,
    /// A read_uncommitted consumer: up to the high watermark.
    Uncommitted,
    /// A follower fetching as a replica: up to the log end.
    Replica,
}

/// What one read of a partition found.
#[derive(Clone, Debug, Default)]
pub struct PartitionRead {
    /// Whole batches from the one holding the fetch offset (none when nothing is visible yet).
    pub batches: Vec<Bytes>,
    /// The high watermark when read.
    pub high_watermark: Offset,
    /// The last stable offset when read.
    pub last_stable_offset: Offset,
    /// The log start when read.
    pub log_start: Offset,
    /// For a read_committed consumer, the aborted transactions overlapping what was read
    /// (its client drops their records); `None` for other readers.
    pub aborted: Option<Vec<AbortedTxn>>,
}

impl<E: Env<Log = PartitionLog>> Leader<E> {
    /// Reads whole batches from the one holding `offset`, about `max_bytes` (always at least one
    /// batch when any is visible), no further than `reader` may see. Blocks on fjall: call it
    /// off the reactor.
    pub fn read(
        &self,
        reader: Reader,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<PartitionRead, StoreError> {
        let log = self.log();
        let limit = self.visible_end(reader);
        let found = PartitionRead {
            batches: Vec::new(),
            high_watermark: self.high_watermark(),
            last_stable_offset: self.last_stable_offset(),
            log_start: Offset(log.log_start_offset()),
            aborted: (reader == Reader::Consumer).then(Vec::new),
        };
        // Between the limit and the log end there is nothing this reader may see yet.
        if offset >= limit && offset.0 <= log.log_end_offset() {
            return Ok(found);
        }
        let batches = log.read(offset.0, max_bytes.max(1), limit.0)?;
        // Kafka's `collectAbortedTransactions` over [offset, end of the last batch read].
        let end = batches
            .last()
            .and_then(|b| BatchHeader::parse(b).ok())
            .and_then(|h| h.last_offset());
        let aborted = match (reader, end) {
            (Reader::Consumer, Some(last)) => Some(log.aborted_transactions(offset.0, last + 1)?),
            _ => found.aborted.clone(),
        };
        Ok(PartitionRead {
            batches,
            aborted,
            ..found
        })
    }
}
