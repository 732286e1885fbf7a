//! The crate's one error type, with typed context and a stable mapping onto Kafka error codes.

use crate::TopicPartition;
use crate::batch::BatchError;

/// Result alias used across the crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the store can refuse or fail with.
///
/// Callers that answer Kafka requests use [`StoreError::kafka_code`]; callers that retry use
/// [`StoreError::is_retriable`]. After a [`StoreError::Storage`] or [`StoreError::Io`] from a
/// write, the store refuses further writes ([`StoreError::Failed`]) until it is reopened: fjall
/// poisons its journal on a failed write and the in-memory offsets may be ahead of the disk.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record batch failed an integrity check (framing, length or CRC), on produce or when
    /// read back from disk.
    #[error("corrupt record batch ({partition:?} at offset {offset:?}): {reason}")]
    CorruptRecord {
        /// The partition the batch belongs to, when known.
        partition: Option<TopicPartition>,
        /// The batch's key offset (its last offset) when read from disk.
        offset: Option<i64>,
        /// What exactly is wrong.
        reason: BatchError,
    },
    /// A well-formed batch that breaks a rule (magic, offsets, record count).
    #[error("invalid record batch: {reason}")]
    InvalidRecord {
        /// What exactly is wrong.
        reason: BatchError,
    },
    /// The batch is larger than the topic's `max_message_bytes`.
    #[error("record batch of {size} bytes exceeds max_message_bytes {max}")]
    RecordTooLarge {
        /// Size of the batch in bytes.
        size: usize,
        /// The partition's limit.
        max: u32,
    },
    /// The requested offset lies outside `[log_start, log_end]`.
    #[error("offset {requested} out of range [{log_start}, {log_end}] for {partition}")]
    OffsetOutOfRange {
        /// The partition.
        partition: TopicPartition,
        /// The offset asked for.
        requested: i64,
        /// First offset still in the log.
        log_start: i64,
        /// Offset the next appended record will get.
        log_end: i64,
    },
    /// An idempotent producer's sequence number is not the next one expected.
    #[error(
        "out of order sequence for producer {producer_id} epoch {epoch} on {partition}: \
         expected {expected}, got {received}"
    )]
    OutOfOrderSequence {
        /// The partition.
        partition: TopicPartition,
        /// The producer.
        producer_id: i64,
        /// The producer epoch of the batch.
        epoch: i16,
        /// The sequence the store expected (-1 when only sequence 0 is acceptable).
        expected: i32,
        /// The batch's first sequence.
        received: i32,
    },
    /// A batch from an older producer epoch than the one the store has seen (a fenced producer).
    #[error(
        "producer {producer_id} epoch {received} is older than current epoch {current} on {partition}"
    )]
    InvalidProducerEpoch {
        /// The partition.
        partition: TopicPartition,
        /// The producer.
        producer_id: i64,
        /// The epoch the store knows.
        current: i16,
        /// The batch's epoch.
        received: i16,
    },
    /// A producer with a transaction open on the partition wrote a non-transactional batch
    /// (Kafka's `InvalidTxnStateException` from `ProducerAppendInfo`).
    #[error("producer {producer_id} has a transaction open on {partition}: {reason}")]
    InvalidTxnState {
        /// The partition.
        partition: TopicPartition,
        /// The producer.
        producer_id: i64,
        /// What was wrong.
        reason: &'static str,
    },
    /// The partition does not exist in this store (never created, or deleted).
    #[error("unknown partition {partition}")]
    UnknownPartition {
        /// The partition.
        partition: TopicPartition,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration {field}: {reason}")]
    InvalidConfig {
        /// The offending field.
        field: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// A request that can never succeed as asked (bad argument).
    #[error("invalid request: {reason}")]
    InvalidRequest {
        /// Why it was refused.
        reason: String,
    },
    /// A stored value (index entry, producer state, summary, partition record) does not decode.
    #[error("corrupt stored value in {keyspace}: {reason}")]
    CorruptValue {
        /// The keyspace holding it.
        keyspace: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// fjall reported an error.
    #[error("storage engine error: {0}")]
    Storage(#[from] fjall::Error),
    /// An I/O error outside fjall (directory walk, data dir creation).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// An earlier write failed; the store must be reopened before it accepts writes again.
    #[error("the store failed earlier and refuses writes until reopened: {reason}")]
    Failed {
        /// The first error.
        reason: String,
    },
    /// The store is shutting down.
    #[error("the store is closed")]
    Closed,
    /// A log cleaning gave up because the partition changed under it (truncated, reconfigured,
    /// segments deleted by retention); the next cleaning starts over.
    #[error("cleaning of {partition} aborted: {reason}")]
    CleaningAborted {
        /// The partition.
        partition: TopicPartition,
        /// What changed.
        reason: String,
    },
}

impl StoreError {
    /// The Kafka protocol error code for this error.
    pub fn kafka_code(&self) -> i16 {
        match self {
            StoreError::CorruptRecord { .. } => 2,
            StoreError::InvalidRecord { .. } => 87,
            StoreError::RecordTooLarge { .. } => 10,
            StoreError::OffsetOutOfRange { .. } => 1,
            StoreError::OutOfOrderSequence { .. } => 45,
            StoreError::InvalidProducerEpoch { .. } => 47,
            StoreError::InvalidTxnState { .. } => 48,
            StoreError::UnknownPartition { .. } => 3,
            StoreError::InvalidConfig { .. } => 40,
            StoreError::InvalidRequest { .. } => 42,
            StoreError::CorruptValue { .. }
            | StoreError::Storage(_)
            | StoreError::Io(_)
            | StoreError::Failed { .. }
            | StoreError::Closed
            | StoreError::CleaningAborted { .. } => 56,
        }
    }

    /// Whether a client may retry the same request (Kafka's classification of the code).
    pub fn is_retriable(&self) -> bool {
        matches!(
            self,
            StoreError::CorruptRecord { .. }
                | StoreError::UnknownPartition { .. }
                | StoreError::CorruptValue { .. }
                | StoreError::Storage(_)
                | StoreError::Io(_)
                | StoreError::Failed { .. }
                | StoreError::Closed
        )
    }

    /// Maps a batch validation failure on the produce path onto the right variant.
    pub(crate) fn from_batch(reason: BatchError) -> Self {
        if reason.is_corruption() {
            StoreError::CorruptRecord {
                partition: None,
                offset: None,
                reason,
            }
        } else {
            StoreError::InvalidRecord { reason }
        }
    }

    /// Fills in the partition of a `CorruptRecord`.
    pub(crate) fn with_partition(self, tp: TopicPartition) -> Self {
        match self {
            StoreError::CorruptRecord { offset, reason, .. } => StoreError::CorruptRecord {
                partition: Some(tp),
                offset,
                reason,
            },
            other => other,
        }
    }

    /// A corrupt stored value.
    pub(crate) fn corrupt(keyspace: &'static str, reason: impl Into<String>) -> Self {
        StoreError::CorruptValue {
            keyspace,
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        let tp = TopicPartition::new(uuid::Uuid::from_u128(1), 0);
        let oor = StoreError::OffsetOutOfRange {
            partition: tp,
            requested: 9,
            log_start: 0,
            log_end: 5,
        };
        assert_eq!(oor.kafka_code(), 1);
        assert!(!oor.is_retriable());
        assert_eq!(
            StoreError::UnknownPartition { partition: tp }.kafka_code(),
            3
        );
        assert!(StoreError::Closed.is_retriable());
        let crc = StoreError::from_batch(BatchError::CrcMismatch {
            stored: 1,
            computed: 2,
        });
        assert_eq!(crc.kafka_code(), 2);
        let magic = StoreError::from_batch(BatchError::UnsupportedMagic { magic: 1 });
        assert_eq!(magic.kafka_code(), 87);
    }
}
