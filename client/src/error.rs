//! The client's one error type.
//!
//! Kafka error codes that callers branch on have their own variant (`NotLeader`,
//! `UnknownTopicOrPartition`, `OffsetOutOfRange`, ...); every other code is `Broker` with the
//! typed [`ResponseError`] from `kafka-protocol`. [`Error::is_retriable`] follows Kafka's own
//! classification.

use std::time::Duration;

pub use kafka_protocol::ResponseError;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bootstrap string is neither a multiaddr nor `HOST:PORT`.
    #[error("invalid bootstrap address {input:?}: {reason}")]
    InvalidBootstrap { input: String, reason: String },

    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// Connecting to a broker failed.
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },

    /// The connection broke (closed by the peer, I/O error, framing error).
    #[error("connection to {endpoint} lost: {reason}")]
    Disconnected { endpoint: String, reason: String },

    /// No response within the request timeout.
    #[error("{api} request to {endpoint} timed out after {timeout:?}")]
    Timeout {
        api: &'static str,
        endpoint: String,
        timeout: Duration,
    },

    /// The broker does not support any version of the API that this client implements.
    #[error("broker at {endpoint} supports no version of {api} this client implements")]
    UnsupportedVersion { api: &'static str, endpoint: String },

    /// Encoding a request or decoding a response failed (a bug or a misbehaving peer).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// A record batch fetched from the broker is corrupt (bad CRC, truncated, bad varints).
    #[error("corrupt record batch in {topic}-{partition} at offset {offset}: {reason}")]
    CorruptRecord {
        topic: String,
        partition: i32,
        offset: i64,
        reason: String,
    },

    /// The mesh transport failed (or is not compiled into this build).
    #[error("mesh transport: {0}")]
    Mesh(String),

    /// NOT_LEADER_OR_FOLLOWER (6): the metadata is stale; refresh and retry.
    #[error("{topic}-{partition}: the node is not the leader (NOT_LEADER_OR_FOLLOWER)")]
    NotLeader { topic: String, partition: i32 },

    /// LEADER_NOT_AVAILABLE (5): an election is under way.
    #[error("{topic}: leader not available")]
    LeaderNotAvailable { topic: String },

    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("unknown topic or partition: {topic}{}", partition.map(|p| format!("-{p}")).unwrap_or_default())]
    UnknownTopicOrPartition {
        topic: String,
        partition: Option<i32>,
    },

    /// OFFSET_OUT_OF_RANGE (1) with `auto.offset.reset = none`.
    #[error("{topic}-{partition}: offset {offset} is out of range")]
    OffsetOutOfRange {
        topic: String,
        partition: i32,
        offset: i64,
    },

    /// TOPIC_ALREADY_EXISTS (36).
    #[error("topic {topic} already exists")]
    TopicAlreadyExists { topic: String },

    /// OUT_OF_ORDER_SEQUENCE_NUMBER (45) that the producer could not resolve.
    #[error("{topic}-{partition}: out-of-order sequence number")]
    OutOfOrderSequence { topic: String, partition: i32 },

    /// INVALID_PRODUCER_EPOCH (47) or PRODUCER_FENCED (90): fatal for an idempotent producer.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),

    /// NOT_COORDINATOR (16), COORDINATOR_NOT_AVAILABLE (15), COORDINATOR_LOAD_IN_PROGRESS (14).
    #[error("group {group}: coordinator not ready ({error})")]
    Coordinator { group: String, error: ResponseError },

    /// Any other Kafka error code, with the context it came with.
    #[error("{context}: {error} (code {code}){}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default(), code = error.code())]
    Broker {
        context: String,
        error: ResponseError,
        message: Option<String>,
    },

    /// The record was not delivered within `delivery_timeout`.
    #[error("record not delivered within {0:?}")]
    DeliveryTimeout(Duration),

    /// The producer, consumer or connection was closed.
    #[error("closed")]
    Closed,

    /// A record is larger than the producer may send in one request.
    #[error("record of {size} bytes exceeds max request size {max}")]
    RecordTooLarge { size: usize, max: usize },

    /// Local I/O (reading stdin, writing stdout) in the CLI helpers.
    #[error("i/o: {0}")]
    Io(String),

    /// The current transaction cannot commit: a record or an offset commit in it failed. Abort
    /// it ([`crate::Producer::abort_transaction`]); the producer stays usable.
    #[error("the transaction must be aborted: {0}")]
    TransactionAbortable(Box<Error>),

    /// A transactional call made in the wrong state (e.g. `send` outside a transaction, a
    /// commit while the previous commit must be retried, a producer without a transactional id).
    #[error("transaction: {0}")]
    TransactionState(String),
}

impl Error {
    /// Maps a Kafka error code with its context to the typed variant (`None` for code 0).
    pub fn from_code(code: i16, topic: &str, partition: Option<i32>) -> Option<Error> {
        let error = ResponseError::try_from_code(code)?;
        let topic = topic.to_owned();
        Some(match error {
            ResponseError::NotLeaderOrFollower => Error::NotLeader {
                topic,
                partition: partition.unwrap_or(-1),
            },
            ResponseError::LeaderNotAvailable => Error::LeaderNotAvailable { topic },
            ResponseError::UnknownTopicOrPartition => {
                Error::UnknownTopicOrPartition { topic, partition }
            }
            ResponseError::TopicAlreadyExists => Error::TopicAlreadyExists { topic },
            ResponseError::OutOfOrderSequenceNumber => Error::OutOfOrderSequence {
                topic,
                partition: partition.unwrap_or(-1),
            },
            ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => {
                Error::ProducerFenced(format!("{topic}: {error}"))
            }
            other => Error::Broker {
                context: match partition {
                    Some(p) => format!("{topic}-{p}"),
                    None => topic,
                },
                error: other,
                message: None,
            },
        })
    }

    /// A `Broker` error for a request-level code with a free-form context.
    pub fn broker(context: impl Into<String>, code: i16, message: Option<&str>) -> Option<Error> {
        ResponseError::try_from_code(code).map(|error| Error::Broker {
            context: context.into(),
            error,
            message: message.map(str::to_owned),
        })
    }

    /// The Kafka error code behind this error, if it came from a broker.
    pub fn kafka_code(&self) -> Option<i16> {
        Some(match self {
            Error::NotLeader { .. } => ResponseError::NotLeaderOrFollower.code(),
            Error::LeaderNotAvailable { .. } => ResponseError::LeaderNotAvailable.code(),
            Error::UnknownTopicOrPartition { .. } => ResponseError::UnknownTopicOrPartition.code(),
            Error::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange.code(),
            Error::TopicAlreadyExists { .. } => ResponseError::TopicAlreadyExists.code(),
            Error::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber.code(),
            Error::Coordinator { error, .. } | Error::Broker { error, .. } => error.code(),
            _ => return None,
        })
    }

    /// Whether retrying the same operation later may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. } => true,
            Error::NotLeader { .. }
            | Error::LeaderNotAvailable { .. }
            | Error::UnknownTopicOrPartition { .. }
            | Error::Coordinator { .. } => true,
            Error::CorruptRecord { .. } => true,
            Error::Broker { error, .. } => error.is_retriable(),
            _ => false,
        }
    }

    /// Whether the node could not be reached or stopped answering (connect failure, broken
    /// connection, request timeout): another node may do.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            Error::Connect { .. } | Error::Disconnected { .. } | Error::Timeout { .. }
        )
    }

    /// Whether the error means the client's metadata (and, over the mesh, its node id → peer
    /// routes) is stale and should be refreshed.
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::NotLeader { .. }
            | Error::LeaderNotAvailable { .. }
            | Error::UnknownTopicOrPartition { .. }
            | Error::Connect { .. }
            | Error::Disconnected { .. }
            | Error::Timeout { .. } => true,
            Error::Coordinator { error, .. } => matches!(
                error,
                ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
            ),
            Error::Broker { error, .. } => matches!(
                error,
                ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::KafkaStorageError
                    | ResponseError::NotEnoughReplicas
                    | ResponseError::UnknownTopicId
                    | ResponseError::InconsistentTopicId
            ),
            _ => false,
        }
    }

    /// Whether a transactional producer that got this error cannot go on and must be closed
    /// (fenced by a newer instance with the same transactional id, or refused for good).
    pub fn is_fatal_for_transactions(&self) -> bool {
        match self {
            Error::ProducerFenced(_) => true,
            Error::Broker { error, .. } => matches!(
                error,
                ResponseError::TransactionalIdAuthorizationFailed
                    | ResponseError::InvalidTxnState
                    | ResponseError::InvalidTransactionTimeout
                    | ResponseError::ClusterAuthorizationFailed
                    | ResponseError::UnsupportedVersion
                    | ResponseError::UnsupportedForMessageFormat
            ),
            Error::UnsupportedVersion { .. } | Error::Config(_) => true,
            _ => false,
        }
    }

    pub(crate) fn protocol(what: impl std::fmt::Display) -> Error {
        Error::Protocol(what.to_string())
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_typed_variants() {
        assert!(Error::from_code(0, "t", Some(0)).is_none());
        let e = Error::from_code(6, "t", Some(2)).unwrap();
        assert!(matches!(e, Error::NotLeader { partition: 2, .. }));
        assert!(e.is_retriable() && e.needs_metadata_refresh());
        assert_eq!(e.kafka_code(), Some(6));
        let e = Error::from_code(45, "t", Some(0)).unwrap();
        assert!(matches!(e, Error::OutOfOrderSequence { .. }));
        let e = Error::from_code(87, "t", Some(0)).unwrap();
        assert!(matches!(
            e,
            Error::Broker {
                error: ResponseError::InvalidRecord,
                ..
            }
        ));
        assert!(!e.is_retriable());
        assert!(e.to_string().contains("t-0"), "{e}");
    }

    #[test]
    fn routing_errors_ask_for_a_refresh() {
        let coordinator = |error| Error::Coordinator {
            group: "g".into(),
            error,
        };
        assert!(coordinator(ResponseError::NotCoordinator).needs_metadata_refresh());
        assert!(coordinator(ResponseError::CoordinatorNotAvailable).needs_metadata_refresh());
        assert!(!coordinator(ResponseError::CoordinatorLoadInProgress).needs_metadata_refresh());
        let lost = Error::Disconnected {
            endpoint: "e".into(),
            reason: "r".into(),
        };
        assert!(lost.is_connection_error() && lost.needs_metadata_refresh());
        let timeout = Error::Timeout {
            api: "Fetch",
            endpoint: "e".into(),
            timeout: Duration::from_secs(1),
        };
        assert!(timeout.is_connection_error() && timeout.needs_metadata_refresh());
        let gone = Error::from_code(5, "t", Some(0)).unwrap();
        assert!(!gone.is_connection_error() && gone.needs_metadata_refresh());
    }

    #[test]
    fn unknown_codes_are_kept() {
        let e = Error::from_code(999, "t", None).unwrap();
        assert_eq!(e.kafka_code(), Some(999));
        assert!(!e.is_retriable());
    }
}
