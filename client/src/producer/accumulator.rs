//! The record accumulator: per-partition queues of batches, with no I/O and no clock of its own.
//!
//! `send` appends to the last batch of the partition (or opens a new one); the sender asks which
//! partitions are [`Accumulator::ready`] at `now` and drains the front batch of those it can send
//! to. A batch is ready when it is full (or a newer batch exists behind it), when it has waited
//! `linger`, while a flush or close is under way, or, for a retried batch, once its backoff ends.
//! With `linger = 0` every batch is ready at once, yet it keeps filling while the sender cannot
//! take it (all request slots busy), which is what makes batching work under load.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::Error;
use crate::records::{BATCH_HEADER_BYTES, OutgoingRecord};

pub use crate::metadata::TopicPartition;

/// Where a batch landed: base offset (-1 when unknown, e.g. acks=0) and append time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAck {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Broker append time (LogAppendTime topics), else -1.
    pub log_append_time: i64,
}

/// The eventual outcome of a batch, shared by the delivery futures of its records.
pub type BatchOutcome = Option<Result<BatchAck, Error>>;

/// A batch of records for one partition.
#[derive(Debug)]
pub struct ProducerBatch {
    /// Creation order across the accumulator (drain order within a partition).
    pub id: u64,
    /// Destination.
    pub tp: TopicPartition,
    /// The records.
    pub records: Vec<OutgoingRecord>,
    /// Estimated encoded size.
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
    pub outcome: watch::Sender<BatchOutcome>,
}

impl ProducerBatch {
    /// Publishes the outcome to every delivery future of this batch.
    pub fn complete(&self, result: Result<BatchAck, Error>) {
        self.outcome.send_replace(Some(result));
    }

    /// Record count as Kafka counts it.
    pub fn record_count(&self) -> i32 {
        i32::try_from(self.records.len()).unwrap_or(i32::MAX)
    }
}

/// Where an appended record went.
#[derive(Debug)]
pub struct Appended {
    /// Id of the batch the record joined.
    pub batch_id: u64,
    /// The batch's outcome channel.
    pub outcome: watch::Receiver<BatchOutcome>,
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

    /// Whether a record of `size` would open a new batch in `tp` (the sticky partitioner moves on
    /// whenever a new batch starts, KIP-480's `onNewBatch`).
    pub fn would_open_batch(&self, tp: &TopicPartition, size: usize) -> bool {
        match self.queues.get(tp).and_then(|q| q.back()) {
            Some(last) => !self.fits(last, size),
            None => true,
        }
    }

    fn fits(&self, batch: &ProducerBatch, size: usize) -> bool {
        batch.sequence.is_none()
            && batch.attempts == 0
            && (batch.records.is_empty() || batch.size + size <= self.batch_size)
    }

    /// Appends `record` (of estimated `size`) to `tp`.
    pub fn append(
        &mut self,
        tp: TopicPartition,
        record: OutgoingRecord,
        size: usize,
        now: Instant,
    ) -> Appended {
        let batch_size = self.batch_size;
        let fits = self
            .queues
            .get(&tp)
            .and_then(|q| q.back())
            .is_some_and(|b| self.fits(b, size));
        let queue = self.queues.entry(tp.clone()).or_default();
        if fits && let Some(batch) = queue.back_mut() {
            return push_record(batch, record, size, batch_size, false);
        }
        let (outcome, _) = watch::channel(None);
        let mut batch = ProducerBatch {
            id: self.next_id,
            tp,
            records: Vec::new(),
            size: BATCH_HEADER_BYTES,
            created: now,
            attempts: 0,
            retry_at: None,
            sequence: None,
            reserved: 0,
            outcome,
        };
        self.next_id += 1;
        let appended = push_record(&mut batch, record, size, batch_size, true);
        queue.push_back(batch);
        appended
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

fn push_record(
    batch: &mut ProducerBatch,
    record: OutgoingRecord,
    size: usize,
    batch_size: usize,
    new_batch: bool,
) -> Appended {
    batch.records.push(record);
    batch.size += size;
    batch.reserved += size;
    Appended {
        batch_id: batch.id,
        outcome: batch.outcome.subscribe(),
        index: batch.records.len() - 1,
        new_batch,
        batch_full: batch.size >= batch_size,
    }
}

#[cfg(test)]
#[path = "accumulator_tests.rs"]
mod tests;
