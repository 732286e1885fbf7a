//! Idempotence bookkeeping: producer id and epoch, per-partition sequence numbers, and what to do
//! with each produce error. Pure: the sender feeds it events and follows its verdicts.
//!
//! What it does, after the Java producer (`TransactionManager`, KIP-360):
//! - A batch gets `(producer id, epoch, base sequence)` when first drained and keeps them across
//!   retries. Sequences count records per partition from 0 and wrap at `i32::MAX` to 0.
//! - At most [`MAX_IN_FLIGHT_PER_PARTITION`] unacknowledged batches per partition (the broker
//!   remembers the last 5 for de-duplication), and only one until the partition's first batch
//!   under this producer id and epoch is acknowledged: a broker with no state for the producer
//!   accepts any sequence, so a batch that overtook the first one must not reach it first.
//! - A retried batch is sent only when it is the oldest unacknowledged batch of its partition, so
//!   retries cannot reorder records.
//! - OUT_OF_ORDER_SEQUENCE_NUMBER on a batch ahead of the next expected one: it overtook an
//!   earlier batch (possible over the mesh, where requests use separate streams); resend it, with
//!   no backoff, once the earlier batches are resolved. On the next expected batch it is a real
//!   gap, and behind it the broker has moved on: bump the epoch.
//! - UNKNOWN_PRODUCER_ID: retry while the broker gives no log start offset, else bump the epoch.
//! - INVALID_PRODUCER_EPOCH / PRODUCER_FENCED: fatal; the producer fails every later send.
//! - DUPLICATE_SEQUENCE_NUMBER: success (the batch was already written).
//! - A batch that had a sequence and fails for good (non-retriable error, delivery timeout)
//!   leaves a gap: bump the epoch.
//! - An epoch bump is local (same producer id, epoch + 1; a new id from InitProducerId when the
//!   epoch would overflow). Each partition restarts at sequence 0 under the new epoch once its
//!   in-flight batches have come back; queued batches of that partition are re-sequenced in order.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::ResponseError;

use super::accumulator::TopicPartition;
use crate::error::Error;

/// The broker keeps the last 5 batches per producer and partition for de-duplication.
pub const MAX_IN_FLIGHT_PER_PARTITION: usize = 5;

/// A producer id and epoch from InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    /// Producer id.
    pub id: i64,
    /// Producer epoch.
    pub epoch: i16,
}

/// What the sender should do with a failed batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Put it back and retry after the retry backoff.
    Retry,
    /// Put it back and resend as soon as its predecessors are resolved (it only overtook one).
    RetryInOrder,
    /// Treat as delivered.
    Success,
    /// Fail this batch with the error.
    Fail(Error),
    /// Fail this batch and every later send: the producer is fenced.
    Fatal(Error),
}

#[derive(Debug, Clone, Default)]
struct PartitionSequences {
    producer_id: i64,
    epoch: i16,
    next: i32,
    last_acked: Option<i32>,
    /// Base sequences handed out and not yet resolved, in order.
    unacked: VecDeque<i32>,
    /// Base sequences of batches on the wire now.
    sending: Vec<i32>,
}

impl PartitionSequences {
    fn new(id: ProducerIdentity) -> Self {
        PartitionSequences {
            producer_id: id.id,
            epoch: id.epoch,
            ..Default::default()
        }
    }
}

/// Idempotent producer state.
#[derive(Debug, Default)]
pub struct Idempotence {
    identity: Option<ProducerIdentity>,
    partitions: HashMap<TopicPartition, PartitionSequences>,
    bump_requested: bool,
}

/// Kafka's sequence arithmetic: wraps at `i32::MAX` to 0.
pub fn increment_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

impl Idempotence {
    /// The current producer id and epoch, once InitProducerId has answered.
    pub fn identity(&self) -> Option<ProducerIdentity> {
        self.identity
    }

    /// Adopts a producer id and epoch (InitProducerId answer). Every partition restarts at 0.
    pub fn set_identity(&mut self, identity: ProducerIdentity) {
        self.identity = Some(identity);
        self.bump_requested = false;
    }

    /// Whether an epoch bump was asked for and not yet done.
    pub fn bump_requested(&self) -> bool {
        self.bump_requested
    }

    /// Bumps the epoch locally. Returns `false` when the epoch is exhausted and a new producer id
    /// is needed (the caller then runs InitProducerId and calls [`Idempotence::set_identity`]).
    pub fn bump_epoch(&mut self) -> bool {
        let Some(identity) = self.identity.as_mut() else {
            return false;
        };
        if identity.epoch >= i16::MAX - 1 {
            self.identity = None;
            return false;
        }
        identity.epoch += 1;
        self.bump_requested = false;
        true
    }

    /// Whether `tp` still runs on an older epoch or id (it must restart its sequences).
    pub fn is_stale(&self, tp: &TopicPartition) -> bool {
        match (self.identity, self.partitions.get(tp)) {
            (Some(id), Some(p)) => p.producer_id != id.id || p.epoch != id.epoch,
            _ => false,
        }
    }

    /// Restarts `tp` at sequence 0 under the current epoch (only with nothing in flight).
    pub fn reset_partition(&mut self, tp: &TopicPartition) {
        if let Some(id) = self.identity {
            self.partitions
                .insert(tp.clone(), PartitionSequences::new(id));
        }
    }

    /// Whether a batch may be sent now: a retry (`sequence` set) only as the oldest unacked batch
    /// not already on the wire, under the current epoch (retries go out in sequence order, and
    /// pipelined); a new batch while fewer than 5 are unacked.
    pub fn can_send(&self, tp: &TopicPartition, sequence: Option<(i64, i16, i32)>) -> bool {
        let Some(id) = self.identity else {
            return false;
        };
        if self.bump_requested {
            return false;
        }
        let state = self.partitions.get(tp);
        match sequence {
            Some((pid, epoch, base)) => {
                pid == id.id
                    && epoch == id.epoch
                    && state.and_then(|s| s.unacked.iter().find(|q| !s.sending.contains(q)))
                        == Some(&base)
            }
            // Until the broker acknowledged one batch it may hold no state for this producer
            // and accept any sequence, so a later batch that overtook the first (possible over
            // the mesh) would be written first: the first batch goes alone.
            None => state.is_none_or(|s| {
                s.producer_id == id.id
                    && s.epoch == id.epoch
                    && s.unacked.len() < MAX_IN_FLIGHT_PER_PARTITION
                    && (s.last_acked.is_some() || s.unacked.is_empty())
            }),
        }
    }

    /// Hands out the identity and base sequence for a new batch of `count` records.
    pub fn assign(&mut self, tp: &TopicPartition, count: i32) -> Option<(i64, i16, i32)> {
        let id = self.identity?;
        let state = self
            .partitions
            .entry(tp.clone())
            .or_insert_with(|| PartitionSequences::new(id));
        if (state.producer_id, state.epoch) != (id.id, id.epoch) && state.unacked.is_empty() {
            *state = PartitionSequences::new(id);
        }
        let base = state.next;
        state.next = increment_sequence(base, count);
        state.unacked.push_back(base);
        state.sending.push(base);
        Some((id.id, id.epoch, base))
    }

    /// A retried batch went on the wire again.
    pub fn on_sent(&mut self, tp: &TopicPartition, sequence: (i64, i16, i32)) {
        if let Some(state) = self.current_state(tp, sequence) {
            state.sending.push(sequence.2);
        }
    }

    /// A batch came back (answer or transport error), before its outcome is handled.
    pub fn on_returned(&mut self, tp: &TopicPartition, sequence: (i64, i16, i32)) {
        if let Some(state) = self.current_state(tp, sequence) {
            state.sending.retain(|&s| s != sequence.2);
        }
    }

    /// A batch was acknowledged.
    pub fn on_success(&mut self, tp: &TopicPartition, sequence: (i64, i16, i32), count: i32) {
        if let Some(state) = self.current_state(tp, sequence) {
            state.unacked.retain(|&s| s != sequence.2);
            let last = increment_sequence(sequence.2, count.saturating_sub(1));
            state.last_acked = Some(last);
        }
    }

    /// A batch failed with `code`; decides what to do (see the module docs).
    pub fn on_error(
        &mut self,
        tp: &TopicPartition,
        sequence: (i64, i16, i32),
        code: ResponseError,
        log_start_offset: i64,
        error: Error,
    ) -> Verdict {
        match code {
            ResponseError::DuplicateSequenceNumber => Verdict::Success,
            ResponseError::InvalidProducerEpoch
            | ResponseError::ProducerFenced
            | ResponseError::InvalidProducerIdMapping
            | ResponseError::TransactionalIdAuthorizationFailed
            | ResponseError::ClusterAuthorizationFailed => Verdict::Fatal(error),
            ResponseError::OutOfOrderSequenceNumber => {
                // Ahead of the next expected sequence: an earlier batch will resolve it. At it (a
                // real gap) or behind it (the broker moved past it): restart under a new epoch.
                if self.is_ahead_of_expected(tp, sequence) {
                    return Verdict::RetryInOrder;
                }
                self.bump_requested = true;
                Verdict::Retry
            }
            ResponseError::UnknownProducerId => {
                if log_start_offset >= 0 {
                    self.bump_requested = true;
                }
                Verdict::Retry
            }
            _ if error.is_retriable() => Verdict::Retry,
            _ => {
                self.on_abandoned(tp, sequence);
                Verdict::Fail(error)
            }
        }
    }

    /// A batch with a sequence will not be retried (expired, failed): its sequence is a gap.
    pub fn on_abandoned(&mut self, tp: &TopicPartition, sequence: (i64, i16, i32)) {
        if let Some(state) = self.current_state(tp, sequence) {
            state.unacked.retain(|&s| s != sequence.2);
            self.bump_requested = true;
        }
    }

    fn is_ahead_of_expected(&self, tp: &TopicPartition, sequence: (i64, i16, i32)) -> bool {
        let Some(state) = self.partitions.get(tp) else {
            return false;
        };
        let expected = state.last_acked.map_or(0, |s| increment_sequence(s, 1));
        let distance = (i64::from(sequence.2) - i64::from(expected)).rem_euclid(1 << 31);
        distance != 0 && distance < (1 << 30)
    }

    fn current_state(
        &mut self,
        tp: &TopicPartition,
        sequence: (i64, i16, i32),
    ) -> Option<&mut PartitionSequences> {
        let state = self.partitions.get_mut(tp)?;
        (sequence.0 == state.producer_id && sequence.1 == state.epoch).then_some(state)
    }
}

#[cfg(test)]
#[path = "sequence_tests.rs"]
mod tests;
