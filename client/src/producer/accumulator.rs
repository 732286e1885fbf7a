//! The record accumulator: per-partition queues of batches, with no I/O and no clock of its own.
//!
//! `send` encodes the record straight into the last batch of the partition (or opens a new one:
//! no per-record allocation, the batch buffer is the wire format); the sender asks which
//! partitions are [`Accumulator::ready`] at `now` and drains the front batch of those it can send
//! to. A batch is ready when it is full (or a newer batch exists behind it), when it has waited
//! `linger`, while a flush or close is under way, or, for a retried batch, once its backoff ends.
//! With `linger = 0` every batch is ready at once, yet it keeps filling while the sender cannot
//! take it (all request slots busy), which is what makes batching work under load.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::records::Compression;

pub use super::delivery::{BatchAck, BatchCompletion};
use crate::error::{Error, Result};
use crate::records::builder::restamp;
use crate::records::{BATCH_HEADER_BYTES, BatchBuilder, BatchIdentity, RecordParts};

pub use crate::metadata::TopicPartition;

/// A batch's bytes: open (records appended in place) until its first send, then sealed.
#[derive(Debug)]
enum Body {
    Open(BatchBuilder),
    Sealed {
        identity: BatchIdentity,
        bytes: Bytes,
    },
    /// Only while sealing.
    Taken,
}

/// A batch of records for one partition.
#[derive(Debug)]
pub struct ProducerBatch {
    /// Creation order across the accumulator (drain order within a partition).
    pub id: u64,
    /// Destination.
    pub tp: TopicPartition,
    body: Body,
    count: i32,
    /// Uncompressed encoded size, header included.
    pub size: usize,
    /// When the first record arrived.
    pub created: Instant,
    /// Send attempts so far.
    pub attempts: u32,
    /// Earliest next attempt (retries).
    pub retry_at: Option<Instant>,
    /// Producer id, epoch and base sequence, assigned on first drain when idempotent.
    pub sequence: Option<(i64, i16, i32)>,
    /// Bytes of producer buffer this batch holds.
    pub reserved: usize,
    /// Where the outcome is published.
    pub completion: Arc<BatchCompletion>,
}

impl ProducerBatch {
    /// Publishes the outcome to every delivery future of this batch.
    pub fn complete(&self, result: Result<BatchAck, Error>) {
        self.completion.complete(result);
    }

    /// Record count as Kafka counts it.
    pub fn record_count(&self) -> i32 {
        self.count
    }

    /// The wire bytes with `identity` in the header. The first call seals the batch (header,
    /// compression, CRC); later calls reuse those bytes, re-stamped if the identity changed.
    pub fn encoded(&mut self, identity: BatchIdentity, compression: Compression) -> Result<Bytes> {
        match std::mem::replace(&mut self.body, Body::Taken) {
            Body::Open(builder) => {
                let bytes = builder.build(identity, compression)?;
                self.body = Body::Sealed {
                    identity,
                    bytes: bytes.clone(),
                };
                Ok(bytes)
            }
            Body::Sealed {
                identity: old,
                bytes,
            } => {
                let bytes = if old == identity {
                    bytes
                } else {
                    restamp(&bytes, identity)
                };
                self.body = Body::Sealed {
                    identity,
                    bytes: bytes.clone(),
                };
                Ok(bytes)
            }
            Body::Taken => Err(Error::protocol("batch body missing")),
        }
    }
}

impl Drop for ProducerBatch {
    fn drop(&mut self) {
        // A batch dropped unresolved (the producer went away) must not leave futures waiting.
        if self.completion.get().is_none() {
            self.completion.complete(Err(Error::Closed));
        }
    }
}

/// Where an appended record went.
#[derive(Debug)]
pub struct Appended {
    /// Id of the batch the record joined.
    pub batch_id: u64,
    /// The batch's outcome.
    pub completion: Arc<BatchCompletion>,
    /// Index of the record in its batch.
    pub index: usize,
    /// A new batch was opened (the sender may have something new to do).
    pub new_batch: bool,
    /// The batch is now full.
    pub batch_full: bool,
}

/// Readiness at a point in time.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Readiness {
    /// Partitions whose front batch may be sent now.
    pub ready: Vec<TopicPartition>,
    /// When the next not-yet-ready batch becomes ready.
    pub next_check: Option<Instant>,
}

/// Per-partition queues of batches.
#[derive(Debug)]
pub struct Accumulator {
    batch_size: usize,
    linger: Duration,
    queues: HashMap<TopicPartition, VecDeque<ProducerBatch>>,
    next_id: u64,
    /// While positive, every batch is ready (flush or close in progress).
    pub flushing: usize,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new(batch_size: usize, linger: Duration) -> Self {
        Accumulator {
            batch_size,
            linger,
            queues: HashMap::new(),
            next_id: 0,
            flushing: 0,
        }
    }

    /// Whether `record` would open a new batch in `tp` (the sticky partitioner moves on
    /// whenever a new batch starts, KIP-480's `onNewBatch`).
    pub fn would_open_batch(
        &self,
        tp: &TopicPartition,
        timestamp: i64,
        record: &RecordParts<'_>,
    ) -> bool {
        let batch_size = self.batch_size;
        match self.queues.get(tp).and_then(|q| q.back()) {
            Some(last) => fits(last, batch_size, timestamp, record).is_none(),
            None => true,
        }
    }

    /// Appends `record` to `tp`, encoding it into the partition's open batch (or a new one).
    /// `reserved` is the buffer memory it holds until its batch completes.
    pub fn append(
        &mut self,
        tp: &TopicPartition,
        timestamp: i64,
        record: &RecordParts<'_>,
        reserved: usize,
        now: Instant,
    ) -> Result<Appended> {
        let batch_size = self.batch_size;
        if let Some(queue) = self.queues.get_mut(tp)
            && let Some(batch) = queue.back_mut()
            && let Some(size) = fits(batch, batch_size, timestamp, record)
        {
            debug_assert!(batch.size + size <= batch_size || batch.count == 0);
            return push_record(batch, timestamp, record, reserved, batch_size, false);
        }
        let mut batch = ProducerBatch {
            id: self.next_id,
            tp: tp.clone(),
            body: Body::Open(BatchBuilder::with_capacity(batch_size)),
            count: 0,
            size: BATCH_HEADER_BYTES,
            created: now,
            attempts: 0,
            retry_at: None,
            sequence: None,
            reserved: 0,
            completion: Arc::new(BatchCompletion::default()),
        };
        self.next_id += 1;
        let appended = push_record(&mut batch, timestamp, record, reserved, batch_size, true)?;
        self.queues
            .entry(batch.tp.clone())
            .or_default()
            .push_back(batch);
        Ok(appended)
    }

    /// Which partitions have a sendable front batch at `now`.
    pub fn ready(&self, now: Instant) -> Readiness {
        let mut out = Readiness::default();
        for (tp, queue) in &self.queues {
            let Some(front) = queue.front() else { continue };
            let at = match front.retry_at {
                Some(at) => at,
                None if queue.len() > 1 || front.size >= self.batch_size || self.flushing > 0 => {
                    now
                }
                None => front.created + self.linger,
            };
            if at <= now {
                out.ready.push(tp.clone());
            } else {
                out.next_check = Some(out.next_check.map_or(at, |n: Instant| n.min(at)));
            }
        }
        out.ready.sort();
        out
    }

    /// The front batch of `tp`, if any.
    pub fn front(&self, tp: &TopicPartition) -> Option<&ProducerBatch> {
        self.queues.get(tp)?.front()
    }

    /// Mutable access to the queued batches of `tp` (sequence rewrites after an epoch bump).
    pub fn queue_mut(&mut self, tp: &TopicPartition) -> Option<&mut VecDeque<ProducerBatch>> {
        self.queues.get_mut(tp)
    }

    /// Removes and returns the front batch of `tp`.
    pub fn drain_front(&mut self, tp: &TopicPartition) -> Option<ProducerBatch> {
        let queue = self.queues.get_mut(tp)?;
        let batch = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(tp);
        }
        batch
    }

    /// Puts a batch back for a retry, in creation order ahead of newer batches.
    pub fn reenqueue(&mut self, batch: ProducerBatch) {
        let queue = self.queues.entry(batch.tp.clone()).or_default();
        let at = queue
            .iter()
            .position(|b| b.id > batch.id)
            .unwrap_or(queue.len());
        queue.insert(at, batch);
    }

    /// Removes every queued batch whose `created` is older than `deadline` (delivery timeout).
    pub fn expire(&mut self, deadline: Instant) -> Vec<ProducerBatch> {
        let mut expired = Vec::new();
        for queue in self.queues.values_mut() {
            while queue.front().is_some_and(|b| b.created < deadline) {
                if let Some(b) = queue.pop_front() {
                    expired.push(b);
                }
            }
        }
        self.queues.retain(|_, q| !q.is_empty());
        expired
    }

    /// Removes every queued batch (close after a fatal error).
    pub fn take_all(&mut self) -> Vec<ProducerBatch> {
        self.queues.drain().flat_map(|(_, q)| q).collect()
    }

    /// Whether no batch is queued.
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Number of queued batches.
    pub fn batches(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }
}

/// The record's exact size if it may join `batch`: the batch is still open (never sent) and
/// either empty or has room for it.
fn fits(
    batch: &ProducerBatch,
    batch_size: usize,
    timestamp: i64,
    record: &RecordParts<'_>,
) -> Option<usize> {
    if batch.sequence.is_some() || batch.attempts > 0 || batch.count == i32::MAX {
        return None;
    }
    let empty = batch.count == 0;
    let Body::Open(builder) = &batch.body else {
        return None;
    };
    let size = builder.size_of(timestamp, record);
    (empty || batch.size + size <= batch_size).then_some(size)
}

fn push_record(
    batch: &mut ProducerBatch,
    timestamp: i64,
    record: &RecordParts<'_>,
    reserved: usize,
    batch_size: usize,
    new_batch: bool,
) -> Result<Appended> {
    let Body::Open(builder) = &mut batch.body else {
        return Err(Error::protocol("appending to a sealed batch"));
    };
    builder.append(timestamp, record)?;
    batch.size = builder.size();
    batch.count += 1;
    batch.reserved += reserved;
    Ok(Appended {
        batch_id: batch.id,
        completion: batch.completion.clone(),
        index: usize::try_from(batch.count - 1).unwrap_or(0),
        new_batch,
        batch_full: batch.size >= batch_size,
    })
}

#[cfg(test)]
#[path = "accumulator_tests.rs"]
mod tests;
