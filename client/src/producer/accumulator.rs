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

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;

pub use super::delivery::{BatchAck, BatchCompletion};
use crate::error::{Error, Result};
use crate::records::builder::{BatchOptions, restamp};
use crate::records::{BatchBuilder, BatchIdentity, RecordParts};

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

    /// The wire bytes with `identity` in the header (and the transactional flag for a
    /// transactional producer's batch). The first call seals the batch (header, compression,
    /// CRC); later calls reuse those bytes, re-stamped if the identity changed.
    pub fn encoded(
        &mut self,
        identity: BatchIdentity,
        compression: Compression,
        transactional: bool,
    ) -> Result<Bytes> {
        match std::mem::replace(&mut self.body, Body::Taken) {
            Body::Open(builder) => {
                let options = BatchOptions {
                    transactional,
                    ..BatchOptions::new(identity, compression)
                };
                let bytes = builder.finish(options)?;
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

impl ProducerBatch {
    /// Whether records may still join: never sent, no sequence assigned yet.
    fn open_to_appends(&self) -> bool {
        self.sequence.is_none() && self.attempts == 0
    }

    /// The batch's buffer once nothing else holds it (to be recycled by the accumulator).
    pub fn into_buffer(mut self) -> Option<BytesMut> {
        match std::mem::replace(&mut self.body, Body::Taken) {
            Body::Open(builder) => Some(builder.into_buffer()),
            Body::Sealed { bytes, .. } => bytes.try_into_mut().ok(),
            Body::Taken => None,
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

/// A map keyed by the producer's own topics and partitions: hashed with foldhash, which is
/// much cheaper per record than SipHash (no untrusted keys here).
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Spare batch buffers kept for reuse (Kafka's `BufferPool`), at most.
const MAX_SPARE_BUFFERS: usize = 64;

/// Per-partition queues of batches.
#[derive(Debug)]
pub struct Accumulator {
    batch_size: usize,
    linger: Duration,
    queues: FastMap<TopicPartition, VecDeque<ProducerBatch>>,
    /// Buffers of completed batches, reused by new ones.
    spare: Vec<BytesMut>,
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
            queues: FastMap::default(),
            spare: Vec::new(),
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
        let Some(last) = self.queues.get(tp).and_then(|q| q.back()) else {
            return true;
        };
        match &last.body {
            Body::Open(b) if last.open_to_appends() => {
                !b.is_empty() && b.size() + b.size_of(timestamp, record) > batch_size
            }
            _ => true,
        }
    }

    /// Appends `record` to `tp`'s open batch if it has room; `Ok(None)` when a new batch
    /// would be needed (no batch, a full one, or one already sent).
    pub fn try_append(
        &mut self,
        tp: &TopicPartition,
        timestamp: i64,
        record: &RecordParts<'_>,
        reserved: usize,
    ) -> Result<Option<Appended>> {
        let batch_size = self.batch_size;
        let Some(batch) = self.queues.get_mut(tp).and_then(|q| q.back_mut()) else {
            return Ok(None);
        };
        if !batch.open_to_appends() {
            return Ok(None);
        }
        let Body::Open(builder) = &mut batch.body else {
            return Ok(None);
        };
        if !builder.try_append(timestamp, record, batch_size)? {
            return Ok(None);
        }
        Ok(Some(appended(batch, reserved, batch_size, false)))
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
        if let Some(done) = self.try_append(tp, timestamp, record, reserved)? {
            return Ok(done);
        }
        let mut builder = match self.spare.pop() {
            Some(buf) => BatchBuilder::with_buffer(buf),
            None => BatchBuilder::with_capacity(self.batch_size),
        };
        builder.append(timestamp, record)?;
        let mut batch = ProducerBatch {
            id: self.next_id,
            tp: tp.clone(),
            body: Body::Open(builder),
            count: 0,
            size: 0,
            created: now,
            attempts: 0,
            retry_at: None,
            sequence: None,
            reserved: 0,
            completion: Arc::new(BatchCompletion::default()),
        };
        self.next_id += 1;
        let done = appended(&mut batch, reserved, self.batch_size, true);
        self.queues.entry(tp.clone()).or_default().push_back(batch);
        Ok(done)
    }

    /// Keeps a completed batch's buffer for a later batch (when it is batch-sized).
    pub fn recycle(&mut self, buf: BytesMut) {
        if buf.capacity() >= self.batch_size && self.spare.len() < MAX_SPARE_BUFFERS {
            self.spare.push(buf);
        }
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

/// Books a record just encoded into `batch`.
fn appended(
    batch: &mut ProducerBatch,
    reserved: usize,
    batch_size: usize,
    new_batch: bool,
) -> Appended {
    if let Body::Open(builder) = &batch.body {
        batch.size = builder.size();
    }
    batch.count += 1;
    batch.reserved += reserved;
    Appended {
        batch_id: batch.id,
        completion: batch.completion.clone(),
        index: usize::try_from(batch.count - 1).unwrap_or(0),
        new_batch,
        batch_full: batch.size >= batch_size,
    }
}

#[cfg(test)]
#[path = "accumulator_tests.rs"]
mod tests;
